-- Keys that include business_id (0.6.0): Citus distributes every table with a
-- business_id column by it, and accepts only primary keys, unique constraints,
-- unique indexes and foreign keys between such tables that contain it. This
-- holds for a fresh install (here) and an upgrade (11_upgrade compares the
-- two), so integrations.distribute() never has to rewrite a key.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_integrations;
CREATE TEMP VIEW per_business AS
SELECT c.oid::regclass AS tbl
FROM pg_class c
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_integrations'
WHERE c.relkind IN ('r', 'p')
  AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'business_id' AND NOT a.attisdropped);
-- The per-business tables: each has business_id NOT NULL (Citus refuses NULL
-- in the distribution column).
SELECT tbl, (SELECT attnotnull FROM pg_attribute WHERE attrelid = tbl AND attname = 'business_id') AS business_id_not_null
FROM per_business ORDER BY tbl::text;
-- Unique indexes (primary keys and unique constraints included) of those
-- tables without business_id: none.
SELECT i.indexrelid::regclass AS unique_index_without_business_id
FROM pg_index i JOIN per_business p ON p.tbl = i.indrelid
WHERE i.indisunique
  AND NOT (SELECT attnum FROM pg_attribute WHERE attrelid = i.indrelid AND attname = 'business_id') = ANY (i.indkey::int2[]);
-- Foreign keys between per-business tables that do not pair business_id
-- with business_id: none.
SELECT f.conrelid::regclass, f.conname AS foreign_key_without_business_id
FROM pg_constraint f
JOIN per_business p ON p.tbl = f.conrelid
JOIN per_business r ON r.tbl = f.confrelid
WHERE f.contype = 'f'
  AND NOT EXISTS (
    SELECT FROM unnest(f.conkey, f.confkey) AS k(col, refcol)
    WHERE (SELECT attname FROM pg_attribute WHERE attrelid = f.conrelid AND attnum = k.col) = 'business_id'
      AND (SELECT attname FROM pg_attribute WHERE attrelid = f.confrelid AND attnum = k.refcol) = 'business_id');
-- The lookups by the old key columns still lead their index: a secret by id,
-- an API key by hash, an OAuth state by hash, an endpoint by token.
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) ~ '\((id|key_hash|state_hash|endpoint_token|upload_post_username|integration_id|config_id), ' AS leads_with_old_key
FROM pg_index
WHERE indexrelid IN ('integrations.secrets_pkey'::regclass, 'public.api_keys_key_hash_key'::regclass,
                     'public.integration_oauth_states_state_hash_key'::regclass,
                     'public.integration_webhook_configs_endpoint_token_key'::regclass,
                     'public.unique_upload_post_username'::regclass,
                     'public.integration_metrics_hourly_pkey'::regclass,
                     'public.unique_provider_event'::regclass)
ORDER BY 1::text;
