-- The integration platform's hot RPCs next to their floors, in the same run:
-- get_payment_providers_by_capability at 1,000 providers (floor: the same query
-- by hand), record_webhook_event (floor: the INSERT of the same event row),
-- record_integration_metric (floor: the same hourly upsert) and
-- update_integration_health (floor: the same UPDATE). Not a test.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION pg_integrations;
CREATE EXTENSION pgcrypto;

-- ~970 synthetic providers next to the built-in ones, one statement
INSERT INTO integration_providers (provider, display_name, category, is_mena_provider, primary_locale,
                                   supported_countries, supported_currencies, payment_capabilities, sort_order)
SELECT 'bench_' || g, 'Bench ' || g, 'payment', g % 3 = 0, CASE WHEN g % 3 = 0 THEN 'ar' ELSE 'en' END,
       CASE g % 4 WHEN 0 THEN '{SA,AE}' WHEN 1 THEN '{KW,BH,QA}' WHEN 2 THEN '{EG,JO}' ELSE '{US,GB,DE}' END::text[],
       CASE g % 4 WHEN 0 THEN '{SAR,AED}' WHEN 1 THEN '{KWD,BHD,QAR}' WHEN 2 THEN '{EGP,JOD}' ELSE '{USD,GBP,EUR}' END::text[],
       CASE g % 5 WHEN 0 THEN '{one_time,refunds}' WHEN 1 THEN '{one_time,recurring}' WHEN 2 THEN '{bnpl}'
                  WHEN 3 THEN '{payouts,one_time}' ELSE '{refunds}' END::text[],
       g
FROM generate_series(1, 1000 - (SELECT count(*) FROM integration_providers)) g;
VACUUM ANALYZE integration_providers;
SELECT count(*) AS providers FROM integration_providers;

-- 1,000 Checkout.com connections with a webhook configuration each
SELECT count(create_integration(gen_random_uuid(), 'checkout_com', 'Live', 'bearer_token', p_api_key => 'sk_' || g))
FROM generate_series(1, 1000) g \g /dev/null
SELECT count(set_webhook_config(id, 'whsec_bench')) FROM integration_connections \g /dev/null
CREATE TABLE floor_events (LIKE integration_events INCLUDING ALL);
CREATE TABLE floor_metrics (LIKE integration_metrics_hourly INCLUDING ALL);
CREATE TABLE floor_connections (LIKE integration_connections INCLUDING ALL);
INSERT INTO floor_connections SELECT * FROM integration_connections;
VACUUM ANALYZE;

CREATE FUNCTION bench_loop(op text, n integer) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    countries text[] := ARRAY['SA', 'KW', 'EG', 'AE', NULL];
    conns uuid[] := ARRAY(SELECT id FROM integration_connections ORDER BY random() LIMIT n);
    cfgs uuid[] := ARRAY(SELECT w.id FROM integration_webhook_configs w ORDER BY random() LIMIT n);
    -- a body (and its signature) per call: a signed body is recorded once
    bodies bytea[] := ARRAY(SELECT convert_to(format('{"id":"%s","type":"payment_approved","data":{"amount":1000}}',
                                                     gen_random_uuid()), 'UTF8') FROM generate_series(1, n));
    hdrs jsonb[] := ARRAY(SELECT jsonb_build_object('Cko-Signature', encode(hmac(b, 'whsec_bench'::bytea, 'sha256'), 'hex'))
                          FROM unnest(bodies) WITH ORDINALITY AS u (b, k) ORDER BY k);
    t0 timestamptz;
    i integer;
    c bigint;
    v text;
BEGIN
    t0 := clock_timestamp();
    CASE op
    WHEN 'get_payment_providers_by_capability' THEN FOR i IN 1..n LOOP
        SELECT count(*) INTO c FROM get_payment_providers_by_capability('recurring', countries[1 + i % 5]); END LOOP;
    WHEN 'floor_providers' THEN FOR i IN 1..n LOOP
        SELECT count(*) INTO c FROM (SELECT p.* FROM integration_providers p
            WHERE p.status = 'active' AND p.payment_capabilities @> ARRAY['recurring']
              AND (countries[1 + i % 5] IS NULL OR p.supported_countries @> ARRAY[countries[1 + i % 5]])
            ORDER BY p.is_mena_provider DESC, p.sort_order, p.provider) q; END LOOP;
    WHEN 'record_webhook_event' THEN FOR i IN 1..n LOOP
        v := record_webhook_event(cfgs[i], gen_random_uuid()::text, 'payment_approved', hdrs[i], bodies[i], 'r2://b/k'); END LOOP;
    WHEN 'floor_webhook' THEN FOR i IN 1..n LOOP
        INSERT INTO floor_events (config_id, integration_id, business_id, provider_event_id, event_type, headers, body_sha256, body_object_key)
        VALUES (cfgs[i], conns[i], conns[i], gen_random_uuid()::text, 'payment_approved', '{}', sha256(bodies[i]), 'r2://b/k')
        ON CONFLICT (config_id, provider_event_id) DO NOTHING; END LOOP;
    WHEN 'record_integration_metric' THEN FOR i IN 1..n LOOP
        PERFORM record_integration_metric(conns[i], i % 10 <> 0, 100 + i % 50); END LOOP;
    WHEN 'floor_metric' THEN FOR i IN 1..n LOOP
        INSERT INTO floor_metrics AS m (integration_id, business_id, hour, calls, errors, total_latency_ms, max_latency_ms)
        VALUES (conns[i], conns[i], date_trunc('hour', now()), 1, CASE WHEN i % 10 <> 0 THEN 0 ELSE 1 END, 100 + i % 50, 100 + i % 50)
        ON CONFLICT (integration_id, hour) DO UPDATE SET calls = m.calls + 1, errors = m.errors + EXCLUDED.errors,
            total_latency_ms = m.total_latency_ms + EXCLUDED.total_latency_ms,
            max_latency_ms = GREATEST(m.max_latency_ms, EXCLUDED.max_latency_ms); END LOOP;
    WHEN 'update_integration_health' THEN FOR i IN 1..n LOOP
        PERFORM update_integration_health(conns[i], true, NULL, 100 + i % 50); END LOOP;
    WHEN 'floor_health' THEN FOR i IN 1..n LOOP
        UPDATE floor_connections SET last_tested_at = now(), last_success_at = now(), consecutive_failures = 0,
            error_message = NULL, last_response_time_ms = 100 + i % 50 WHERE id = conns[i]; END LOOP;
    END CASE;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;

CREATE TABLE pairs (rpc text, floor text);
INSERT INTO pairs VALUES ('get_payment_providers_by_capability', 'floor_providers'),
    ('record_webhook_event', 'floor_webhook'), ('record_integration_metric', 'floor_metric'),
    ('update_integration_health', 'floor_health');
CREATE TEMP TABLE samples (op text, round int, us double precision);
SELECT format('INSERT INTO samples SELECT %L, %s, bench_loop(%L, 300)', op, r, op)
FROM generate_series(0, 9) r, pairs p, LATERAL (VALUES (p.rpc), (p.floor)) o(op)
ORDER BY r, p.rpc, op \gexec
DELETE FROM samples WHERE round = 0;

WITH per_round AS (
    SELECT p.rpc, a.us AS rpc_us, f.us AS floor_us, a.us / f.us AS ratio
    FROM pairs p JOIN samples a ON a.op = p.rpc JOIN samples f ON f.op = p.floor AND f.round = a.round
)
SELECT rpc,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY rpc_us)::numeric, 2) AS rpc_us_per_call,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY floor_us)::numeric, 2) AS floor_us_per_call,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ratio)::numeric, 2) AS ratio
FROM per_round GROUP BY rpc ORDER BY rpc;
