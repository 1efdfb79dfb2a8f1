-- Seed-compatible RPCs at 20,000 businesses: per-call server-side cost of each
-- set_*, get_* and get_*_secret next to its floor, in the same run, as ratios.
-- Callers as in production: get_* and set_* as the signed-in owner (role
-- authenticated, JWT claims, ownership checked against the tenant table),
-- get_*_secret as service_role. Not a test.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION pg_integrations;

CREATE TABLE businesses (id uuid PRIMARY KEY, profile_id uuid NOT NULL, name text);
INSERT INTO businesses SELECT gen_random_uuid(), 'a0000000-0000-4000-8000-00000000000a', 'b' || g FROM generate_series(1, 20000) g;
SELECT integrations.attach_tenant_table('businesses') \g /dev/null
GRANT SELECT ON businesses TO authenticated;

-- one statement per kind loads 20,000 integrations with their secrets
SELECT count(set_ai_avatar_integration(id, 'heygen', 'hg_' || md5(id::text), 'avatar', 'voice')) AS ai FROM businesses \g /dev/null
SELECT count(set_email_integration(id, 'brevo', 'xkeysib-' || md5(id::text), 'Sender', 'news@example.com')) AS email FROM businesses \g /dev/null
SELECT count(set_blog_integration(id, 'wordpress', 'wp_' || md5(id::text), 'https://blog.example.com', 'editor')) AS blog FROM businesses \g /dev/null

-- Floors: copies of the tables with the same rows and indexes, no extension in the way.
CREATE TABLE floor_ai_avatar (LIKE ai_avatar_integrations INCLUDING ALL);
INSERT INTO floor_ai_avatar SELECT * FROM ai_avatar_integrations;
CREATE TABLE floor_email (LIKE email_integrations INCLUDING ALL);
INSERT INTO floor_email SELECT * FROM email_integrations;
CREATE TABLE floor_blog (LIKE blog_integrations INCLUDING ALL);
INSERT INTO floor_blog SELECT * FROM blog_integrations;
GRANT SELECT, INSERT, UPDATE ON floor_ai_avatar, floor_email, floor_blog TO authenticated, service_role;
VACUUM ANALYZE;

CREATE FUNCTION bench_loop(op text, n integer) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[] := ARRAY(SELECT id FROM businesses ORDER BY random() LIMIT n);
    t0 timestamptz;
    i integer;
    v text;
    r record;
BEGIN
    t0 := clock_timestamp();
    CASE op
    WHEN 'get_ai_avatar_integration' THEN FOR i IN 1..n LOOP SELECT * INTO r FROM get_ai_avatar_integration(ids[i]); END LOOP;
    WHEN 'get_email_integration' THEN FOR i IN 1..n LOOP SELECT * INTO r FROM get_email_integration(ids[i]); END LOOP;
    WHEN 'get_blog_integration' THEN FOR i IN 1..n LOOP SELECT * INTO r FROM get_blog_integration(ids[i]); END LOOP;
    WHEN 'floor_get_ai_avatar' THEN FOR i IN 1..n LOOP
        SELECT id, provider, avatar_id, voice_id, provider_config, status, validated_at INTO r
        FROM floor_ai_avatar WHERE business_id = ids[i] AND status = 'active' LIMIT 1; END LOOP;
    WHEN 'floor_get_email' THEN FOR i IN 1..n LOOP
        SELECT id, provider, sender_name, sender_email, provider_config, status, validated_at INTO r
        FROM floor_email WHERE business_id = ids[i] AND status = 'active' LIMIT 1; END LOOP;
    WHEN 'floor_get_blog' THEN FOR i IN 1..n LOOP
        SELECT id, provider, site_url, username, provider_config, status, validated_at INTO r
        FROM floor_blog WHERE business_id = ids[i] AND status = 'active' LIMIT 1; END LOOP;
    WHEN 'get_ai_avatar_secret' THEN FOR i IN 1..n LOOP v := get_ai_avatar_secret(ids[i]); END LOOP;
    WHEN 'get_email_secret' THEN FOR i IN 1..n LOOP v := get_email_secret(ids[i]); END LOOP;
    WHEN 'get_blog_secret' THEN FOR i IN 1..n LOOP v := get_blog_secret(ids[i]); END LOOP;
    WHEN 'floor_secret_ai_avatar' THEN FOR i IN 1..n LOOP
        SELECT secret_id INTO v FROM floor_ai_avatar WHERE business_id = ids[i] AND status = 'active' LIMIT 1; END LOOP;
    WHEN 'floor_secret_email' THEN FOR i IN 1..n LOOP
        SELECT secret_id INTO v FROM floor_email WHERE business_id = ids[i] AND status = 'active' LIMIT 1; END LOOP;
    WHEN 'floor_secret_blog' THEN FOR i IN 1..n LOOP
        SELECT secret_id INTO v FROM floor_blog WHERE business_id = ids[i] AND status = 'active' LIMIT 1; END LOOP;
    WHEN 'set_ai_avatar_integration' THEN FOR i IN 1..n LOOP
        v := set_ai_avatar_integration(ids[i], 'heygen', 'hg_rotated_0123456789abcdef', 'avatar-2', NULL); END LOOP;
    WHEN 'set_email_integration' THEN FOR i IN 1..n LOOP
        v := set_email_integration(ids[i], 'brevo', 'xkeysib-rotated-0123456789abcdef', 'Sender 2', NULL); END LOOP;
    WHEN 'set_blog_integration' THEN FOR i IN 1..n LOOP
        v := set_blog_integration(ids[i], 'wordpress', 'wp_rotated_0123456789abcdef', NULL, 'editor-2'); END LOOP;
    WHEN 'floor_set_ai_avatar' THEN FOR i IN 1..n LOOP
        INSERT INTO floor_ai_avatar (business_id, provider, avatar_id, voice_id, provider_config, status, validated_at)
        VALUES (ids[i], 'heygen', 'avatar-2', NULL, '{}', 'active', now())
        ON CONFLICT (business_id, provider) DO UPDATE SET avatar_id = COALESCE(EXCLUDED.avatar_id, floor_ai_avatar.avatar_id),
            voice_id = COALESCE(EXCLUDED.voice_id, floor_ai_avatar.voice_id), provider_config = EXCLUDED.provider_config,
            status = 'active', validated_at = now(), updated_at = now() RETURNING id INTO v; END LOOP;
    WHEN 'floor_set_email' THEN FOR i IN 1..n LOOP
        INSERT INTO floor_email (business_id, provider, sender_name, sender_email, provider_config, status, validated_at)
        VALUES (ids[i], 'brevo', 'Sender 2', NULL, '{}', 'active', now())
        ON CONFLICT (business_id, provider) DO UPDATE SET sender_name = COALESCE(EXCLUDED.sender_name, floor_email.sender_name),
            sender_email = COALESCE(EXCLUDED.sender_email, floor_email.sender_email), provider_config = EXCLUDED.provider_config,
            status = 'active', validated_at = now(), updated_at = now() RETURNING id INTO v; END LOOP;
    WHEN 'floor_set_blog' THEN FOR i IN 1..n LOOP
        INSERT INTO floor_blog (business_id, provider, site_url, username, provider_config, status, validated_at)
        VALUES (ids[i], 'wordpress', NULL, 'editor-2', '{}', 'active', now())
        ON CONFLICT (business_id, provider) DO UPDATE SET site_url = COALESCE(EXCLUDED.site_url, floor_blog.site_url),
            username = COALESCE(EXCLUDED.username, floor_blog.username), provider_config = EXCLUDED.provider_config,
            status = 'active', validated_at = now(), updated_at = now() RETURNING id INTO v; END LOOP;
    END CASE;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;

CREATE TABLE pairs (rpc text, floor text, target numeric, caller text);
INSERT INTO pairs VALUES
    ('get_ai_avatar_integration', 'floor_get_ai_avatar', 1.5, 'authenticated'),
    ('get_email_integration', 'floor_get_email', 1.5, 'authenticated'),
    ('get_blog_integration', 'floor_get_blog', 1.5, 'authenticated'),
    ('get_ai_avatar_secret', 'floor_secret_ai_avatar', 2.0, 'service_role'),
    ('get_email_secret', 'floor_secret_email', 2.0, 'service_role'),
    ('get_blog_secret', 'floor_secret_blog', 2.0, 'service_role'),
    ('set_ai_avatar_integration', 'floor_set_ai_avatar', 2.0, 'authenticated'),
    ('set_email_integration', 'floor_set_email', 2.0, 'authenticated'),
    ('set_blog_integration', 'floor_set_blog', 2.0, 'authenticated');
CREATE TABLE samples (op text, round int, us double precision);
GRANT INSERT ON samples TO authenticated, service_role;
GRANT SELECT ON businesses TO service_role;

-- Each sample is its own transaction, as the caller PostgREST would switch to;
-- an RPC and its floor run back to back in every round.
SELECT format($f$BEGIN; SET LOCAL request.jwt.claims = '{"sub":"a0000000-0000-4000-8000-00000000000a","role":%1$s}'; SET LOCAL ROLE %2$I;
               INSERT INTO samples SELECT %3$L, %4$s, bench_loop(%3$L, 1000); COMMIT;$f$,
              to_json(p.caller)::text, p.caller, op, r)
FROM generate_series(0, 11) r, pairs p, LATERAL (VALUES (p.rpc), (p.floor)) o(op)
ORDER BY r, p.rpc, op \gexec
DELETE FROM samples WHERE round = 0;  -- warm-up

WITH per_round AS (
    SELECT p.rpc, p.floor, p.target, a.us AS rpc_us, f.us AS floor_us, a.us / f.us AS ratio
    FROM pairs p
    JOIN samples a ON a.op = p.rpc
    JOIN samples f ON f.op = p.floor AND f.round = a.round
)
SELECT rpc,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY rpc_us)::numeric, 2) AS rpc_us_per_call,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY floor_us)::numeric, 2) AS floor_us_per_call,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ratio)::numeric, 2) AS ratio,
       target,
       CASE WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY ratio) <= target THEN 'met' ELSE 'MISSED' END AS verdict
FROM per_round GROUP BY rpc, target ORDER BY rpc;
