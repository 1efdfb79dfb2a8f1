-- Hostile code in the same database (issue: security). The database is
-- Supabase-shaped (tests/fixtures/supabase_shape.sql): default privileges open
-- every new public object to the API roles, and mallory is a login role that
-- may act as authenticated and owns the schema mallory.
DROP EXTENSION IF EXISTS pg_integrations;
CREATE EXTENSION pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql

\set VICTIM '''71000000-0000-4000-8000-000000000001'''
SELECT set_ai_avatar_integration(:VICTIM, 'heygen', 'victim_heygen_key') IS NOT NULL AS victim_has_a_key;
SELECT create_integration(:VICTIM, 'stripe', 'Live', 'api_key', p_api_key => 'sk_live_victim') AS conn \gset

-- 1. An index expression of mallory's evaluated by a superuser's ANALYZE,
-- REINDEX or CREATE INDEX runs as mallory, in a security-restricted
-- operation: no privileged path, whoever the session's user is.
SET ROLE mallory;
CREATE TABLE mallory.loot (v text);
CREATE FUNCTION mallory.steal(b uuid) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE k text;
BEGIN
    k := get_ai_avatar_secret(b);
    INSERT INTO mallory.loot VALUES (k);
    RETURN k;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
CREATE FUNCTION mallory.f(b uuid) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN mallory.steal(b);
END $$;
CREATE TABLE mallory.t (b uuid);
INSERT INTO mallory.t SELECT :VICTIM FROM generate_series(1, 20);
CREATE INDEX t_f ON mallory.t (mallory.f(b));
RESET ROLE;
ANALYZE mallory.t;
REINDEX TABLE mallory.t;
CREATE INDEX t_f2 ON mallory.t (mallory.f(b));
SELECT count(*) AS stolen FROM mallory.loot;
SELECT count(*) AS in_statistics FROM pg_stats WHERE schemaname = 'mallory' AND most_common_vals::text LIKE '%victim%';
SELECT integrations.flush_audit_log() AS audit_flushed;  -- secret reads reach the log through the queue
SELECT count(*) AS audited_reads_of_victim FROM integrations.audit_log WHERE business_id = :VICTIM AND action = 'read_secret';

-- 2. A SECURITY DEFINER function of mallory's, called by service_role, runs
-- as mallory: not privileged.
SET ROLE mallory;
CREATE FUNCTION mallory.helper(b uuid) RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT get_ai_avatar_secret(b) $$;
GRANT USAGE ON SCHEMA mallory TO service_role;
GRANT EXECUTE ON FUNCTION mallory.helper(uuid) TO service_role;
RESET ROLE;
BEGIN;
SELECT act_as('service_role', NULL);
SELECT try($$SELECT mallory.helper('71000000-0000-4000-8000-000000000001')$$) AS through_mallorys_definer;
SELECT get_ai_avatar_secret(:VICTIM) AS service_role_itself;
COMMIT;
-- the audit log names the role that really called
SELECT integrations.flush_audit_log() AS audit_flushed;  -- secret reads reach the log through the queue
SELECT actor_role, count(*) FROM integrations.audit_log WHERE business_id = :VICTIM AND action = 'read_secret' GROUP BY 1;

-- 3. Supabase's default privileges: every object of the extension in public
-- has exactly its intended grants; nothing is left to anon, and back-end
-- functions are not executable by authenticated.
SELECT integrations.create_api_log_partitions(2) >= 0 AS partitions_made;
SELECT count(*) AS partitions_open_to_api_roles
FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
WHERE i.inhparent = 'public.integration_api_logs'::regclass AND c.relacl::text ~ '(anon|authenticated|service_role)=';
SET ROLE anon;
SELECT try('SELECT count(*) FROM public.integration_api_logs_default') AS anon_reads_partition;
SELECT try('TRUNCATE public.integration_api_logs_default') AS anon_truncates_partition;
RESET ROLE;
SELECT p.proname, has_function_privilege('authenticated', p.oid, 'EXECUTE') AS authenticated,
       has_function_privilege('anon', p.oid, 'EXECUTE') AS anon
FROM pg_proc p
WHERE p.proname IN ('record_webhook_event', 'claim_integration_events', 'complete_integration_event',
                    'list_integrations_needing_refresh', 'get_integration_credentials', 'cleanup_expired_oauth_states')
ORDER BY 1;
SELECT count(*) AS public_objects_open_to_anon
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relname ~ '^(integration_|ai_avatar_|email_integrations|blog_integrations|upload_post_profiles|webhook_access_logs)'
  AND has_table_privilege('anon', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
  AND c.relname <> 'integration_providers';

-- 4. A panic-prone URL from a caller who may not use the connection: refused
-- before anything is parsed; from its owner: stored redacted.
BEGIN;
SELECT act_as('authenticated', '7e000000-0000-4000-8000-00000000000e');
SELECT try(format('SELECT log_integration_api_call(%L, %L, %L, 200, 5, NULL)', :'conn', 'GET', 'https://api.example.com/v1?%€=1&token=abc'), :'conn') AS stranger_odd_url;
ROLLBACK;
SELECT log_integration_api_call(:'conn', 'GET', 'https://api.example.com/v1?%€=1&%E2%82=2&token=abc%', 200, 5, NULL) IS NULL AS logged;
SELECT url !~ 'abc' AS token_redacted FROM integration_api_logs WHERE integration_id = :'conn';

-- 5. migrate_business_columns reads only tables the caller owns, with the
-- caller's privileges; a vault schema that is not a superuser's is refused;
-- a Vault secret referenced by two businesses goes to neither.
BEGIN;
SET LOCAL ROLE service_role;
CREATE TEMP VIEW legacy_view AS SELECT gen_random_uuid() AS id, 'heygen'::text AS heygen_secret_id;
SELECT try($$SELECT * FROM integrations.migrate_business_columns('pg_temp.legacy_view')$$) AS temp_view;
ROLLBACK;
SET ROLE mallory;
CREATE TABLE mallory.businesses (id uuid PRIMARY KEY, heygen_secret_id uuid, heygen_avatar_id text, heygen_voice_id text);
RESET ROLE;
BEGIN;
SET LOCAL ROLE service_role;
SELECT try($$SELECT * FROM integrations.migrate_business_columns('mallory.businesses', true)$$) AS not_the_callers_table;
ROLLBACK;
CREATE SCHEMA vault AUTHORIZATION mallory;
SET ROLE mallory;
CREATE TABLE vault.secrets (id uuid PRIMARY KEY, secret text);
CREATE VIEW vault.decrypted_secrets AS SELECT id, secret AS decrypted_secret FROM vault.secrets;
RESET ROLE;
CREATE TABLE legacy (id uuid PRIMARY KEY, heygen_secret_id uuid, heygen_avatar_id text, heygen_voice_id text);
INSERT INTO legacy VALUES ('72000000-0000-4000-8000-000000000001', '5e000000-0000-4000-8000-000000000001', 'a1', NULL),
                          ('72000000-0000-4000-8000-000000000002', '5e000000-0000-4000-8000-000000000001', 'a2', NULL),
                          ('72000000-0000-4000-8000-000000000003', '5e000000-0000-4000-8000-000000000003', 'a3', NULL);
SELECT try($$SELECT * FROM integrations.migrate_business_columns('legacy')$$) AS vault_of_mallory;
DROP SCHEMA vault CASCADE;
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (id uuid PRIMARY KEY, secret text);
CREATE VIEW vault.decrypted_secrets AS SELECT id, secret AS decrypted_secret FROM vault.secrets;
INSERT INTO vault.secrets VALUES ('5e000000-0000-4000-8000-000000000001', 'shared_key'), ('5e000000-0000-4000-8000-000000000003', 'own_key');
SELECT * FROM integrations.migrate_business_columns('legacy');
SELECT business_id, avatar_id, get_ai_avatar_secret(business_id) AS key
FROM ai_avatar_integrations WHERE business_id::text LIKE '72000000%' ORDER BY 1;
DROP SCHEMA vault CASCADE;
DROP TABLE legacy;

-- 6. The tenant table's foreign keys lost (pg_dump does not carry them):
-- every call that depends on tenancy fails closed until it is attached again.
CREATE TABLE businesses (id uuid PRIMARY KEY, profile_id uuid);
INSERT INTO businesses SELECT DISTINCT business_id, NULL::uuid FROM integrations.secrets;
INSERT INTO businesses SELECT DISTINCT business_id, NULL::uuid FROM ai_avatar_integrations ON CONFLICT DO NOTHING;
INSERT INTO businesses SELECT DISTINCT business_id, NULL::uuid FROM integration_connections ON CONFLICT DO NOTHING;
INSERT INTO businesses SELECT DISTINCT business_id, NULL::uuid FROM integration_api_logs ON CONFLICT DO NOTHING;
SELECT integrations.attach_tenant_table('businesses');
ALTER TABLE public.ai_avatar_integrations DROP CONSTRAINT ai_avatar_integrations_business_id_fkey;
SELECT try($$SELECT get_ai_avatar_secret('71000000-0000-4000-8000-000000000001')$$) AS unlinked;
SELECT try($$SELECT integrations.can_access_business('71000000-0000-4000-8000-000000000001')$$) AS unlinked_rls;
SELECT integrations.attach_tenant_table('businesses');
SELECT get_ai_avatar_secret(:VICTIM) AS linked_again;

-- 7. One tampered secret does not stop a rotation: it is left as it is and
-- named; every other secret is re-encrypted; 0 when nothing else is left.
SELECT count(integrations.create_secret(:VICTIM, 'rotate_me_' || g)) AS created FROM generate_series(1, 5) g;
-- moved to another id: its ciphertext is bound to the old one
\set tampered 7a000000-0000-4000-8000-00000000000a
UPDATE integrations.secrets SET id = :'tampered'
WHERE id = (SELECT id FROM integrations.secrets WHERE description = '' ORDER BY created_at, id LIMIT 1);
SELECT integrations.rotate_data_key() > 1 AS rotated;
SELECT count(*) AS under_old_keys FROM integrations.secrets s
WHERE s.key_id < (SELECT max(key_id) FROM integrations.keys);
SELECT integrations.reencrypt_secrets(1000) AS reencrypted;
SELECT integrations.reencrypt_secrets(1000) AS nothing_left;
SELECT count(*) AS still_under_old_keys, bool_and(id = :'tampered') AS only_the_tampered_one FROM integrations.secrets s
WHERE s.key_id < (SELECT max(key_id) FROM integrations.keys);
SELECT failed, failed_ids = ARRAY[:'tampered'::uuid] AS names_it FROM integrations.verify_secrets();
DELETE FROM integrations.secrets WHERE id = :'tampered';

-- 8. A login role that may act as authenticated cannot name a user in the
-- claims: only sessions of integrations.claims_login_roles (PostgREST's
-- authenticator) and of superusers carry a signed-in user.
INSERT INTO integrations.business_members VALUES (:VICTIM, '7f000000-0000-4000-8000-00000000000f', 'owner');
\c - mallory
BEGIN;
SET LOCAL ROLE authenticated;
SELECT set_config('request.jwt.claims', '{"sub":"7f000000-0000-4000-8000-00000000000f","role":"authenticated"}', true) IS NOT NULL AS claims_forged;
SELECT integrations.current_user_id() IS NULL AS no_user, integrations.can_access_business(:VICTIM) AS access;
SELECT try($$SELECT set_ai_avatar_integration('71000000-0000-4000-8000-000000000001', 'heygen', 'mallorys_key')$$) AS forged_set;
ROLLBACK;
\c - authenticator
BEGIN;
SET LOCAL ROLE authenticated;
SELECT set_config('request.jwt.claims', '{"sub":"7f000000-0000-4000-8000-00000000000f","role":"authenticated"}', true) IS NOT NULL AS claims_set;
SELECT integrations.current_user_id() IS NOT NULL AS a_user, integrations.can_access_business(:VICTIM) AS access;
ROLLBACK;
\c - postgres
DELETE FROM integrations.business_members WHERE business_id = :VICTIM;

-- 9. Triggers: Supabase's default privileges give authenticated TRIGGER on the
-- app's tables, so mallory can make code run inside anyone's statement.
-- Called from a trigger, the extension opens no privileged or owner path.
CREATE TABLE app_orders (id int, business_id uuid);
INSERT INTO app_orders VALUES (1, :VICTIM);
INSERT INTO integrations.business_members VALUES (:VICTIM, '7f000000-0000-4000-8000-00000000000f', 'owner');
SET ROLE mallory;
CREATE TABLE mallory.trigger_loot (v text);
GRANT INSERT ON mallory.trigger_loot TO PUBLIC;
CREATE FUNCTION mallory.grab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO mallory.trigger_loot SELECT get_integration_credentials(c.id)::text FROM integration_connections c;
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO mallory.trigger_loot VALUES ('credentials: ' || SQLSTATE);
    END;
    BEGIN
        INSERT INTO mallory.trigger_loot VALUES (get_ai_avatar_secret(NEW.business_id));
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO mallory.trigger_loot VALUES ('key: ' || SQLSTATE);
    END;
    RETURN NEW;
END $$;
CREATE FUNCTION mallory.impersonate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM set_config('request.jwt.claims', '{"sub":"7f000000-0000-4000-8000-00000000000f","role":"authenticated"}', true);
    BEGIN
        PERFORM set_ai_avatar_integration(NEW.business_id, 'heygen', 'mallorys_key');
        INSERT INTO mallory.trigger_loot VALUES ('impersonation: ok');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO mallory.trigger_loot VALUES ('impersonation: ' || SQLSTATE);
    END;
    RETURN NEW;
END $$;
GRANT USAGE ON SCHEMA mallory TO PUBLIC;
CREATE TRIGGER grab BEFORE UPDATE ON public.app_orders FOR EACH ROW EXECUTE FUNCTION mallory.grab();
CREATE TRIGGER impersonate BEFORE UPDATE ON public.app_orders FOR EACH ROW EXECUTE FUNCTION mallory.impersonate();
RESET ROLE;
BEGIN;
SELECT act_as('service_role', NULL);
UPDATE app_orders SET id = 2;
COMMIT;
SELECT v FROM mallory.trigger_loot ORDER BY v;
SELECT get_ai_avatar_secret(:VICTIM) AS victims_key_unchanged;
DROP TABLE app_orders;
DELETE FROM integrations.business_members WHERE business_id = :VICTIM;

-- 10. A partitioned tenant table is refused (its ownership could not be
-- read straight from a heap and an index).
CREATE TABLE part_businesses (id uuid PRIMARY KEY, profile_id uuid) PARTITION BY HASH (id);
SELECT try($$SELECT integrations.attach_tenant_table('part_businesses')$$) AS partitioned_tenant_table;
DROP TABLE part_businesses;

-- 11. Legacy keys are read from Vault with the caller's privileges: a
-- service_role that may not read vault.decrypted_secrets gets none through
-- the migration.
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (id uuid PRIMARY KEY, secret text);
CREATE VIEW vault.decrypted_secrets AS SELECT id, secret AS decrypted_secret FROM vault.secrets;
INSERT INTO vault.secrets VALUES ('5e000000-0000-4000-8000-000000000009', 'someone_elses_key');
CREATE SCHEMA sr AUTHORIZATION service_role;
SET ROLE service_role;
CREATE TABLE sr.legacy (id uuid PRIMARY KEY, heygen_secret_id uuid, heygen_avatar_id text, heygen_voice_id text);
INSERT INTO sr.legacy VALUES ('73000000-0000-4000-8000-000000000001', '5e000000-0000-4000-8000-000000000009', 'x', NULL);
SELECT try($$SELECT * FROM integrations.migrate_business_columns('sr.legacy')$$) AS vault_not_readable_by_the_caller;
RESET ROLE;
DROP SCHEMA sr CASCADE;
DROP SCHEMA vault CASCADE;

DROP TABLE businesses CASCADE;
DROP SCHEMA mallory CASCADE;
CREATE SCHEMA mallory AUTHORIZATION mallory;
DROP FUNCTION try(text, text), act_as(text, text);
