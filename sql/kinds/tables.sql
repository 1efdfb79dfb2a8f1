-- pg_integrations: the seed-compatible integration tables (seeds 000/001),
-- their triggers, row level security and privileges.

-- Deleting integration rows (by an RPC or by a cascade from the tenant table)
-- deletes their secrets: no orphans.
CREATE FUNCTION integrations.delete_row_secrets() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgi_delete_row_secrets';
COMMENT ON FUNCTION integrations.delete_row_secrets() IS
    'AFTER DELETE statement trigger: deletes the secrets of the deleted integration rows.';
REVOKE ALL ON FUNCTION integrations.delete_row_secrets() FROM PUBLIC, anon, authenticated, service_role;

----------------------------------------------------------------------------
-- The three keyed kinds, one shape (seed 001's ai_avatar_integrations):
-- AI avatar (HeyGen), e-mail (MailerLite, Mailchimp, Brevo), blog (WordPress,
-- Wix). Each has two optional columns of its own. fillfactor 70 (50 since
-- 0.8.0, pg_integrations--0.7.0--0.8.0.sql): re-saving
-- settings updates a row, and a HOT update that stays on its page touches
-- none of the indexes.

DO $kinds$
DECLARE
    k record;
    t text;
BEGIN
    FOR k IN SELECT * FROM (VALUES
        ('ai_avatar', 'AI avatar video generation service integrations (HeyGen, future providers)',
         'AI avatar service provider (heygen)', 'encrypted API key',
         'avatar_id', NULL, 'Provider-specific avatar identifier',
         'voice_id', NULL, 'Provider-specific voice identifier'),
        ('email', 'Email service provider integrations (MailerLite, Mailchimp, Brevo)',
         'Email service provider (mailerlite, mailchimp, brevo)', 'encrypted API key',
         'sender_name', NULL, 'Name shown as the sender of outgoing e-mail',
         'sender_email', 'integrations.is_valid_email(sender_email)', 'Sender e-mail address (validated)'),
        ('blog', 'Blog platform integrations (WordPress, Wix)',
         'Blog platform (wordpress, wix)', 'encrypted API key or application password',
         'site_url', 'integrations.is_valid_http_url(site_url)', 'The blog''s http(s) URL (validated)',
         'username', NULL, 'User name the API key belongs to (WordPress application passwords)')
    ) AS v (kind, about, provider_about, secret_about, c1, c1_check, c1_about, c2, c2_check, c2_about)
    LOOP
        t := k.kind || '_integrations';
        EXECUTE format($ddl$
            CREATE TABLE public.%1$I (
                id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
                created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
                updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
                business_id UUID NOT NULL,
                provider TEXT NOT NULL,
                -- No foreign key to integrations.secrets: the extension writes and deletes a
                -- secret with its row, and nine NO ACTION checks per deleted secret cost a
                -- delete_* call three quarters of its time (integrations.delete_secret checks instead).
                secret_id UUID,
                %2$I TEXT %3$s,
                %4$I TEXT %5$s,
                provider_config JSONB DEFAULT '{}' CHECK (jsonb_typeof(provider_config) = 'object'),
                status TEXT DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'error')),
                validated_at TIMESTAMP WITH TIME ZONE,
                last_synced_at TIMESTAMP WITH TIME ZONE,
                CONSTRAINT %6$I UNIQUE (business_id, provider),
                error_message TEXT,
                provider_category TEXT NOT NULL DEFAULT %7$L CHECK (provider_category = %7$L),
                FOREIGN KEY (provider, provider_category) REFERENCES public.integration_providers (provider, category)
            ) WITH (fillfactor = 70)$ddl$,
            t,
            k.c1, COALESCE('CHECK (' || k.c1_check || ')', ''), k.c2, COALESCE('CHECK (' || k.c2_check || ')', ''),
            'unique_business_' || k.kind || '_provider', k.kind);
        EXECUTE format('COMMENT ON TABLE public.%I IS %L', t, k.about);
        EXECUTE format('COMMENT ON COLUMN public.%I.business_id IS %L', t, 'Reference to the business that owns this integration');
        EXECUTE format('COMMENT ON COLUMN public.%I.provider IS %L', t, k.provider_about);
        EXECUTE format('COMMENT ON COLUMN public.%I.secret_id IS %L', t, 'Reference to the ' || k.secret_about || ' in integrations.secrets');
        EXECUTE format('COMMENT ON COLUMN public.%I.%I IS %L', t, k.c1, k.c1_about);
        EXECUTE format('COMMENT ON COLUMN public.%I.%I IS %L', t, k.c2, k.c2_about);
        EXECUTE format('COMMENT ON COLUMN public.%I.provider_config IS %L', t, 'Additional provider-specific configuration');
        EXECUTE format('COMMENT ON COLUMN public.%I.status IS %L', t, 'Integration status (active, inactive, error)');
        EXECUTE format('COMMENT ON COLUMN public.%I.error_message IS %L', t, 'Why the status is error, as a back-end job recorded it (set_integration_status; redacted)');
        EXECUTE format('COMMENT ON COLUMN public.%I.provider_category IS %L', t,
                       'The registry category this kind''s providers come from: provider must be a provider of it in integration_providers');
        -- secret_id: deleting a secret checks this foreign key; without the
        -- index that is a scan.
        EXECUTE format('CREATE INDEX %I ON public.%I (business_id)', 'idx_' || t || '_business_id', t);
        EXECUTE format('CREATE INDEX %I ON public.%I (provider)', 'idx_' || t || '_provider', t);
        EXECUTE format('CREATE INDEX %I ON public.%I (status)', 'idx_' || t || '_status', t);
        EXECUTE format('CREATE INDEX %I ON public.%I (secret_id)', 'idx_' || t || '_secret_id', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON public.%I FOR EACH ROW EXECUTE FUNCTION integrations.touch_updated_at()',
                       t || '_updated_at', t);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON public.%I REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION integrations.delete_row_secrets()',
                       t || '_delete_secrets', t);
        PERFORM integrations.install_tenant_table(t, format('%I, %I, provider_config, updated_at', k.c1, k.c2), true);
    END LOOP;
END
$kinds$;

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
CREATE TRIGGER upload_post_profiles_updated_at BEFORE UPDATE ON public.upload_post_profiles
    FOR EACH ROW EXECUTE FUNCTION integrations.touch_updated_at();
SELECT integrations.install_tenant_table('upload_post_profiles', 'social_accounts, updated_at', true);
