-- pg_integrations: installing where the seeds already ran (seeds 000/001).
-- Their tables and their functions of the same names as ours are moved into schema
-- integrations_legacy first — nothing dropped, a NOTICE for each — with
-- their indexes, constraints, triggers and policies; then
-- integrations.adopt_legacy_integrations() copies their rows into ours.

DO $aside$
DECLARE
    t text;
    f regprocedure;
    ours CONSTANT text[] := integrations.install_legacy_signatures();
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_class c
               WHERE c.relnamespace = 'public'::regnamespace
                 AND c.relname IN ('ai_avatar_integrations', 'email_integrations', 'blog_integrations', 'upload_post_profiles'))
       OR EXISTS (SELECT FROM pg_catalog.pg_proc p
                  WHERE p.pronamespace = 'public'::regnamespace
                    AND p.proname IN (SELECT pg_catalog.split_part(s, '(', 1) FROM pg_catalog.unnest(ours) s)) THEN
        -- adopt_legacy_integrations() trusts what this schema holds only
        -- as far as it trusts its owner: one made beforehand by another
        -- role is not used.
        IF EXISTS (SELECT FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                   WHERE n.nspname = 'integrations_legacy' AND NOT r.rolsuper) THEN
            RAISE EXCEPTION 'schema integrations_legacy already exists and is not owned by a superuser'
                USING ERRCODE = '42P06',
                      HINT = 'pg_integrations moves the seeds'' tables and functions there: drop or rename that schema (or have a superuser own it), then CREATE EXTENSION again.';
        END IF;
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
    -- Every function of one of our names: of our arguments it would collide
    -- with CREATE FUNCTION; of other arguments (an older seed, or an
    -- overload) it would stay callable next to ours and still refer to the
    -- tables by name, which are now the extension's. Moved, not dropped.
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND p.proname IN (SELECT pg_catalog.split_part(s, '(', 1) FROM pg_catalog.unnest(ours) s)
        ORDER BY p.proname, 1
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET SCHEMA integrations_legacy', f);
        IF (SELECT p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')' FROM pg_catalog.pg_proc p
            WHERE p.oid = f) = ANY (ours) THEN
            RAISE NOTICE 'moved function % to integrations_legacy', f;
        ELSE
            RAISE NOTICE 'moved function % to integrations_legacy (it has the name of a pg_integrations function, with other arguments)', f
                USING HINT = 'If it is your own function rather than a seed''s, move it back under another name.';
        END IF;
    END LOOP;
END
$aside$;

CREATE FUNCTION integrations.adopt_legacy_integrations()
RETURNS TABLE (table_name text, adopted bigint, skipped bigint)
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_adopt_legacy_integrations';
COMMENT ON FUNCTION integrations.adopt_legacy_integrations() IS
    'Copies the rows of the seeds'' tables that CREATE EXTENSION moved into integrations_legacy (ai_avatar, email and blog integrations, Upload-Post profiles) into the extension''s tables, keeping row ids, business ids, configuration, status and timestamps and re-sealing each key read from vault.decrypted_secrets (with the caller''s privileges); without Vault a row is adopted without a key and marked inactive. Reads only plain tables owned by a superuser, a privileged role or the caller (42501 otherwise); a key only from the Vault secret the seed named for the row''s business and provider. Returns per table how many rows were adopted and skipped; a skipped row gets a NOTICE saying why, never the key. Idempotent, also after a delete. Privileged callers. integrations_legacy is left for you to drop.';
REVOKE ALL ON FUNCTION integrations.adopt_legacy_integrations() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.adopt_legacy_integrations() TO service_role, integrations_admin;
