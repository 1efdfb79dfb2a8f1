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
