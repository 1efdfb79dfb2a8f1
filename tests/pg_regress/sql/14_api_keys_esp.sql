-- Seed 004's api_keys and esp_integrations: who may do what, what is stored,
-- what verification answers. Role and claim switching as PostgREST does it.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql
INSERT INTO integrations.business_members VALUES
    ('0e000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'owner'),
    ('0e000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-00000000000c', 'member');

-- the owner creates a key; it is shown once and only its hash is kept
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT api_key_id AS key_id, api_key AS key FROM create_api_key('0e000000-0000-4000-8000-000000000001', 'gateway',
       '{orders:write,content:read,content:read}', now() + interval '30 days', 3) \gset
COMMIT;
SELECT length(:'key') AS key_length, :'key' ~ '^pgi_[A-Za-z0-9_-]{43}$' AS url_safe;
SELECT name, scopes, rate_limit, is_active, key_prefix = left(:'key', 12) AS prefix_shown,
       key_hash = encode(sha256(convert_to(:'key', 'UTF8')), 'hex') AS sha256_stored
FROM api_keys;
SELECT count(*) AS plaintext_anywhere FROM api_keys k WHERE k::text LIKE '%' || substr(:'key', 13) || '%';
SELECT action, kind, target_id = :'key_id' AS this_key FROM integrations.audit_log WHERE kind = 'api_key';

-- bad arguments: 22023
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT try($$SELECT create_api_key('0e000000-0000-4000-8000-000000000001', 'x', '{Content:Read}')$$) AS bad_scope;
SELECT try($$SELECT create_api_key('0e000000-0000-4000-8000-000000000001', 'x', '{}')$$) AS no_scope;
SELECT try($$SELECT create_api_key('0e000000-0000-4000-8000-000000000001', ' ', '{a:b}')$$) AS blank_name;
SELECT try($$SELECT create_api_key('0e000000-0000-4000-8000-000000000001', 'x', '{a:b}', now() - interval '1 s')$$) AS expired;
SELECT try($$SELECT create_api_key('0e000000-0000-4000-8000-000000000001', 'x', '{a:b}', NULL, 0)$$) AS no_limit;
ROLLBACK;

-- a member lists (never a hash) but cannot create, revoke or rotate; a stranger sees nothing
BEGIN;
SELECT act_as('authenticated', 'c0000000-0000-4000-8000-00000000000c') \g /dev/null
SELECT name, scopes, is_active FROM list_api_keys('0e000000-0000-4000-8000-000000000001');
SELECT try($$SELECT key_hash FROM api_keys$$) AS hash_column;
SELECT try($$SELECT create_api_key('0e000000-0000-4000-8000-000000000001', 'x', '{a:b}')$$) AS member_creates;
SELECT try(format('SELECT revoke_api_key(%L)', :'key_id')) AS member_revokes;
SELECT act_as('authenticated', 'b0000000-0000-4000-8000-00000000000b') \g /dev/null
SELECT try($$SELECT list_api_keys('0e000000-0000-4000-8000-000000000001')$$) AS stranger_lists;
SELECT count(*) AS stranger_rows FROM api_keys;
-- verification is the gateway's (back-end roles)
SELECT try(format('SELECT verify_api_key(%L)', :'key')) AS user_verifies;
ROLLBACK;

-- the gateway verifies: scope, limit, one answer for every bad key
BEGIN;
SET LOCAL ROLE service_role;
SELECT api_key_id = :'key_id' AS this_key, business_id, scopes FROM verify_api_key(:'key', 'content:read');
SELECT try(format('SELECT verify_api_key(%L, %L)', :'key', 'content:write')) AS missing_scope;
SELECT try(format('SELECT verify_api_key(%L, %L)', :'key', 'not a scope')) AS malformed_scope;
SELECT try($$SELECT verify_api_key('pgi_0000000000000000000000000000000000000000000')$$) AS unknown;
SELECT try($$SELECT verify_api_key('sk_live_something')$$) AS not_ours;
COMMIT;
BEGIN;
SET LOCAL ROLE service_role;
SELECT count(*) FROM verify_api_key(:'key');
SELECT count(*) FROM verify_api_key(:'key');
SELECT try(format('SELECT verify_api_key(%L)', :'key')) AS over_limit;
COMMIT;
SELECT integrations.flush_audit_log();
SELECT usage_count, usage_hour = date_trunc('hour', now()) AS this_hour, usage_hour_count, last_used_at IS NOT NULL AS used
FROM api_keys;

-- rotation keeps the settings and revokes the old key; revoked keys get the unknown key's answer
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT api_key_id AS new_id, api_key AS new_key FROM rotate_api_key(:'key_id') \gset
SELECT try(format('SELECT rotate_api_key(%L)', :'key_id')) AS rotate_again;
SELECT revoke_api_key(:'key_id') AS revoke_old_again;
COMMIT;
SELECT name, scopes, rate_limit, is_active, revoked_at IS NOT NULL AS revoked FROM api_keys ORDER BY created_at;
BEGIN;
SET LOCAL ROLE service_role;
SELECT try(format('SELECT verify_api_key(%L)', :'key')) AS old_key;
SELECT count(*) AS new_key_works FROM verify_api_key(:'new_key');
COMMIT;
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT revoke_api_key(:'new_id') AS revoked, revoke_api_key(:'new_id') AS again,
       revoke_api_key('00000000-0000-4000-8000-000000000000') AS unknown;
COMMIT;

-- ESP: the credentials object is sealed; the row only names its fields
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT set_esp_integration('0e000000-0000-4000-8000-000000000001', 'klaviyo',
       '{"api_key": "pk_live_esp_0001", "list_id": "L1"}', '{"double_opt_in": true}') AS esp_id \gset
SELECT try($$SELECT set_esp_integration('0e000000-0000-4000-8000-000000000001', 'stripe', '{"k": "v"}')$$) AS not_email;
SELECT try($$SELECT set_esp_integration('0e000000-0000-4000-8000-000000000001', 'mailchimp', '[1]')$$) AS not_object;
SELECT try($$SELECT set_esp_integration('0e000000-0000-4000-8000-000000000001', 'mailchimp', NULL)$$) AS new_without;
COMMIT;
SELECT provider, credentials, settings, secret_id IS NOT NULL AS sealed FROM esp_integrations;
SELECT count(*) AS plaintext_anywhere FROM esp_integrations e WHERE e::text LIKE '%pk_live_esp_0001%';
BEGIN;
SELECT act_as('authenticated', 'c0000000-0000-4000-8000-00000000000c') \g /dev/null
SELECT provider, credential_fields, settings, sync_status FROM get_esp_integrations('0e000000-0000-4000-8000-000000000001');
SELECT try($$SELECT get_esp_credentials('0e000000-0000-4000-8000-000000000001', 'klaviyo')$$) AS member_reads;
SELECT try($$SELECT set_esp_integration('0e000000-0000-4000-8000-000000000001', 'klaviyo', NULL, '{}')$$) AS member_sets;
SELECT record_esp_sync(:'esp_id', 'error', '{"status": 401, "request": "GET https://a.klaviyo.com/api?api_key=pk_live_esp_0001", "authorization": "Klaviyo-API-Key pk_live_esp_0001"}');
COMMIT;
SELECT sync_status, last_sync_at IS NOT NULL AS synced, error_log FROM esp_integrations;
SELECT try(format('SELECT record_esp_sync(%L, %L)', :'esp_id', 'done')) AS bad_status;
SELECT try($$SELECT record_esp_sync('00000000-0000-4000-8000-000000000000', 'success')$$) AS unknown_integration;
BEGIN;
SET LOCAL ROLE service_role;
SELECT get_esp_credentials('0e000000-0000-4000-8000-000000000001', 'klaviyo') ->> 'list_id' AS list_id;
SELECT get_esp_credentials('0e000000-0000-4000-8000-000000000001', 'brevo') IS NULL AS none;
SELECT record_esp_sync(:'esp_id', 'success');
COMMIT;
SELECT sync_status, error_log FROM esp_integrations;
SELECT integrations.flush_audit_log();
SELECT action, provider FROM integrations.audit_log WHERE kind = 'esp' ORDER BY at, action;
-- realtime publishes the table without the credentials
SELECT attnames FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND tablename = 'esp_integrations';
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT delete_esp_integration('0e000000-0000-4000-8000-000000000001', 'klaviyo') AS deleted,
       delete_esp_integration('0e000000-0000-4000-8000-000000000001', 'klaviyo') AS again;
COMMIT;
SELECT count(*) AS secrets_left FROM integrations.secrets WHERE description = 'E-mail service provider credentials';
DELETE FROM api_keys;
DELETE FROM integrations.business_members WHERE business_id = '0e000000-0000-4000-8000-000000000001';
