-- pg_integrations walk-through: the encrypted secret store.
-- Run by `make demo` against a fresh database; every step prints its result.
\set ON_ERROR_STOP 1
\pset footer off
\echo
\echo '== 1. Install the extension'
CREATE EXTENSION pg_integrations;
SELECT extname, extversion FROM pg_extension WHERE extname = 'pg_integrations';

\echo
\echo '== 2. Store two API keys for a business (sealed with AES-256-GCM before they are written)'
SELECT integrations.create_secret('6f1c2b1e-4d2a-4c53-9a77-3f0e8f2f0a01', 'sk_live_demo_4eC39HqLyjWDarjtT1zdp7dc', 'Stripe live key') AS stripe_secret_id \gset
SELECT integrations.create_secret('6f1c2b1e-4d2a-4c53-9a77-3f0e8f2f0a01', 'mlsn.demo-mailerlite-token', 'MailerLite token') AS mailer_secret_id \gset
\echo 'the table holds only ciphertext:'
SELECT id, business_id, description, key_id, encode(nonce, 'hex') AS nonce, length(ciphertext) AS ciphertext_bytes
FROM integrations.secrets ORDER BY created_at;

\echo
\echo '== 3. Read them back (privileged callers only)'
SELECT integrations.read_secret(:'stripe_secret_id') AS stripe_key;

\echo
\echo '== 4. API roles cannot touch the store'
SET ROLE authenticated;
\set ON_ERROR_STOP 0
SELECT integrations.read_secret(:'stripe_secret_id');
SELECT * FROM integrations.secrets;
\set ON_ERROR_STOP 1
RESET ROLE;

\echo
\echo '== 5. A ciphertext copied onto another row does not open'
INSERT INTO integrations.secrets (id, business_id, key_id, nonce, ciphertext)
SELECT '00000000-0000-4000-8000-0000000000aa', '00000000-0000-4000-8000-0000000000bb', key_id, nonce, ciphertext
FROM integrations.secrets WHERE id = :'stripe_secret_id';
\set ON_ERROR_STOP 0
SELECT integrations.read_secret('00000000-0000-4000-8000-0000000000aa');
\set ON_ERROR_STOP 1
DELETE FROM integrations.secrets WHERE id = '00000000-0000-4000-8000-0000000000aa';

\echo
\echo '== 6. Update a secret'
SELECT integrations.update_secret(:'mailer_secret_id', 'mlsn.rotated-token');
SELECT integrations.read_secret(:'mailer_secret_id') AS mailerlite_token;

\echo
\echo '== 7. Rotate the data key, then re-encrypt in batches'
SELECT * FROM integrations.keyring_status();
SELECT integrations.rotate_data_key() AS new_key_id;
SELECT integrations.reencrypt_secrets(1) AS reencrypted;
SELECT integrations.reencrypt_secrets(1) AS reencrypted;
SELECT integrations.reencrypt_secrets(1) AS reencrypted_0_means_done;
SELECT * FROM integrations.keyring_status();
SELECT integrations.read_secret(:'stripe_secret_id') AS stripe_key_still_opens;

\echo
\echo '== 8. Delete'
SELECT integrations.delete_secret(:'mailer_secret_id') AS deleted;
SELECT integrations.read_secret(:'mailer_secret_id') AS gone_reads_as_null;
