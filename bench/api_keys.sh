#!/usr/bin/env bash
# verify_api_key at the server's own durability, 20,000 businesses with one
# key each, next to its floor in the same run. The floor is the indexed SELECT
# of the key row by its hash (already computed: verify_api_key also hashes the
# key, checks it in constant time, enforces the hourly limit and counts the use),
# one index scan per key, in the same table: every use is added to its key's
# row by the audit writer, and the floor reads the rows as those updates left
# them. Also printed: the same floor on a copy of the table that no update has
# touched (floor_keys), to show what the churn costs both.
# - per call, server side: one statement verifying each of the 20,000 keys
#   once, its time divided by 20,000, median of 5 rounds;
# - throughput: pgbench, 2 clients, prepared statements, one call per
#   transaction, committed at the server's durability.
# Targets (issue 13): per call <= 3x the floor, pgbench >= 0.5x the floor's tps.
# Prints the server's fsync / synchronous_commit and the audit mode. Not a test.
set -euo pipefail
port=${1:-28817}
bin=${PGI_PGBIN:-/usr/lib/postgresql/15/bin}
db=pgi_bench_api_keys
psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres)
seconds=${PGI_BENCH_SECONDS:-10}
"${psql[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
"${psql[@]}" -d "$db" -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_integrations;
CREATE TABLE businesses (id uuid PRIMARY KEY, n integer UNIQUE NOT NULL);
INSERT INTO businesses SELECT gen_random_uuid(), g FROM generate_series(1, 20000) g;
-- the keys in clear, for the callers (a gateway gets them from its requests)
CREATE TABLE bench_keys (n integer PRIMARY KEY, key text NOT NULL, hash text NOT NULL);
INSERT INTO bench_keys
SELECT b.n, k.api_key, encode(sha256(convert_to(k.api_key, 'UTF8')), 'hex')
FROM businesses b, LATERAL create_api_key(b.id, 'gateway', '{content:read,orders:write}', NULL, 10000000) k;
CREATE TABLE floor_keys (LIKE api_keys INCLUDING ALL);
INSERT INTO floor_keys SELECT * FROM api_keys;
GRANT SELECT ON bench_keys, floor_keys TO service_role;
VACUUM ANALYZE;
SQL
one() { # role statement -> µs per call (one transaction, committed)
  "${psql[@]}" -d "$db" -At -v ON_ERROR_STOP=1 <<SQL | tail -1
BEGIN;
SET LOCAL ROLE $1;
$2 \g /dev/null
SELECT extract(epoch FROM clock_timestamp() - now()) * 1e6 / 20000;
COMMIT;
SQL
}
for round in 1 2 3 4 5; do
  echo "verify_api_key $(one service_role "SELECT count(*) FROM bench_keys b, LATERAL verify_api_key(b.key, 'content:read') v")"
  # (a scalar subquery: an index scan per key, never a hash join)
  echo "floor_verify $(one postgres "SELECT count((SELECT (id, business_id, scopes) FROM api_keys f WHERE f.key_hash = b.hash AND f.is_active)) FROM bench_keys b")"
  echo "floor_untouched $(one postgres "SELECT count((SELECT (id, business_id, scopes) FROM floor_keys f WHERE f.key_hash = b.hash AND f.is_active)) FROM bench_keys b")"
done > /tmp/pgi_api_keys.$$
dir=$(mktemp -d)
trap 'rm -rf "$dir" /tmp/pgi_api_keys.$$' EXIT
# the scope as E'content\x3aread': pgbench would take a plain ":read" for one of its variables
printf '\\set i random(1, 20000)\nSELECT api_key_id FROM verify_api_key((SELECT key FROM bench_keys WHERE n = :i), E'"'"'content\\x3aread'"'"');\n' > "$dir/verify.sql"
printf '\\set i random(1, 20000)\nSELECT id, business_id, scopes FROM api_keys WHERE key_hash = (SELECT hash FROM bench_keys WHERE n = :i) AND is_active;\n' > "$dir/floor.sql"
tps() { PGOPTIONS="${2:-}" "$bin/pgbench" -n -M prepared -c 2 -j 2 -T "$seconds" -h 127.0.0.1 -p "$port" -U postgres \
          -f "$dir/$1.sql" "$db" 2>/dev/null | awk '/^tps = /{print $3}'; }
settings=$("${psql[@]}" -d "$db" -At -c "SELECT current_setting('fsync') || ' / ' || current_setting('synchronous_commit') || ' / ' || (integrations.audit_status()->>'mode')")
{
  cat /tmp/pgi_api_keys.$$
  echo "pgbench_verify $(tps verify "-c role=service_role")"
  echo "pgbench_floor $(tps floor)"
} | SETTINGS="$settings" python3 -c '
import os, sys, statistics
v = {}
for line in sys.stdin:
    k, x = line.split()
    v.setdefault(k, []).append(float(x))
m = {k: statistics.median(x) for k, x in v.items()}
print("fsync / synchronous_commit / audit mode: " + os.environ["SETTINGS"])
r = m["verify_api_key"] / m["floor_verify"]
print("%-36s %9s %9s %6s %s" % ("per call, one statement over 20,000", "rpc µs", "floor µs", "ratio", "target"))
print("%-36s %9.2f %9.2f %6.2f <= 3.0 %s" % ("verify_api_key", m["verify_api_key"], m["floor_verify"], r,
                                             "met" if r <= 3 else "MISSED"))
print("%-36s %9s %9.2f %6.2f" % ("  floor on an untouched copy", "", m["floor_untouched"],
                                 m["verify_api_key"] / m["floor_untouched"]))
r = m["pgbench_verify"] / m["pgbench_floor"]
print("%-36s %9s %9s %6s" % ("pgbench, 2 clients (tps)", "rpc", "floor", "ratio"))
print("%-36s %9.0f %9.0f %6.2f >= 0.5 %s" % ("verify_api_key, default durability", m["pgbench_verify"],
                                             m["pgbench_floor"], r, "met" if r >= 0.5 else "MISSED"))
'
"${psql[@]}" -d "$db" -At -c "SELECT integrations.flush_audit_log()" >/dev/null
"${psql[@]}" -d postgres -c "DROP DATABASE $db"
