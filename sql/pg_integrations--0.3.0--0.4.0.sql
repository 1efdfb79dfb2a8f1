-- pg_integrations 0.3.0 -> 0.4.0 (issue: speed at durable settings).
--
-- Secret reads are audited through a shared-memory queue and a background
-- writer when the library is in shared_preload_libraries (the reads no longer
-- write); these two functions report and wait for it. sql/tenancy/audit.sql
-- creates the same objects in a fresh install.

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

-- The hot readers no longer pin search_path in their declarations: a SET
-- clause made every call save, parse and restore the setting. Every statement
-- they run pins it (src/pg/spi.rs); their direct reads resolve no names.
ALTER FUNCTION public.get_ai_avatar_secret(uuid) RESET search_path;
ALTER FUNCTION public.get_email_secret(uuid) RESET search_path;
ALTER FUNCTION public.get_blog_secret(uuid) RESET search_path;
ALTER FUNCTION public.get_ai_avatar_integration(uuid) RESET search_path;
ALTER FUNCTION public.get_email_integration(uuid) RESET search_path;
ALTER FUNCTION public.get_blog_integration(uuid) RESET search_path;
ALTER FUNCTION integrations.read_secret(uuid) RESET search_path;

-- The secret columns lose their foreign keys to integrations.secrets: every
-- secret is written and deleted with its row by the extension itself, and the
-- nine NO ACTION checks ran nine queries for every deleted secret (a
-- delete_ai_avatar_integration call: 170 µs with them, 45 µs without).
-- integrations.delete_secret() refuses a secret still in use (23503) instead.
DO $fks$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.conrelid::regclass AS tab, c.conname
        FROM pg_catalog.pg_constraint c
        WHERE c.confrelid = 'integrations.secrets'::regclass AND c.contype = 'f'
          AND c.conrelid IN ('public.ai_avatar_integrations'::regclass, 'public.email_integrations'::regclass,
                             'public.blog_integrations'::regclass, 'public.integration_oauth_states'::regclass,
                             'public.integration_webhook_configs'::regclass, 'public.integration_connections'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tab, r.conname);
    END LOOP;
END
$fks$;

-- The kinds' AFTER DELETE trigger is C (src/kinds/mod.rs): the PL/pgSQL one
-- cost a delete_* call about 20 µs. Like every C function it decides on the
-- role that fired it, then runs as the extension's owner.
CREATE OR REPLACE FUNCTION integrations.delete_row_secrets() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgi_delete_row_secrets';
