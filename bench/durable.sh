#!/usr/bin/env bash
# The AI-avatar RPCs at the server's own durability (fsync and
# synchronous_commit as configured: on, unless the operator changed them),
# 20,000 businesses with one integration each, next to their floors in the
# same run:
# - per call, server side: one statement calling the RPC once per business
#   (20,000 calls), its time divided by 20,000, median of 5 rounds; the
#   floor is the same statement around the indexed SELECT (or the upsert /
#   delete) of the row, measured right after it in each round; ratios are
#   the medians of the rounds' ratios;
# - throughput: pgbench, 2 clients, prepared statements, one call per
#   transaction, committed at the server's durability; at default durability
#   the RPC and its floor alternate for 3 rounds, medians compared (single
#   runs of the floor swung from 52,000 to 70,000 tps between minutes on a
#   2-core machine).
# Prints the server's fsync / synchronous_commit and the audit mode. Not a test.
#
# Side by side with the seed: with PGI_SEED naming seed 001's document
# (../shared/seeds/001_*.txt) and supabase_vault installed and preloaded in
# the cluster (its own build; never committed here), a second database runs
# the seed's migration script on Vault, and its RPCs are measured in the same
# rounds with the same statements.
set -euo pipefail
port=${1:-28817}
bin=${PGI_PGBIN:-/usr/lib/postgresql/15/bin}
db=pgi_bench_durable
psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres)
seconds=${PGI_BENCH_SECONDS:-10}
seed_db=pgi_bench_seed
seed=${PGI_SEED:-}
"${psql[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS $seed_db" -c "CREATE DATABASE $db"
"${psql[@]}" -d "$db" -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_integrations;
CREATE TABLE businesses (id uuid PRIMARY KEY, n integer UNIQUE NOT NULL, profile_id uuid NOT NULL);
INSERT INTO businesses SELECT gen_random_uuid(), g, 'a0000000-0000-4000-8000-00000000000a' FROM generate_series(1, 20000) g;
SELECT integrations.attach_tenant_table('businesses') \g /dev/null
GRANT SELECT ON businesses TO authenticated, service_role;
SELECT count(set_ai_avatar_integration(id, 'heygen', 'hg_' || md5(id::text), 'avatar', 'voice')) FROM businesses \g /dev/null
CREATE TABLE floor_ai_avatar (LIKE ai_avatar_integrations INCLUDING ALL);
INSERT INTO floor_ai_avatar SELECT * FROM ai_avatar_integrations;
GRANT SELECT, INSERT, UPDATE, DELETE ON floor_ai_avatar TO authenticated, service_role;
-- the delete floor: the row and its secret row, each by its index
CREATE TABLE floor_secrets (LIKE integrations.secrets INCLUDING ALL);
INSERT INTO floor_secrets SELECT * FROM integrations.secrets;
CREATE FUNCTION floor_upsert(b uuid) RETURNS uuid LANGUAGE sql AS $$
    INSERT INTO floor_ai_avatar (business_id, provider, avatar_id, provider_config, status, validated_at)
    VALUES (b, 'heygen', 'avatar-2', '{}', 'active', now())
    ON CONFLICT (business_id, provider) DO UPDATE SET avatar_id = EXCLUDED.avatar_id, status = 'active',
        validated_at = now(), updated_at = now()
    RETURNING id $$;
GRANT EXECUTE ON FUNCTION floor_upsert(uuid) TO authenticated;
CREATE FUNCTION floor_delete(b uuid) RETURNS void LANGUAGE sql AS $$
    WITH d AS (DELETE FROM floor_ai_avatar WHERE business_id = b RETURNING secret_id)
    DELETE FROM floor_secrets WHERE id IN (SELECT secret_id FROM d) $$;
VACUUM ANALYZE;
SQL
if [ -n "$seed" ]; then
  # The seed's migration script: the first SQL block after its heading, read
  # from the document at run time.
  migration=$(awk '/Migration Script/ {m = 1; next} m && /^```sql/ {on = 1; next} on && /^```/ {exit} on' "$seed")
  [ -n "$migration" ] || { echo "no migration script found in $seed" >&2; exit 1; }
  "${psql[@]}" -d postgres -c "CREATE DATABASE $seed_db"
  "${psql[@]}" -d "$seed_db" -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
CREATE EXTENSION supabase_vault CASCADE;
CREATE TABLE businesses (id uuid PRIMARY KEY, n integer UNIQUE NOT NULL, profile_id uuid NOT NULL);
INSERT INTO businesses SELECT gen_random_uuid(), g, 'a0000000-0000-4000-8000-00000000000a' FROM generate_series(1, 20000) g;
GRANT SELECT ON businesses TO authenticated, service_role;
$migration
SELECT count(set_ai_avatar_integration(id, 'heygen', 'hg_' || md5(id::text), 'avatar', 'voice')) FROM businesses \g /dev/null
VACUUM ANALYZE;
SQL
fi
SQL_TIME='SELECT extract(epoch FROM clock_timestamp() - now()) * 1e6 / 20000'
one() { # [db] role statement -> µs per call (one transaction, committed)
  local d=$db; if [ $# = 3 ]; then d=$1; shift; fi
  "${psql[@]}" -d "$d" -At -v ON_ERROR_STOP=1 <<SQL | tail -1
BEGIN;
SET LOCAL ROLE $1;
SET LOCAL request.jwt.claims = '{"sub":"a0000000-0000-4000-8000-00000000000a","role":"authenticated"}';
$2 \g /dev/null
$SQL_TIME;
COMMIT;
SQL
}
undo() { # [db] role statement, measured, then rolled back (its effect must not stay)
  local d=$db; if [ $# = 3 ]; then d=$1; shift; fi
  "${psql[@]}" -d "$d" -At -v ON_ERROR_STOP=1 <<SQL | tail -1
BEGIN;
SET LOCAL ROLE $1;
$2 \g /dev/null
$SQL_TIME;
ROLLBACK;
SQL
}
owner=authenticated
declare -A cases=(
  [get_ai_avatar_secret]="service_role|SELECT count(get_ai_avatar_secret(id)) FROM businesses"
  [floor_secret]="service_role|SELECT count((SELECT secret_id FROM floor_ai_avatar f WHERE f.business_id = b.id AND status = 'active' LIMIT 1)) FROM businesses b"
  [get_ai_avatar_integration]="$owner|SELECT count(*) FROM businesses b, LATERAL get_ai_avatar_integration(b.id)"
  [floor_get]="$owner|SELECT count(*) FROM businesses b, LATERAL (SELECT id, provider, avatar_id, voice_id, provider_config, status, validated_at FROM floor_ai_avatar f WHERE f.business_id = b.id AND status = 'active' LIMIT 1) f"
  [set_ai_avatar_integration]="$owner|SELECT count(set_ai_avatar_integration(id, 'heygen', 'hg_rotated_' || n, 'avatar-2', NULL)) FROM businesses"
  [floor_set]="$owner|SELECT count(floor_upsert(id)) FROM businesses"
)
# Every round, and every pgbench run, starts from vacuumed tables after a
# checkpoint (as pgbench vacuums before its own runs): the rounds update,
# delete and audit 20,000 rows each, and an autovacuum or checkpoint landing
# in the middle of one measurement and not of its floor's swung ratios by a
# third on this 2-core machine. Both databases are settled alike.
settle() {
  for d in "$db" ${seed:+"$seed_db"}; do
    "${psql[@]}" -d "$d" -c "VACUUM" -c "CHECKPOINT" >/dev/null
  done
}
for round in 1 2 3 4 5; do
  settle
  for k in get_ai_avatar_secret floor_secret get_ai_avatar_integration floor_get set_ai_avatar_integration floor_set; do
    IFS='|' read -r role stmt <<< "${cases[$k]}"
    echo "$k $(one "$role" "$stmt")"
  done
  echo "delete_ai_avatar_integration $(undo "$owner" "SET LOCAL request.jwt.claims = '{\"sub\":\"a0000000-0000-4000-8000-00000000000a\",\"role\":\"authenticated\"}'; SELECT count(delete_ai_avatar_integration(id)) FROM businesses")"
  echo "floor_delete $(undo postgres "SELECT count(floor_delete(id)) FROM businesses")"
  if [ -n "$seed" ]; then
    for k in get_ai_avatar_secret get_ai_avatar_integration set_ai_avatar_integration; do
      IFS='|' read -r role stmt <<< "${cases[$k]}"
      echo "seed_$k $(one "$seed_db" "$role" "$stmt")"
    done
    echo "seed_delete_ai_avatar_integration $(undo "$seed_db" "$owner" "SELECT count(delete_ai_avatar_integration(id)) FROM businesses")"
  fi
done > /tmp/pgi_durable.$$
dir=$(mktemp -d)
trap 'rm -rf "$dir" /tmp/pgi_durable.$$' EXIT
biz='(SELECT id FROM businesses WHERE n = :i)'
printf '\\set i random(1, 20000)\nSELECT get_ai_avatar_secret(%s);\n' "$biz" > "$dir/secret.sql"
printf '\\set i random(1, 20000)\nSELECT secret_id FROM floor_ai_avatar WHERE business_id = %s AND status = '"'"'active'"'"' LIMIT 1;\n' "$biz" > "$dir/floor.sql"
tps() { settle; PGOPTIONS="-c role=service_role ${2:-}" "$bin/pgbench" -n -M prepared -c 2 -j 2 -T "$seconds" -h 127.0.0.1 -p "$port" -U postgres \
          -f "$dir/$1.sql" "${3:-$db}" 2>/dev/null | awk '/^tps = /{print $3}'; }
settings=$("${psql[@]}" -d "$db" -At -c "SELECT current_setting('fsync') || ' / ' || current_setting('synchronous_commit') || ' / ' || (integrations.audit_status()->>'mode')")
{
  cat /tmp/pgi_durable.$$
  for round in 1 2 3; do
    echo "pgbench_secret $(tps secret)"
    echo "pgbench_floor $(tps floor)"
  done
  echo "pgbench_secret_async $(tps secret '-c synchronous_commit=off')"
  echo "pgbench_floor_async $(tps floor '-c synchronous_commit=off')"
  if [ -n "$seed" ]; then
    echo "seed_pgbench_secret $(tps secret '' "$seed_db")"
    echo "seed_pgbench_secret_async $(tps secret '-c synchronous_commit=off' "$seed_db")"
  fi
} | SETTINGS="$settings" python3 -c '
import os, sys, statistics
v = {}
for line in sys.stdin:
    k, x = line.split()
    v.setdefault(k, []).append(float(x))
m = {k: statistics.median(x) for k, x in v.items()}
def ratio(a, b):
    # each round measures both back to back: the median of the rounds ratios, and their range
    # (a drift between rounds moves both sides of one round alike)
    rs = [x / y for x, y in zip(v[a], v[b])]
    return statistics.median(rs), min(rs), max(rs)
print("fsync / synchronous_commit / audit mode: " + os.environ["SETTINGS"])
seed = "seed_get_ai_avatar_secret" in m
print("%-32s %9s %9s %6s %-11s %-12s %s" % ("per call, one statement over 20,000", "rpc µs", "floor µs", "ratio", "(rounds)", "target",
                                           "seed on Vault µs, times faster (target)" if seed else ""))
for rpc, floor, target, seed_target in [("get_ai_avatar_secret", "floor_secret", 2.0, None),
                                        ("get_ai_avatar_integration", "floor_get", 1.5, None),
                                        ("set_ai_avatar_integration", "floor_set", None, 3.0),
                                        ("delete_ai_avatar_integration", "floor_delete", None, 50.0)]:
    r, lo, hi = ratio(rpc, floor)
    t = ("%.1f %s" % (target, "met" if r <= target else "MISSED")) if target else "-"
    line = "%-32s %9.2f %9.2f %6.2f %-11s %-12s" % (rpc, m[rpc], m[floor], r, "%.2f-%.2f" % (lo, hi), t)
    if seed:
        x = ratio("seed_" + rpc, rpc)[0]
        line += " %9.2f %6.1fx" % (m["seed_" + rpc], x)
        if seed_target:
            line += " (>= %.0fx %s)" % (seed_target, "met" if x >= seed_target else "MISSED")
    print(line)
print("%-32s %9s %9s %6s %-11s %-12s %s" % ("pgbench, 2 clients (tps)", "rpc", "floor", "ratio", "(rounds)", "", "seed on Vault" if seed else ""))
for label, a, f, target in [("default durability", "pgbench_secret", "pgbench_floor", 0.8),
                            ("synchronous_commit = off", "pgbench_secret_async", "pgbench_floor_async", None)]:
    r, lo, hi = ratio(a, f)
    t = ("target >= %.1f %s" % (target, "met" if r >= target else "MISSED")) if target else ""
    line = "%-32s %9.0f %9.0f %6.2f %-11s %-12s" % ("get_ai_avatar_secret, " + label, m[a], m[f], r, "%.2f-%.2f" % (lo, hi), t)
    if seed:
        line += " %9.0f (%s)" % (m["seed_" + a], "above the seed" if m[a] > m["seed_" + a] else "BELOW the seed")
    print(line)
'
"${psql[@]}" -d postgres -c "DROP DATABASE $db" -c "DROP DATABASE IF EXISTS $seed_db"
