#!/usr/bin/env bash
# Copies the frozen install scripts of earlier releases (sql/released/) next to
# the one `cargo pgrx install` generated for the current version.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extdir="$(${1:-/usr/lib/postgresql/15/bin/pg_config} --sharedir)/extension"
current=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
for f in "$root"/sql/released/pg_integrations--*.sql; do
  [ "$(basename "$f")" = "pg_integrations--$current.sql" ] && continue
  install -m 0644 "$f" "$extdir/"
done
