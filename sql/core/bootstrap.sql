-- pg_integrations bootstrap: roles, the `integrations` schema and the secret
-- store's tables. Runs before the functions pgrx generates.

-- API roles as Supabase defines them, so one install works on vanilla
-- PostgreSQL and on Supabase. Roles are cluster-wide: they are created only
-- where missing and are not dropped with the extension.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    -- Back-end jobs (n8n, workers) get the extension's privileges by being
    -- granted this role.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'integrations_admin') THEN
        CREATE ROLE integrations_admin NOLOGIN NOINHERIT;
    END IF;
END
$roles$;

CREATE SCHEMA integrations;
COMMENT ON SCHEMA integrations IS
    'pg_integrations internals: the encrypted secret store and its keyring. Never exposed to API roles.';
REVOKE ALL ON SCHEMA integrations FROM PUBLIC, anon, authenticated, service_role;
GRANT USAGE ON SCHEMA integrations TO service_role, integrations_admin;

-- Data keys, each wrapped (AES-256-GCM) by the master key whose fingerprint it
-- records. At most one is active; new secrets are sealed with it. A key is never
-- deleted while a secret names it (trigger below; a foreign key would take a
-- FOR KEY SHARE lock on the active key's row for every new secret, serialising
-- all writers on one tuple).
CREATE TABLE integrations.keys (
    key_id        integer PRIMARY KEY CHECK (key_id > 0),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    wrapped_key   bytea NOT NULL CHECK (pg_catalog.length(wrapped_key) = 60),
    master_key_id text NOT NULL CHECK (master_key_id ~ '^[0-9a-f]{16}$'),
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    retired_at    timestamptz,
    rewrapped_at  timestamptz
);
CREATE UNIQUE INDEX keys_one_active ON integrations.keys ((true)) WHERE status = 'active';
COMMENT ON TABLE integrations.keys IS
    'Data keys of the secret store, wrapped by the master key (never stored in the database). master_key_id is a one-way fingerprint of the wrapping master key.';

-- One row per secret. Only ciphertext is ever written: the value is sealed in
-- Rust before the INSERT. The associated data binds (format, key_id, id,
-- business_id), so a ciphertext copied to another row or tenant does not open.
CREATE TABLE integrations.secrets (
    id          uuid CONSTRAINT secrets_pkey PRIMARY KEY,
    business_id uuid NOT NULL,
    description text NOT NULL DEFAULT '',
    format      smallint NOT NULL DEFAULT 1,
    key_id      integer NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
)
-- Room on each page for the new version of an updated row, so re-sealing a
-- secret is a HOT update that touches no index. (No CHECKs on the bytes: the
-- authentication tag already refuses any altered value, and a CHECK would be
-- parsed again by every statement that writes here.)
WITH (fillfactor = 70);
-- Random bytes do not compress: store them out of line without trying.
ALTER TABLE integrations.secrets ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
CREATE INDEX secrets_business_id_idx ON integrations.secrets (business_id);
-- Serves re-encryption (oldest key first) and the key foreign key.
CREATE INDEX secrets_key_id_idx ON integrations.secrets (key_id);
COMMENT ON TABLE integrations.secrets IS
    'Encrypted secrets (AES-256-GCM, format 1). Read them with integrations.read_secret(); the columns hold no plaintext.';

CREATE FUNCTION integrations.keys_guard_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM integrations.secrets WHERE key_id = OLD.key_id) THEN
        RAISE EXCEPTION 'data key % still seals secrets', OLD.key_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Re-encrypt them first: integrations.reencrypt_secrets().';
    END IF;
    RETURN OLD;
END $$;
COMMENT ON FUNCTION integrations.keys_guard_delete() IS
    'Trigger function: refuses to delete a data key that still seals secrets.';
CREATE TRIGGER keys_guard_delete BEFORE DELETE ON integrations.keys
    FOR EACH ROW EXECUTE FUNCTION integrations.keys_guard_delete();

-- Nobody but the extension's functions touches these tables.
REVOKE ALL ON integrations.keys, integrations.secrets FROM PUBLIC, anon, authenticated, service_role;
ALTER TABLE integrations.keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE integrations.secrets ENABLE ROW LEVEL SECURITY;

-- pg_dump carries the rows (not the master key), so a restore into a cluster
-- with the same key file opens every secret.
SELECT pg_catalog.pg_extension_config_dump('integrations.keys', '');
SELECT pg_catalog.pg_extension_config_dump('integrations.secrets', '');
