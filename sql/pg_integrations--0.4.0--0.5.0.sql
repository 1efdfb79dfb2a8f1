-- pg_integrations 0.4.0 -> 0.5.0: seed 004's api_keys and esp_integrations.
--
-- One file serves twice: it is this upgrade script, and the fresh install
-- runs it as its last part (src/lib.rs), so an upgraded database and a new
-- one get the very same objects. Everything here is therefore written for
-- both: nothing relies on the install-time helpers of sql/pg/install.sql.
-- Rust entry points: src/platform/api_keys/ and src/kinds/esp.rs.

-- Seed 004's own tables and any functions of our new names move aside into
-- integrations_legacy (nothing dropped, a NOTICE each), as sql/ops/legacy.sql
-- does for seeds 000/001.
DO $aside$
DECLARE
    t text;
    f regprocedure;
    names CONSTANT text[] := ARRAY['create_api_key', 'verify_api_key', 'list_api_keys', 'revoke_api_key', 'rotate_api_key',
                                   'set_esp_integration', 'get_esp_integrations', 'get_esp_credentials', 'record_esp_sync',
                                   'delete_esp_integration'];
BEGIN
    IF to_regclass('public.api_keys') IS NULL AND to_regclass('public.esp_integrations') IS NULL
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc p
                       WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY (names)) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
               WHERE n.nspname = 'integrations_legacy' AND NOT r.rolsuper) THEN
        RAISE EXCEPTION 'schema integrations_legacy already exists and is not owned by a superuser'
            USING ERRCODE = '42P06',
                  HINT = 'pg_integrations moves seed 004''s api_keys and esp_integrations there: drop or rename that schema (or have a superuser own it), then try again.';
    END IF;
    IF to_regnamespace('integrations_legacy') IS NULL THEN
        CREATE SCHEMA integrations_legacy;
        -- the user's schema, not the extension's (see sql/ops/legacy.sql)
        DELETE FROM pg_catalog.pg_depend
        WHERE classid = 'pg_catalog.pg_namespace'::regclass AND objid = 'integrations_legacy'::regnamespace
          AND refclassid = 'pg_catalog.pg_extension'::regclass AND deptype = 'e';
        GRANT USAGE ON SCHEMA integrations_legacy TO service_role, integrations_admin;
    END IF;
    FOREACH t IN ARRAY ARRAY['api_keys', 'esp_integrations'] LOOP
        IF to_regclass('public.' || t) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE public.%I SET SCHEMA integrations_legacy', t);
            RAISE NOTICE 'moved table public.% to integrations_legacy.% (with its indexes, constraints, triggers and policies)', t, t;
        END IF;
    END LOOP;
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY (names) ORDER BY 1
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET SCHEMA integrations_legacy', f);
        RAISE NOTICE 'moved function % to integrations_legacy (it has the name of a pg_integrations function)', f;
    END LOOP;
END
$aside$;

----------------------------------------------------------------------------
-- Inbound API keys: keys a business's own programs present to the platform.

CREATE TABLE public.api_keys (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id        uuid NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- SHA-256 of the whole key, hex: the key itself is never stored; compared
    -- byte for byte (COLLATE "C": the same order for hex, without strcoll)
    key_hash           text COLLATE "C" NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    key_prefix         text NOT NULL CHECK (key_prefix ~ '^pgi_[A-Za-z0-9_-]{8}$'),
    name               text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    last_used_at       timestamptz,
    expires_at         timestamptz,
    is_active          boolean NOT NULL DEFAULT true,
    scopes             text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 64),
    rate_limit         integer NOT NULL DEFAULT 1000 CHECK (rate_limit BETWEEN 1 AND 100000000),
    usage_count        bigint NOT NULL DEFAULT 0,
    -- the clock hour of the last counted use and the uses counted in it (what
    -- a restarted server's rate limiter starts from)
    usage_hour         timestamptz,
    usage_hour_count   integer NOT NULL DEFAULT 0,
    revoked_at         timestamptz,
    created_by         uuid,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
) WITH (fillfactor = 70);
COMMENT ON TABLE public.api_keys IS
    'Inbound API keys (seed 004): keys that let a business''s own programs call the platform. Only the key''s SHA-256 is stored (key_hash) with a short clear prefix for display; created, verified, listed, revoked and rotated through the *_api_key RPCs.';
COMMENT ON COLUMN public.api_keys.key_prefix IS 'The first 12 characters of the key (pgi_ and 8 of its 43 random ones), to tell keys apart in a list';
COMMENT ON COLUMN public.api_keys.scopes IS 'What the key may do: resource:action names (lower case letters, digits, _), e.g. content:read';
COMMENT ON COLUMN public.api_keys.rate_limit IS 'Verifications allowed per clock hour';
COMMENT ON COLUMN public.api_keys.usage_count IS 'Successful verifications (with the library preloaded, committed by the background writer within integrations.audit_flush_interval)';
COMMENT ON COLUMN public.api_keys.usage_hour IS 'The clock hour of the last counted verification';
COMMENT ON COLUMN public.api_keys.usage_hour_count IS 'Verifications counted in usage_hour';
CREATE INDEX idx_api_keys_business_id ON public.api_keys (business_id);

ALTER TABLE public.api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_select ON public.api_keys FOR SELECT TO authenticated
    USING (integrations.can_access_business(business_id));
REVOKE ALL ON public.api_keys FROM PUBLIC, anon, authenticated, service_role;
-- key_hash stays with the extension: a member lists keys through list_api_keys().
GRANT SELECT (id, business_id, created_at, key_prefix, name, last_used_at, expires_at, is_active, scopes,
              rate_limit, usage_count, usage_hour, usage_hour_count, revoked_at, created_by)
    ON public.api_keys TO authenticated, service_role, integrations_admin;
SELECT pg_catalog.pg_extension_config_dump('public.api_keys', '');

CREATE FUNCTION public.create_api_key(p_business_id uuid, p_name text, p_scopes text[],
                                      p_expires_at timestamptz DEFAULT NULL, p_rate_limit integer DEFAULT 1000)
RETURNS TABLE (api_key_id uuid, api_key text)
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp ROWS 1
AS 'MODULE_PATHNAME', 'pgi_create_api_key';
COMMENT ON FUNCTION public.create_api_key(uuid, text, text[], timestamptz, integer) IS
    'Creates an API key for the business and returns it, once: pgi_ followed by 43 URL-safe characters (256 random bits). Only its SHA-256 is stored. p_scopes: 1 to 64 resource:action names (e.g. content:read); p_expires_at in the future or NULL (never); p_rate_limit verifications per hour (1 to 100000000). 22023 for a bad argument; 23514 when the business already holds 100 active, unexpired keys. Owners and admins of the business. Audited.';

CREATE FUNCTION public.verify_api_key(p_api_key text, p_scope text DEFAULT NULL)
RETURNS TABLE (api_key_id uuid, business_id uuid, scopes text[])
LANGUAGE c VOLATILE ROWS 1
AS 'MODULE_PATHNAME', 'pgi_verify_api_key';
COMMENT ON FUNCTION public.verify_api_key(text, text) IS
    'Checks a presented API key (hash compared in constant time), that it is active and unexpired, has p_scope (when given) and is under its hourly rate limit, and counts the use (usage_count, last_used_at). Returns the key''s id, business and scopes. An unknown, revoked or expired key: 42501, one message for all three; a missing scope: 42501 naming it; over the limit: 53400 in the database, PT429 (HTTP 429) at the client. With the library preloaded the limit is counted in shared memory, exact across sessions, and the background writer adds the uses to the key''s row once per integrations.usage_write_interval (no write in the caller''s transaction). Otherwise, and for keys beyond integrations.rate_limiter_keys in an hour, on a hot standby or when the audit queue cannot take the use, the use is counted in the key''s row in the caller''s transaction (25006 in a read-only one). Back-end roles (service_role, integrations_admin).';

CREATE FUNCTION public.list_api_keys(p_business_id uuid)
RETURNS TABLE (id uuid, name text, key_prefix text, scopes text[], rate_limit integer, usage_count bigint,
               last_used_at timestamptz, expires_at timestamptz, is_active boolean, created_at timestamptz, revoked_at timestamptz)
LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_list_api_keys';
COMMENT ON FUNCTION public.list_api_keys(uuid) IS
    'The business''s API keys, newest first, without their hashes. Any member of the business.';

CREATE FUNCTION public.revoke_api_key(p_api_key_id uuid) RETURNS boolean
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_revoke_api_key';
COMMENT ON FUNCTION public.revoke_api_key(uuid) IS
    'Revokes an API key at once (verify_api_key refuses it from the next call); true if it was active, false if there is no such key, it was already revoked or it belongs to a business the caller may not act on (one answer: no probing, no lock taken). Owners and admins of its business. Audited.';

CREATE FUNCTION public.rotate_api_key(p_api_key_id uuid)
RETURNS TABLE (api_key_id uuid, api_key text)
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp ROWS 1
AS 'MODULE_PATHNAME', 'pgi_rotate_api_key';
COMMENT ON FUNCTION public.rotate_api_key(uuid) IS
    'Replaces an active API key with a new one of the same name, scopes, expiry and rate limit, revoking the old one in the same transaction; returns the new key, once. P0002 (PT404 at the client) if there is no active, unexpired key of that id, or it belongs to a business the caller may not act on. Owners and admins of its business. Audited.';

----------------------------------------------------------------------------
-- E-mail service providers (seed 004): credentials are one sealed secret.

INSERT INTO public.integration_providers
    (provider, display_name, category, website, docs_url, api_base_urls, auth_methods, is_mena_provider,
     supported_countries, supported_currencies, primary_locale, payment_capabilities, payment_methods,
     webhook_signing, webhook_signature_header, status, sort_order, notes, sources, builtin)
VALUES
('convertkit', 'Kit (ConvertKit)', 'email', 'https://kit.com', 'https://developers.kit.com', '{https://api.kit.com/v4}', '{api_key,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 630, 'ConvertKit renamed itself Kit in 2024.', 'seed 004', true),
('klaviyo', 'Klaviyo', 'email', 'https://www.klaviyo.com', 'https://developers.klaviyo.com', '{https://a.klaviyo.com/api}', '{api_key,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 640, NULL, 'seed 004', true)
ON CONFLICT (provider) DO NOTHING;

CREATE TABLE public.esp_integrations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at   timestamptz DEFAULT pg_catalog.now(),
    updated_at   timestamptz DEFAULT pg_catalog.now(),
    business_id  uuid NOT NULL,
    provider     text NOT NULL,
    -- The names of the credential fields, each with the value "[sealed]": the
    -- values are one secret in integrations.secrets (secret_id).
    credentials  jsonb NOT NULL DEFAULT '{}'
                 CHECK (jsonb_typeof(credentials) = 'object' AND NOT jsonb_path_exists(credentials, '$.* ? (@ != "[sealed]")')),
    secret_id    uuid NOT NULL,
    settings     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    last_sync_at timestamptz,
    sync_status  text CHECK (sync_status IN ('in_progress', 'success', 'error')),
    error_log    jsonb,
    provider_category text NOT NULL DEFAULT 'email' CHECK (provider_category = 'email'),
    CONSTRAINT unique_business_esp_provider UNIQUE (business_id, provider),
    FOREIGN KEY (provider, provider_category) REFERENCES public.integration_providers (provider, category)
) WITH (fillfactor = 70);
COMMENT ON TABLE public.esp_integrations IS
    'E-mail service provider integrations (seed 004): one per business and provider of the registry''s email category, with sync status. The credentials object is sealed as one secret (secret_id); the credentials column only names its fields.';
COMMENT ON COLUMN public.esp_integrations.credentials IS 'The credential fields'' names, each mapped to "[sealed]"; the values are never stored in clear (get_esp_credentials opens them)';
COMMENT ON COLUMN public.esp_integrations.secret_id IS 'The sealed credentials object in integrations.secrets';
COMMENT ON COLUMN public.esp_integrations.sync_status IS 'in_progress, success or error, as record_esp_sync last recorded it';
COMMENT ON COLUMN public.esp_integrations.error_log IS 'The last sync error as recorded (redacted), NULL after a success';
CREATE INDEX idx_esp_integrations_secret_id ON public.esp_integrations (secret_id);
CREATE TRIGGER esp_integrations_updated_at BEFORE UPDATE ON public.esp_integrations
    FOR EACH ROW EXECUTE FUNCTION integrations.touch_updated_at();
CREATE TRIGGER esp_integrations_delete_secrets AFTER DELETE ON public.esp_integrations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION integrations.delete_row_secrets();

ALTER TABLE public.esp_integrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_select ON public.esp_integrations FOR SELECT TO authenticated
    USING (integrations.can_access_business(business_id));
REVOKE ALL ON public.esp_integrations FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.esp_integrations TO authenticated, service_role, integrations_admin;
SELECT pg_catalog.pg_extension_config_dump('public.esp_integrations', '');

CREATE FUNCTION public.set_esp_integration(p_business_id uuid, p_provider text, p_credentials jsonb, p_settings jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_esp_integration';
COMMENT ON FUNCTION public.set_esp_integration(uuid, text, jsonb, jsonb) IS
    'Creates or updates the business''s integration with e-mail service provider p_provider (the registry''s email category: mailerlite, mailchimp, brevo, convertkit, klaviyo, ...) and returns its id. p_credentials, a JSON object of 1 to 32 fields of at most 16 kB in all, is sealed as one secret (NULL keeps the stored one; a new integration needs it); p_settings replaces the settings (NULL keeps them). 22023 for a bad argument. Owners and admins. Audited.';

CREATE FUNCTION public.get_esp_integrations(p_business_id uuid)
RETURNS TABLE (id uuid, provider text, credential_fields text[], settings jsonb, last_sync_at timestamptz, sync_status text,
               error_log jsonb, created_at timestamptz, updated_at timestamptz)
LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_esp_integrations';
COMMENT ON FUNCTION public.get_esp_integrations(uuid) IS
    'The business''s e-mail service provider integrations by provider, with the names of their credential fields but never the credentials. Any member.';

CREATE FUNCTION public.get_esp_credentials(p_business_id uuid, p_provider text) RETURNS jsonb
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_esp_credentials';
COMMENT ON FUNCTION public.get_esp_credentials(uuid, text) IS
    'Opens the credentials object of the business''s p_provider integration (NULL if there is none). Back-end roles only, unless integrations.owner_can_read_secrets is on (then owners and admins). Audited like every secret read.';

CREATE FUNCTION public.record_esp_sync(p_integration_id uuid, p_status text, p_error jsonb DEFAULT NULL) RETURNS void
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_record_esp_sync';
COMMENT ON FUNCTION public.record_esp_sync(uuid, text, jsonb) IS
    'Records a sync of an e-mail service provider integration: p_status in_progress, success or error; success and error set last_sync_at; p_error (an error status only, redacted of anything credential-like, at most 8 kB) goes to error_log, which a success clears. P0002 (PT404) for an unknown integration or one of a business the caller may not act on. Any member of its business.';

CREATE FUNCTION public.delete_esp_integration(p_business_id uuid, p_provider text) RETURNS boolean
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_delete_esp_integration';
COMMENT ON FUNCTION public.delete_esp_integration(uuid, text) IS
    'Deletes the business''s p_provider e-mail service provider integration and its sealed credentials; whether there was one. Owners and admins. Audited.';

DO $grants$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT unnest(ARRAY[
        'public.create_api_key(uuid, text, text[], timestamptz, integer)', 'public.list_api_keys(uuid)',
        'public.revoke_api_key(uuid)', 'public.rotate_api_key(uuid)',
        'public.set_esp_integration(uuid, text, jsonb, jsonb)', 'public.get_esp_integrations(uuid)',
        'public.get_esp_credentials(uuid, text)', 'public.record_esp_sync(uuid, text, jsonb)',
        'public.delete_esp_integration(uuid, text)']::regprocedure[])
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO authenticated, service_role, integrations_admin', f);
    END LOOP;
END
$grants$;
-- The gateway's call: back-end roles only.
REVOKE ALL ON FUNCTION public.verify_api_key(text, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.verify_api_key(text, text) TO service_role, integrations_admin;


-- audit_status() reports the writer's API-key row updates too (0.5.0).
COMMENT ON FUNCTION integrations.audit_status() IS
    'How secret reads are audited: mode "queued" (pg_integrations is in shared_preload_libraries: a read queues its audit record in shared memory and a background writer commits the queue to integrations.audit_log every integrations.audit_flush_interval, so reads do not write and work in read-only transactions) or "in_transaction" (each read appends its row in the caller''s transaction). In queued mode also this database''s queue: capacity, queued, queued_total, written_total, full_waits, writer, writer_pid and use_row_updates (API-key rows the writer has updated with counted uses, one per key in use per integrations.usage_write_interval). Privileged callers only.';

----------------------------------------------------------------------------
-- Realtime: seed 004 publishes esp_integrations; only with a column list
-- that leaves the credentials out.

CREATE FUNCTION integrations.publish_realtime(p_publication name DEFAULT 'supabase_realtime') RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols CONSTANT text := 'id, created_at, updated_at, business_id, provider, settings, last_sync_at, sync_status, error_log';
    pub pg_catalog.pg_publication%ROWTYPE;
BEGIN
    SELECT * INTO pub FROM pg_catalog.pg_publication WHERE pubname = p_publication;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF pub.puballtables THEN
        RAISE EXCEPTION 'publication % is FOR ALL TABLES: it would publish every column of public.esp_integrations', p_publication
            USING ERRCODE = '55000',
                  HINT = 'Publish tables one by one (CREATE PUBLICATION ... FOR TABLE ...), then call integrations.publish_realtime() again.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_publication_rel
               WHERE prpubid = pub.oid AND prrelid = 'public.esp_integrations'::regclass) THEN
        EXECUTE format('ALTER PUBLICATION %I DROP TABLE public.esp_integrations', p_publication);
    END IF;
    EXECUTE format('ALTER PUBLICATION %I ADD TABLE public.esp_integrations (%s)', p_publication, cols);
    RETURN true;
END $$;
COMMENT ON FUNCTION integrations.publish_realtime(name) IS
    'Adds public.esp_integrations to publication p_publication (Supabase Realtime''s supabase_realtime by default) with a column list that leaves out the credentials and their secret id, replacing any earlier entry of the table; false if there is no such publication; 55000 for a FOR ALL TABLES publication. Run at install and upgrade; call it again after creating the publication. Privileged callers.';
REVOKE ALL ON FUNCTION integrations.publish_realtime(name) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.publish_realtime(name) TO service_role, integrations_admin;
SELECT integrations.publish_realtime()
WHERE EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime' AND NOT puballtables);

----------------------------------------------------------------------------
-- A tenant table attached before this version: the new tables get their
-- foreign keys now (they are empty), as attach_tenant_table() gives every
-- per-business table.
DO $tenant$
DECLARE
    t regclass;
    s text;
BEGIN
    SELECT table_name INTO t FROM integrations.tenant_table;
    IF t IS NULL THEN
        RETURN;
    END IF;
    FOREACH s IN ARRAY ARRAY['api_keys', 'esp_integrations'] LOOP
        EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I FOREIGN KEY (business_id) REFERENCES %s (id) ON DELETE CASCADE',
                       s, s || '_business_id_fkey', t);
    END LOOP;
END
$tenant$;
