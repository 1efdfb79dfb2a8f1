#!/usr/bin/env bash
# The seed RPCs as a client sees them: each call is one PostgREST-shaped
# transaction (BEGIN, SET LOCAL ROLE, SET LOCAL request.jwt.claims, the call,
# COMMIT) over a local connection with prepared statements, run by pgbench,
# next to the same transaction around the floor query. Ratio = floor TPS / RPC
# TPS, i.e. time per call relative to the floor, median of 3 interleaved rounds.
# Not a test.
set -euo pipefail
port=${1:-28817}
bin=${PGI_PGBIN:-/usr/lib/postgresql/15/bin}
db=pgi_bench_client
psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres)
"${psql[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
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
GRANT SELECT, INSERT, UPDATE ON floor_ai_avatar TO authenticated, service_role;
VACUUM ANALYZE;
SQL
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
claims='{"sub":"a0000000-0000-4000-8000-00000000000a","role":"authenticated"}'
biz='(SELECT id FROM businesses WHERE n = :i)'
write() { # name role statement
  printf '\\set i random(1, 20000)\nBEGIN;\nSET LOCAL ROLE %s;\nSET LOCAL request.jwt.claims = %s;\n%s\nCOMMIT;\n' \
    "$2" "'$claims'" "$3" > "$dir/$1.sql"
}
write get_ai_avatar_integration authenticated "SELECT * FROM get_ai_avatar_integration($biz);"
write floor_get authenticated "SELECT id, provider, avatar_id, voice_id, provider_config, status, validated_at FROM floor_ai_avatar WHERE business_id = $biz AND status = 'active' LIMIT 1;"
write get_ai_avatar_secret service_role "SELECT get_ai_avatar_secret($biz);"
write floor_secret service_role "SELECT secret_id FROM floor_ai_avatar WHERE business_id = $biz AND status = 'active' LIMIT 1;"
write set_ai_avatar_integration authenticated "SELECT set_ai_avatar_integration($biz, 'heygen', 'hg_rotated_0123456789abcdef', 'avatar-2', NULL);"
write floor_set authenticated "INSERT INTO floor_ai_avatar (business_id, provider, avatar_id, provider_config, status, validated_at) VALUES ($biz, 'heygen', 'avatar-2', '{}', 'active', now()) ON CONFLICT (business_id, provider) DO UPDATE SET avatar_id = COALESCE(EXCLUDED.avatar_id, floor_ai_avatar.avatar_id), provider_config = EXCLUDED.provider_config, status = 'active', validated_at = now(), updated_at = now() RETURNING id;"
tps() { "$bin/pgbench" -n -M prepared -c 1 -T 2 -h 127.0.0.1 -p "$port" -U postgres -f "$dir/$1.sql" "$db" 2>/dev/null \
        | awk '/^tps = /{print $3}'; }
pairs="get_ai_avatar_integration:floor_get:1.5 get_ai_avatar_secret:floor_secret:2.0 set_ai_avatar_integration:floor_set:2.0"
for round in 1 2 3; do
  for p in $pairs; do
    IFS=: read -r rpc floor target <<< "$p"
    echo "$rpc $(tps "$rpc") $(tps "$floor") $target"
  done
done | python3 -c '
import sys, statistics
rows = {}
for line in sys.stdin:
    rpc, a, f, target = line.split()
    rows.setdefault(rpc, []).append((float(a), float(f), float(target)))
print("%-52s %8s %9s %6s %6s" % ("rpc (one PostgREST-shaped transaction per call)", "rpc µs", "floor µs", "ratio", "target"))
for rpc, rs in rows.items():
    ratio = statistics.median(f / a for a, f, _ in rs)
    a = statistics.median(1e6 / a for a, _, _ in rs); f = statistics.median(1e6 / f for _, f, _ in rs)
    t = rs[0][2]
    print("%-52s %8.1f %9.1f %6.2f %6.1f %s" % (rpc, a, f, ratio, t, "met" if ratio <= t else "MISSED"))
'
"${psql[@]}" -d postgres -c "DROP DATABASE $db"
