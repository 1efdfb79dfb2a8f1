-- pg_integrations: the seed-compatible integration tables (seeds 000/001),
-- their triggers, row level security and privileges.

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

SELECT pg_catalog.pg_extension_config_dump('public.ai_avatar_integrations', '');
SELECT pg_catalog.pg_extension_config_dump('public.email_integrations', '');
SELECT pg_catalog.pg_extension_config_dump('public.blog_integrations', '');
SELECT pg_catalog.pg_extension_config_dump('public.upload_post_profiles', '');

REVOKE ALL ON FUNCTION integrations.delete_row_secrets() FROM PUBLIC;
