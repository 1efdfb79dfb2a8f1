-- pg_integrations: installing where the seeds already ran (seeds 000/001).
-- Their tables and functions of the same names as ours are moved into schema
-- integrations_legacy first — nothing dropped, a NOTICE for each — with
-- their indexes, constraints, triggers and policies; then
-- integrations.adopt_legacy_integrations() copies their rows into ours.

DO $aside$
DECLARE
    t text;
    f regprocedure;
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_class c
               WHERE c.relnamespace = 'public'::regnamespace
                 AND c.relname IN ('ai_avatar_integrations', 'email_integrations', 'blog_integrations', 'upload_post_profiles'))
       OR EXISTS (SELECT FROM pg_catalog.pg_proc p
                  WHERE p.pronamespace = 'public'::regnamespace
                    AND p.proname = ANY (integrations.install_legacy_names())) THEN
        CREATE SCHEMA IF NOT EXISTS integrations_legacy;
        -- Made inside this script, the schema would belong to the extension
        -- (and go with DROP EXTENSION): it is the user's, like what it holds.
        DELETE FROM pg_catalog.pg_depend
        WHERE classid = 'pg_catalog.pg_namespace'::regclass AND objid = 'integrations_legacy'::regnamespace
          AND refclassid = 'pg_catalog.pg_extension'::regclass AND deptype = 'e';
        -- adopt_legacy_integrations() reads it with its caller's privileges
        GRANT USAGE ON SCHEMA integrations_legacy TO service_role, integrations_admin;
    END IF;
    FOREACH t IN ARRAY ARRAY['ai_avatar_integrations', 'email_integrations', 'blog_integrations', 'upload_post_profiles'] LOOP
        IF to_regclass('public.' || t) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE public.%I SET SCHEMA integrations_legacy', t);
            RAISE NOTICE 'moved table public.% to integrations_legacy.% (with its indexes, constraints, triggers and policies)', t, t;
        END IF;
    END LOOP;
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY (integrations.install_legacy_names())
        ORDER BY p.proname
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET SCHEMA integrations_legacy', f);
        RAISE NOTICE 'moved function % to integrations_legacy', f;
    END LOOP;
END
$aside$;

CREATE FUNCTION integrations.adopt_legacy_integrations()
RETURNS TABLE (table_name text, adopted bigint, skipped bigint)
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_adopt_legacy_integrations';
COMMENT ON FUNCTION integrations.adopt_legacy_integrations() IS
    'Copies the rows of the seeds'' tables that CREATE EXTENSION moved into integrations_legacy (ai_avatar, email and blog integrations, Upload-Post profiles) into the extension''s tables, keeping row ids, business ids, configuration, status and timestamps and re-sealing each key read from vault.decrypted_secrets (with the caller''s privileges); without Vault a row is adopted without a key and marked inactive. Returns per table how many rows were adopted and skipped; a skipped row gets a NOTICE saying why, never the key. Idempotent. Privileged callers. integrations_legacy is left for you to drop.';
REVOKE ALL ON FUNCTION integrations.adopt_legacy_integrations() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.adopt_legacy_integrations() TO service_role, integrations_admin;
