-- DROP EXTENSION removes everything; CREATE EXTENSION in the same session starts
-- a new keyring, and nothing cached from the old one is used.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off
SELECT integrations.create_secret('eeeeeeee-0000-4000-8000-000000000005', 'before drop') AS old_id \gset
SELECT integrations.read_secret(:'old_id') AS before_drop;
DROP EXTENSION pg_integrations;
SELECT count(*) AS leftover_objects FROM pg_namespace WHERE nspname = 'integrations';
CREATE EXTENSION pg_integrations;
SELECT count(*) AS keys, count(*) FILTER (WHERE status = 'active') AS active FROM integrations.keys;
SELECT integrations.create_secret('eeeeeeee-0000-4000-8000-000000000005', 'after reinstall') AS new_id \gset
SELECT integrations.read_secret(:'new_id') AS after_reinstall;
SELECT key_id, status, secrets FROM integrations.keyring_status();
SELECT integrations.read_secret(:'old_id') IS NULL AS old_secret_gone;
