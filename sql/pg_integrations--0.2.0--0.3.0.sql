-- pg_integrations 0.2.0 -> 0.3.0 (issue: security against hostile code in the
-- same database, Supabase's default privileges and crafted input).

-- Every function in C decides on the role that really calls it and then runs
-- as its owner itself (src/pg/definer.rs): SECURITY INVOKER.
DO $invoker$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_integrations'
        JOIN pg_catalog.pg_proc p ON p.oid = d.objid
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang AND l.lanname = 'c'
        WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e' AND p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER', f);
    END LOOP;
END
$invoker$;

-- The role matrix: members read and record, owners and admins change. Direct
-- updates through PostgREST follow it too.
CREATE FUNCTION integrations.can_manage_business(p_business_id uuid) RETURNS boolean
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_can_manage_business';
COMMENT ON FUNCTION integrations.can_manage_business(uuid) IS
    'Whether the caller may change p_business_id''s integrations: superuser, service_role and integrations_admin always; an authenticated user if it owns the business (attached tenant table) or is its owner or admin in integrations.business_members (members may only read and record).';
REVOKE ALL ON FUNCTION integrations.can_manage_business(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.can_manage_business(uuid) TO authenticated, service_role, integrations_admin;
DO $policies$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ai_avatar_integrations', 'email_integrations', 'blog_integrations', 'upload_post_profiles'] LOOP
        EXECUTE format('ALTER POLICY owner_update ON public.%I USING (integrations.can_manage_business(business_id)) WITH CHECK (integrations.can_manage_business(business_id))', t);
    END LOOP;
END
$policies$;

-- Back-end functions: Supabase's default privileges had left EXECUTE with
-- authenticated (0.2.0 revoked it from PUBLIC and anon only).
REVOKE ALL ON FUNCTION public.get_integration_credentials(uuid), public.list_integrations_needing_refresh(interval),
    public.record_webhook_event(uuid, text, text, jsonb, bytea, text), public.claim_integration_events(integer),
    public.complete_integration_event(uuid, boolean, text), public.cleanup_expired_oauth_states()
    FROM PUBLIC, anon, authenticated, service_role, integrations_admin;
GRANT EXECUTE ON FUNCTION public.get_integration_credentials(uuid), public.list_integrations_needing_refresh(interval),
    public.record_webhook_event(uuid, text, text, jsonb, bytea, text), public.claim_integration_events(integer),
    public.complete_integration_event(uuid, boolean, text), public.cleanup_expired_oauth_states()
    TO service_role, integrations_admin;

-- API log partitions are read through the parent only; default privileges
-- had opened them to the API roles.
DO $partitions$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_catalog.pg_inherits WHERE inhparent = 'public.integration_api_logs'::regclass LOOP
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, anon, authenticated, service_role', p);
    END LOOP;
END
$partitions$;

-- Webhook replays: a signed token (HS256 JWT) is accepted once per
-- configuration; the same signed body is not recorded again under another
-- event id.
ALTER TABLE public.integration_events ADD COLUMN replay_key bytea CHECK (length(replay_key) = 32);
CREATE UNIQUE INDEX integration_events_replay_key_idx ON public.integration_events (config_id, replay_key)
    WHERE replay_key IS NOT NULL;
CREATE INDEX integration_events_body_idx ON public.integration_events (config_id, body_sha256);

-- Re-encryption passes over secrets that fail authentication.
COMMENT ON FUNCTION integrations.reencrypt_secrets(integer) IS
    'Re-encrypts up to p_batch_size secrets still sealed under a retired data key, oldest key first (FOR UPDATE SKIP LOCKED); returns how many. A secret that fails authentication is left as it is and named in a WARNING (and by verify_secrets); 0 means nothing re-encryptable is left. Each call is one short transaction''s work: safe to interrupt and call again.';

-- Seed 003's name for the display name, so its own check query runs.
ALTER TABLE public.integration_providers ADD COLUMN name text GENERATED ALWAYS AS (display_name) STORED;
COMMENT ON COLUMN public.integration_providers.name IS 'The display name, under the column name seed 003 uses';

-- set_*_integration: a NULL p_api_key keeps the stored key of an existing row.
DO $comments$
DECLARE
    k record;
BEGIN
    FOR k IN SELECT * FROM (VALUES
        ('ai_avatar', 'AI avatar', 'heygen', '',
         ' 42501 unless the caller may act on the business; 22023 for an unknown provider or an empty key.'),
        ('email', 'email', 'mailerlite, mailchimp, brevo', ' p_sender_email must be an e-mail address.', ''),
        ('blog', 'blog', 'wordpress, wix', ' p_site_url must be an http(s) URL.', '')
    ) AS v (kind, label, providers, set_rule, set_errors)
    LOOP
        EXECUTE format('COMMENT ON FUNCTION public.%I(uuid, text, text, text, text, jsonb) IS %L', 'set_' || k.kind || '_integration',
            format('Creates or updates the business''s %s integration for p_provider (%s) and stores p_api_key encrypted; returns the integration id. A NULL p_api_key keeps the stored key (a new integration needs one).%s NULL optional arguments keep the stored value, an empty string clears it; p_config replaces provider_config (NULL keeps it).%s',
                   k.label, k.providers, k.set_rule, k.set_errors));
    END LOOP;
END
$comments$;

-- Adopting the seeds' own tables (moved aside by CREATE EXTENSION from 0.3.0 on).
CREATE FUNCTION integrations.adopt_legacy_integrations()
RETURNS TABLE (table_name text, adopted bigint, skipped bigint)
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_adopt_legacy_integrations';
COMMENT ON FUNCTION integrations.adopt_legacy_integrations() IS
    'Copies the rows of the seeds'' tables that CREATE EXTENSION moved into integrations_legacy (ai_avatar, email and blog integrations, Upload-Post profiles) into the extension''s tables, keeping row ids, business ids, configuration, status and timestamps and re-sealing each key read from vault.decrypted_secrets (with the caller''s privileges); without Vault a row is adopted without a key and marked inactive. Reads only plain tables owned by a superuser, a privileged role or the caller (42501 otherwise); a key only from the Vault secret the seed named for the row''s business and provider. Returns per table how many rows were adopted and skipped; a skipped row gets a NOTICE saying why, never the key. Idempotent, also after a delete. Privileged callers. integrations_legacy is left for you to drop.';
REVOKE ALL ON FUNCTION integrations.adopt_legacy_integrations() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.adopt_legacy_integrations() TO service_role, integrations_admin;

-- A seed kind's providers are data: the providers of its category in the
-- registry (a foreign key), not a list in a CHECK constraint; and a back end
-- records an integration's status and why.
ALTER TABLE public.integration_providers ADD UNIQUE (provider, category);
DO $kinds$
DECLARE
    k text;
    t text;
BEGIN
    FOREACH k IN ARRAY ARRAY['ai_avatar', 'email', 'blog'] LOOP
        t := k || '_integrations';
        EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', t, t || '_provider_check');
        EXECUTE format('ALTER TABLE public.%I ADD COLUMN error_message text, '
                       'ADD COLUMN provider_category text NOT NULL DEFAULT %L CHECK (provider_category = %L), '
                       'ADD FOREIGN KEY (provider, provider_category) REFERENCES public.integration_providers (provider, category)',
                       t, k, k);
        EXECUTE format('COMMENT ON COLUMN public.%I.error_message IS %L', t,
                       'Why the status is error, as a back-end job recorded it (set_integration_status; redacted)');
        EXECUTE format('COMMENT ON COLUMN public.%I.provider_category IS %L', t,
                       'The registry category this kind''s providers come from: provider must be a provider of it in integration_providers');
    END LOOP;
END
$kinds$;
CREATE FUNCTION public.set_integration_status(
    p_kind text, p_business_id uuid, p_provider text, p_status text, p_error_message text DEFAULT NULL,
    p_validated_at timestamptz DEFAULT NULL, p_last_synced_at timestamptz DEFAULT NULL)
RETURNS uuid LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_integration_status';
COMMENT ON FUNCTION public.set_integration_status(text, uuid, text, text, text, timestamptz, timestamptz) IS
    'Records the status (active, inactive, error) of the business''s p_kind (ai_avatar, email, blog) integration with p_provider, with an error message (stored redacted, at most 1000 characters; NULL clears it) and, when given, validated_at and last_synced_at; returns the integration id. PT404 if there is none. For back ends: service_role and integrations_admin. Audited.';
REVOKE ALL ON FUNCTION public.set_integration_status(text, uuid, text, text, text, timestamptz, timestamptz)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.set_integration_status(text, uuid, text, text, text, timestamptz, timestamptz)
    TO service_role, integrations_admin;
