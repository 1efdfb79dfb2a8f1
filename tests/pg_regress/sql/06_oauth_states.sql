-- OAuth state: created by the business's owner, consumed once by the callback.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql
INSERT INTO integrations.business_members VALUES
    ('0a000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'owner');

-- the owner starts a GitHub authorization with PKCE
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a') \g /dev/null
SELECT create_oauth_state('0a000000-0000-4000-8000-000000000001', 'github', 'https://app.example.com/oauth/callback',
                          '{repo,read:user}', 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk') AS state \gset
COMMIT;
SELECT length(:'state') AS token_length, :'state' ~ '^[A-Za-z0-9_-]+$' AS url_safe;
-- only the hash is stored; the verifier is in the secret store
SELECT provider, redirect_uri, scopes, length(state_hash) AS hash_bytes,
       code_verifier_secret_id IS NOT NULL AS verifier_sealed, consumed_at IS NULL AS pending,
       expires_at - created_at AS lifetime
FROM integration_oauth_states;
SELECT count(*) AS plaintext_anywhere FROM integration_oauth_states s
WHERE s::text LIKE '%' || :'state' || '%' OR s::text LIKE '%dBjftJeZ4CVP%';

-- another user cannot consume it; the callback (service_role) can, once
BEGIN;
SELECT act_as('authenticated', 'b0000000-0000-4000-8000-00000000000b') \g /dev/null
SELECT try(format('SELECT consume_oauth_state(%L)', :'state'));
ROLLBACK;
BEGIN;
SET LOCAL ROLE service_role;
SELECT business_id, provider, redirect_uri, scopes, code_verifier FROM consume_oauth_state(:'state');
COMMIT;
SELECT try(format('SELECT consume_oauth_state(%L)', :'state')) AS replay;
SELECT try($$SELECT consume_oauth_state('no-such-state')$$) AS unknown;
SELECT consumed_at IS NOT NULL AS used, code_verifier_secret_id IS NULL AS verifier_gone FROM integration_oauth_states;
SELECT count(*) AS verifier_secrets_left FROM integrations.secrets WHERE description = 'PKCE code verifier';

-- an expired state
SELECT create_oauth_state('0a000000-0000-4000-8000-000000000001', 'shopify', 'http://localhost:3000/cb') AS old_state \gset
UPDATE integration_oauth_states SET expires_at = now() - interval '1 second' WHERE provider = 'shopify';
SELECT try(format('SELECT consume_oauth_state(%L)', :'old_state')) AS expired;

-- bad input
SELECT try($$SELECT create_oauth_state('0a000000-0000-4000-8000-000000000001', 'tabby', 'https://app.example.com/cb')$$);
SELECT try($$SELECT create_oauth_state('0a000000-0000-4000-8000-000000000001', 'nope', 'https://app.example.com/cb')$$);
SELECT try($$SELECT create_oauth_state('0a000000-0000-4000-8000-000000000001', 'github', 'http://app.example.com/cb')$$);
-- the URI is parsed, not prefix-matched: plain http only on exactly these hosts
SELECT u AS redirect_uri, try(format('SELECT create_oauth_state(%L, %L, %L) IS NOT NULL', '0a000000-0000-4000-8000-000000000001', 'github', u)) AS answer
FROM unnest(ARRAY['http://localhost.evil.example/cb', 'http://127.0.0.1.nip.io.evil.example:8080/cb',
                  'http://localhost@evil.example/cb', 'https://app.example.com/cb#frag',
                  'http://localhost:3000/cb', 'http://127.0.0.1/cb', 'http://[::1]:8080/cb']) u;
SELECT try($$SELECT create_oauth_state('0a000000-0000-4000-8000-000000000001', 'github', 'https://app.example.com/cb', NULL, 'short')$$);
SELECT try($$SELECT create_oauth_state('0a000000-0000-4000-8000-000000000001', 'fetchr', 'https://app.example.com/cb')$$);
SELECT count(*) AS states FROM integration_oauth_states;

-- cleanup: expired and long-used states go, with their verifiers
BEGIN;
SET LOCAL ROLE authenticated;
SELECT try('SELECT cleanup_expired_oauth_states()');
ROLLBACK;
UPDATE integration_oauth_states SET consumed_at = now() - interval '2 days' WHERE provider = 'github';
SELECT cleanup_expired_oauth_states() AS removed;
SELECT count(*) AS states_left FROM integration_oauth_states;
SELECT integrations.flush_audit_log() AS audit_flushed;  -- secret reads reach the log through the queue
SELECT action, kind, provider FROM integrations.audit_log WHERE kind = 'oauth_state' ORDER BY at, action DESC;
DELETE FROM integrations.business_members WHERE business_id = '0a000000-0000-4000-8000-000000000001';
DROP FUNCTION try(text, text), act_as(text, text);
