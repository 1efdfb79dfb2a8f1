-- Provider registry at 1,000 providers: get_payment_providers_by_capability
-- next to its floor (the same query written by hand), in the same run. Not a test.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION pg_integrations;

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

CREATE FUNCTION bench_loop(op text, n integer) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    countries text[] := ARRAY['SA', 'KW', 'EG', 'AE', NULL];
    t0 timestamptz;
    i integer;
    c bigint;
BEGIN
    t0 := clock_timestamp();
    CASE op
    WHEN 'get_payment_providers_by_capability' THEN FOR i IN 1..n LOOP
        SELECT count(*) INTO c FROM get_payment_providers_by_capability('recurring', countries[1 + i % 5]); END LOOP;
    WHEN 'floor' THEN FOR i IN 1..n LOOP
        SELECT count(*) INTO c FROM (SELECT p.* FROM integration_providers p
            WHERE p.status = 'active' AND p.payment_capabilities @> ARRAY['recurring']
              AND (countries[1 + i % 5] IS NULL OR p.supported_countries @> ARRAY[countries[1 + i % 5]])
            ORDER BY p.is_mena_provider DESC, p.sort_order, p.provider) q; END LOOP;
    END CASE;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;

CREATE TEMP TABLE samples (op text, round int, us double precision);
SELECT format('INSERT INTO samples SELECT %L, %s, bench_loop(%L, 300)', op, r, op)
FROM generate_series(0, 9) r, unnest(ARRAY['floor', 'get_payment_providers_by_capability']) op
ORDER BY r \gexec
DELETE FROM samples WHERE round = 0;

WITH per_round AS (
    SELECT a.us AS rpc_us, f.us AS floor_us, a.us / f.us AS ratio
    FROM samples a JOIN samples f ON f.op = 'floor' AND f.round = a.round
    WHERE a.op = 'get_payment_providers_by_capability'
)
SELECT 'get_payment_providers_by_capability' AS rpc,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY rpc_us)::numeric, 2) AS rpc_us_per_call,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY floor_us)::numeric, 2) AS floor_us_per_call,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ratio)::numeric, 2) AS ratio
FROM per_round;
