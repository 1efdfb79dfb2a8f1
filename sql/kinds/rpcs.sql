-- pg_integrations: the seed-compatible RPCs in schema public, declared by hand
-- (LANGUAGE c over the entry points in src/kinds/*.rs) so that their names,
-- argument names, defaults and return shapes are exactly the seeds'.

-- The three keyed kinds share one shape: set_<kind>_integration,
-- get_<kind>_integration, get_<kind>_secret and delete_<kind>_integration,
-- with the kind's two optional columns as p_<column> arguments.
DO $rpcs$
DECLARE
    k record;
    sig text;
BEGIN
    FOR k IN SELECT * FROM (VALUES
        ('ai_avatar', 'AI avatar', 'avatar_id', 'voice_id', 'heygen', '',
         ' 42501 unless the caller may act on the business; 22023 for an unknown provider or an empty key.', ''),
        ('email', 'email', 'sender_name', 'sender_email', 'mailerlite, mailchimp, brevo',
         ' p_sender_email must be an e-mail address.', '', '; the first provider by name if several are active'),
        ('blog', 'blog', 'site_url', 'username', 'wordpress, wix',
         ' p_site_url must be an http(s) URL.', '', '; the first provider by name if several are active')
    ) AS v (kind, label, c1, c2, providers, set_rule, set_errors, get_choice)
    LOOP
        -- The readers pin no search_path here: a SET clause costs every call a
        -- tenth of its time, and every statement they run pins it anyway
        -- (src/pg/spi.rs); their direct reads resolve no names.
        sig := 'LANGUAGE c %s SET search_path = pg_catalog, pg_temp';
        EXECUTE format($ddl$
            CREATE FUNCTION public.%1$I(
                p_business_id uuid, p_provider text, p_api_key text,
                %2$I text DEFAULT NULL, %3$I text DEFAULT NULL, p_config jsonb DEFAULT '{}')
            RETURNS uuid %4$s AS 'MODULE_PATHNAME', %5$L$ddl$,
            'set_' || k.kind || '_integration', 'p_' || k.c1, 'p_' || k.c2, format(sig, 'VOLATILE'),
            'pgi_set_' || k.kind || '_integration');
        EXECUTE format($ddl$
            CREATE FUNCTION public.%1$I(p_business_id uuid)
            RETURNS TABLE (id uuid, provider text, %2$I text, %3$I text, provider_config jsonb, status text, validated_at timestamptz)
            %4$s ROWS 1 AS 'MODULE_PATHNAME', %5$L$ddl$,
            'get_' || k.kind || '_integration', k.c1, k.c2, 'LANGUAGE c STABLE',
            'pgi_get_' || k.kind || '_integration');
        EXECUTE format($ddl$CREATE FUNCTION public.%1$I(p_business_id uuid) RETURNS text %2$s AS 'MODULE_PATHNAME', %3$L$ddl$,
            'get_' || k.kind || '_secret', 'LANGUAGE c VOLATILE', 'pgi_get_' || k.kind || '_secret');
        EXECUTE format($ddl$CREATE FUNCTION public.%1$I(p_business_id uuid) RETURNS void %2$s AS 'MODULE_PATHNAME', %3$L$ddl$,
            'delete_' || k.kind || '_integration', format(sig, 'VOLATILE'), 'pgi_delete_' || k.kind || '_integration');

        EXECUTE format('COMMENT ON FUNCTION public.%I(uuid, text, text, text, text, jsonb) IS %L', 'set_' || k.kind || '_integration',
            format('Creates or updates the business''s %s integration for p_provider (%s) and stores p_api_key encrypted; returns the integration id. A NULL p_api_key keeps the stored key (a new integration needs one).%s NULL optional arguments keep the stored value, an empty string clears it; p_config replaces provider_config (NULL keeps it).%s',
                   k.label, k.providers, k.set_rule, k.set_errors));
        EXECUTE format('COMMENT ON FUNCTION public.%I(uuid) IS %L', 'get_' || k.kind || '_integration',
            format('The business''s active %s integration without its secret (no row if there is none%s).', k.label, k.get_choice));
        EXECUTE format('COMMENT ON FUNCTION public.%I(uuid) IS %L', 'get_' || k.kind || '_secret',
            format('Decrypts the API key of the business''s active %s integration (NULL if none). Privileged callers only, unless integrations.owner_can_read_secrets is on. Audited.', k.label));
        EXECUTE format('COMMENT ON FUNCTION public.%I(uuid) IS %L', 'delete_' || k.kind || '_integration',
            format('Deletes every %s integration of the business and their secrets. Audited.', k.label));
        PERFORM integrations.install_api_functions('authenticated, service_role, integrations_admin', 'set_' || k.kind || '_integration', 'get_' || k.kind || '_integration',
                                                   'get_' || k.kind || '_secret', 'delete_' || k.kind || '_integration');
    END LOOP;
END
$rpcs$;

-- Social: Upload-Post profiles.
CREATE FUNCTION public.get_or_create_upload_post_profile(p_business_id uuid)
RETURNS public.upload_post_profiles LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_or_create_upload_post_profile';

CREATE FUNCTION public.set_upload_post_social_accounts(p_business_id uuid, p_social_accounts jsonb)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_upload_post_social_accounts';

CREATE FUNCTION public.delete_upload_post_profile(p_business_id uuid)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_delete_upload_post_profile';

COMMENT ON FUNCTION public.get_or_create_upload_post_profile(uuid) IS
    'The business''s Upload-Post profile, created on first call with the generated username biz_<32 hex digits of the business id>.';
COMMENT ON FUNCTION public.set_upload_post_social_accounts(uuid, jsonb) IS
    'Replaces the social accounts (a JSON object) of the business''s Upload-Post profile, creating the profile if needed.';
COMMENT ON FUNCTION public.delete_upload_post_profile(uuid) IS
    'Deletes the business''s Upload-Post profile. Audited.';

SELECT integrations.install_api_functions('authenticated, service_role, integrations_admin', 'get_or_create_upload_post_profile', 'set_upload_post_social_accounts',
                                          'delete_upload_post_profile');

-- For back ends: record an integration's status.
CREATE FUNCTION public.set_integration_status(
    p_kind text, p_business_id uuid, p_provider text, p_status text, p_error_message text DEFAULT NULL,
    p_validated_at timestamptz DEFAULT NULL, p_last_synced_at timestamptz DEFAULT NULL)
RETURNS uuid LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_integration_status';
COMMENT ON FUNCTION public.set_integration_status(text, uuid, text, text, text, timestamptz, timestamptz) IS
    'Records the status (active, inactive, error) of the business''s p_kind (ai_avatar, email, blog) integration with p_provider, with an error message (stored redacted, at most 1000 characters; NULL clears it) and, when given, validated_at and last_synced_at; returns the integration id. PT404 if there is none. For back ends: service_role and integrations_admin. Audited.';
SELECT integrations.install_api_functions('service_role, integrations_admin', 'set_integration_status');
