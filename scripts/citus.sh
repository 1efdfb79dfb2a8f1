#!/usr/bin/env bash
# A local Citus cluster for the scale-out tests: a coordinator and two workers,
# three PostgreSQL 15 clusters on loopback, each preloading citus and
# pg_integrations.
#   scripts/citus.sh build            build Citus 13.2.2 from ../shared/vendor (skipped when installed)
#   scripts/citus.sh start|stop       the three clusters (start also joins them)
#   scripts/citus.sh ports            the coordinator's and the workers' ports
# Citus is AGPL: it is built here from the vendored tarball, never committed.
set -euo pipefail

cmd=${1:?build|start|stop|ports}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=/usr/lib/postgresql/15/bin
pg_config=$bin/pg_config
# the vendored source sits beside the checkout (../shared/vendor); a clone
# elsewhere on the machine finds the workplace's copy
vendor=${PGI_CITUS_VENDOR:-}
if [ -z "$vendor" ]; then
  for v in "$root/../shared/vendor" /work/shared/vendor; do
    [ -f "$v/citus-13.2.2.tar.gz" ] && vendor=$v && break
  done
fi
version=13.2.2
coordinator=28841
workers=(28842 28843)
names=(citus_coordinator citus_worker1 citus_worker2)
ports=("$coordinator" "${workers[@]}")

# citus.so of this version: its control file names the version's SQL level (13.2-1)
built() { [ -f "$("$pg_config" --pkglibdir)/citus.so" ] \
          && grep -q "^default_version = '${version%.*}-1'" "$("$pg_config" --sharedir)/extension/citus.control" 2>/dev/null; }

build() {
  if built; then return; fi
  [ -n "$vendor" ] && [ -f "$vendor/citus-$version.tar.gz" ] \
    || { echo "Citus source missing: set PGI_CITUS_VENDOR to the folder holding citus-$version.tar.gz" >&2; exit 1; }
  pkgs=(liblz4-dev libzstd-dev libkrb5-dev postgresql-server-dev-15)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  echo "==> building Citus $version (3-4 minutes on 2 cores)"
  src=$root/target/citus-$version
  rm -rf "$src"
  mkdir -p "$root/target"
  tar xzf "$vendor/citus-$version.tar.gz" -C "$root/target"
  # Debian's 15.20 exports have_createdb_privilege(), which Citus redefines for < 16
  (cd "$src" && patch -s -p1 < "$vendor/citus-$version-pg15.20.patch")
  (cd "$src" && ./configure -q PG_CONFIG="$pg_config" --without-libcurl >/dev/null \
     && make -s -j2 >/dev/null 2>"$src/build.err" && make -s install >/dev/null 2>>"$src/build.err") \
    || { tail -30 "$src/build.err" >&2; exit 1; }
}

psql_at() { "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres "${@:2}"; }

case "$cmd" in
  build) build ;;
  ports) echo "$coordinator ${workers[*]}" ;;
  start)
    build
    for i in 0 1 2; do
      dir=$root/target/clusters/${names[$i]}
      fresh=0; [ -s "$dir/data/PG_VERSION" ] || fresh=1
      PGI_PRELOAD=0 PGI_PGBIN=$bin bash "$root/scripts/cluster.sh" start "${names[$i]}" "${ports[$i]}"
      if [ $fresh = 1 ]; then
        # citus first in the list, as Citus requires
        cat >> "$dir/data/postgresql.conf" <<CONF
shared_preload_libraries = 'citus,pg_integrations'
wal_level = logical
max_prepared_transactions = 100
citus.log_remote_commands = off
CONF
        PGI_PGBIN=$bin bash "$root/scripts/cluster.sh" restart "${names[$i]}" "${ports[$i]}"
      fi
    done
    ;;
  stop)
    for i in 0 1 2; do PGI_PGBIN=$bin bash "$root/scripts/cluster.sh" stop "${names[$i]}"; done
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
