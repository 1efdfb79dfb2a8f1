-- Webhooks: configuration, verified and idempotent recording, the work queue,
-- body access logs. Signatures are computed here with pgcrypto.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql
INSERT INTO integrations.business_members VALUES
    ('09000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'owner');
SELECT create_integration('09000000-0000-4000-8000-000000000001', 'checkout_com', 'Live', 'bearer_token', p_api_key => 'sk_cko_live') AS cko \gset
SELECT create_integration('09000000-0000-4000-8000-000000000001', 'stripe', 'Live', 'api_key', p_api_key => 'sk_live_s') AS stripe \gset
SELECT create_integration('09000000-0000-4000-8000-000000000001', 'tap_payments', 'Live', 'bearer_token', p_api_key => 'sk_tap') AS tap \gset

-- the owner sets the configuration; the signing secret goes to the secret store
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub":"a0000000-0000-4000-8000-00000000000a","role":"authenticated"}', true) \g /dev/null
SET LOCAL ROLE authenticated;
SELECT set_webhook_config(:'cko', 'whsec_cko_123', '{payment_approved,payment_refunded}') AS cfg \gset
SELECT length(endpoint_token) AS token_length, event_types, is_active, signing_scheme, signature_header
FROM integration_webhook_configs WHERE id = :'cfg';
SELECT try('SELECT signing_secret_id FROM integration_webhook_configs') AS secret_column;
COMMIT;
SELECT set_webhook_config(:'stripe', 'whsec_stripe') AS scfg \gset
SELECT try(format('SELECT set_webhook_config(%L, %L)', :'tap', 'x')) AS unverifiable_scheme;
SELECT try(format('SELECT set_webhook_config(%L)', :'stripe')) AS keeps_secret;
SELECT count(*) AS signing_secrets FROM integrations.secrets WHERE description = 'webhook signing secret';

-- a signed delivery is recorded once; only the body's hash and object key are kept
\set body '{"id":"evt_1","type":"payment_approved","data":{"amount":1000}}'
SELECT record_webhook_event(:'cfg', 'evt_1', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac(:'body', 'whsec_cko_123', 'sha256'), 'hex'), 'Content-Type', 'application/json',
                       'Authorization', 'Bearer should-not-be-kept'),
    convert_to(:'body', 'UTF8'), 'r2://webhooks/evt_1.json') AS ev \gset
SELECT provider_event_id, event_type, headers, body_sha256 = digest(:'body', 'sha256') AS hash_kept,
       body_object_key, status, attempts
FROM integration_events WHERE id = :'ev';
SELECT record_webhook_event(:'cfg', 'evt_1', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac(:'body', 'whsec_cko_123', 'sha256'), 'hex')),
    convert_to(:'body', 'UTF8'), 'r2://webhooks/evt_1.json') = :'ev' AS replay_returns_the_same_event;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'cfg', 'evt_1', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac('{"id":"evt_1","other":true}', 'whsec_cko_123', 'sha256'), 'hex')),
    convert_to('{"id":"evt_1","other":true}', 'UTF8'))) AS replay_with_another_body;
-- forged, tampered, unsigned
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'cfg', 'evt_2', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac(:'body', 'guessed_secret', 'sha256'), 'hex')), convert_to(:'body', 'UTF8'))) AS forged;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'cfg', 'evt_2', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac(:'body', 'whsec_cko_123', 'sha256'), 'hex')),
    convert_to(replace(:'body', '1000', '9000'), 'UTF8'))) AS tampered;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'cfg', 'evt_2', 'payment_approved',
    '{}', convert_to(:'body', 'UTF8'))) AS unsigned;
-- an event type the configuration does not subscribe to is not recorded
SELECT record_webhook_event(:'cfg', 'evt_3', 'dispute_opened',
    jsonb_build_object('Cko-Signature', encode(hmac('{}', 'whsec_cko_123', 'sha256'), 'hex')), convert_to('{}', 'UTF8'), NULL) IS NULL AS ignored;

-- Stripe-style: t=...,v1=... over "t.body", with a tolerance
SELECT extract(epoch FROM now())::bigint AS now_t \gset
SELECT record_webhook_event(:'scfg', 'evt_s1', 'charge.succeeded',
    jsonb_build_object('Stripe-Signature', format('t=%s,v1=%s', :now_t, encode(hmac(:'now_t' || '.' || '{"id":"evt_s1"}', 'whsec_stripe', 'sha256'), 'hex'))),
    convert_to('{"id":"evt_s1"}', 'UTF8'), 'r2://webhooks/evt_s1.json') IS NOT NULL AS stripe_accepted;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'scfg', 'evt_s2', 'charge.succeeded',
    jsonb_build_object('Stripe-Signature', format('t=%s,v1=%s', :now_t - 3600, encode(hmac((:now_t - 3600)::text || '.' || '{}', 'whsec_stripe', 'sha256'), 'hex'))),
    convert_to('{}', 'UTF8'))) AS stripe_stale;

-- A signed body is not recorded again under another event id (our event id
-- is not covered by the signature): within the signed timestamp's tolerance
-- for Stripe, for ever for schemes that sign only the body.
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'cfg', 'evt_1_again', 'payment_approved',
    jsonb_build_object('Cko-Signature', encode(hmac(:'body', 'whsec_cko_123', 'sha256'), 'hex')),
    convert_to(:'body', 'UTF8'))) AS body_under_new_id;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'scfg', 'evt_s1_again', 'charge.succeeded',
    jsonb_build_object('Stripe-Signature', format('t=%s,v1=%s', :now_t, encode(hmac(:'now_t' || '.' || '{"id":"evt_s1"}', 'whsec_stripe', 'sha256'), 'hex'))),
    convert_to('{"id":"evt_s1"}', 'UTF8'))) AS stripe_body_under_new_id;

-- HS256 JWTs (Tamara): alg must be HS256, exp and iat are enforced, and a
-- token is accepted once per configuration.
SELECT create_integration('09000000-0000-4000-8000-000000000001', 'tamara', 'Live', 'bearer_token', p_api_key => 'tamara_api') AS tam \gset
SELECT set_webhook_config(:'tam', 'tamara_notification_token') AS tcfg \gset
CREATE FUNCTION pg_temp.b64url(t text) RETURNS text LANGUAGE sql AS
    $$ SELECT rtrim(translate(replace(encode(convert_to(t, 'UTF8'), 'base64'), E'\n', ''), '+/', '-_'), '=') $$;
CREATE FUNCTION pg_temp.jwt(header text, payload text, secret text) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.b64url(header) || '.' || pg_temp.b64url(payload) || '.' ||
           rtrim(translate(encode(hmac(pg_temp.b64url(header) || '.' || pg_temp.b64url(payload), secret, 'sha256'), 'base64'), '+/', '-_'), '=')
$$;
SELECT pg_temp.jwt('{"alg":"HS256","typ":"JWT"}', format('{"iss":"Tamara","iat":%s,"exp":%s}', :now_t, :now_t + 900),
                   'tamara_notification_token') AS token \gset
SELECT record_webhook_event(:'tcfg', 'order_1', 'order_approved', jsonb_build_object('tamaraToken', 'Bearer ' || :'token'),
    convert_to('{"order_id":"order_1"}', 'UTF8'), NULL) AS tev \gset
SELECT record_webhook_event(:'tcfg', 'order_1', 'order_approved', jsonb_build_object('tamaraToken', 'Bearer ' || :'token'),
    convert_to('{"order_id":"order_1"}', 'UTF8'), NULL) = :'tev' AS same_delivery_again;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'tcfg', 'order_2', 'order_approved',
    jsonb_build_object('tamaraToken', 'Bearer ' || :'token'), convert_to('{"order_id":"order_2"}', 'UTF8'))) AS token_for_another_event;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'tcfg', 'order_3', 'order_approved',
    jsonb_build_object('tamaraToken', pg_temp.jwt('{"alg":"HS256","typ":"JWT"}', '{"iss":"Tamara","iat":0,"exp":60}', 'tamara_notification_token')),
    convert_to('{"order_id":"order_3"}', 'UTF8'))) AS expired_in_1970;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'tcfg', 'order_4', 'order_approved',
    jsonb_build_object('tamaraToken', pg_temp.b64url('{"alg":"none"}') || '.' || pg_temp.b64url(format('{"exp":%s}', :now_t + 900)) || '.'),
    convert_to('{"order_id":"order_4"}', 'UTF8'))) AS alg_none;
SELECT try(format('SELECT record_webhook_event(%L, %L, %L, %L, %L, NULL)', :'tcfg', 'order_5', 'order_approved',
    jsonb_build_object('tamaraToken', pg_temp.jwt('{"alg":"HS256"}', format('{"iss":"Tamara","iat":%s}', :now_t), 'tamara_notification_token')),
    convert_to('{"order_id":"order_5"}', 'UTF8'))) AS no_exp;
SELECT delete_integration(:'tam');

-- only the webhook receiver records events
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub":"a0000000-0000-4000-8000-00000000000a","role":"authenticated"}', true) \g /dev/null
SET LOCAL ROLE authenticated;
SELECT try(format('SELECT record_webhook_event(%L, %L, NULL, %L, %L, NULL)', :'cfg', 'evt_x', '{}', '\x00')) AS owner_records;
ROLLBACK;

-- workers claim, fail and retry, then finish
SET ROLE service_role;
SELECT count(*) AS claimed FROM claim_integration_events(10);
SELECT count(*) AS nothing_left FROM claim_integration_events(10);
SELECT complete_integration_event(:'ev', false, 'timeout calling https://api.example.com/x?api_key=k1');
SELECT status, attempts, next_attempt_at > now() + interval '1 minute' AS backed_off, last_error FROM integration_events WHERE id = :'ev';
RESET ROLE;
UPDATE integration_events SET next_attempt_at = now() - interval '1 second' WHERE id = :'ev';
SET ROLE service_role;
SELECT id = :'ev' AS retried, attempts FROM claim_integration_events(1);
SELECT complete_integration_event(:'ev', true);
SELECT status, processed_at IS NOT NULL AS processed, last_error FROM integration_events WHERE id = :'ev';
SELECT try(format('SELECT complete_integration_event(%L, true)', :'ev')) AS not_claimed;
RESET ROLE;
-- five failed attempts: dead
UPDATE integration_events SET status = 'processing', attempts = 5 WHERE provider_event_id = 'evt_s1';
SELECT complete_integration_event(id, false, 'gave up') FROM integration_events WHERE provider_event_id = 'evt_s1';
SELECT status FROM integration_events WHERE provider_event_id = 'evt_s1';

-- who read a body, and why
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub":"a0000000-0000-4000-8000-00000000000a","role":"authenticated"}', true) \g /dev/null
SET LOCAL ROLE authenticated;
SELECT log_webhook_body_access(:'ev', 'checking a disputed refund') IS NOT NULL AS logged;
SELECT try(format('SELECT log_webhook_body_access(%L, %L)', :'ev', '  ')) AS no_purpose;
COMMIT;
SELECT accessed_by_user = 'a0000000-0000-4000-8000-00000000000a' AS by_owner, accessed_by_role, purpose FROM webhook_access_logs;

-- deleting the connection deletes its configuration, events, access logs and signing secret
SELECT delete_integration(:'cko');
SELECT (SELECT count(*) FROM integration_webhook_configs WHERE integration_id = :'cko') AS configs,
       (SELECT count(*) FROM integration_events WHERE integration_id = :'cko') AS events,
       (SELECT count(*) FROM webhook_access_logs) AS access_logs,
       (SELECT count(*) FROM integrations.secrets WHERE description = 'webhook signing secret') AS signing_secrets;
SELECT delete_integration(:'stripe'), delete_integration(:'tap');
DELETE FROM integrations.business_members WHERE business_id = '09000000-0000-4000-8000-000000000001';
DROP FUNCTION try(text, text), act_as(text, text);
