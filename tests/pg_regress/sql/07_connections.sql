-- Connections with typed credentials: callers, validation, health, sync, OAuth tokens.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql
INSERT INTO integrations.business_members VALUES
    ('0e000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'owner');
\set B '''0e000000-0000-4000-8000-000000000001'''

-- the owner connects a Shopify store (seed 002's example)
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT create_integration(:B, 'shopify', 'Main Store', 'api_key', p_api_key => 'shpat_1234567890abcdef',
    p_key_prefix => 'shpat_',
    p_connection_config => '{"domain":"mystore.myshopify.com","api_version":"2024-01","timeout":30000}',
    p_capabilities => '{"can_sync":true,"can_push":false,"can_webhook":true,"sync_frequency":"hourly"}') AS shop \gset
COMMIT;
-- reads return no secret anywhere
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT j->>'provider' AS provider, j->>'key_prefix' AS key_prefix, j->'connection_config' AS config,
       j->>'has_credentials' AS has_credentials, j::text LIKE '%1234567890%' AS leaks_key,
       j ? 'api_key_secret_id' AS shows_secret_id
FROM get_integration(:'shop') j;
SELECT count(*) AS listed FROM list_integrations(:B) j WHERE j::text NOT LIKE '%1234567890%';
SELECT get_integration_by_provider(:B, 'shopify')->>'name' AS by_provider;
SELECT try(format('SELECT get_integration_credentials(%L)', :'shop')) AS owner_reads_credentials;
SELECT name, key_prefix FROM integration_connections;
SELECT try('SELECT api_key_secret_id FROM integration_connections') AS secret_column;
ROLLBACK;
-- another user and anon
BEGIN;
SELECT act_as('authenticated', 'b0000000-0000-4000-8000-00000000000b') \g /dev/null
-- another tenant's connection and an unknown id get the same answer
SELECT get_integration(:'shop') IS NULL AS other_user, get_integration(gen_random_uuid()) IS NULL AS unknown_id;
SELECT try(format('SELECT update_integration_health(%L, true)', :'shop'), :'shop') AS other_user_health,
       try(format('SELECT update_integration_health(%L, true)', '00000000-0000-4000-8000-000000000000'),
           '00000000-0000-4000-8000-000000000000') AS unknown_health;
SELECT try($$SELECT * FROM list_integrations('0e000000-0000-4000-8000-000000000001')$$) AS other_user_list;
SELECT count(*) AS other_user_rows FROM integration_connections;
ROLLBACK;
BEGIN;
SET LOCAL ROLE anon;
SELECT try(format('SELECT get_integration(%L)', :'shop')) AS anon;
ROLLBACK;
-- the back end reads the credentials (audited)
BEGIN;
SET LOCAL ROLE service_role;
SELECT get_integration_credentials(:'shop');
COMMIT;
-- seed 002's camelCase keys are accepted and stored in one form; both
-- spellings of one key are refused
SELECT create_integration(:B, 'shopify', 'Camel Store', 'api_key', p_api_key => 'shpat_camel_0123456789',
    p_connection_config => '{"domain":"camel.myshopify.com","apiVersion":"2024-01","rateLimit":40}',
    p_capabilities => '{"canSync":true,"canPush":false,"canWebhook":true,"syncFrequency":"daily"}') AS camel \gset
SELECT connection_config, capabilities FROM integration_connections WHERE id = :'camel';
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'Twice', 'api_key',
    p_api_key => 'shpat_twice_0123456789', p_capabilities => '{"canSync":true,"can_sync":false}')$$) AS both_spellings;
SELECT delete_integration(:'camel');

-- bad input: the credential must fit the auth method, config is validated
SELECT count(*) AS secrets_before FROM integrations.secrets \gset
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'Main Store', 'api_key', p_api_key => 'shpat_other')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'basic_auth', p_api_key => 'shpat_x')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'api_key', p_api_key => 'k', p_password => 'p')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'oauth2')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'tabby', 'B', 'oauth2', p_access_token => 't')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'nope', 'B', 'api_key', p_api_key => 'k')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'api_key', p_api_key => 'k', p_environment => 'prod')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'api_key', p_api_key => 'k', p_connection_config => '{"api_endpoint":"http://x.example.com"}')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'api_key', p_api_key => 'k', p_connection_config => '{"token":"k"}')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'api_key', p_api_key => 'k', p_capabilities => '{"sync_frequency":"often"}')$$);
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'B', 'api_key', p_api_key => 'shpat_abc', p_key_prefix => 'shpat_abc')$$);
SELECT count(*) = :secrets_before AS nothing_written FROM integrations.secrets;

-- health: the third failure in a row puts it in error, a success brings it back
SELECT update_integration_health(:'shop', false, 'timeout'), update_integration_health(:'shop', false, 'timeout');
SELECT status, consecutive_failures FROM integration_connections WHERE id = :'shop';
SELECT update_integration_health(:'shop', false, 'HTTP 503 from https://api.example.com/x?access_token=tok_9');
SELECT status, consecutive_failures, error_message, last_error_at IS NOT NULL AS failed_at FROM integration_connections WHERE id = :'shop';
SELECT update_integration_health(:'shop', true, NULL, 120);
SELECT status, consecutive_failures, error_message, last_response_time_ms, last_success_at IS NOT NULL AS ok_at
FROM integration_connections WHERE id = :'shop';
SELECT update_integration_sync_stats(:'shop', 1000, 50, 2);
SELECT total_records, last_sync_count, failed_sync_count, last_synced_at IS NOT NULL AS synced FROM integration_connections WHERE id = :'shop';
SELECT try($$SELECT update_integration_sync_stats('0e000000-0000-4000-8000-000000000001', -1, 0, 0)$$);
SELECT try($$SELECT update_integration_health('00000000-0000-4000-8000-000000000404', true)$$);

-- OAuth tokens and the refresh worker
SELECT create_integration(:B, 'github', 'Repos', 'oauth2', p_access_token => 'gho_first', p_refresh_token => 'ghr_first',
    p_token_expires_at => now() + interval '5 minutes', p_scopes => '{repo}') AS gh \gset
SELECT j->>'provider' AS needs_refresh FROM list_integrations_needing_refresh() j;
SELECT count(*) AS not_within_1_minute FROM list_integrations_needing_refresh('1 minute');
SELECT set_integration_oauth_tokens(:'gh', 'gho_second', NULL, now() + interval '1 hour', NULL);
SELECT c->>'access_token' AS access, c->>'refresh_token' AS refresh, c->'scopes' AS scopes FROM get_integration_credentials(:'gh') c;
SELECT count(*) AS refreshed FROM list_integrations_needing_refresh();
SELECT try(format('SELECT set_integration_oauth_tokens(%L, %L, NULL, NULL, NULL)', :'shop', 'x'));
BEGIN;
SET LOCAL ROLE authenticated;
SELECT try('SELECT * FROM list_integrations_needing_refresh()');
ROLLBACK;

-- update_integration: NULL keeps, a new key is sealed in place of the old one
SELECT count(*) AS secrets_before FROM integrations.secrets WHERE business_id = :B \gset
SELECT update_integration(:'shop', p_name => 'Flagship', p_connection_config => '{"domain":"flagship.myshopify.com"}',
                          p_api_key => 'shpat_rotated_0123456789');
SELECT name, status, connection_config, capabilities->>'sync_frequency' AS kept_capability FROM integration_connections WHERE id = :'shop';
SELECT get_integration_credentials(:'shop')->>'api_key' AS rotated_key;
SELECT count(*) = :secrets_before AS no_new_secret FROM integrations.secrets WHERE business_id = :B;
SELECT update_integration(:'shop', p_status => 'inactive');
SELECT status FROM integration_connections WHERE id = :'shop';
SELECT try(format('SELECT update_integration(%L, p_status => %L)', :'shop', 'paused'));
SELECT try(format('SELECT update_integration(%L, p_password => %L)', :'shop', 'pw'));
SELECT try(format('SELECT update_integration(%L, p_api_key => %L)', :'gh', 'k'));
SELECT try(format('SELECT update_integration(%L, p_capabilities => %L)', :'shop', '{"can_sync":1}'));
-- the clear-text prefix can never become the key itself
SELECT try(format('SELECT update_integration(%L, p_api_key => %L, p_key_prefix => %L)', :'shop',
                  'shpat_rotated_0123456789', 'shpat_rotated_0123456789')) AS whole_key_as_prefix;
SELECT try(format('SELECT update_integration(%L, p_api_key => %L, p_key_prefix => %L)', :'shop',
                  'shpat_rotated_0123456789', 'sk_')) AS not_a_prefix;
-- a prefix alone is never compared with the stored key (no oracle on it)
SELECT try(format('SELECT update_integration(%L, p_key_prefix => %L)', :'shop', 'shpat_rot')) AS prefix_without_key;
SELECT try(format('SELECT update_integration(%L, p_key_prefix => %L)', :'shop', 'zzz')) AS wrong_prefix_without_key;
SELECT update_integration(:'shop', p_api_key => 'shpat_rotated_0123456789', p_key_prefix => 'shpat_rot');
SELECT key_prefix FROM integration_connections WHERE id = :'shop';
SELECT try($$SELECT create_integration('0e000000-0000-4000-8000-000000000001', 'shopify', 'C', 'basic_auth', p_username => 'u', p_password => 'secretpw', p_key_prefix => 'secretpw')$$) AS prefix_without_key;
SELECT try(format('SELECT update_integration(%L, p_name => %L)', :'gh', 'Flagship')) AS other_provider_same_name;

-- deleting a connection deletes every one of its secrets
SELECT count(*) AS secrets FROM integrations.secrets WHERE business_id = :B;
SELECT delete_integration(:'gh') AS deleted, delete_integration(:'gh') AS again;
SELECT count(*) AS secrets FROM integrations.secrets WHERE business_id = :B;
SELECT integrations.flush_audit_log() AS audit_flushed;  -- secret reads reach the log through the queue
SELECT action, kind, provider FROM integrations.audit_log WHERE kind = 'connection' ORDER BY at, action;
SELECT delete_integration(:'shop');
DELETE FROM integrations.business_members WHERE business_id = :B;
DROP FUNCTION try(text, text), act_as(text, text);
