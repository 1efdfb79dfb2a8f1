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
    ('a3000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-00000000000c', 'Seeded Three'),
    ('a4000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-00000000000d', 'Borrower'),
    ('a5000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-00000000000e', 'Sharer One'),
    ('a6000000-0000-4000-8000-000000000006', 'a0000000-0000-4000-8000-00000000000f', 'Sharer Two'),
    ('a7000000-0000-4000-8000-000000000007', 'a0000000-0000-4000-8000-000000000010', 'Twice');
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
-- rows written to lift keys: one pointing at a secret named for another
-- business, two at one secret named for the first of them (shared)
INSERT INTO public.ai_avatar_integrations (business_id, provider, secret_id) VALUES
    ('a4000000-0000-4000-8000-000000000004', 'heygen', vault.create_secret('hg_not_yours', 'ai_avatar_heygen_key_for_business_a2000000-0000-4000-8000-000000000002'));
SELECT vault.create_secret('hg_sharer', 'ai_avatar_heygen_key_for_business_a5000000-0000-4000-8000-000000000005') AS shared \gset
INSERT INTO public.ai_avatar_integrations (business_id, provider, secret_id) VALUES
    ('a5000000-0000-4000-8000-000000000005', 'heygen', :'shared'),
    ('a6000000-0000-4000-8000-000000000006', 'heygen', :'shared');
-- two rows for one (business, provider), the seed's unique constraint gone
ALTER TABLE public.ai_avatar_integrations DROP CONSTRAINT unique_business_ai_avatar_provider;
INSERT INTO public.ai_avatar_integrations (business_id, provider, secret_id) VALUES
    ('a7000000-0000-4000-8000-000000000007', 'heygen', vault.create_secret('hg_twice_1', 'ai_avatar_heygen_key_for_business_a7000000-0000-4000-8000-000000000007')),
    ('a7000000-0000-4000-8000-000000000007', 'heygen', vault.create_secret('hg_twice_2', 'ai_avatar_heygen_key_for_business_a7000000-0000-4000-8000-000000000007'));
-- fixed ids, for a stable expected output (the seed makes random ones)
UPDATE public.ai_avatar_integrations SET id = overlay(business_id::text placing 'c' from 1 for 1)::uuid
WHERE provider = 'heygen' AND business_id NOT IN ('a7000000-0000-4000-8000-000000000007');
UPDATE public.ai_avatar_integrations SET id = ('c7000000-0000-4000-8000-00000000000' || CASE WHEN secret_id = (SELECT min(secret_id::text)::uuid FROM public.ai_avatar_integrations WHERE business_id = 'a7000000-0000-4000-8000-000000000007') THEN '1' ELSE '2' END)::uuid
WHERE business_id = 'a7000000-0000-4000-8000-000000000007';
-- a function of a seed's name with other arguments (an older seed's, say): moved too, said so
CREATE FUNCTION public.get_integration(p_name text) RETURNS text LANGUAGE sql AS $$ SELECT p_name $$;
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
SELECT p.pronamespace::regnamespace AS schema, p.oid::regprocedure AS function FROM pg_proc p WHERE p.proname = 'get_integration' ORDER BY 1, 2;
DROP FUNCTION integrations_legacy.get_integration(text);
-- tables adoption refuses to read (42501, so rpc() callers see it): a view,
-- and a table an API role made (its rows could name any business)
CREATE VIEW integrations_legacy.email_integrations AS
    SELECT 'e1000000-0000-4000-8000-000000000001'::uuid AS id, 'a1000000-0000-4000-8000-000000000001'::uuid AS business_id, 'brevo'::text AS provider;
SELECT try('SELECT * FROM integrations.adopt_legacy_integrations()') AS with_a_view;
DROP VIEW integrations_legacy.email_integrations;
CREATE TABLE integrations_legacy.blog_integrations (id uuid, business_id uuid, provider text);
INSERT INTO integrations_legacy.blog_integrations VALUES ('b1000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-000000000001', 'wix');
ALTER TABLE integrations_legacy.blog_integrations OWNER TO authenticated;
SELECT try('SELECT * FROM integrations.adopt_legacy_integrations()') AS with_an_api_roles_table;
DROP TABLE integrations_legacy.blog_integrations;
-- (seed 001's table has no row level security, and Supabase's default
-- privileges let anon and authenticated write it: every run warns)
-- adoption: ids, businesses, configuration, status, timestamps kept; keys re-sealed
SELECT * FROM integrations.adopt_legacy_integrations();
SELECT a.business_id, a.avatar_id, a.voice_id, a.provider_config, a.status,
       a.id = l.id AS same_id, a.created_at = l.created_at AS same_created_at,
       CASE WHEN a.status = 'active' THEN get_ai_avatar_secret(a.business_id) END AS key
FROM ai_avatar_integrations a JOIN integrations_legacy.ai_avatar_integrations l ON l.id = a.id ORDER BY 1;
SELECT count(*) AS keys_in_our_store FROM integrations.secrets;
-- idempotent
SELECT * FROM integrations.adopt_legacy_integrations();
-- service_role may run it: the superuser's tables are read with its privileges
BEGIN;
SET LOCAL ROLE service_role;
SELECT * FROM integrations.adopt_legacy_integrations();
ROLLBACK;
-- saving settings without a key leaves the key, the status and validated_at
BEGIN;
SELECT set_integration_status('ai_avatar', 'a2000000-0000-4000-8000-000000000002', 'heygen', 'error', 'HeyGen said 401') IS NOT NULL AS marked;
SELECT set_ai_avatar_integration('a2000000-0000-4000-8000-000000000002', 'heygen', NULL, 'avatar-9') IS NOT NULL AS settings_saved;
SELECT avatar_id, status, validated_at IS NULL AS never_validated, get_ai_avatar_secret('a2000000-0000-4000-8000-000000000002') AS key
FROM ai_avatar_integrations WHERE business_id = 'a2000000-0000-4000-8000-000000000002';
ROLLBACK;
-- ... and is refused for a row without a key, which stays inactive
SELECT try($$SELECT set_ai_avatar_integration('a4000000-0000-4000-8000-000000000004', 'heygen', NULL, 'avatar-9')$$) AS settings_without_a_key;
SELECT avatar_id, status FROM ai_avatar_integrations WHERE business_id = 'a4000000-0000-4000-8000-000000000004';
-- the registry's foreign key: a provider in use cannot be deleted or renamed;
-- a defunct one refuses saves, while its rows stay readable and deletable
BEGIN;
SELECT try($$DELETE FROM integration_providers WHERE provider = 'heygen'$$) AS delete_provider;
SELECT try($$UPDATE integration_providers SET provider = 'heygen2' WHERE provider = 'heygen'$$) AS rename_provider;
UPDATE integration_providers SET status = 'defunct' WHERE provider = 'heygen';
SELECT try($$SELECT set_ai_avatar_integration('a2000000-0000-4000-8000-000000000002', 'heygen', 'hg_again')$$) AS save_defunct;
SELECT get_ai_avatar_secret('a2000000-0000-4000-8000-000000000002') AS still_readable;
SELECT delete_ai_avatar_integration('a2000000-0000-4000-8000-000000000002') AS deletable;
ROLLBACK;
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
-- a second adoption does not bring the deleted integration back, even
-- after the audit trail's retention ran
SELECT integrations.flush_audit_log() AS audit_flushed;  -- secret reads reach the log through the queue
UPDATE integrations.audit_log SET at = at - interval '400 days';
SELECT integrations.purge_audit_log(365) > 0 AS purged;
SELECT action, count(*) FROM integrations.audit_log GROUP BY 1 ORDER BY 1;
SELECT * FROM integrations.adopt_legacy_integrations();
SELECT count(*) AS rows_left_for_one FROM ai_avatar_integrations WHERE business_id = 'a1000000-0000-4000-8000-000000000001';

-- without Vault: adopted without a key, inactive
DROP EXTENSION pg_integrations;
DROP SCHEMA vault CASCADE;
SELECT * FROM integrations_legacy.ai_avatar_integrations WHERE false;
CREATE EXTENSION pg_integrations;
SELECT * FROM integrations.adopt_legacy_integrations();
SELECT business_id, status, secret_id IS NULL AS no_key FROM ai_avatar_integrations ORDER BY 1;

-- an integrations_legacy made beforehand by another role is not used
DROP EXTENSION pg_integrations;
CREATE ROLE pgi_regress_squatter;
ALTER SCHEMA integrations_legacy OWNER TO pgi_regress_squatter;
CREATE TABLE public.upload_post_profiles (id uuid);
SELECT try('CREATE EXTENSION pg_integrations') AS squatted_schema;
DROP TABLE public.upload_post_profiles;
ALTER SCHEMA integrations_legacy OWNER TO postgres;
DROP ROLE pgi_regress_squatter;

DROP SCHEMA integrations_legacy CASCADE;
DROP TABLE public.businesses;
DROP FUNCTION try(text, text), act_as(text, text);
CREATE EXTENSION pg_integrations;
