-- pg_integrations: tenancy and the seed-compatible integrations (seeds 000/001).
--
-- The functions here are declared by hand (LANGUAGE c over entry points in
-- src/tenancy.rs, src/kinds/*.rs, src/triggers.rs) so that their names,
-- argument names, defaults and return shapes are exactly the seeds'.

----------------------------------------------------------------------------
-- Validators (also used by CHECK constraints, so direct table updates through
-- PostgREST are held to the same rules as the RPCs)

CREATE FUNCTION integrations.is_valid_email(p_value text) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_is_valid_email';
COMMENT ON FUNCTION integrations.is_valid_email(text) IS
    'Whether p_value is an e-mail address a mail provider accepts as a sender (NULL counts as valid).';

CREATE FUNCTION integrations.is_valid_http_url(p_value text) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_is_valid_http_url';
COMMENT ON FUNCTION integrations.is_valid_http_url(text) IS
    'Whether p_value is an absolute http(s) URL with a host name and no credentials (NULL counts as valid).';

CREATE FUNCTION integrations.touch_updated_at() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pgi_touch_updated_at';
COMMENT ON FUNCTION integrations.touch_updated_at() IS
    'BEFORE UPDATE row trigger: sets updated_at to now().';

----------------------------------------------------------------------------
-- Tenancy

-- The app's tenant table (e.g. public.businesses, owner column profile_id), as
-- recorded by integrations.attach_tenant_table().
CREATE TABLE integrations.tenant_table (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    table_name   regclass NOT NULL,
    owner_column name NOT NULL,
    attached_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE integrations.tenant_table IS
    'The tenant table attached with integrations.attach_tenant_table(): its id column is business_id everywhere, its owner column holds the owner''s user id.';

-- Who else belongs to a business (teams), or the only source of access where
-- the app has no tenant table.
CREATE TABLE integrations.business_members (
    business_id uuid NOT NULL,
    user_id     uuid NOT NULL,
    role        text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT business_members_pkey PRIMARY KEY (business_id, user_id)
);
CREATE INDEX business_members_user_id_idx ON integrations.business_members (user_id);
COMMENT ON TABLE integrations.business_members IS
    'Members of a business: a signed-in user listed here may act on the business''s integrations like its owner.';

-- Every set, delete and secret read, never the secret. Rows are appended
-- directly to the heap by the RPCs: no indexes, triggers or CHECK constraints
-- here (they would be bypassed).
CREATE TABLE integrations.audit_log (
    at            timestamptz NOT NULL,
    actor_user_id uuid,
    actor_role    text NOT NULL,
    business_id   uuid NOT NULL,
    action        text NOT NULL,
    kind          text NOT NULL,
    provider      text,
    target_id     uuid
);
COMMENT ON TABLE integrations.audit_log IS
    'Audit trail: who (user id from the JWT claims, role) did what (set, delete, read_secret) to which business''s integration (kind, provider, row id), when. Never holds a secret.';

CREATE FUNCTION integrations.current_user_id() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_current_user_id';
COMMENT ON FUNCTION integrations.current_user_id() IS
    'The signed-in user: sub of request.jwt.claims as PostgREST and Supabase set it (like auth.uid()); NULL when there is none or it is not a UUID.';

CREATE FUNCTION integrations.can_access_business(p_business_id uuid) RETURNS boolean
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_can_access_business';
COMMENT ON FUNCTION integrations.can_access_business(uuid) IS
    'Whether the caller may act on p_business_id: superuser, service_role and integrations_admin always; an authenticated user if it owns the business (attached tenant table) or is in integrations.business_members.';

CREATE FUNCTION integrations.attach_tenant_table(p_table regclass, p_owner_column name DEFAULT 'profile_id') RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_attach_tenant_table';
COMMENT ON FUNCTION integrations.attach_tenant_table(regclass, name) IS
    'Records the app''s tenant table (a uuid id with a unique index, and a uuid owner column) and adds foreign keys ON DELETE CASCADE from every integration table''s business_id to it, so deleting a business deletes its integrations and secrets and PostgREST can embed them. Idempotent. Privileged callers only.';

----------------------------------------------------------------------------
-- Seed 001: AI avatar integrations (HeyGen)
-- (fillfactor 70 on the integration tables: re-saving settings updates a row,
-- and a HOT update that stays on its page touches none of the six indexes)

CREATE TABLE public.ai_avatar_integrations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    business_id UUID NOT NULL,
    provider TEXT NOT NULL CHECK (provider IN ('heygen')),
    secret_id UUID REFERENCES integrations.secrets (id),
    avatar_id TEXT,
    voice_id TEXT,
    provider_config JSONB DEFAULT '{}' CHECK (jsonb_typeof(provider_config) = 'object'),
    status TEXT DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'error')),
    validated_at TIMESTAMP WITH TIME ZONE,
    last_synced_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT unique_business_ai_avatar_provider UNIQUE (business_id, provider)
) WITH (fillfactor = 70);
COMMENT ON TABLE public.ai_avatar_integrations IS 'AI avatar video generation service integrations (HeyGen, future providers)';
COMMENT ON COLUMN public.ai_avatar_integrations.business_id IS 'Reference to the business that owns this integration';
COMMENT ON COLUMN public.ai_avatar_integrations.provider IS 'AI avatar service provider (heygen)';
COMMENT ON COLUMN public.ai_avatar_integrations.secret_id IS 'Reference to the encrypted API key in integrations.secrets';
COMMENT ON COLUMN public.ai_avatar_integrations.avatar_id IS 'Provider-specific avatar identifier';
COMMENT ON COLUMN public.ai_avatar_integrations.voice_id IS 'Provider-specific voice identifier';
COMMENT ON COLUMN public.ai_avatar_integrations.provider_config IS 'Additional provider-specific configuration';
COMMENT ON COLUMN public.ai_avatar_integrations.status IS 'Integration status (active, inactive, error)';
CREATE INDEX idx_ai_avatar_integrations_business_id ON public.ai_avatar_integrations (business_id);
CREATE INDEX idx_ai_avatar_integrations_provider ON public.ai_avatar_integrations (provider);
CREATE INDEX idx_ai_avatar_integrations_status ON public.ai_avatar_integrations (status);
-- Deleting a secret checks this foreign key; without the index that is a scan.
CREATE INDEX idx_ai_avatar_integrations_secret_id ON public.ai_avatar_integrations (secret_id);

----------------------------------------------------------------------------
-- Seed 000/001 pattern: email integrations (MailerLite, Mailchimp, Brevo)

CREATE TABLE public.email_integrations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    business_id UUID NOT NULL,
    provider TEXT NOT NULL CHECK (provider IN ('mailerlite', 'mailchimp', 'brevo')),
    secret_id UUID REFERENCES integrations.secrets (id),
    sender_name TEXT,
    sender_email TEXT CHECK (integrations.is_valid_email(sender_email)),
    provider_config JSONB DEFAULT '{}' CHECK (jsonb_typeof(provider_config) = 'object'),
    status TEXT DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'error')),
    validated_at TIMESTAMP WITH TIME ZONE,
    last_synced_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT unique_business_email_provider UNIQUE (business_id, provider)
) WITH (fillfactor = 70);
COMMENT ON TABLE public.email_integrations IS 'Email service provider integrations (MailerLite, Mailchimp, Brevo)';
COMMENT ON COLUMN public.email_integrations.business_id IS 'Reference to the business that owns this integration';
COMMENT ON COLUMN public.email_integrations.provider IS 'Email service provider (mailerlite, mailchimp, brevo)';
COMMENT ON COLUMN public.email_integrations.secret_id IS 'Reference to the encrypted API key in integrations.secrets';
COMMENT ON COLUMN public.email_integrations.sender_name IS 'Name shown as the sender of outgoing e-mail';
COMMENT ON COLUMN public.email_integrations.sender_email IS 'Sender e-mail address (validated)';
COMMENT ON COLUMN public.email_integrations.provider_config IS 'Additional provider-specific configuration';
COMMENT ON COLUMN public.email_integrations.status IS 'Integration status (active, inactive, error)';
CREATE INDEX idx_email_integrations_business_id ON public.email_integrations (business_id);
CREATE INDEX idx_email_integrations_provider ON public.email_integrations (provider);
CREATE INDEX idx_email_integrations_status ON public.email_integrations (status);
CREATE INDEX idx_email_integrations_secret_id ON public.email_integrations (secret_id);

----------------------------------------------------------------------------
-- Blog integrations (WordPress, Wix)

CREATE TABLE public.blog_integrations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    business_id UUID NOT NULL,
    provider TEXT NOT NULL CHECK (provider IN ('wordpress', 'wix')),
    secret_id UUID REFERENCES integrations.secrets (id),
    site_url TEXT CHECK (integrations.is_valid_http_url(site_url)),
    username TEXT,
    provider_config JSONB DEFAULT '{}' CHECK (jsonb_typeof(provider_config) = 'object'),
    status TEXT DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'error')),
    validated_at TIMESTAMP WITH TIME ZONE,
    last_synced_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT unique_business_blog_provider UNIQUE (business_id, provider)
) WITH (fillfactor = 70);
COMMENT ON TABLE public.blog_integrations IS 'Blog platform integrations (WordPress, Wix)';
COMMENT ON COLUMN public.blog_integrations.business_id IS 'Reference to the business that owns this integration';
COMMENT ON COLUMN public.blog_integrations.provider IS 'Blog platform (wordpress, wix)';
COMMENT ON COLUMN public.blog_integrations.secret_id IS 'Reference to the encrypted API key or application password in integrations.secrets';
COMMENT ON COLUMN public.blog_integrations.site_url IS 'The blog''s http(s) URL (validated)';
COMMENT ON COLUMN public.blog_integrations.username IS 'User name the API key belongs to (WordPress application passwords)';
COMMENT ON COLUMN public.blog_integrations.provider_config IS 'Additional provider-specific configuration';
COMMENT ON COLUMN public.blog_integrations.status IS 'Integration status (active, inactive, error)';
CREATE INDEX idx_blog_integrations_business_id ON public.blog_integrations (business_id);
CREATE INDEX idx_blog_integrations_provider ON public.blog_integrations (provider);
CREATE INDEX idx_blog_integrations_status ON public.blog_integrations (status);
CREATE INDEX idx_blog_integrations_secret_id ON public.blog_integrations (secret_id);

----------------------------------------------------------------------------
-- Social: Upload-Post profiles

CREATE TABLE public.upload_post_profiles (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id UUID NOT NULL,
    upload_post_username TEXT NOT NULL CHECK (upload_post_username ~ '^[a-z0-9_]+$'),
    social_accounts JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(social_accounts) = 'object'),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    CONSTRAINT unique_upload_post_business UNIQUE (business_id),
    CONSTRAINT unique_upload_post_username UNIQUE (upload_post_username)
) WITH (fillfactor = 70);
COMMENT ON TABLE public.upload_post_profiles IS 'Upload-Post profiles: one per business, with its connected social accounts';
COMMENT ON COLUMN public.upload_post_profiles.upload_post_username IS 'Generated: biz_ followed by the business id''s 32 lower-case hex digits (stable, unique, URL-safe)';
COMMENT ON COLUMN public.upload_post_profiles.social_accounts IS 'Connected social accounts, as Upload-Post reports them';

----------------------------------------------------------------------------
-- Triggers, row level security and privileges of the integration tables

-- Deleting integration rows (by an RPC or by a cascade from the tenant table)
-- deletes their secrets: no orphans.
CREATE FUNCTION integrations.delete_row_secrets() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM integrations.secrets s USING gone g WHERE s.id = g.secret_id;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION integrations.delete_row_secrets() IS
    'AFTER DELETE statement trigger: deletes the secrets of the deleted integration rows.';

DO $tables$
DECLARE
    t text;
    cols text;
BEGIN
    FOR t, cols IN VALUES
        ('ai_avatar_integrations', 'avatar_id, voice_id, provider_config, updated_at'),
        ('email_integrations', 'sender_name, sender_email, provider_config, updated_at'),
        ('blog_integrations', 'site_url, username, provider_config, updated_at'),
        ('upload_post_profiles', 'social_accounts, updated_at')
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON public.%I FOR EACH ROW EXECUTE FUNCTION integrations.touch_updated_at()',
                       t || '_updated_at', t);
        IF t <> 'upload_post_profiles' THEN
            EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON public.%I REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION integrations.delete_row_secrets()',
                           t || '_delete_secrets', t);
        END IF;
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY owner_select ON public.%I FOR SELECT TO authenticated USING (integrations.can_access_business(business_id))', t);
        EXECUTE format('CREATE POLICY owner_update ON public.%I FOR UPDATE TO authenticated USING (integrations.can_access_business(business_id)) WITH CHECK (integrations.can_access_business(business_id))', t);
        -- Supabase's default privileges grant everything on new public tables
        -- to anon, authenticated and service_role: take it back, by name.
        EXECUTE format('REVOKE ALL ON public.%I FROM PUBLIC, anon, authenticated, service_role', t);
        EXECUTE format('GRANT SELECT ON public.%I TO authenticated, service_role, integrations_admin', t);
        EXECUTE format('GRANT UPDATE (%s) ON public.%I TO authenticated, service_role, integrations_admin', cols, t);
    END LOOP;
END
$tables$;

ALTER TABLE integrations.business_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_memberships ON integrations.business_members FOR SELECT TO authenticated
    USING (user_id = integrations.current_user_id());
ALTER TABLE integrations.tenant_table ENABLE ROW LEVEL SECURITY;
ALTER TABLE integrations.audit_log ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON integrations.business_members, integrations.tenant_table, integrations.audit_log FROM PUBLIC;
GRANT SELECT ON integrations.business_members TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON integrations.business_members TO service_role, integrations_admin;
GRANT SELECT ON integrations.tenant_table, integrations.audit_log TO service_role, integrations_admin;

-- RLS policies call integrations.can_access_business() as the querying role.
GRANT USAGE ON SCHEMA integrations TO authenticated;

SELECT pg_catalog.pg_extension_config_dump('integrations.tenant_table', '');
SELECT pg_catalog.pg_extension_config_dump('integrations.business_members', '');
SELECT pg_catalog.pg_extension_config_dump('integrations.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('public.ai_avatar_integrations', '');
SELECT pg_catalog.pg_extension_config_dump('public.email_integrations', '');
SELECT pg_catalog.pg_extension_config_dump('public.blog_integrations', '');
SELECT pg_catalog.pg_extension_config_dump('public.upload_post_profiles', '');

----------------------------------------------------------------------------
-- RPCs (schema public), with the seeds' signatures

CREATE FUNCTION public.set_ai_avatar_integration(
    p_business_id uuid, p_provider text, p_api_key text,
    p_avatar_id text DEFAULT NULL, p_voice_id text DEFAULT NULL, p_config jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_ai_avatar_integration';

CREATE FUNCTION public.get_ai_avatar_integration(p_business_id uuid)
RETURNS TABLE (id uuid, provider text, avatar_id text, voice_id text, provider_config jsonb, status text, validated_at timestamptz)
LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp ROWS 1
AS 'MODULE_PATHNAME', 'pgi_get_ai_avatar_integration';

CREATE FUNCTION public.get_ai_avatar_secret(p_business_id uuid)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_ai_avatar_secret';

CREATE FUNCTION public.delete_ai_avatar_integration(p_business_id uuid)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_delete_ai_avatar_integration';

CREATE FUNCTION public.set_email_integration(
    p_business_id uuid, p_provider text, p_api_key text,
    p_sender_name text DEFAULT NULL, p_sender_email text DEFAULT NULL, p_config jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_email_integration';

CREATE FUNCTION public.get_email_integration(p_business_id uuid)
RETURNS TABLE (id uuid, provider text, sender_name text, sender_email text, provider_config jsonb, status text, validated_at timestamptz)
LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp ROWS 1
AS 'MODULE_PATHNAME', 'pgi_get_email_integration';

CREATE FUNCTION public.get_email_secret(p_business_id uuid)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_email_secret';

CREATE FUNCTION public.delete_email_integration(p_business_id uuid)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_delete_email_integration';

CREATE FUNCTION public.set_blog_integration(
    p_business_id uuid, p_provider text, p_api_key text,
    p_site_url text DEFAULT NULL, p_username text DEFAULT NULL, p_config jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_blog_integration';

CREATE FUNCTION public.get_blog_integration(p_business_id uuid)
RETURNS TABLE (id uuid, provider text, site_url text, username text, provider_config jsonb, status text, validated_at timestamptz)
LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp ROWS 1
AS 'MODULE_PATHNAME', 'pgi_get_blog_integration';

CREATE FUNCTION public.get_blog_secret(p_business_id uuid)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_blog_secret';

CREATE FUNCTION public.delete_blog_integration(p_business_id uuid)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_delete_blog_integration';

CREATE FUNCTION public.get_or_create_upload_post_profile(p_business_id uuid)
RETURNS public.upload_post_profiles LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_or_create_upload_post_profile';

CREATE FUNCTION public.set_upload_post_social_accounts(p_business_id uuid, p_social_accounts jsonb)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_upload_post_social_accounts';

CREATE FUNCTION public.delete_upload_post_profile(p_business_id uuid)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_delete_upload_post_profile';

COMMENT ON FUNCTION public.set_ai_avatar_integration(uuid, text, text, text, text, jsonb) IS
    'Creates or updates the business''s AI avatar integration for p_provider (heygen) and stores p_api_key encrypted; returns the integration id. NULL optional arguments keep the stored value, an empty string clears it; p_config replaces provider_config (NULL keeps it). 42501 unless the caller may act on the business; 22023 for an unknown provider or an empty key.';
COMMENT ON FUNCTION public.get_ai_avatar_integration(uuid) IS
    'The business''s active AI avatar integration without its secret (no row if there is none).';
COMMENT ON FUNCTION public.get_ai_avatar_secret(uuid) IS
    'Decrypts the API key of the business''s active AI avatar integration (NULL if none). Privileged callers only, unless integrations.owner_can_read_secrets is on. Audited.';
COMMENT ON FUNCTION public.delete_ai_avatar_integration(uuid) IS
    'Deletes every AI avatar integration of the business and their secrets. Audited.';
COMMENT ON FUNCTION public.set_email_integration(uuid, text, text, text, text, jsonb) IS
    'Creates or updates the business''s email integration for p_provider (mailerlite, mailchimp, brevo) and stores p_api_key encrypted; returns the integration id. p_sender_email must be an e-mail address. NULL optional arguments keep the stored value, an empty string clears it; p_config replaces provider_config (NULL keeps it).';
COMMENT ON FUNCTION public.get_email_integration(uuid) IS
    'The business''s active email integration without its secret (no row if there is none; the first provider by name if several are active).';
COMMENT ON FUNCTION public.get_email_secret(uuid) IS
    'Decrypts the API key of the business''s active email integration (NULL if none). Privileged callers only, unless integrations.owner_can_read_secrets is on. Audited.';
COMMENT ON FUNCTION public.delete_email_integration(uuid) IS
    'Deletes every email integration of the business and their secrets. Audited.';
COMMENT ON FUNCTION public.set_blog_integration(uuid, text, text, text, text, jsonb) IS
    'Creates or updates the business''s blog integration for p_provider (wordpress, wix) and stores p_api_key encrypted; returns the integration id. p_site_url must be an http(s) URL. NULL optional arguments keep the stored value, an empty string clears it; p_config replaces provider_config (NULL keeps it).';
COMMENT ON FUNCTION public.get_blog_integration(uuid) IS
    'The business''s active blog integration without its secret (no row if there is none; the first provider by name if several are active).';
COMMENT ON FUNCTION public.get_blog_secret(uuid) IS
    'Decrypts the API key of the business''s active blog integration (NULL if none). Privileged callers only, unless integrations.owner_can_read_secrets is on. Audited.';
COMMENT ON FUNCTION public.delete_blog_integration(uuid) IS
    'Deletes every blog integration of the business and their secrets. Audited.';
COMMENT ON FUNCTION public.get_or_create_upload_post_profile(uuid) IS
    'The business''s Upload-Post profile, created on first call with the generated username biz_<32 hex digits of the business id>.';
COMMENT ON FUNCTION public.set_upload_post_social_accounts(uuid, jsonb) IS
    'Replaces the social accounts (a JSON object) of the business''s Upload-Post profile, creating the profile if needed.';
COMMENT ON FUNCTION public.delete_upload_post_profile(uuid) IS
    'Deletes the business''s Upload-Post profile. Audited.';

-- EXECUTE: not PUBLIC, not anon (Supabase's default privileges grant it to anon
-- on new public functions), only the roles that call these.
DO $grants$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND p.proname IN ('set_ai_avatar_integration', 'get_ai_avatar_integration', 'get_ai_avatar_secret', 'delete_ai_avatar_integration',
                            'set_email_integration', 'get_email_integration', 'get_email_secret', 'delete_email_integration',
                            'set_blog_integration', 'get_blog_integration', 'get_blog_secret', 'delete_blog_integration',
                            'get_or_create_upload_post_profile', 'set_upload_post_social_accounts', 'delete_upload_post_profile')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO authenticated, service_role, integrations_admin', f);
    END LOOP;
END
$grants$;

REVOKE ALL ON FUNCTION integrations.attach_tenant_table(regclass, name), integrations.can_access_business(uuid),
    integrations.current_user_id(), integrations.delete_row_secrets(), integrations.touch_updated_at() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION integrations.attach_tenant_table(regclass, name) TO service_role, integrations_admin;
GRANT EXECUTE ON FUNCTION integrations.can_access_business(uuid), integrations.current_user_id()
    TO authenticated, service_role, integrations_admin;
-- Pure validators, used by CHECK constraints of tables owners may update.
GRANT EXECUTE ON FUNCTION integrations.is_valid_email(text), integrations.is_valid_http_url(text) TO PUBLIC;

----------------------------------------------------------------------------
-- Moving off the wide businesses table

-- The default is resolved when called (a regclass literal would need the table
-- to exist when the extension is created).
CREATE FUNCTION integrations.migrate_business_columns(p_table regclass DEFAULT 'public.businesses'::text::regclass, p_drop_columns boolean DEFAULT false)
RETURNS TABLE (kind text, migrated bigint)
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_migrate_business_columns';
COMMENT ON FUNCTION integrations.migrate_business_columns(regclass, boolean) IS
    'Copies the legacy integration columns of p_table (heygen_secret_id/heygen_avatar_id/heygen_voice_id, email_provider/email_secret_id/sender_name/sender_email, blog_provider/blog_secret_id/blog_site_url/blog_username) into ai_avatar_integrations, email_integrations and blog_integrations, re-encrypting the keys read from vault.decrypted_secrets (when that view exists) into the secret store. Rows with invalid values are skipped with a NOTICE. Idempotent: existing rows are kept. With p_drop_columns, drops those columns and the old functions set_heygen_key, delete_heygen_key and get_heygen_secret. Returns how many rows each kind gained. Privileged callers only.';
REVOKE ALL ON FUNCTION integrations.migrate_business_columns(regclass, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION integrations.migrate_business_columns(regclass, boolean) TO service_role, integrations_admin;
