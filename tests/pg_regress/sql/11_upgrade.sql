-- ALTER EXTENSION UPDATE from the released 0.1.0 (its frozen install script,
-- sql/released/) keeps every row and secret, and leaves exactly the schema a
-- fresh install of the current version has.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_integrations CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
RESET client_min_messages;
\pset footer off
CREATE EXTENSION pg_integrations VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'pg_integrations';
SELECT count(*) AS functions_0_1_0 FROM pg_proc WHERE proname IN ('verify_secrets', 'purge_audit_log');

-- Fill every table of 0.1.0 through its RPCs.
CREATE TABLE upgrade_businesses (id uuid PRIMARY KEY, profile_id uuid);
INSERT INTO upgrade_businesses VALUES
    ('11000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-00000000000a'),
    ('11000000-0000-4000-8000-000000000002', 'a1000000-0000-4000-8000-00000000000a');
SELECT integrations.attach_tenant_table('upgrade_businesses');
INSERT INTO integrations.business_members VALUES
    ('11000000-0000-4000-8000-000000000002', 'e1000000-0000-4000-8000-00000000000e', 'member');
\set B1 '''11000000-0000-4000-8000-000000000001'''
\set B2 '''11000000-0000-4000-8000-000000000002'''
SELECT integrations.create_secret(:B1, 'store-secret', 'standalone') AS store_secret \gset
SELECT set_ai_avatar_integration(:B1, 'heygen', 'hg_key_upgrade', 'avatar_1', 'voice_1') IS NOT NULL AS avatar;
SELECT set_email_integration(:B1, 'brevo', 'xkeysib-upgrade', 'Acme', 'hello@acme.example') IS NOT NULL AS email;
SELECT set_blog_integration(:B1, 'wordpress', 'wp app pass', 'https://blog.acme.example', 'editor') IS NOT NULL AS blog;
SELECT (get_or_create_upload_post_profile(:B1)).upload_post_username AS social_profile;
SELECT set_upload_post_social_accounts(:B1, '{"tiktok": {"handle": "@acme"}}');
SELECT integrations.register_provider('upgrade_pay', 'Upgrade Pay', 'payment',
    p_is_mena_provider => true, p_supported_countries => '{AE}', p_payment_capabilities => '{one_time}');
SELECT create_integration(:B1, 'checkout_com', 'Live', 'bearer_token', p_api_key => 'sk_cko_upgrade') AS cko \gset
SELECT create_integration(:B2, 'github', 'Repos', 'oauth2', p_access_token => 'gho_upgrade',
    p_refresh_token => 'ghr_upgrade', p_token_expires_at => now() + interval '1 hour') AS gh \gset
SELECT update_integration_sync_stats(:'cko', 10, 9, 1);
SELECT update_integration_health(:'cko', true, NULL, 120);
SELECT create_oauth_state(:B2, 'github', 'https://app.example.com/cb', NULL, repeat('v', 50)) AS state \gset
SELECT integrations.create_api_log_partitions(1) >= 0 AS partitions;
SELECT log_integration_api_call(:'cko', 'GET', 'https://api.checkout.com/payments?api_key=sk_1', 200, 80);
SELECT record_integration_metric(:'cko', true, 90);
SELECT set_webhook_config(:'cko', 'whsec_upgrade') AS cfg \gset
\set body '{"id":"evt_up","type":"payment_approved"}'
SELECT record_webhook_event(:'cfg', 'evt_up', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac(:'body', 'whsec_upgrade', 'sha256'), 'hex')),
    convert_to(:'body', 'UTF8'), 'r2://webhooks/evt_up.json') AS ev \gset
SELECT log_webhook_body_access(:'ev', 'support ticket 7') IS NOT NULL AS body_access_logged;

CREATE FUNCTION pg_temp.row_count(relation text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE 'SELECT count(*) FROM ' || relation INTO n;
    RETURN n;
END $$;
CREATE TEMP TABLE before_counts AS
SELECT t AS relation, pg_temp.row_count(t) AS n
FROM unnest(ARRAY['integrations.keys', 'integrations.secrets', 'integrations.tenant_table', 'integrations.business_members',
    'integrations.audit_log', 'ai_avatar_integrations', 'email_integrations', 'blog_integrations', 'upload_post_profiles',
    'integration_providers', 'integration_oauth_states', 'integration_connections', 'integration_api_logs',
    'integration_metrics_hourly', 'integration_webhook_configs', 'integration_events', 'webhook_access_logs']) AS t;
SELECT relation, n > 0 AS filled FROM before_counts ORDER BY relation;

ALTER EXTENSION pg_integrations UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_integrations';

-- every row is still there (the audit log gains no rows from the update itself)
SELECT relation, n AS before, pg_temp.row_count(relation) AS after
FROM before_counts WHERE pg_temp.row_count(relation) <> n;
-- every secret opens, through the new check and through the RPCs
SELECT checked, failed, failed_ids FROM integrations.verify_secrets();
SELECT integrations.read_secret(:'store_secret') AS store_secret;
SELECT get_ai_avatar_secret(:B1) AS avatar_key, get_email_secret(:B1) AS email_key, get_blog_secret(:B1) AS blog_key;
SELECT get_integration_credentials(:'cko') ->> 'bearer_token' AS cko_token,
       get_integration_credentials(:'gh') ->> 'refresh_token' AS gh_refresh;
SELECT provider, code_verifier = repeat('v', 50) AS verifier_opens FROM consume_oauth_state(:'state');
-- the functions behave: the replayed delivery is known, writes and the new functions work
SELECT record_webhook_event(:'cfg', 'evt_up', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac(:'body', 'whsec_upgrade', 'sha256'), 'hex')),
    convert_to(:'body', 'UTF8'), 'r2://webhooks/evt_up.json') = :'ev' AS replay_is_the_same_event;
SELECT set_ai_avatar_integration(:B1, 'heygen', 'hg_key_after_update') IS NOT NULL AS avatar_resaved;
SELECT get_ai_avatar_secret(:B1) AS avatar_key_after;
SELECT count(*) AS providers_found FROM get_payment_providers_by_capability('one_time', 'AE') WHERE provider = 'upgrade_pay';
SELECT integrations.rotate_data_key() > 1 AS rotated;
SELECT integrations.reencrypt_secrets() > 0 AS reencrypted, integrations.reencrypt_secrets() AS left_over;
SELECT checked, failed FROM integrations.verify_secrets();
INSERT INTO integrations.audit_log (at, actor_role, business_id, action, kind)
VALUES (now() - interval '400 days', 'postgres', :B1, 'set', 'ai_avatar');
SELECT integrations.purge_audit_log(365) AS purged_rows;
\set VERBOSITY sqlstate
SELECT integrations.purge_audit_log(0);
BEGIN;
SET LOCAL ROLE service_role;
SELECT checked > 0 AS service_role_verifies FROM integrations.verify_secrets();
SELECT integrations.purge_audit_log(365);  -- only integrations_admin may erase the trail
ROLLBACK;
BEGIN;
SET LOCAL ROLE authenticated;
SELECT * FROM integrations.verify_secrets();
ROLLBACK;
\set VERBOSITY default
-- deleting a business still cascades to its integrations and their secrets
DELETE FROM upgrade_businesses WHERE id = :B2;
SELECT count(*) AS b2_connections FROM integration_connections WHERE business_id = :B2;
SELECT count(*) AS b2_secrets FROM integrations.secrets WHERE business_id = :B2;

-- The schema after the update is exactly a fresh install's: every object of the
-- extension, described without OIDs, compared both ways.
CREATE FUNCTION pg_temp.extension_schema() RETURNS TABLE (kind text, object text, detail text)
LANGUAGE sql AS $$
    WITH members AS (
        SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
        WHERE e.extname = 'pg_integrations' AND d.deptype = 'e'
    ), rels AS (
        SELECT c.oid, c.oid::regclass::text AS name FROM pg_class c JOIN members m ON m.objid = c.oid
        WHERE m.classid = 'pg_class'::regclass
    )
    SELECT 'function', p.oid::regprocedure::text,
           concat_ws(' | ', pg_get_functiondef(p.oid), p.proacl::text, obj_description(p.oid, 'pg_proc'))
    FROM pg_proc p JOIN members m ON m.objid = p.oid AND m.classid = 'pg_proc'::regclass AND p.prokind <> 'a'
    UNION ALL
    SELECT 'relation', r.name, concat_ws(' | ', c.relkind, c.relacl::text, c.reloptions::text, c.relrowsecurity,
           c.relforcerowsecurity, obj_description(c.oid, 'pg_class'))
    FROM rels r JOIN pg_class c ON c.oid = r.oid
    UNION ALL
    SELECT 'column', r.name || '.' || a.attname, concat_ws(' | ', a.attnum, format_type(a.atttypid, a.atttypmod),
           a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attstorage, a.attacl::text, col_description(r.oid, a.attnum))
    FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'constraint', r.name || '.' || co.conname, pg_get_constraintdef(co.oid)
    -- 18 also catalogs NOT NULL as constraints; the column's attnotnull above carries it
    FROM rels r JOIN pg_constraint co ON co.conrelid = r.oid AND co.contype <> 'n'
    UNION ALL
    SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
    FROM rels r JOIN pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT 'trigger', r.name || '.' || t.tgname, pg_get_triggerdef(t.oid)
    FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'policy', r.name || '.' || po.polname, concat_ws(' | ', po.polcmd, po.polroles::regrole[]::text,
           pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid))
    FROM rels r JOIN pg_policy po ON po.polrelid = r.oid
    UNION ALL
    SELECT 'schema', n.nspname, concat_ws(' | ', n.nspacl::text, obj_description(n.oid, 'pg_namespace'))
    FROM pg_namespace n JOIN members m ON m.objid = n.oid AND m.classid = 'pg_namespace'::regclass
    UNION ALL
    SELECT 'type', t.oid::regtype::text, t.typtype::text
    FROM pg_type t JOIN members m ON m.objid = t.oid AND m.classid = 'pg_type'::regclass
    -- 18 also records the tables' row types (and their arrays), which come with the tables
    WHERE t.typrelid = 0 AND NOT EXISTS (SELECT FROM pg_type el WHERE el.oid = t.typelem AND el.typrelid <> 0)
    UNION ALL
    SELECT 'config_dump', c::regclass::text, coalesce(e.extcondition[i], '')
    FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY AS u(c, i) WHERE e.extname = 'pg_integrations'
$$;
-- the tenant table's foreign keys are the app's, not the extension's
DROP TABLE upgrade_businesses CASCADE;
DROP EXTENSION pg_integrations CASCADE;
CREATE EXTENSION pg_integrations VERSION '0.1.0';
CREATE TEMP TABLE released_schema AS SELECT * FROM pg_temp.extension_schema();
ALTER EXTENSION pg_integrations UPDATE;
CREATE TEMP TABLE upgraded_schema AS SELECT * FROM pg_temp.extension_schema();
DROP EXTENSION pg_integrations;
CREATE EXTENSION pg_integrations;
CREATE TEMP TABLE fresh_schema AS SELECT * FROM pg_temp.extension_schema();
SELECT kind, count(*) AS objects FROM fresh_schema GROUP BY kind ORDER BY kind;
SELECT 'only after update' AS side, * FROM (SELECT * FROM upgraded_schema EXCEPT SELECT * FROM fresh_schema) a
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM fresh_schema EXCEPT SELECT * FROM upgraded_schema) f
ORDER BY 1, 2, 3;
-- and what 0.2.0 adds to 0.1.0 (this comparison does see differences)
SELECT kind, object FROM (SELECT * FROM fresh_schema EXCEPT SELECT * FROM released_schema) added ORDER BY 1, 2;
SELECT count(*) AS removed_since_0_1_0 FROM (SELECT * FROM released_schema EXCEPT SELECT * FROM fresh_schema) removed;

-- DROP EXTENSION then CREATE EXTENSION in the same database: a working extension
SELECT integrations.create_secret(:B1, 'after recreate') AS recreated \gset
SELECT integrations.read_secret(:'recreated') AS recreated_reads;
SELECT checked, failed FROM integrations.verify_secrets();
