#!/usr/bin/env bash
# Installs what building and testing pg_integrations needs, skipping whatever is
# already there, so a second run takes seconds.
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
PGRX_VERSION=0.18.0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

# Debian packages
pkgs=(postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} postgresql-contrib clang libclang-dev sudo)
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

# Register the system PostgreSQL with pgrx
if ! grep -qs "^pg${PG_MAJOR} = \"${PG_CONFIG}\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  echo "==> cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
  cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}"
fi
