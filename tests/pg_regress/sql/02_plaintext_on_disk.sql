-- The plaintext never reaches the table's heap file or the WAL.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off

CREATE FUNCTION pg_temp.on_disk(marker text, rel regclass) RETURNS TABLE (in_heap boolean, in_wal boolean)
LANGUAGE sql AS $$
    SELECT position(convert_to(marker, 'UTF8') IN pg_read_binary_file(pg_relation_filepath(rel))) > 0,
           bool_or(position(convert_to(marker, 'UTF8') IN pg_read_binary_file('pg_wal/' || w.name)) > 0)
    FROM pg_ls_waldir() w WHERE w.name ~ '^[0-9A-F]{24}$'
$$;

-- Positive control: the same check finds a marker stored in a plain table.
CREATE TABLE plain_store (v text);
INSERT INTO plain_store VALUES ('PGI-CONTROL-' || 'b7d1e0c4f2a9');
CHECKPOINT;
SELECT * FROM pg_temp.on_disk('PGI-CONTROL-' || 'b7d1e0c4f2a9', 'plain_store');

-- The secret store: neither the heap nor any WAL segment holds the marker.
SELECT integrations.create_secret('dddddddd-0000-4000-8000-000000000004', 'PGI-MARKER-' || '5e3c9a71d0f8') AS marker_id \gset
SELECT integrations.update_secret(:'marker_id', 'PGI-MARKER-' || '5e3c9a71d0f8' || '-v2');
CHECKPOINT;
SELECT * FROM pg_temp.on_disk('PGI-MARKER-' || '5e3c9a71d0f8', 'integrations.secrets');
SELECT integrations.read_secret(:'marker_id') = 'PGI-MARKER-' || '5e3c9a71d0f8' || '-v2' AS still_opens;
DROP TABLE plain_store;
