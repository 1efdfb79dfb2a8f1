-- Installing where the seeds already ran (issue: adoption): seed 001's
-- migration as written, on a Vault stand-in, with keys saved through its own
-- RPCs; then CREATE EXTENSION moves its objects aside and
-- integrations.adopt_legacy_integrations() copies the rows in.
DROP EXTENSION IF EXISTS pg_integrations;
\pset footer off
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql
CREATE EXTENSION IF NOT EXISTS pgcrypto;
\set ECHO none
\i :abs_srcdir/../fixtures/vault.sql
\set ECHO all

CREATE TABLE public.businesses (id uuid PRIMARY KEY, profile_id uuid, name text);
INSERT INTO public.businesses VALUES
    ('a1000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'Seeded One'),
    ('a2000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-00000000000b', 'Seeded Two'),
    ('a3000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-00000000000c', 'Seeded Three');
\set ECHO none
\i :abs_srcdir/../fixtures/seed_001_ai_avatar.sql
\set ECHO all
-- the seed app saved keys through the seed's own RPCs (into Vault)
SELECT set_ai_avatar_integration('a1000000-0000-4000-8000-000000000001', 'heygen', 'hg_seed_one', 'avatar-1', 'voice-1') IS NOT NULL AS seeded;
SELECT set_ai_avatar_integration('a2000000-0000-4000-8000-000000000002', 'heygen', 'hg_seed_two', NULL, NULL, '{"q":"hd"}') IS NOT NULL AS seeded;
-- a row whose Vault secret is gone, and one with an invalid provider
INSERT INTO public.ai_avatar_integrations (business_id, provider, avatar_id) VALUES ('a3000000-0000-4000-8000-000000000003', 'heygen', 'lost');
ALTER TABLE public.ai_avatar_integrations DROP CONSTRAINT ai_avatar_integrations_provider_check;
INSERT INTO public.ai_avatar_integrations (id, business_id, provider) VALUES ('ab000000-0000-4000-8000-0000000000bb', 'a3000000-0000-4000-8000-000000000003', 'synthesia');
-- fixed ids, for a stable expected output (the seed makes random ones)
UPDATE public.ai_avatar_integrations SET id = overlay(business_id::text placing 'c' from 1 for 1)::uuid
WHERE provider = 'heygen';
SELECT count(*) AS seed_rows FROM public.ai_avatar_integrations;

-- CREATE EXTENSION succeeds: the seed's table and functions are moved aside
CREATE EXTENSION pg_integrations;
SELECT c.relnamespace::regnamespace AS schema, c.relname FROM pg_class c
WHERE c.relname IN ('ai_avatar_integrations', 'idx_ai_avatar_integrations_business_id') ORDER BY 1, 2;
SELECT p.pronamespace::regnamespace AS schema, p.proname FROM pg_proc p
WHERE p.proname IN ('set_ai_avatar_integration', 'get_ai_avatar_secret', 'update_ai_avatar_integrations_updated_at')
ORDER BY 1, 2;
SELECT count(*) AS legacy_schema_belongs_to_the_extension FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e' AND objid = 'integrations_legacy'::regnamespace;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'integrations_legacy.ai_avatar_integrations'::regclass AND NOT tgisinternal;

-- adoption: ids, businesses, configuration, status, timestamps kept; keys re-sealed
SELECT * FROM integrations.adopt_legacy_integrations();
SELECT a.business_id, a.avatar_id, a.voice_id, a.provider_config, a.status,
       a.id = l.id AS same_id, a.created_at = l.created_at AS same_created_at,
       CASE WHEN a.status = 'active' THEN get_ai_avatar_secret(a.business_id) END AS key
FROM ai_avatar_integrations a JOIN integrations_legacy.ai_avatar_integrations l ON l.id = a.id ORDER BY 1;
SELECT count(*) AS keys_in_our_store FROM integrations.secrets;
-- idempotent
SELECT * FROM integrations.adopt_legacy_integrations();
-- not for API roles
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a');
SELECT try('SELECT * FROM integrations.adopt_legacy_integrations()') AS as_owner;
ROLLBACK;

-- the seed app's calls now reach the extension: set, get, delete as the owner
SELECT integrations.attach_tenant_table('public.businesses');
BEGIN;
SELECT act_as('authenticated', 'a0000000-0000-4000-8000-00000000000a');
SELECT set_ai_avatar_integration('a1000000-0000-4000-8000-000000000001', 'heygen', 'hg_new', 'avatar-2') IS NOT NULL AS set_by_owner;
SELECT provider, avatar_id, voice_id FROM get_ai_avatar_integration('a1000000-0000-4000-8000-000000000001');
-- the settings form's select and the integrations page's embedding query
SELECT avatar_id, voice_id, status FROM ai_avatar_integrations WHERE business_id = 'a1000000-0000-4000-8000-000000000001';
SELECT b.name, count(a.*) AS integrations FROM businesses b JOIN ai_avatar_integrations a ON a.business_id = b.id GROUP BY 1 ORDER BY 1;
-- the direct PATCH of the configuration
UPDATE ai_avatar_integrations SET voice_id = 'voice-3' WHERE business_id = 'a1000000-0000-4000-8000-000000000001';
SELECT delete_ai_avatar_integration('a1000000-0000-4000-8000-000000000001');
COMMIT;
SELECT count(*) AS rows_left_for_one FROM ai_avatar_integrations WHERE business_id = 'a1000000-0000-4000-8000-000000000001';

-- without Vault: adopted without a key, inactive
DROP EXTENSION pg_integrations;
DROP SCHEMA vault CASCADE;
SELECT * FROM integrations_legacy.ai_avatar_integrations WHERE false;
CREATE EXTENSION pg_integrations;
SELECT * FROM integrations.adopt_legacy_integrations();
SELECT business_id, status, secret_id IS NULL AS no_key FROM ai_avatar_integrations ORDER BY 1;

DROP EXTENSION pg_integrations;
DROP SCHEMA integrations_legacy CASCADE;
DROP TABLE public.businesses;
DROP FUNCTION try(text, text), act_as(text, text);
CREATE EXTENSION pg_integrations;
