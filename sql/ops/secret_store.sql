-- pg_integrations finalize: privileges and documentation of the functions.
-- Runs after the functions pgrx generates from Rust.

-- CREATE FUNCTION grants EXECUTE to PUBLIC; Supabase's default privileges also
-- grant it to the API roles. Take it away, by name, and grant it to the
-- privileged roles only.
DO $grants$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY['integrations.create_secret(uuid, text, text)', 'integrations.update_secret(uuid, text)',
                             'integrations.read_secret(uuid)', 'integrations.delete_secret(uuid)',
                             'integrations.rotate_data_key()', 'integrations.rotate_master_key()',
                             'integrations.reencrypt_secrets(integer)', 'integrations.keyring_status()']::regprocedure[]
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role, integrations_admin', f);
    END LOOP;
END
$grants$;
REVOKE ALL ON FUNCTION integrations.keys_guard_delete() FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON integrations.keys, integrations.secrets FROM anon, authenticated, service_role, integrations_admin;

COMMENT ON FUNCTION integrations.create_secret(uuid, text, text) IS
    'Encrypts p_secret (AES-256-GCM under the active data key, bound to the new id and p_business_id) and stores it; returns the secret id. Privileged callers only. 22023 on NULL or oversized input. Audited.';
COMMENT ON FUNCTION integrations.update_secret(uuid, text) IS
    'Replaces the value of secret p_secret_id, sealed under the active data key. PT404 (P0002 inside the database) if there is no such secret. Privileged callers only. Audited.';
COMMENT ON FUNCTION integrations.read_secret(uuid) IS
    'Decrypts and returns secret p_secret_id, or NULL if there is none. XX001 if the stored ciphertext was altered or moved; 55000 if the master key is missing or wrong. Privileged callers only. Every read is audited, so it needs a read-write transaction.';
COMMENT ON FUNCTION integrations.delete_secret(uuid) IS
    'Deletes secret p_secret_id; returns whether it existed. Privileged callers only. Audited.';
COMMENT ON FUNCTION integrations.rotate_data_key() IS
    'Makes a new random data key active (the old one is retired but still opens its secrets) and returns its id. Follow with integrations.reencrypt_secrets() until it returns 0.';
COMMENT ON FUNCTION integrations.rotate_master_key() IS
    'Re-wraps every data key under the master key in integrations.master_key_file, unwrapping with the one in integrations.previous_master_key_file; returns how many keys were re-wrapped. Secrets are not touched.';
COMMENT ON FUNCTION integrations.reencrypt_secrets(integer) IS
    'Re-encrypts up to p_batch_size secrets still sealed under a retired data key, oldest key first (FOR UPDATE SKIP LOCKED); returns how many. A secret that fails authentication is left as it is and named in a WARNING (and by verify_secrets); 0 means nothing re-encryptable is left. Each call is one short transaction''s work: safe to interrupt and call again.';
COMMENT ON FUNCTION integrations.keyring_status() IS
    'One row per data key: id, status (active/retired), creation time and how many secrets it seals. Never returns key material.';

-- The install-time helpers of sql/pg/install.sql have done their work.
DROP FUNCTION integrations.install_tenant_table(text, text, boolean), integrations.install_api_functions(text, text[]),
    integrations.install_legacy_signatures();
