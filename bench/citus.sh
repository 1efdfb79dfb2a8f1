#!/usr/bin/env bash
# The secret read on the local Citus cluster (scripts/citus.sh: a coordinator
# and two workers on this machine), at default durability, 2,000 businesses
# with one AI-avatar integration each, distributed with p_route_calls:
# - the remote commands Citus issues for one call: delegated by Citus (a bare
#   SELECT in autocommit by a login role) and routed by the call itself (the
#   same call inside a transaction block, as PostgREST's statements are: one
#   statement, integrations.route_call, on the business's worker);
# - pgbench, 1 and 2 clients, prepared as a back end's driver would send it
#   (simple protocol here, so the business id reaches Citus as a constant),
#   next to the floor: the router SELECT of the row's secret id.
# Only NOTICE and DETAIL lines of the calls are shown (never their answers).
# Not a test. Prints tps and µs per call; bench/RESULTS.md has the estimate
# for more workers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=/usr/lib/postgresql/15/bin
read -r coordinator w1 w2 <<< "$(bash "$root/scripts/citus.sh" ports)"
db=pgi_bench_citus
seconds=${PGI_BENCH_SECONDS:-10}
n=2000
bash "$root/scripts/citus.sh" start
q() { "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
for p in "$coordinator" "$w1" "$w2"; do
  q -p "$p" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  q -p "$p" -d "$db" -c "CREATE EXTENSION citus"
done
q -p "$coordinator" -d "$db" <<SQL
SET client_min_messages = warning;
SELECT citus_set_coordinator_host('127.0.0.1', $coordinator);
SELECT citus_add_node('127.0.0.1', $w1);
SELECT citus_add_node('127.0.0.1', $w2);
\i $root/tests/fixtures/supabase_shape.sql
CREATE TABLE public.businesses (id uuid PRIMARY KEY, name text NOT NULL, profile_id uuid NOT NULL);
SELECT create_distributed_table('public.businesses', 'id');
CREATE EXTENSION pg_integrations;
SELECT integrations.rotate_data_key();
SQL
for w in citus_worker1 citus_worker2; do
  install -o postgres -g postgres -m 600 "$root/target/clusters/citus_coordinator/data/pg_integrations.key" \
    "$root/target/clusters/$w/data/pg_integrations.key"
done
# business g: 00000000-0000-4000-8000-1000000xxxxx (the last group is g + 100000000000, decimal digits)
q -p "$coordinator" -d "$db" <<SQL
SET client_min_messages = warning;
SELECT count(*) FROM integrations.distribute(p_route_calls => true);
SELECT integrations.attach_tenant_table('public.businesses', 'profile_id');
INSERT INTO public.businesses
  SELECT ('00000000-0000-4000-8000-' || (100000000000 + g))::uuid, 'shop ' || g, gen_random_uuid() FROM generate_series(1, $n) g;
SELECT count(set_ai_avatar_integration(('00000000-0000-4000-8000-' || (100000000000 + g))::uuid, 'heygen', 'hg_' || g))
  FROM generate_series(1, $n) g;
DROP ROLE IF EXISTS pgi_bench_backend;
CREATE ROLE pgi_bench_backend LOGIN BYPASSRLS IN ROLE service_role;
GRANT SELECT ON public.ai_avatar_integrations TO pgi_bench_backend;
SQL
biz="'00000000-0000-4000-8000-100000000017'"
echo "== remote commands for one call, routed (autocommit):"
"$bin/psql" -X -q -h 127.0.0.1 -p "$coordinator" -U pgi_bench_backend -d "$db" \
  -c "SET citus.log_remote_commands = on" -c "SET client_min_messages = log" \
  -c "SELECT get_ai_avatar_secret($biz)" 2>&1 | grep -E "^(NOTICE|DETAIL)" | sed 's/connectionId.*//'
echo "   (a bare SELECT f(...): Citus delegates nothing else, not even SELECT f(...) IS NOT NULL)"
echo "== the same call inside a transaction block (Citus does not delegate; the call routes itself):"
"$bin/psql" -X -q -h 127.0.0.1 -p "$coordinator" -U pgi_bench_backend -d "$db" \
  -c "SET citus.log_remote_commands = on" -c "SET client_min_messages = log" \
  -c "BEGIN" -c "SELECT get_ai_avatar_secret($biz)" -c "COMMIT" 2>&1 \
  | grep -E "^(NOTICE|DETAIL)" | sed 's/connectionId.*//'
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '\\set i random(100000000001, %s)\nSELECT get_ai_avatar_secret('"'"'00000000-0000-4000-8000-:i'"'"');\n' $((100000000000 + n)) > "$dir/delegated.sql"
printf '\\set i random(100000000001, %s)\nBEGIN;\nSELECT get_ai_avatar_secret('"'"'00000000-0000-4000-8000-:i'"'"');\nCOMMIT;\n' $((100000000000 + n)) > "$dir/routed.sql"
printf '\\set i random(100000000001, %s)\nBEGIN READ ONLY;\nSELECT get_ai_avatar_secret('"'"'00000000-0000-4000-8000-:i'"'"');\nCOMMIT;\n' $((100000000000 + n)) > "$dir/readonly.sql"
printf '\\set i random(100000000001, %s)\nBEGIN;\nSET LOCAL ROLE service_role;\nSELECT get_ai_avatar_secret('"'"'00000000-0000-4000-8000-:i'"'"');\nCOMMIT;\n' $((100000000000 + n)) > "$dir/nologin.sql"
printf '\\set i random(100000000001, %s)\nSELECT secret_id FROM ai_avatar_integrations WHERE business_id = '"'"'00000000-0000-4000-8000-:i'"'"';\n' $((100000000000 + n)) > "$dir/floor.sql"
tps() { "$bin/pgbench" -n -M simple -c "$2" -j "$2" -T "$seconds" -h 127.0.0.1 -p "$coordinator" -U pgi_bench_backend \
          -f "$dir/$1.sql" "$db" 2>/dev/null | awk '/^tps = /{print $3}'; }
# CPU seconds used so far by one cluster's server processes: the postmaster's
# own and its exited children's (cutime, cstime), plus its live children's
cpu() {
  local pm; pm=$(head -1 "$root/target/clusters/$1/data/postmaster.pid")
  { cat "/proc/$pm/stat"; for c in $(pgrep -P "$pm"); do cat "/proc/$c/stat" 2>/dev/null; done; } \
    | python3 -c "
import os, sys
lines = sys.stdin.read().splitlines()
hz = os.sysconf('SC_CLK_TCK')
def f(l): return l.rsplit(')', 1)[1].split()
pm = f(lines[0])
total = sum(int(x) for x in pm[11:15]) + sum(int(f(l)[11]) + int(f(l)[12]) for l in lines[1:])
print(total / hz)"
}
echo "== pgbench, default durability, ${seconds}s each: tps at 1 and 2 clients; µs per call at 1 client;"
echo "   CPU µs per call (2 clients) spent by the coordinator's and the workers' server processes"
printf '%-44s %9s %9s %9s %11s %9s\n' "" "1 client" "µs/call" "2 clients" "coord CPU" "workers"
for k in delegated routed readonly nologin floor; do
  one=$(tps "$k" 1)
  before=$(for c in citus_coordinator citus_worker1 citus_worker2; do cpu $c; done | tr '\n' ' ')
  out=$("$bin/pgbench" -n -M simple -c 2 -j 2 -T "$seconds" -h 127.0.0.1 -p "$coordinator" -U pgi_bench_backend \
          -f "$dir/$k.sql" "$db" 2>/dev/null)
  after=$(for c in citus_coordinator citus_worker1 citus_worker2; do cpu $c; done | tr '\n' ' ')
  two=$(awk '/^tps = /{print $3}' <<< "$out"); calls=$(awk '/number of transactions actually processed/{print $NF}' <<< "$out")
  calls=${calls%%/*}
  label=$k
  [ "$k" = delegated ] && label="get_ai_avatar_secret, delegated by Citus"
  [ "$k" = routed ] && label="the same in a transaction block: routed"
  [ "$k" = readonly ] && label="the same in a READ ONLY block (a GET)"
  [ "$k" = nologin ] && label="the same as service_role (SET LOCAL ROLE)"
  [ "$k" = floor ] && label="floor: router SELECT of the secret id"
  python3 -c "
b = [float(x) for x in '$before'.split()]; a = [float(x) for x in '$after'.split()]
n = $calls
print('%-44s %9.0f %9.0f %9.0f %11.0f %9.0f' % ('$label', $one, 1e6 / $one, $two, (a[0] - b[0]) * 1e6 / n, (a[1] + a[2] - b[1] - b[2]) * 1e6 / n))"
done
for p in "$coordinator" "$w1" "$w2"; do q -p "$p" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done
q -p "$coordinator" -d postgres -c "DROP ROLE IF EXISTS pgi_bench_backend"
