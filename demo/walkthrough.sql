-- pg_integrations walk-through: the encrypted secret store, then the
-- seed-compatible integrations with tenant authorization.
-- Run by `make demo` against a fresh database; every step prints its result.
\set ON_ERROR_STOP 1
-- a failing step inside a transaction rolls back to before that step only
\set ON_ERROR_ROLLBACK on
\pset footer off
\echo
\echo '== 1. Install the extension'
CREATE EXTENSION pg_integrations;
SELECT extname, extversion FROM pg_extension WHERE extname = 'pg_integrations';

\echo
\echo '== 2. Store two API keys for a business (sealed with AES-256-GCM before they are written)'
SELECT integrations.create_secret('6f1c2b1e-4d2a-4c53-9a77-3f0e8f2f0a01', 'sk_live_demo_4eC39HqLyjWDarjtT1zdp7dc', 'Stripe live key') AS stripe_secret_id \gset
SELECT integrations.create_secret('6f1c2b1e-4d2a-4c53-9a77-3f0e8f2f0a01', 'mlsn.demo-mailerlite-token', 'MailerLite token') AS mailer_secret_id \gset
\echo 'the table holds only ciphertext:'
SELECT id, business_id, description, key_id, encode(nonce, 'hex') AS nonce, length(ciphertext) AS ciphertext_bytes
FROM integrations.secrets ORDER BY created_at;

\echo
\echo '== 3. Read them back (privileged callers only)'
SELECT integrations.read_secret(:'stripe_secret_id') AS stripe_key;

\echo
\echo '== 4. API roles cannot touch the store'
SET ROLE authenticated;
\set ON_ERROR_STOP 0
SELECT integrations.read_secret(:'stripe_secret_id');
SELECT * FROM integrations.secrets;
\set ON_ERROR_STOP 1
-- a failing step inside a transaction rolls back to before that step only
\set ON_ERROR_ROLLBACK on
RESET ROLE;

\echo
\echo '== 5. A ciphertext copied onto another row does not open'
INSERT INTO integrations.secrets (id, business_id, key_id, nonce, ciphertext)
SELECT '00000000-0000-4000-8000-0000000000aa', '00000000-0000-4000-8000-0000000000bb', key_id, nonce, ciphertext
FROM integrations.secrets WHERE id = :'stripe_secret_id';
\set ON_ERROR_STOP 0
SELECT integrations.read_secret('00000000-0000-4000-8000-0000000000aa');
\set ON_ERROR_STOP 1
-- a failing step inside a transaction rolls back to before that step only
\set ON_ERROR_ROLLBACK on
DELETE FROM integrations.secrets WHERE id = '00000000-0000-4000-8000-0000000000aa';

\echo
\echo '== 6. Update a secret'
SELECT integrations.update_secret(:'mailer_secret_id', 'mlsn.rotated-token');
SELECT integrations.read_secret(:'mailer_secret_id') AS mailerlite_token;

\echo
\echo '== 7. Rotate the data key, then re-encrypt in batches'
SELECT * FROM integrations.keyring_status();
SELECT integrations.rotate_data_key() AS new_key_id;
SELECT integrations.reencrypt_secrets(1) AS reencrypted;
SELECT integrations.reencrypt_secrets(1) AS reencrypted;
SELECT integrations.reencrypt_secrets(1) AS reencrypted_0_means_done;
SELECT * FROM integrations.keyring_status();
SELECT integrations.read_secret(:'stripe_secret_id') AS stripe_key_still_opens;

\echo
\echo '== 8. Delete'
SELECT integrations.delete_secret(:'mailer_secret_id') AS deleted;
SELECT integrations.read_secret(:'mailer_secret_id') AS gone_reads_as_null;

\echo
\echo '== 9. Attach the app''s tenant table (Supabase-style businesses, owner column profile_id)'
CREATE TABLE public.businesses (id uuid PRIMARY KEY, profile_id uuid NOT NULL, name text NOT NULL);
INSERT INTO public.businesses VALUES
    ('6f1c2b1e-4d2a-4c53-9a77-3f0e8f2f0a01', 'a0000000-0000-4000-8000-000000000000', 'Demo Store'),
    ('b1000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-00000000000a', 'Acme Bakery'),
    ('b2000000-0000-4000-8000-000000000002', 'a2000000-0000-4000-8000-00000000000b', 'Other Co');
GRANT SELECT ON public.businesses TO authenticated;
SELECT integrations.attach_tenant_table('public.businesses', 'profile_id');
SELECT conrelid::regclass AS table_with_cascading_fk FROM pg_constraint
WHERE contype = 'f' AND confrelid = 'public.businesses'::regclass ORDER BY conrelid::regclass::text;

\echo
\echo '== 10. The owner saves a HeyGen key, as supabase.rpc(''set_ai_avatar_integration'', ...) does'
BEGIN;
SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims',
       '{"sub":"a1000000-0000-4000-8000-00000000000a","role":"authenticated"}', true) \g /dev/null
SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', 'hg_live_demo_key', 'avatar-42', 'voice-7') AS integration_id;
SELECT set_email_integration('b1000000-0000-4000-8000-000000000001', 'mailerlite', 'mlsn.demo', 'Acme Bakery', 'hello@acme.example') AS email_integration_id;
SELECT * FROM get_ai_avatar_integration('b1000000-0000-4000-8000-000000000001');
\echo 'the owner sees its rows through RLS (no secret anywhere):'
SELECT provider, avatar_id, voice_id, status FROM ai_avatar_integrations;
\echo 'but cannot decrypt the key (back-end only by default):'
\set ON_ERROR_STOP 0
SELECT get_ai_avatar_secret('b1000000-0000-4000-8000-000000000001');
\set ON_ERROR_STOP 1
-- a failing step inside a transaction rolls back to before that step only
\set ON_ERROR_ROLLBACK on
ROLLBACK;
-- (rolled back to show the next steps from a clean state)
SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', 'hg_live_demo_key', 'avatar-42', 'voice-7') IS NOT NULL AS saved_as_superuser;

\echo
\echo '== 11. Another signed-in user is refused (42501, HTTP 403 through PostgREST)'
BEGIN;
SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims',
       '{"sub":"a2000000-0000-4000-8000-00000000000b","role":"authenticated"}', true) \g /dev/null
\set ON_ERROR_STOP 0
SELECT * FROM get_ai_avatar_integration('b1000000-0000-4000-8000-000000000001');
\set ON_ERROR_STOP 1
-- a failing step inside a transaction rolls back to before that step only
\set ON_ERROR_ROLLBACK on
SELECT count(*) AS rows_visible_to_other_user FROM ai_avatar_integrations;
ROLLBACK;

\echo
\echo '== 12. A back-end job (service_role) reads the key; the read is audited'
\echo '   (the demo server preloads the library: the read writes nothing itself, so it works in a'
\echo '   READ ONLY transaction; its audit record goes through a shared-memory queue that a'
\echo '   background writer commits every 100 ms — flush_audit_log() waits for it)'
SELECT integrations.audit_status() AS how_reads_are_audited;
BEGIN READ ONLY;
SET LOCAL ROLE service_role;
SELECT get_ai_avatar_secret('b1000000-0000-4000-8000-000000000001') AS heygen_key;
COMMIT;
SELECT integrations.flush_audit_log() AS audit_flushed;
SELECT action, kind, provider, actor_role, business_id FROM integrations.audit_log ORDER BY at, action;

\echo
\echo '== 13. Social profile: generated, stable username'
SELECT upload_post_username, social_accounts FROM get_or_create_upload_post_profile('b1000000-0000-4000-8000-000000000001');

\echo
\echo '== 14. Deleting the business deletes its integrations and their secrets'
SELECT count(*) AS secrets_before FROM integrations.secrets WHERE business_id = 'b1000000-0000-4000-8000-000000000001';
DELETE FROM public.businesses WHERE id = 'b1000000-0000-4000-8000-000000000001';
SELECT (SELECT count(*) FROM ai_avatar_integrations) AS ai_rows,
       (SELECT count(*) FROM upload_post_profiles) AS profiles,
       (SELECT count(*) FROM integrations.secrets WHERE business_id = 'b1000000-0000-4000-8000-000000000001') AS secrets_after;

\echo
\echo '== 15. The provider registry: one-time payments in Saudi Arabia in SAR, MENA providers first'
SELECT provider, display_name, is_mena_provider, supported_currencies
FROM get_payment_providers_by_capability('one_time', 'SA', 'SAR');
SELECT provider, supported_countries, webhook_signing FROM get_payment_providers_by_capability('bnpl');

\echo
\echo '== 16. OAuth: a state for GitHub with a PKCE verifier, consumed once by the callback'
SELECT create_oauth_state('b2000000-0000-4000-8000-000000000002', 'github', 'https://app.example.com/oauth/callback',
                          '{repo}', 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk') AS state \gset
SELECT provider, scopes, length(state_hash) AS stored_hash_bytes, code_verifier_secret_id IS NOT NULL AS verifier_sealed
FROM integration_oauth_states;
SELECT * FROM consume_oauth_state(:'state');
\set ON_ERROR_STOP 0
SELECT * FROM consume_oauth_state(:'state');
\set ON_ERROR_STOP 1

\echo
\echo '== 17. A Shopify connection: credentials sealed, reads without secrets, health and sync'
SELECT create_integration('b2000000-0000-4000-8000-000000000002', 'shopify', 'Main Store', 'api_key',
    p_api_key => 'shpat_demo_0123456789abcdef', p_key_prefix => 'shpat_',
    p_connection_config => '{"domain":"demo.myshopify.com","api_version":"2024-01","timeout":30000}',
    p_capabilities => '{"can_sync":true,"can_webhook":true,"sync_frequency":"hourly"}') AS shop \gset
SELECT j->>'name' AS name, j->>'key_prefix' AS key_prefix, j->>'has_credentials' AS has_credentials, j->'connection_config' AS config
FROM get_integration(:'shop') j;
SELECT update_integration_health(:'shop', false, 'HTTP 503'), update_integration_health(:'shop', false, 'HTTP 503'),
       update_integration_health(:'shop', false, 'HTTP 503');
SELECT status, consecutive_failures, error_message FROM integration_connections WHERE id = :'shop';
SELECT update_integration_health(:'shop', true, NULL, 140);
SELECT update_integration_sync_stats(:'shop', 1200, 40, 1);
SELECT status, consecutive_failures, total_records, last_sync_count FROM integration_connections WHERE id = :'shop';
SELECT log_integration_api_call(:'shop', 'GET', 'https://demo.myshopify.com/admin/api/2024-01/orders.json?access_token=shpat_demo_0123456789abcdef', 200, 140);
SELECT method, url, status FROM integration_api_logs;
SELECT calls, errors, total_latency_ms / calls AS avg_latency_ms FROM integration_metrics_hourly;

\echo
\echo '== 18. A signed webhook: recorded once, a forged one refused, then processed by a worker'
CREATE EXTENSION IF NOT EXISTS pgcrypto;
SELECT set_webhook_config(:'shop', 'shpss_demo_secret') AS cfg \gset
SELECT record_webhook_event(:'cfg', 'wh_1', 'orders/create',
    jsonb_build_object('X-Shopify-Hmac-Sha256', encode(hmac('{"id":1}', 'shpss_demo_secret', 'sha256'), 'base64')),
    convert_to('{"id":1}', 'UTF8'), 'r2://webhooks/wh_1.json') AS event_id;
\set ON_ERROR_STOP 0
SELECT record_webhook_event(:'cfg', 'wh_2', 'orders/create', '{"X-Shopify-Hmac-Sha256":"Zm9yZ2Vk"}', convert_to('{"id":2}', 'UTF8'), NULL);
\set ON_ERROR_STOP 1
SELECT provider_event_id, event_type, encode(body_sha256, 'hex') AS body_sha256, body_object_key, status FROM integration_events;
SELECT id AS claimed, attempts FROM claim_integration_events(10);
SELECT complete_integration_event(id, true) FROM integration_events;
SELECT provider_event_id, status FROM integration_events;

\echo
\echo '== 19. Operator checks (0.2.0): every stored secret still opens; audit retention'
SELECT checked, failed, failed_ids FROM integrations.verify_secrets();
SELECT action, kind, count(*) FROM integrations.audit_log GROUP BY 1, 2 ORDER BY 1, 2;
SELECT integrations.purge_audit_log(365) AS audit_rows_older_than_a_year_removed;
SELECT extversion AS installed_version FROM pg_extension WHERE extname = 'pg_integrations';
