-- pg_integrations: install-time helpers, the one place that says how a
-- per-business table is protected and who may call a public RPC. The install
-- script's parts call them; sql/ops/secret_store.sql (run last) drops them, so
-- they are not part of the installed extension.

-- Row level security for owners and members, and privileges: Supabase's
-- default privileges grant everything on new public tables to anon,
-- authenticated and service_role, so take it back by name, then grant reads
-- (and updates of p_update_columns, when given) to the API roles.
CREATE FUNCTION integrations.install_tenant_table(p_table text, p_update_columns text DEFAULT NULL, p_dump boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', p_table);
    EXECUTE format('CREATE POLICY owner_select ON public.%I FOR SELECT TO authenticated USING (integrations.can_access_business(business_id))', p_table);
    IF p_update_columns IS NOT NULL THEN
        EXECUTE format('CREATE POLICY owner_update ON public.%I FOR UPDATE TO authenticated USING (integrations.can_manage_business(business_id)) WITH CHECK (integrations.can_manage_business(business_id))', p_table);
    END IF;
    EXECUTE format('REVOKE ALL ON public.%I FROM PUBLIC, anon, authenticated, service_role', p_table);
    EXECUTE format('GRANT SELECT ON public.%I TO authenticated, service_role, integrations_admin', p_table);
    IF p_update_columns IS NOT NULL THEN
        EXECUTE format('GRANT UPDATE (%s) ON public.%I TO authenticated, service_role, integrations_admin', p_update_columns, p_table);
    END IF;
    IF p_dump THEN
        PERFORM pg_catalog.pg_extension_config_dump(format('public.%I', p_table)::regclass, '');
    END IF;
END $$;

-- The signatures (name and argument types, as pg_catalog.oidvectortypes
-- spells them) of the extension's public functions, and of the seeds'
-- updated_at trigger functions: what a database where the seeds ran may
-- already hold (sql/ops/legacy.sql moves every function of these names
-- aside, and says which had other arguments). A client test holds it to the
-- installed functions.
CREATE FUNCTION integrations.install_legacy_signatures() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[
        'set_ai_avatar_integration(uuid, text, text, text, text, jsonb)',
        'get_ai_avatar_integration(uuid)',
        'get_ai_avatar_secret(uuid)',
        'delete_ai_avatar_integration(uuid)',
        'set_email_integration(uuid, text, text, text, text, jsonb)',
        'get_email_integration(uuid)',
        'get_email_secret(uuid)',
        'delete_email_integration(uuid)',
        'set_blog_integration(uuid, text, text, text, text, jsonb)',
        'get_blog_integration(uuid)',
        'get_blog_secret(uuid)',
        'delete_blog_integration(uuid)',
        'get_or_create_upload_post_profile(uuid)',
        'set_upload_post_social_accounts(uuid, jsonb)',
        'delete_upload_post_profile(uuid)',
        'get_payment_providers_by_capability(text, text, text)',
        'create_integration(uuid, text, text, text, text, text, text, text, text, text, timestamp with time zone, text[], text, jsonb, jsonb, jsonb)',
        'update_integration(uuid, text, text, jsonb, jsonb, jsonb, text, text, text, text)',
        'get_integration(uuid)',
        'list_integrations(uuid, text)',
        'get_integration_by_provider(uuid, text, text)',
        'get_integration_credentials(uuid)',
        'delete_integration(uuid)',
        'update_integration_sync_stats(uuid, bigint, bigint, bigint)',
        'update_integration_health(uuid, boolean, text, integer)',
        'set_integration_oauth_tokens(uuid, text, text, timestamp with time zone, text[])',
        'list_integrations_needing_refresh(interval)',
        'create_oauth_state(uuid, text, text, text[], text)',
        'consume_oauth_state(text)',
        'cleanup_expired_oauth_states()',
        'record_integration_metric(uuid, boolean, integer)',
        'log_integration_api_call(uuid, text, text, integer, integer, text)',
        'set_webhook_config(uuid, text, text[], boolean)',
        'record_webhook_event(uuid, text, text, jsonb, bytea, text)',
        'claim_integration_events(integer)',
        'complete_integration_event(uuid, boolean, text)',
        'log_webhook_body_access(uuid, text)',
        'set_integration_status(text, uuid, text, text, text, timestamp with time zone, timestamp with time zone)',
        'create_api_key(uuid, text, text[], timestamp with time zone, integer)',
        'verify_api_key(text, text)',
        'list_api_keys(uuid)',
        'revoke_api_key(uuid)',
        'rotate_api_key(uuid)',
        'set_esp_integration(uuid, text, jsonb, jsonb)',
        'get_esp_integrations(uuid)',
        'get_esp_credentials(uuid, text)',
        'record_esp_sync(uuid, text, jsonb)',
        'delete_esp_integration(uuid, text)',
        'update_ai_avatar_integrations_updated_at()',
        'update_email_integrations_updated_at()',
        'update_blog_integrations_updated_at()',
        'update_upload_post_profiles_updated_at()']
$$;

-- EXECUTE on the named public functions for p_roles only: Supabase's default
-- privileges grant it to anon, authenticated and service_role on every new
-- public function, so every API role is named in the REVOKE.
CREATE FUNCTION integrations.install_api_functions(p_roles text, VARIADIC p_names text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY (p_names)
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', f, p_roles);
    END LOOP;
END $$;
