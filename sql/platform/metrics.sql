-- pg_integrations: API call logs and hourly metrics (seed 003).

-- Partitioned by day: retention drops whole days. The default partition takes
-- the days nobody created a partition for; integrations.create_api_log_partitions()
-- (run it daily, e.g. from pg_cron) creates the coming days'.
CREATE TABLE public.integration_api_logs (
    logged_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- No foreign key: the daily partitions made at run time are ordinary tables
    -- to pg_dump, restored before the connections they would point to. A
    -- trigger on integration_connections deletes a connection's logs instead.
    integration_id uuid NOT NULL,
    business_id    uuid NOT NULL,
    method         text NOT NULL,
    url            text NOT NULL,
    status         integer,
    latency_ms     integer,
    error          text
) PARTITION BY RANGE (logged_at);
COMMENT ON TABLE public.integration_api_logs IS
    'Calls made to providers, for debugging: method, URL and error text with credentials redacted, status, latency. Partitioned by day.';
CREATE TABLE public.integration_api_logs_default PARTITION OF public.integration_api_logs DEFAULT;
-- Indexes per partition, not on the parent: pg_dump restores the run-time
-- partitions as ordinary tables attached to the parent, and a partitioned index
-- would make their own index definitions collide on restore.
CREATE INDEX integration_api_logs_default_integration_idx ON public.integration_api_logs_default (integration_id, logged_at);
CREATE INDEX integration_api_logs_default_business_idx ON public.integration_api_logs_default (business_id);
-- Partitions are read through the parent (its row level security and
-- grants); nobody reads a partition directly.
REVOKE ALL ON public.integration_api_logs_default FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION integrations.delete_connection_logs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM public.integration_api_logs l USING gone g WHERE l.integration_id = g.id;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION integrations.delete_connection_logs() IS
    'AFTER DELETE statement trigger on integration_connections: deletes the API call logs of the deleted connections.';
REVOKE ALL ON FUNCTION integrations.delete_connection_logs() FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER integration_connections_delete_logs AFTER DELETE ON public.integration_connections
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION integrations.delete_connection_logs();
SELECT pg_catalog.pg_extension_config_dump('public.integration_api_logs_default', '');

CREATE TABLE public.integration_metrics_hourly (
    integration_id   uuid NOT NULL REFERENCES public.integration_connections (id) ON DELETE CASCADE,
    business_id      uuid NOT NULL,
    hour             timestamptz NOT NULL,
    calls            bigint NOT NULL DEFAULT 0,
    errors           bigint NOT NULL DEFAULT 0,
    total_latency_ms bigint NOT NULL DEFAULT 0,
    max_latency_ms   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (integration_id, hour)
);
COMMENT ON TABLE public.integration_metrics_hourly IS
    'Hourly rollup per connection: calls, errors, total and maximum latency (average = total_latency_ms / calls). Fed by record_integration_metric, log_integration_api_call and update_integration_health.';
CREATE INDEX integration_metrics_hourly_business_idx ON public.integration_metrics_hourly (business_id, hour);
SELECT pg_catalog.pg_extension_config_dump('public.integration_metrics_hourly', '');

SELECT integrations.install_tenant_table('integration_api_logs', p_dump => false);
SELECT integrations.install_tenant_table('integration_metrics_hourly', p_dump => false);

CREATE FUNCTION public.record_integration_metric(p_integration_id uuid, p_success boolean, p_latency_ms integer)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_record_integration_metric';
COMMENT ON FUNCTION public.record_integration_metric(uuid, boolean, integer) IS
    'Adds one call to the connection''s rollup for the current hour (calls, errors, total and maximum latency). PT404 if there is no such connection.';

CREATE FUNCTION public.log_integration_api_call(p_integration_id uuid, p_method text, p_url text, p_status integer, p_latency_ms integer, p_error text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_log_integration_api_call';
COMMENT ON FUNCTION public.log_integration_api_call(uuid, text, text, integer, integer, text) IS
    'Logs a call to the provider: credentials in the URL (user:password@, api_key, token, access_token, signature, secret, code, ... query and fragment parameters) and in the error text (Bearer/Basic tokens, secret=value pairs) are replaced by REDACTED before anything is stored. Also counts the call in the hourly metrics (a success: status below 400 and no error).';

CREATE FUNCTION integrations.create_api_log_partitions(p_days integer DEFAULT 7)
RETURNS integer LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_create_api_log_partitions';
COMMENT ON FUNCTION integrations.create_api_log_partitions(integer) IS
    'Creates the daily partitions of integration_api_logs for today and the next p_days - 1 days that do not exist yet (and whose rows have not gone to the default partition); returns how many. Run it daily. Privileged callers.';

CREATE FUNCTION integrations.drop_old_api_logs(p_keep_days integer DEFAULT 30)
RETURNS integer LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_drop_old_api_logs';
COMMENT ON FUNCTION integrations.drop_old_api_logs(integer) IS
    'Retention: drops the daily partitions of integration_api_logs older than p_keep_days (and deletes such rows from the default partition); returns how many partitions were dropped. Privileged callers.';

REVOKE ALL ON FUNCTION public.record_integration_metric(uuid, boolean, integer),
    public.log_integration_api_call(uuid, text, text, integer, integer, text),
    integrations.create_api_log_partitions(integer), integrations.drop_old_api_logs(integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_integration_metric(uuid, boolean, integer),
    public.log_integration_api_call(uuid, text, text, integer, integer, text) TO authenticated, service_role, integrations_admin;
GRANT EXECUTE ON FUNCTION integrations.create_api_log_partitions(integer), integrations.drop_old_api_logs(integer)
    TO service_role, integrations_admin;
