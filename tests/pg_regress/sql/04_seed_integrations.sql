-- The seed-compatible integrations (AI avatar, email, blog, social) as each
-- kind of caller: privileged, owner, member, another signed-in user, anon.
-- a clean slate: earlier files left secrets of businesses that exist nowhere
DROP EXTENSION IF EXISTS pg_integrations;
CREATE EXTENSION pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql

-- The app's tenant table, with the legacy wide columns of seeds 000/001.
CREATE TABLE businesses (
    id uuid PRIMARY KEY,
    profile_id uuid,
    name text NOT NULL,
    heygen_secret_id uuid, heygen_avatar_id text, heygen_voice_id text,
    email_provider text, email_secret_id uuid, sender_name text, sender_email text,
    blog_provider text, blog_secret_id uuid, blog_username text, blog_site_url text
);
GRANT SELECT ON businesses TO authenticated;
-- owner A owns B1, owner S owns B2; M is a member of B1, D its admin
INSERT INTO businesses (id, profile_id, name) VALUES
    ('b1000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'Acme'),
    ('b2000000-0000-4000-8000-000000000002', '50000000-0000-4000-8000-000000000005', 'Stranger Co');
INSERT INTO integrations.business_members (business_id, user_id, role) VALUES
    ('b1000000-0000-4000-8000-000000000001', 'e0000000-0000-4000-8000-00000000000e', 'member'),
    ('b1000000-0000-4000-8000-000000000001', 'd0000000-0000-4000-8000-00000000000d', 'admin');

-- rows of a business the tenant table does not have block the attachment
SELECT integrations.create_secret('dddddddd-0000-4000-8000-00000000000d', 'orphan') AS orphan \gset
SELECT try('SELECT integrations.attach_tenant_table(''businesses'')');
SELECT integrations.delete_secret(:'orphan');
SELECT try('SELECT integrations.attach_tenant_table(''businesses'', ''no_such_column'')');
SELECT try('SELECT integrations.attach_tenant_table(''integrations.audit_log'')');
SELECT integrations.attach_tenant_table('businesses');
SELECT integrations.attach_tenant_table('businesses');  -- idempotent
SELECT conrelid::regclass AS referencing, confdeltype AS on_delete
FROM pg_constraint WHERE contype = 'f' AND confrelid = 'businesses'::regclass ORDER BY conrelid::regclass::text;

-- Callers, the way PostgREST sets them.
\set B1 '''b1000000-0000-4000-8000-000000000001'''
\set B2 '''b2000000-0000-4000-8000-000000000002'''
\set OWNER '''a0000000-0000-4000-8000-00000000000a'''
\set MEMBER '''e0000000-0000-4000-8000-00000000000e'''
\set ADMIN '''d0000000-0000-4000-8000-00000000000d'''
\set STRANGER '''50000000-0000-4000-8000-000000000005'''

-- current_user_id() and can_access_business() from the claims
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT integrations.current_user_id() = :OWNER AS me,
       integrations.can_access_business(:B1) AS own_business,
       integrations.can_access_business(:B2) AS other_business;
SELECT act_as('authenticated', :MEMBER);
SELECT integrations.can_access_business(:B1) AS as_member, integrations.can_manage_business(:B1) AS member_manages;
SELECT act_as('authenticated', :ADMIN);
SELECT integrations.can_access_business(:B1) AS as_admin, integrations.can_manage_business(:B1) AS admin_manages;
SELECT act_as('authenticated', :OWNER);
SELECT integrations.can_manage_business(:B1) AS owner_manages, integrations.can_manage_business(:B2) AS owner_manages_other;
SELECT act_as('authenticated', 'not-a-uuid');
SELECT integrations.current_user_id() IS NULL AS bad_sub_is_no_user, integrations.can_access_business(:B1) AS allowed;
SELECT act_as('service_role', NULL);
SELECT integrations.can_access_business(:B2) AS service_role_any;
ROLLBACK;

-- set_* as each caller
BEGIN;
SELECT act_as('service_role', NULL);
SELECT set_ai_avatar_integration(:B1, 'heygen', 'hg_service_key', 'avatar-1', 'voice-1') IS NOT NULL AS service_role_set;
COMMIT;
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT set_email_integration(:B1, 'mailerlite', 'ml_owner_key', 'Acme', 'news@acme.example') IS NOT NULL AS owner_set;
SELECT set_email_integration(:B1, 'brevo', 'brevo_owner_key') IS NOT NULL AS owner_set_second_provider;
COMMIT;
-- members read and record; owners and admins change (the role matrix)
BEGIN;
SELECT act_as('authenticated', :MEMBER);
SELECT try($$SELECT set_blog_integration('b1000000-0000-4000-8000-000000000001', 'wordpress', 'wp_member_key')$$) AS member_set;
SELECT try($$SELECT delete_email_integration('b1000000-0000-4000-8000-000000000001')$$) AS member_delete;
SELECT try($$SELECT set_upload_post_social_accounts('b1000000-0000-4000-8000-000000000001', '{}')$$) AS member_social;
SELECT try($$SELECT delete_upload_post_profile('b1000000-0000-4000-8000-000000000001')$$) AS member_social_delete;
SELECT count(*) AS member_reads FROM get_email_integration(:B1);
COMMIT;
BEGIN;
SELECT act_as('authenticated', :ADMIN);
SELECT set_blog_integration(:B1, 'wordpress', 'wp_app_password', 'https://blog.acme.example', 'editor') IS NOT NULL AS admin_set;
COMMIT;
BEGIN;
SELECT act_as('authenticated', :STRANGER);
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', 'stolen')$$);
SELECT try($$SELECT * FROM get_ai_avatar_integration('b1000000-0000-4000-8000-000000000001')$$);
SELECT try($$SELECT delete_email_integration('b1000000-0000-4000-8000-000000000001')$$);
SELECT try($$SELECT get_or_create_upload_post_profile('b1000000-0000-4000-8000-000000000001')$$);
ROLLBACK;
BEGIN;
SELECT act_as('anon', NULL);
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', 'x')$$);
SELECT try($$SELECT * FROM get_ai_avatar_integration('b1000000-0000-4000-8000-000000000001')$$);
SELECT try($$SELECT get_ai_avatar_secret('b1000000-0000-4000-8000-000000000001')$$);
SELECT try($$SELECT * FROM ai_avatar_integrations$$);
ROLLBACK;

-- get_* as owner and member: the active row, no secret
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT provider, avatar_id, voice_id, provider_config, status, validated_at IS NOT NULL AS validated
FROM get_ai_avatar_integration(:B1);
SELECT provider, sender_name, sender_email, status FROM get_email_integration(:B1);
SELECT act_as('authenticated', :MEMBER);
SELECT provider, site_url, username, status FROM get_blog_integration(:B1);
SELECT try($$SELECT * FROM get_blog_integration('b2000000-0000-4000-8000-000000000002')$$) AS member_of_b1_on_b2;
SELECT act_as('authenticated', :STRANGER);
SELECT count(*) AS rows_for_business_without_integration FROM get_blog_integration(:B2);
ROLLBACK;

-- get_*_secret: privileged callers only, unless the setting opens it to owners
BEGIN;
SELECT act_as('service_role', NULL);
SELECT get_ai_avatar_secret(:B1) AS ai, get_email_secret(:B1) AS email, get_blog_secret(:B1) AS blog,
       get_blog_secret(:B2) IS NULL AS none_for_b2;
ROLLBACK;
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT try($$SELECT get_ai_avatar_secret('b1000000-0000-4000-8000-000000000001')$$);
ROLLBACK;
BEGIN;
SET LOCAL integrations.owner_can_read_secrets = on;
SELECT act_as('authenticated', :OWNER);
SELECT get_ai_avatar_secret(:B1) AS owner_with_setting_on;
SELECT act_as('authenticated', :MEMBER);
SELECT try($$SELECT get_ai_avatar_secret('b1000000-0000-4000-8000-000000000001')$$) AS member_with_setting_on;
SELECT try('SET integrations.owner_can_read_secrets = off');
SELECT act_as('authenticated', :STRANGER);
SELECT try($$SELECT get_ai_avatar_secret('b1000000-0000-4000-8000-000000000001')$$);
ROLLBACK;

-- Semantics of set_*: upsert; NULL keeps, '' clears; p_config NULL keeps, the
-- default '{}' replaces; status back to active; one secret per row, re-sealed.
SELECT set_ai_avatar_integration(:B1, 'heygen', 'hg_key_v2', NULL, NULL, '{"quality":"4k"}') AS same_id \gset
SELECT id = :'same_id' AS same_row, avatar_id, voice_id, provider_config FROM get_ai_avatar_integration(:B1);
SELECT set_ai_avatar_integration(:B1, 'heygen', 'hg_key_v3', '', NULL, NULL) IS NOT NULL AS set_again;
SELECT avatar_id IS NULL AS avatar_cleared, voice_id, provider_config AS config_kept FROM get_ai_avatar_integration(:B1);
UPDATE ai_avatar_integrations SET status = 'inactive' WHERE business_id = :B1;
SELECT count(*) AS inactive_is_not_returned FROM get_ai_avatar_integration(:B1);
SELECT get_ai_avatar_secret(:B1) IS NULL AS inactive_has_no_secret;
SELECT set_ai_avatar_integration(:B1, 'heygen', 'hg_key_v4') IS NOT NULL AS reactivated;
SELECT status, provider_config AS default_config_replaces FROM get_ai_avatar_integration(:B1);
SELECT get_ai_avatar_secret(:B1) AS latest_key;
-- settings without a key: the stored key stays
SELECT set_ai_avatar_integration(:B1, 'heygen', NULL, 'avatar-9') = :'same_id' AS same_row_without_key;
SELECT avatar_id, get_ai_avatar_secret(:B1) AS key_kept FROM get_ai_avatar_integration(:B1);
SELECT count(*) AS ai_rows, count(DISTINCT secret_id) AS ai_secrets FROM ai_avatar_integrations WHERE business_id = :B1;

-- Bad input: 22023 naming the argument; nothing written
SELECT count(*) AS secrets_before FROM integrations.secrets \gset
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'synthesia', 'k')$$);
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', '')$$);
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', '   ')$$);
-- (a new integration needs a key; an existing one keeps it, below)
SELECT try($$SELECT set_ai_avatar_integration('b2000000-0000-4000-8000-000000000002', 'heygen', NULL)$$);
SELECT try($$SELECT set_ai_avatar_integration(NULL, 'heygen', 'k')$$);
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', NULL, 'k')$$);
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', 'k', p_config => '[1,2]')$$);
SELECT try($$SELECT set_email_integration('b1000000-0000-4000-8000-000000000001', 'mailerlite', 'k', 'Acme', 'not an email')$$);
SELECT try($$SELECT set_email_integration('b1000000-0000-4000-8000-000000000001', 'sendgrid', 'k')$$);
SELECT try($$SELECT set_blog_integration('b1000000-0000-4000-8000-000000000001', 'wordpress', 'k', 'ftp://blog.acme.example')$$);
SELECT try($$SELECT set_blog_integration('b1000000-0000-4000-8000-000000000001', 'wix', 'k', 'https://user:pw@acme.example')$$);
SELECT try($$SELECT set_upload_post_social_accounts('b1000000-0000-4000-8000-000000000001', '"x"')$$);
SELECT try($$SELECT set_upload_post_social_accounts('b1000000-0000-4000-8000-000000000001', NULL)$$);
SELECT count(*) = :secrets_before AS nothing_written FROM integrations.secrets;
SELECT get_ai_avatar_secret(:B1) AS key_unchanged;

-- Row level security through direct table access (PostgREST .from(...))
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT provider FROM email_integrations ORDER BY provider;
UPDATE ai_avatar_integrations SET avatar_id = 'avatar-from-ui', updated_at = now() WHERE business_id = :B1 AND provider = 'heygen' AND status = 'active' RETURNING avatar_id;
SELECT try($$UPDATE email_integrations SET sender_email = 'broken' WHERE provider = 'mailerlite'$$);
SELECT try($$UPDATE ai_avatar_integrations SET secret_id = NULL$$);
SELECT try($$UPDATE ai_avatar_integrations SET status = 'active'$$);
SELECT try($$INSERT INTO ai_avatar_integrations (business_id, provider) VALUES ('b2000000-0000-4000-8000-000000000002', 'heygen')$$);
SELECT try($$DELETE FROM ai_avatar_integrations$$);
SELECT try($$SELECT * FROM integrations.secrets$$);
SELECT try($$SELECT * FROM integrations.audit_log$$);
SELECT act_as('authenticated', :STRANGER);
SELECT count(*) AS stranger_sees FROM ai_avatar_integrations;
UPDATE ai_avatar_integrations SET avatar_id = 'hijack' RETURNING id;
ROLLBACK;
-- embedding, as PostgREST does it for businesses?select=*,ai_avatar_integrations(*)
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT b.name, (SELECT json_agg(a.provider) FROM ai_avatar_integrations a WHERE a.business_id = b.id) AS ai_avatar_integrations
FROM businesses b ORDER BY b.name;
ROLLBACK;

-- Social profiles: generated username, stable; accounts must be an object
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT upload_post_username, social_accounts FROM get_or_create_upload_post_profile(:B1);
SELECT set_upload_post_social_accounts(:B1, '{"instagram":"@acme"}');
SELECT upload_post_username, social_accounts FROM get_or_create_upload_post_profile(:B1);
COMMIT;
SELECT count(*) AS profiles FROM upload_post_profiles WHERE business_id = :B1;
SELECT set_upload_post_social_accounts(:B2, '{"x":"@stranger"}');
SELECT upload_post_username FROM upload_post_profiles WHERE business_id = :B2;

-- delete_*: every row of the business and every one of their secrets
SELECT count(*) AS email_rows FROM email_integrations WHERE business_id = :B1;
SELECT delete_email_integration(:B1);
SELECT count(*) AS email_rows_after FROM email_integrations WHERE business_id = :B1;
SELECT count(*) AS orphan_secrets FROM integrations.secrets s
WHERE NOT EXISTS (SELECT 1 FROM ai_avatar_integrations WHERE secret_id = s.id)
  AND NOT EXISTS (SELECT 1 FROM email_integrations WHERE secret_id = s.id)
  AND NOT EXISTS (SELECT 1 FROM blog_integrations WHERE secret_id = s.id);
SELECT delete_upload_post_profile(:B2);

-- A secret still held by a row cannot be deleted on its own (the secret
-- columns carry no foreign keys; delete_secret checks)
SELECT regexp_replace(try(format('SELECT integrations.delete_secret(%L)', (SELECT secret_id FROM ai_avatar_integrations ORDER BY created_at LIMIT 1))), '[0-9a-f-]{36}', '<id>') AS delete_a_held_secret;
SELECT count(*) AS rows_without_their_secret FROM ai_avatar_integrations a
WHERE NOT EXISTS (SELECT 1 FROM integrations.secrets s WHERE s.id = a.secret_id);

-- The audit trail: every set, delete and secret read; never a secret
SELECT integrations.flush_audit_log() AS audit_flushed;  -- secret reads reach the log through the queue
SELECT action, kind, count(*) FROM integrations.audit_log GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS audit_rows_with_a_key FROM integrations.audit_log a
WHERE a::text ~ '(hg_|ml_|brevo_|wp_)';
SELECT actor_role, actor_user_id = :ADMIN AS by_admin FROM integrations.audit_log WHERE kind = 'blog' AND action = 'set';

-- A kind's providers are data: a registered provider of its category works
-- without a release; the table's foreign key follows the registry.
SELECT try($$SELECT set_ai_avatar_integration('b2000000-0000-4000-8000-000000000002', 'synthesia', 'syn_key')$$) AS before_registering;
SELECT integrations.register_provider('synthesia', 'Synthesia', 'ai_avatar') AS registered;
SELECT set_ai_avatar_integration(:B2, 'synthesia', 'syn_key') IS NOT NULL AS synthesia_set;
SELECT provider, provider_category FROM ai_avatar_integrations WHERE business_id = :B2;
SELECT try($$INSERT INTO ai_avatar_integrations (business_id, provider) VALUES ('b2000000-0000-4000-8000-000000000002', 'brevo')$$) AS provider_of_another_category;
SELECT delete_ai_avatar_integration(:B2);
DELETE FROM integration_providers WHERE provider = 'synthesia';

-- A back end records a status and why (redacted); not for owners
SELECT set_integration_status('ai_avatar', :B1, 'heygen', 'error', '401 from api.heygen.com: X-Api-Key: hg_leaked_key rejected',
                              p_validated_at => '2026-01-01 00:00:00+00') IS NOT NULL AS recorded;
SELECT status, error_message, validated_at FROM ai_avatar_integrations WHERE business_id = :B1;
SELECT try($$SELECT set_integration_status('ai_avatar', 'b1000000-0000-4000-8000-000000000001', 'heygen', 'broken')$$) AS bad_status;
SELECT try($$SELECT set_integration_status('sms', 'b1000000-0000-4000-8000-000000000001', 'heygen', 'active')$$) AS bad_kind;
SELECT try($$SELECT set_integration_status('email', 'b1000000-0000-4000-8000-000000000001', 'wix', 'active')$$) AS none_there;
BEGIN;
SELECT act_as('authenticated', :OWNER);
SELECT try($$SELECT set_integration_status('ai_avatar', 'b1000000-0000-4000-8000-000000000001', 'heygen', 'active')$$) AS as_owner;
ROLLBACK;
SELECT set_integration_status('ai_avatar', :B1, 'heygen', 'active') IS NOT NULL AS active_again;
SELECT status, error_message IS NULL AS message_cleared FROM ai_avatar_integrations WHERE business_id = :B1;

-- Deleting a business deletes its integrations and their secrets
SELECT count(*) AS b1_secrets FROM integrations.secrets WHERE business_id = :B1;
DELETE FROM businesses WHERE id = :B1;
SELECT (SELECT count(*) FROM ai_avatar_integrations) AS ai, (SELECT count(*) FROM blog_integrations) AS blog,
       (SELECT count(*) FROM upload_post_profiles WHERE business_id = :B1) AS profiles,
       (SELECT count(*) FROM integrations.business_members WHERE business_id = :B1) AS members,
       (SELECT count(*) FROM integrations.secrets WHERE business_id = :B1) AS secrets;
SELECT try($$SELECT set_ai_avatar_integration('b1000000-0000-4000-8000-000000000001', 'heygen', 'k')$$);

----------------------------------------------------------------------------
-- Moving off the wide table: legacy columns and a stand-in for Supabase Vault
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (id uuid PRIMARY KEY, secret text);
CREATE VIEW vault.decrypted_secrets AS SELECT id, secret AS decrypted_secret FROM vault.secrets;
INSERT INTO vault.secrets VALUES
    ('51000000-0000-4000-8000-000000000001', 'legacy_heygen_key'),
    ('52000000-0000-4000-8000-000000000002', 'legacy_mailchimp_key'),
    ('53000000-0000-4000-8000-000000000003', 'legacy_wp_password');
INSERT INTO businesses (id, profile_id, name, heygen_secret_id, heygen_avatar_id, heygen_voice_id,
                        email_provider, email_secret_id, sender_name, sender_email,
                        blog_provider, blog_secret_id, blog_username, blog_site_url) VALUES
    ('c1000000-0000-4000-8000-000000000001', NULL, 'Legacy One', '51000000-0000-4000-8000-000000000001', 'av', 'vo',
     'MailChimp ', '52000000-0000-4000-8000-000000000002', 'Legacy', 'legacy@one.example',
     'wordpress', '53000000-0000-4000-8000-000000000003', 'admin', 'https://one.example'),
    ('c2000000-0000-4000-8000-000000000002', NULL, 'Legacy Two', NULL, 'only-avatar', NULL,
     'unknownmail', NULL, NULL, NULL,
     'wix', NULL, NULL, 'not a url'),
    ('c3000000-0000-4000-8000-000000000003', NULL, 'No integrations', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE FUNCTION public.set_heygen_key(uuid, text) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION public.delete_heygen_key(uuid) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION public.get_heygen_secret(uuid) RETURNS text LANGUAGE sql AS 'SELECT NULL::text';

SELECT * FROM integrations.migrate_business_columns();
SELECT * FROM integrations.migrate_business_columns();  -- idempotent
SELECT b.name, a.avatar_id, a.voice_id, get_ai_avatar_secret(b.id) AS key
FROM businesses b JOIN ai_avatar_integrations a ON a.business_id = b.id ORDER BY b.name;
SELECT provider, sender_name, sender_email, get_email_secret(business_id) AS key FROM email_integrations WHERE business_id = 'c1000000-0000-4000-8000-000000000001';
SELECT provider, site_url, username, get_blog_secret(business_id) AS key FROM blog_integrations WHERE business_id = 'c1000000-0000-4000-8000-000000000001';
-- p_table must be a table the caller owns: service_role does not own it
SET ROLE service_role;
SELECT try('SELECT * FROM integrations.migrate_business_columns(''businesses'', true)') AS as_service_role;
RESET ROLE;
SELECT count(*) AS kinds FROM integrations.migrate_business_columns('businesses', true);  -- as its owner
SELECT count(*) AS legacy_columns_left FROM pg_attribute
WHERE attrelid = 'businesses'::regclass AND NOT attisdropped AND attname ~ '^(heygen_|email_|sender_|blog_)';
SELECT count(*) AS legacy_functions_left FROM pg_proc WHERE proname IN ('set_heygen_key', 'delete_heygen_key', 'get_heygen_secret');
SELECT try('SELECT * FROM integrations.migrate_business_columns()') AS after_drop;

DROP SCHEMA vault CASCADE;
DROP TABLE businesses CASCADE;
DROP FUNCTION try(text, text), act_as(text, text);
