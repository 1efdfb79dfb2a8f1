-- The secret store through SQL, as each kind of caller.
CREATE EXTENSION pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql
DROP ROLE IF EXISTS pgi_regress_worker;

-- Every function that reads or writes tables is SECURITY DEFINER with a pinned
-- search_path; every function has a comment;
-- the secret store is executable by the privileged roles only.
SELECT p.proname,
       p.prosecdef AS security_definer,
       p.proconfig,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment,
       has_function_privilege('anon', p.oid, 'EXECUTE') AS anon,
       has_function_privilege('authenticated', p.oid, 'EXECUTE') AS authenticated,
       has_function_privilege('service_role', p.oid, 'EXECUTE') AS service_role,
       has_function_privilege('integrations_admin', p.oid, 'EXECUTE') AS admin
FROM pg_proc p
WHERE p.pronamespace = 'integrations'::regnamespace AND p.prorettype <> 'trigger'::regtype
ORDER BY p.proname;

-- The roles exist as Supabase defines them.
SELECT rolname, rolcanlogin, rolinherit, rolbypassrls
FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role', 'integrations_admin')
ORDER BY rolname;

-- A superuser stores and reads secrets.
SELECT integrations.create_secret('aaaaaaaa-0000-4000-8000-000000000001', 'sk_test_alpha', 'alpha') AS alpha \gset
SELECT integrations.create_secret('bbbbbbbb-0000-4000-8000-000000000002', 'sk_test_beta') AS beta \gset
SELECT integrations.read_secret(:'alpha') AS alpha_value, integrations.read_secret(:'beta') AS beta_value;
SELECT business_id, description, format, key_id, length(nonce) AS nonce_bytes,
       length(ciphertext) - length('sk_test_alpha') AS tag_bytes
FROM integrations.secrets WHERE id = :'alpha';

-- service_role and members of integrations_admin may use the store.
SET ROLE service_role;
SELECT integrations.read_secret(:'alpha') AS as_service_role;
SELECT integrations.create_secret('aaaaaaaa-0000-4000-8000-000000000001', 'from service role') IS NOT NULL AS created;
RESET ROLE;
CREATE ROLE pgi_regress_worker LOGIN NOINHERIT;
GRANT integrations_admin TO pgi_regress_worker;
SET ROLE pgi_regress_worker;
-- NOINHERIT: membership alone gives no privileges until the worker switches role
SELECT try(format('SELECT integrations.read_secret(%L)', :'alpha'));
SET ROLE integrations_admin;
SELECT integrations.read_secret(:'alpha') AS as_integrations_admin;
RESET ROLE;
ALTER ROLE pgi_regress_worker INHERIT;
-- Since PostgreSQL 16 each grant keeps the inheritance it was made with: grant
-- again so that the membership inherits on every version.
REVOKE integrations_admin FROM pgi_regress_worker;
GRANT integrations_admin TO pgi_regress_worker;
SET ROLE pgi_regress_worker;
SELECT integrations.read_secret(:'alpha') AS as_inheriting_member;
RESET ROLE;

-- API roles can neither call the functions nor read the table.
BEGIN;
SET LOCAL ROLE anon;
SELECT try(format('SELECT integrations.read_secret(%L)', :'alpha'));
SELECT try('SELECT integrations.create_secret(gen_random_uuid(), ''x'')');
SELECT try('SELECT * FROM integrations.secrets');
SELECT try('SELECT * FROM integrations.keys');
ROLLBACK;
BEGIN;
SET LOCAL ROLE authenticated;
SELECT set_config('request.jwt.claims', '{"sub":"aaaaaaaa-0000-4000-8000-000000000001","role":"authenticated"}', true) IS NOT NULL AS claims_set;
SELECT try(format('SELECT integrations.read_secret(%L)', :'alpha'));
SELECT try(format('SELECT integrations.delete_secret(%L)', :'alpha'));
SELECT try('SELECT integrations.rotate_data_key()');
SELECT try('SELECT * FROM integrations.keyring_status()');
SELECT try('SELECT count(*) FROM integrations.secrets');
ROLLBACK;
-- Even with the schema and the function granted by mistake, the function's own
-- check refuses an API role.
BEGIN;
GRANT USAGE ON SCHEMA integrations TO authenticated;
GRANT EXECUTE ON FUNCTION integrations.read_secret(uuid) TO authenticated;
SET LOCAL ROLE authenticated;
SELECT try(format('SELECT integrations.read_secret(%L)', :'alpha'));
ROLLBACK;

-- Bad input: clear errors, nothing written.
SELECT count(*) AS secrets_before FROM integrations.secrets \gset
SELECT try('SELECT integrations.create_secret(NULL, ''x'')');
SELECT try('SELECT integrations.create_secret(gen_random_uuid(), NULL)');
SELECT try('SELECT integrations.create_secret(gen_random_uuid(), ''x'', repeat(''d'', 1001))');
SELECT try('SELECT integrations.create_secret(gen_random_uuid(), repeat(''x'', 16 * 1024 * 1024 + 1))');
SELECT try('SELECT integrations.create_secret(''not-a-uuid'', ''x'')');
SELECT try('SELECT integrations.update_secret(''00000000-0000-4000-8000-000000000404'', ''x'')');
SELECT try('SELECT integrations.update_secret(NULL, ''x'')');
SELECT try('SELECT integrations.reencrypt_secrets(-1)');
SELECT count(*) = :secrets_before AS nothing_written FROM integrations.secrets;
-- What a client sees for a missing secret: PT404 (PostgREST: HTTP 404).
\set VERBOSITY sqlstate
SELECT integrations.update_secret('00000000-0000-4000-8000-000000000404', 'x');
\set VERBOSITY default
-- NULL and unknown ids read as NULL, as the seeds' get_*_secret do.
SELECT integrations.read_secret(NULL) IS NULL AS null_id,
       integrations.read_secret('00000000-0000-4000-8000-000000000404') IS NULL AS unknown_id;

-- Tampering: every change to a stored secret fails authentication with XX001.
SELECT integrations.rotate_data_key() AS second_key;
SELECT integrations.create_secret('aaaaaaaa-0000-4000-8000-000000000001', 'victim') AS victim \gset
BEGIN;
UPDATE integrations.secrets SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) WHERE id = :'victim';
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
ROLLBACK;
BEGIN;
UPDATE integrations.secrets SET ciphertext = set_byte(ciphertext, length(ciphertext) - 1, get_byte(ciphertext, length(ciphertext) - 1) # 128) WHERE id = :'victim';
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
ROLLBACK;
BEGIN;
UPDATE integrations.secrets SET nonce = set_byte(nonce, 11, get_byte(nonce, 11) # 1) WHERE id = :'victim';
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
ROLLBACK;
BEGIN;
UPDATE integrations.secrets SET key_id = 1 WHERE id = :'victim';
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
ROLLBACK;
BEGIN;
UPDATE integrations.secrets SET key_id = 99 WHERE id = :'victim';
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
ROLLBACK;
BEGIN;
-- moved to another tenant
UPDATE integrations.secrets SET business_id = 'bbbbbbbb-0000-4000-8000-000000000002' WHERE id = :'victim';
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
ROLLBACK;
BEGIN;
-- swapped with another row's ciphertext
UPDATE integrations.secrets v SET key_id = a.key_id, nonce = a.nonce, ciphertext = a.ciphertext
FROM integrations.secrets a WHERE a.id = :'alpha' AND v.id = :'victim';
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
ROLLBACK;
-- A damaged wrapped data key: a new session cannot unwrap it.
SELECT encode(wrapped_key, 'hex') AS good_wrapped FROM integrations.keys WHERE key_id = 2 \gset
UPDATE integrations.keys SET wrapped_key = set_byte(wrapped_key, 20, get_byte(wrapped_key, 20) # 1) WHERE key_id = 2;
\c
SELECT try(format('SELECT integrations.read_secret(%L)', :'victim'), :'victim');
UPDATE integrations.keys SET wrapped_key = decode(:'good_wrapped', 'hex') WHERE key_id = 2;
\c
\pset footer off
-- untouched, it still opens
SELECT integrations.read_secret(:'victim') AS victim_value;

-- Rotation and re-encryption, interrupted midway.
SELECT integrations.create_secret('cccccccc-0000-4000-8000-000000000003', 'batch-' || g)
FROM generate_series(1, 20) g \g /dev/null
SELECT integrations.rotate_data_key() AS third_key;
SELECT integrations.reencrypt_secrets(5) AS first_batch;
-- an interrupted batch (statement cancelled) changes nothing
BEGIN;
SELECT integrations.reencrypt_secrets(5) AS rolled_back_batch;
ROLLBACK;
SELECT key_id, status, secrets FROM integrations.keyring_status();
SELECT count(*) FILTER (WHERE integrations.read_secret(id) IS NOT NULL) AS all_open, count(*) AS total
FROM integrations.secrets;
-- a key that still seals secrets cannot be deleted
SELECT try('DELETE FROM integrations.keys WHERE key_id = 2');
SELECT integrations.reencrypt_secrets(1000) AS rest, integrations.reencrypt_secrets() AS then_zero;
SELECT key_id, status, secrets FROM integrations.keyring_status();
SELECT count(*) FILTER (WHERE integrations.read_secret(id) LIKE 'batch-%') AS batch_secrets_open
FROM integrations.secrets;

-- The settings are superuser-only: hidden from others, never set per session.
SELECT name, context FROM pg_settings WHERE name LIKE 'integrations.%' ORDER BY name;
SET ROLE service_role;
SELECT count(*) AS visible_settings FROM pg_settings WHERE name LIKE 'integrations.%';
-- refused with 42501 (the server's wording differs between versions)
SELECT left(try('SHOW integrations.master_key_file'), 6) AS show_master_key_file;
RESET ROLE;
SELECT try($$SET integrations.master_key_file = '/tmp/attacker.key'$$);

-- Update and delete.
SELECT integrations.update_secret(:'beta', 'sk_test_beta_v2');
SELECT integrations.read_secret(:'beta') AS beta_value;
SELECT integrations.delete_secret(:'beta') AS deleted, integrations.delete_secret(:'beta') AS deleted_again;

DROP ROLE pgi_regress_worker;
DROP FUNCTION try(text, text), act_as(text, text);
