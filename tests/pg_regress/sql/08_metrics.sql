-- API call logs (redacted, partitioned by day) and the hourly metrics.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql
INSERT INTO integrations.business_members VALUES
    ('0f000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'owner');
SELECT create_integration('0f000000-0000-4000-8000-000000000001', 'stripe', 'Live', 'api_key', p_api_key => 'sk_live_metrics') AS conn \gset

-- today's and the coming days' partitions
SELECT integrations.create_api_log_partitions(3) AS created, integrations.create_api_log_partitions(3) AS again;
SELECT count(*) AS daily_partitions FROM pg_inherits WHERE inhparent = 'integration_api_logs'::regclass
  AND inhrelid::regclass::text ~ '^integration_api_logs_[0-9]{8}$';

-- credentials never reach the log
SELECT log_integration_api_call(:'conn', 'get', 'https://user:pw@api.stripe.com/v1/charges?limit=3&api_key=sk_live_metrics', 200, 120);
SELECT log_integration_api_call(:'conn', 'POST', 'https://api.stripe.com/v1/refunds?access_token=tok_1#sig=abc', 402, 300,
                                'Authorization: Bearer sk_live_metrics rejected; client_secret=cs_9 invalid');
SELECT method, url, status, latency_ms, error, tableoid::regclass::text ~ '_[0-9]{8}$' AS in_daily_partition
FROM integration_api_logs ORDER BY logged_at, status;
SELECT count(*) AS rows_with_a_secret FROM integration_api_logs l
WHERE l::text ~ '(sk_live_metrics|tok_1|cs_9|pw@|=abc)';

-- metrics: API calls, explicit metrics and health checks roll up by hour
SELECT record_integration_metric(:'conn', true, 80), record_integration_metric(:'conn', false, 900);
SELECT update_integration_health(:'conn', true, NULL, 50);
-- (summed: a run that straddles an hour boundary has two rows)
SELECT sum(calls) AS calls, sum(errors) AS errors, sum(total_latency_ms) AS total_latency_ms,
       max(max_latency_ms) AS max_latency_ms, bool_and(hour = date_trunc('hour', hour)) AS whole_hours
FROM integration_metrics_hourly WHERE integration_id = :'conn';

-- bad input and callers
SELECT try(format('SELECT log_integration_api_call(%L, %L, %L, 200, 1)', :'conn', 'FETCH', 'https://x.example.com'));
SELECT try(format('SELECT log_integration_api_call(%L, %L, %L, 999, 1)', :'conn', 'GET', 'https://x.example.com'));
SELECT try(format('SELECT record_integration_metric(%L, true, -1)', :'conn'));
SELECT try($$SELECT record_integration_metric('00000000-0000-4000-8000-000000000404', true, 1)$$);
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub":"b0000000-0000-4000-8000-00000000000b","role":"authenticated"}', true) \g /dev/null
SET LOCAL ROLE authenticated;
-- another tenant's connection: the same answer as an unknown id
SELECT try(format('SELECT record_integration_metric(%L, true, 1)', :'conn'), :'conn') AS other_user;
SELECT count(*) AS other_user_sees FROM integration_api_logs;
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub":"a0000000-0000-4000-8000-00000000000a","role":"authenticated"}', true) \g /dev/null
SET LOCAL ROLE authenticated;
SELECT count(*) AS owner_sees FROM integration_api_logs;
SELECT try('SELECT integrations.drop_old_api_logs()') AS owner_drops;
ROLLBACK;

-- retention drops whole days
CREATE TABLE integration_api_logs_20200101 PARTITION OF integration_api_logs FOR VALUES FROM ('2020-01-01') TO ('2020-01-02');
INSERT INTO integration_api_logs (logged_at, integration_id, business_id, method, url)
VALUES ('2020-01-01 12:00', :'conn', '0f000000-0000-4000-8000-000000000001', 'GET', 'https://old.example.com');
SELECT integrations.drop_old_api_logs(30) AS dropped_partitions;
SELECT to_regclass('integration_api_logs_20200101') IS NULL AS old_day_gone, count(*) AS rows_left FROM integration_api_logs;

-- deleting the connection deletes its logs and metrics
SELECT delete_integration(:'conn');
SELECT (SELECT count(*) FROM integration_api_logs) AS logs, (SELECT count(*) FROM integration_metrics_hourly) AS metrics;
DELETE FROM integrations.business_members WHERE business_id = '0f000000-0000-4000-8000-000000000001';
DROP FUNCTION try(text, text), act_as(text, text);
