#!/usr/bin/env bash
# Scale: the same per-call server-side costs at 1,000 and at 1,000,000
# businesses (each with an AI avatar integration and a connection, both with a
# sealed key, loaded by bulk SQL: one INSERT ... SELECT per table, the keys
# sealed by integrations.create_secret inside it), printed side by side;
# target: cost at 1M within 1.25x of the cost at 1k. Then, at 1M:
# re-encrypting 1,000,000 secrets after rotate_data_key() (target >= 20,000
# secrets/s) and pgbench throughput of get_ai_avatar_secret with 2 clients next
# to its floor query's throughput (target >= 0.8x). Not a test.
#   bench/scale.sh PORT [SMALL] [LARGE]
set -euo pipefail
port=${1:-28817}
small=${2:-1000}
large=${3:-1000000}
bin=${PGI_PGBIN:-/usr/lib/postgresql/15/bin}
psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres)
here=$(cd "$(dirname "$0")" && pwd)

load() { # db businesses
  local db=$1 n=$2 t0
  t0=$(date +%s.%N)
  "${psql[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  "${psql[@]}" -d "$db" -v ON_ERROR_STOP=1 -v n="$n" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_integrations;
CREATE TABLE businesses (id uuid PRIMARY KEY, n integer UNIQUE NOT NULL, profile_id uuid NOT NULL);
INSERT INTO businesses SELECT gen_random_uuid(), g, 'a0000000-0000-4000-8000-00000000000a' FROM generate_series(1, :n) g;
SELECT integrations.attach_tenant_table('businesses') \g /dev/null
GRANT SELECT ON businesses TO authenticated, service_role;
INSERT INTO ai_avatar_integrations (business_id, provider, secret_id, avatar_id, voice_id, status, validated_at)
SELECT id, 'heygen', integrations.create_secret(id, 'hg_' || md5(id::text), 'heygen api key'), 'avatar', 'voice',
       'active', now()
FROM businesses;
INSERT INTO integration_connections (business_id, provider, name, environment, auth_method, api_key_secret_id)
SELECT id, 'checkout_com', 'Live', 'production', 'bearer_token',
       integrations.create_secret(id, 'sk_cko_' || md5(id::text), 'checkout_com api key')
FROM businesses;
-- the second floor of the pgbench comparison: the same read plus one plain log row
CREATE TABLE log_floor (at timestamptz, business_id uuid, action text, kind text, target_id uuid);
GRANT INSERT ON log_floor TO service_role;
VACUUM ANALYZE;
-- measure a warm server, as in production: every table and index in shared buffers
CREATE EXTENSION pg_prewarm;
SELECT count(pg_prewarm(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'integrations') AND c.relkind IN ('r', 'i', 't') \g /dev/null
SELECT count(pg_prewarm(c.reltoastrelid)) FROM pg_class c WHERE c.reltoastrelid <> 0
  AND c.relnamespace IN ('public'::regnamespace, 'integrations'::regnamespace) \g /dev/null
SQL
  "${psql[@]}" -d "$db" -v ON_ERROR_STOP=1 -f "$here/lib/scale_loop.sql"
  echo "loaded $db: $n businesses, $((2 * n)) secrets in $(python3 -c "print(f'{$(date +%s.%N) - $t0:.0f}')") s" >&2
}

small_db=pgi_scale_small
large_db=pgi_scale_large
load "$small_db" "$small"
load "$large_db" "$large"

ops="floor_avatar_row floor_secret_row get_ai_avatar_integration get_ai_avatar_secret set_ai_avatar_integration read_secret get_integration get_integration_credentials update_integration_health get_payment_providers_by_capability"
calls=2000
echo
echo "per-call server-side cost (µs, median of 3 rounds of $calls calls on random businesses, in one session"
echo "per database that has touched every page first; floor_*: plain index probes of an integration row"
echo "and of a secret row, for reference)"
measure() { # db: one session, its pages touched first, then 3 rounds of every op
  { echo "SELECT scale_touch() \\g /dev/null"
    for round in 1 2 3; do
      for op in $ops; do echo "SELECT '$op', '$1', scale_loop('$op', $calls);"; done
    done; } | "${psql[@]}" -d "$1" -At -F ' ' -v ON_ERROR_STOP=1
}
{ measure "$small_db"; measure "$large_db"; } | python3 -c '
import sys, statistics
rows = {}
for line in sys.stdin:
    op, db, us = line.split()
    rows.setdefault(op, {}).setdefault(db, []).append(float(us))
print("%-38s %12s %12s %7s %7s" % ("rpc", "'"$small"' biz", "'"$large"' biz", "ratio", "target"))
for op, r in rows.items():
    s = statistics.median(r["'"$small_db"'"]); l = statistics.median(r["'"$large_db"'"])
    if op.startswith("floor_"):  # the plain index probes, for reference: no target
        print("%-38s %12.1f %12.1f %7.2f" % (op, s, l, l / s))
    else:
        print("%-38s %12.1f %12.1f %7.2f %7.2f %s" % (op, s, l, l / s, 1.25, "met" if l / s <= 1.25 else "MISSED"))
'

echo
echo "re-encryption at $large businesses ($((2 * large)) secrets), batches of 10,000"
"${psql[@]}" -d "$large_db" -At <<'SQL'
SELECT 'rotated to data key ' || integrations.rotate_data_key();
DO $$
DECLARE
    t0 timestamptz := clock_timestamp();
    done_ bigint := 0;
    n integer;
BEGIN
    LOOP
        n := integrations.reencrypt_secrets(10000);
        done_ := done_ + n;
        COMMIT;  -- one transaction per batch, as an operator's loop would
        EXIT WHEN n = 0 OR done_ >= 1000000;
    END LOOP;
    RAISE NOTICE 're-encrypted % secrets in % s: % secrets/s (target >= 20000)', done_,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1),
        round(done_ / extract(epoch FROM clock_timestamp() - t0));
END $$;
SQL

echo
echo "pgbench, 2 clients, PostgREST-shaped transactions (BEGIN, SET LOCAL ROLE service_role, the call, COMMIT)"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
biz='(SELECT id FROM businesses WHERE n = :i)'
read="SELECT secret_id FROM ai_avatar_integrations WHERE business_id = $biz AND status = 'active' LIMIT 1;"
txn() { printf '\\set i random(1, %s)\nBEGIN;\nSET LOCAL ROLE service_role;\n%s\nCOMMIT;\n' "$large" "$1"; }
txn "SELECT get_ai_avatar_secret($biz);" > "$dir/rpc.sql"
txn "$read" > "$dir/floor.sql"
# every get_*_secret is audited, so its transaction writes: this floor writes a plain row too,
# in the same statement (as many round trips as the call)
txn "WITH r AS (SELECT id, business_id, secret_id FROM ai_avatar_integrations WHERE business_id = $biz AND status = 'active' LIMIT 1), w AS (INSERT INTO log_floor SELECT now(), business_id, 'read_secret', 'ai_avatar', id FROM r) SELECT secret_id FROM r;" > "$dir/floor_write.sql"
tps() { "$bin/pgbench" -n -M prepared -c 2 -j 2 -T 10 -h 127.0.0.1 -p "$port" -U postgres -f "$dir/$1.sql" "$large_db" 2>/dev/null \
        | awk '/^tps = /{print $3}'; }
for round in 1 2 3 4 5; do echo "$(tps rpc) $(tps floor) $(tps floor_write)"; done | python3 -c '
import sys, statistics
r = [tuple(map(float, l.split())) for l in sys.stdin]
med = lambda i: statistics.median(x[i] for x in r)
ratio = statistics.median(a / f for a, f, _ in r)
ratio_w = statistics.median(a / w for a, _, w in r)
print("get_ai_avatar_secret %.0f tps; floor (the read) %.0f tps; floor with a plain audit INSERT %.0f tps"
      % (med(0), med(1), med(2)))
print("  %.2fx the floor (target >= 0.80) %s; %.2fx the floor that also writes its audit row"
      % (ratio, "met" if ratio >= 0.8 else "MISSED", ratio_w))
'
"${psql[@]}" -d postgres -c "DROP DATABASE $small_db" -c "DROP DATABASE $large_db"
