-- DROP EXTENSION removes everything the extension created, the daily log
-- partitions made at run time included. (The roles stay: they are cluster-wide.)
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off
SELECT integrations.create_api_log_partitions(2) >= 0 AS partitions_made;
SELECT count(*) > 0 AS has_objects FROM pg_class WHERE relname ~ '^(integration_|webhook_access_logs)';
DROP EXTENSION pg_integrations;
SELECT count(*) AS leftover_relations FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'integrations')
  AND c.relname ~ '^(integration_|ai_avatar_|email_integrations|blog_integrations|upload_post_profiles|webhook_access_logs|idx_|unique_)';
SELECT count(*) AS leftover_functions FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proname ~ '(integration|_secret$|oauth_state|webhook|upload_post|payment_providers)';
SELECT count(*) AS leftover_schema FROM pg_namespace WHERE nspname = 'integrations';
SELECT count(*) AS leftover_policies FROM pg_policy;
SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role', 'integrations_admin') ORDER BY 1;
CREATE EXTENSION pg_integrations;
SELECT count(*) AS providers_again FROM integration_providers;
