-- Operator checks and housekeeping (0.2.0). The upgrade script
-- pg_integrations--0.1.0--0.2.0.sql creates the same objects.

CREATE FUNCTION integrations.verify_secrets()
RETURNS TABLE (checked bigint, failed bigint, failed_ids uuid[])
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_verify_secrets';
COMMENT ON FUNCTION integrations.verify_secrets() IS
    'Opens every stored secret with the configured keys (nothing is returned or kept) and reports how many were checked, how many failed authentication and the ids of up to 100 of those. Run it after a restore, a crash or a key rotation. 55000 if the master key is missing or wrong. Privileged callers only.';

CREATE FUNCTION integrations.purge_audit_log(p_keep_days integer DEFAULT 365)
RETURNS bigint LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_purge_audit_log';
COMMENT ON FUNCTION integrations.purge_audit_log(integer) IS
    'Retention for the audit trail: deletes the integrations.audit_log rows older than p_keep_days days (1 to 36500) and returns how many. integrations_admin and superusers only.';

REVOKE ALL ON FUNCTION integrations.verify_secrets(), integrations.purge_audit_log(integer)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.verify_secrets() TO service_role, integrations_admin;
-- Not service_role: the key every back end holds must not be able to erase the trail.
GRANT EXECUTE ON FUNCTION integrations.purge_audit_log(integer) TO integrations_admin;
