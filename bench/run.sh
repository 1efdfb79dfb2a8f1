#!/usr/bin/env bash
# Runs every benchmark in bench/ (each *.sql against a fresh database, then each
# *.sh) on the cluster listening on 127.0.0.1:$1, and prints their tables of ratios.
set -euo pipefail
port=${1:-28817}
here=$(cd "$(dirname "$0")" && pwd)
psql=("${PGI_PGBIN:-/usr/lib/postgresql/15/bin}/psql" -X -h 127.0.0.1 -p "$port" -U postgres)
echo "pg_integrations benchmarks — $(date -u +%F) — $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
for script in "$here"/*.sql; do
  db=pgi_bench_$(basename "$script" .sql)
  "${psql[@]}" -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  echo
  echo "== $(basename "$script")"
  "${psql[@]}" -q -d "$db" -f "$script"
  "${psql[@]}" -q -d postgres -c "DROP DATABASE $db"
done
for script in "$here"/*.sh; do
  case "$(basename "$script")" in run.sh|scale.sh|citus.sh) continue ;; esac  # make bench-scale, make bench-citus
  echo
  echo "== $(basename "$script")"
  bash "$script" "$port"
done
