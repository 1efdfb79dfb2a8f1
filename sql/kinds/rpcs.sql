-- pg_integrations: the seed-compatible RPCs in schema public, declared by hand
-- (LANGUAGE c over the entry points in src/kinds/*.rs) so that their names,
-- argument names, defaults and return shapes are exactly the seeds'.

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
