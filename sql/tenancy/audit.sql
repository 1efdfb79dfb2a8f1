-- How secret reads are audited (0.4.0). The upgrade script
-- pg_integrations--0.3.0--0.4.0.sql creates the same objects.

CREATE FUNCTION integrations.audit_status() RETURNS jsonb
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_audit_status';
COMMENT ON FUNCTION integrations.audit_status() IS
    'How secret reads are audited: mode "queued" (pg_integrations is in shared_preload_libraries: a read queues its audit record in shared memory and a background writer commits the queue to integrations.audit_log every integrations.audit_flush_interval, so reads do not write and work in read-only transactions) or "in_transaction" (each read appends its row in the caller''s transaction). In queued mode also this database''s queue: capacity, queued, queued_total, written_total, full_waits, writer, writer_pid. Privileged callers only.';

CREATE FUNCTION integrations.flush_audit_log(p_timeout_ms integer DEFAULT 5000) RETURNS boolean
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_flush_audit_log';
COMMENT ON FUNCTION integrations.flush_audit_log(integer) IS
    'Waits until every secret read queued in this database before the call is committed to integrations.audit_log; true when done, false if p_timeout_ms (0 to 600000) passed first. Immediately true in "in_transaction" mode. For back ends and operators that read the audit log right after reads.';

REVOKE ALL ON FUNCTION integrations.audit_status(), integrations.flush_audit_log(integer)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.audit_status(), integrations.flush_audit_log(integer)
    TO service_role, integrations_admin;
