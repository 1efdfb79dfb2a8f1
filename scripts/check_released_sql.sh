#!/usr/bin/env bash
# Released SQL scripts never change: a database that ran one must be able to
# trust that the next upgrade script starts from exactly what it ran.
# sql/released/SHA256SUMS lists every released script with its hash; this
# refuses (exit 1) an edited or deleted one, and an upgrade script that is
# neither released nor leading to the version being developed.
set -euo pipefail
cd "$(dirname "$0")/.."
sums=sql/released/SHA256SUMS
current=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
status=0

if ! sha256sum --quiet --strict -c "$sums"; then
  echo "check_released_sql: a released SQL script was edited or deleted (see above)." >&2
  echo "  Released scripts are frozen; put the change in a new upgrade script." >&2
  status=1
fi

for f in sql/pg_integrations--*--*.sql; do
  [ -e "$f" ] || continue
  if grep -q "  $f\$" "$sums"; then continue; fi
  target=${f##*--}; target=${target%.sql}
  if [ "$target" != "$current" ]; then
    echo "check_released_sql: $f is not released and does not lead to $current (Cargo.toml)." >&2
    status=1
  fi
done

# Every released install script's version needs a path to the current one.
for f in sql/released/pg_integrations--*.sql; do
  v=${f##*/pg_integrations--}; v=${v%.sql}
  [ "$v" = "$current" ] && continue
  if ! ls sql/pg_integrations--"$v"--*.sql >/dev/null 2>&1; then
    echo "check_released_sql: no upgrade script starts from released version $v." >&2
    status=1
  fi
done
exit $status
