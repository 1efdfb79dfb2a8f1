# pg_integrations: the two commands are `make demo` and `make test`.
PG_CONFIG   ?= /usr/lib/postgresql/15/bin/pg_config
PGBIN       := /usr/lib/postgresql/15/bin
DEMO_PORT   ?= 28815
TEST_PORT   ?= 28816
ROOT        := $(CURDIR)
PG_REGRESS  := $(shell $(PG_CONFIG) --pkglibdir 2>/dev/null)/pgxs/src/test/regress/pg_regress
REGRESS     := $(sort $(basename $(notdir $(wildcard tests/pg_regress/sql/*.sql))))

.PHONY: demo test setup install check-released bench-scale lint unit pgrx-test regress client bench stop clean-clusters

setup:
	@bash scripts/setup.sh

# Build and install the extension into the system PostgreSQL 15, with the
# install scripts of earlier releases (CREATE EXTENSION ... VERSION '0.1.0'
# works, and the upgrade test starts from there).
install: setup check-released
	cargo pgrx install --pg-config $(PG_CONFIG)
	@bash scripts/install_released.sh $(PG_CONFIG)

# Released SQL scripts are frozen: refuse any edit.
check-released:
	@bash scripts/check_released_sql.sh

demo: install
	@bash scripts/cluster.sh start demo $(DEMO_PORT)
	@$(PGBIN)/psql -X -q -h 127.0.0.1 -p $(DEMO_PORT) -U postgres -d postgres \
	  -c "DROP DATABASE IF EXISTS pg_integrations_demo" -c "CREATE DATABASE pg_integrations_demo"
	@$(PGBIN)/psql -X -h 127.0.0.1 -p $(DEMO_PORT) -U postgres -d pg_integrations_demo \
	  -v ON_ERROR_STOP=1 -f demo/walkthrough.sql
	@echo
	@echo "The demo cluster is running (data in target/clusters/demo/data)."
	@echo "  connect: psql -h 127.0.0.1 -p $(DEMO_PORT) -U postgres pg_integrations_demo"
	@echo "  stop:    make stop"

stop:
	@bash scripts/cluster.sh stop demo
	@bash scripts/cluster.sh stop test

# Every test level; stops at the first failing one.
test: setup lint unit pgrx-test install regress client
	@bash scripts/cluster.sh stop test
	@echo "All test levels passed."

# Formatting and lints: warnings are errors.
lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

unit:
	cargo test --lib

pgrx-test:
	mkdir -p target/pgrx-test-data && chown postgres:postgres target/pgrx-test-data
	cargo pgrx test pg15 --runas postgres --pgdata $(ROOT)/target/pgrx-test-data

regress:
	@bash scripts/cluster.sh start test $(TEST_PORT)
	@rm -rf tests/pg_regress/results
	@mkdir -p tests/pg_regress/results && chown postgres tests/pg_regress/results
	@$(PGBIN)/psql -X -q -h 127.0.0.1 -p $(TEST_PORT) -U postgres -d postgres \
	  -c "DROP DATABASE IF EXISTS pg_integrations_regress" -c "CREATE DATABASE pg_integrations_regress"
	@$(PGBIN)/psql -X -q -h 127.0.0.1 -p $(TEST_PORT) -U postgres -d pg_integrations_regress \
	  -v ON_ERROR_STOP=1 -f tests/fixtures/supabase_shape.sql
	$(PG_REGRESS) --use-existing --host=127.0.0.1 --port=$(TEST_PORT) --user=postgres \
	  --bindir=$(PGBIN) --inputdir=tests/pg_regress --outputdir=tests/pg_regress \
	  --dbname=pg_integrations_regress $(REGRESS) \
	  || { cat tests/pg_regress/regression.diffs; exit 1; }

client:
	@bash scripts/cluster.sh start test $(TEST_PORT)
	PGI_PORT=$(TEST_PORT) PGI_CLUSTER_DIR=$(ROOT)/target/clusters/test \
	  python3 -m pytest -q -s tests/client

bench: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG)
	@bash scripts/cluster.sh start bench 28817
	@bash bench/run.sh 28817

# 1,000 vs 1,000,000 businesses, re-encryption rate, pgbench throughput (~15 min).
bench-scale: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG)
	@bash scripts/install_released.sh $(PG_CONFIG)
	@bash scripts/cluster.sh start bench 28817
	@bash bench/scale.sh 28817
