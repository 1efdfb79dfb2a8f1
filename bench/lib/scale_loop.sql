-- scale_loop(op, n): µs per call of RPC `op` over n random businesses, called
-- as its production caller (the owner for get/set, service_role for secrets
-- and workers). Loaded into each database of bench/scale.sh.
--
-- scale_touch(): reads every page of the tables and indexes once in this
-- backend. A backend maps each page of shared buffers on first touch (a page
-- fault); a pooled connection (PostgREST's) has long done that, so the
-- measuring session does it first instead of charging it to the first probes
-- of a big index, which would measure a cold process, not the RPC.
CREATE EXTENSION IF NOT EXISTS pageinspect;
CREATE FUNCTION scale_touch() RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(length(get_raw_page(c.oid::regclass::text, b::integer)))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         generate_series(0, pg_relation_size(c.oid) / 8192 - 1) b
    WHERE n.nspname IN ('public', 'integrations') AND c.relkind IN ('r', 'i')
$$;
CREATE FUNCTION scale_loop(op text, n integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    total integer := (SELECT max(b.n) FROM businesses b);
    biz uuid[];
    conn uuid[];
    sec uuid[];
    t0 timestamptz;
    i integer;
    v text;
    j jsonb;
    r record;
    k bigint;
BEGIN
    SELECT array_agg(b.id), array_agg(c.id), array_agg(a.secret_id) INTO biz, conn, sec
    FROM (SELECT 1 + floor(random() * total)::integer AS k FROM generate_series(1, n)) x
    JOIN businesses b ON b.n = x.k
    JOIN integration_connections c ON c.business_id = b.id
    JOIN ai_avatar_integrations a ON a.business_id = b.id;
    IF op LIKE 'floor_%' THEN
        NULL;  -- as the table owner: no RLS, no extension
    ELSIF op IN ('get_ai_avatar_integration', 'set_ai_avatar_integration', 'get_integration',
              'get_payment_providers_by_capability') THEN
        PERFORM set_config('request.jwt.claims', '{"sub":"a0000000-0000-4000-8000-00000000000a","role":"authenticated"}', true);
        PERFORM set_config('role', 'authenticated', true);
    ELSE
        PERFORM set_config('role', 'service_role', true);
    END IF;
    t0 := clock_timestamp();
    CASE op
    WHEN 'floor_avatar_row' THEN FOR i IN 1..n LOOP
        SELECT a.id, a.provider, a.avatar_id, a.voice_id, a.provider_config, a.status, a.validated_at INTO r
        FROM ai_avatar_integrations a WHERE a.business_id = biz[i] AND a.status = 'active' LIMIT 1; END LOOP;
    WHEN 'floor_secret_row' THEN FOR i IN 1..n LOOP
        SELECT s.ciphertext INTO v FROM integrations.secrets s WHERE s.id = sec[i]; END LOOP;
    WHEN 'get_ai_avatar_integration' THEN FOR i IN 1..n LOOP SELECT * INTO r FROM get_ai_avatar_integration(biz[i]); END LOOP;
    WHEN 'get_ai_avatar_secret' THEN FOR i IN 1..n LOOP v := get_ai_avatar_secret(biz[i]); END LOOP;
    WHEN 'set_ai_avatar_integration' THEN FOR i IN 1..n LOOP
        v := set_ai_avatar_integration(biz[i], 'heygen', 'hg_rotated_0123456789abcdef', 'avatar-2'); END LOOP;
    WHEN 'read_secret' THEN FOR i IN 1..n LOOP v := integrations.read_secret(sec[i]); END LOOP;
    WHEN 'get_integration' THEN FOR i IN 1..n LOOP j := get_integration(conn[i]); END LOOP;
    WHEN 'get_integration_credentials' THEN FOR i IN 1..n LOOP j := get_integration_credentials(conn[i]); END LOOP;
    WHEN 'update_integration_health' THEN FOR i IN 1..n LOOP PERFORM update_integration_health(conn[i], true, NULL, 100); END LOOP;
    WHEN 'get_payment_providers_by_capability' THEN FOR i IN 1..n LOOP
        SELECT count(*) INTO k FROM get_payment_providers_by_capability('one_time', 'AE'); END LOOP;
    END CASE;
    RETURN round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1e6 / n, 2);
END $$;
