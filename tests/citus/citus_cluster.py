"""The local Citus cluster (scripts/citus.sh: a coordinator and two workers on
loopback, each preloading citus and pg_integrations) and databases on it
shaped like a sharded Supabase project. Shared by tests/citus and by the
client suite's Citus mode (PGI_CITUS=1, tests/client/conftest.py)."""

import os
import subprocess
import uuid

import psycopg

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
COORDINATOR, WORKER1, WORKER2 = (int(p) for p in subprocess.run(
    ["bash", f"{ROOT}/scripts/citus.sh", "ports"], check=True, capture_output=True, text=True).stdout.split())
NODES = (COORDINATOR, WORKER1, WORKER2)
COORDINATOR_DIR = os.path.join(ROOT, "target/clusters/citus_coordinator")
SUPABASE_SHAPE = os.path.join(ROOT, "tests/fixtures/supabase_shape.sql")
BUSINESSES = "id uuid PRIMARY KEY, name text NOT NULL, profile_id uuid NOT NULL"


def connect(port, db="postgres", **kw):
    # an empty search path: every regclass prints with its schema
    return psycopg.connect(f"host=127.0.0.1 port={port} dbname={db} user=postgres options='-c search_path=pg_catalog'",
                           autocommit=True, **kw)


def start():
    subprocess.run(["bash", f"{ROOT}/scripts/citus.sh", "start"], check=True)


def citus_database(prefix, businesses=BUSINESSES):
    """A new database on every node, joined into one Citus cluster, with the
    Supabase shape and a businesses table (of the given columns) distributed
    by id, before CREATE EXTENSION pg_integrations (which Citus propagates to
    the workers)."""
    name = prefix + uuid.uuid4().hex[:8]
    for port in NODES:
        with connect(port) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        with connect(port, name) as c:
            c.execute("CREATE EXTENSION citus")
    with connect(COORDINATOR, name) as c:
        c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (COORDINATOR,))
        for port in (WORKER1, WORKER2):
            c.execute("SELECT citus_add_node('127.0.0.1', %s)", (port,))
        c.execute("SET search_path = public")
        with open(SUPABASE_SHAPE) as f:
            c.execute(f.read())
        c.execute(f"CREATE TABLE public.businesses ({businesses})")
        c.execute("SELECT create_distributed_table('public.businesses', 'id')")
        c.execute("GRANT SELECT ON public.businesses TO authenticated, service_role")
        c.execute("CREATE EXTENSION pg_integrations")
    return name


def drop_database(name):
    for port in NODES:
        with connect(port) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def share_master_key(db):
    """The coordinator's master key file on every worker, as an operator copies
    it: a call routed to a worker opens the secrets there. The first data key
    is made first (on an empty keyring, it makes the key file)."""
    with connect(COORDINATOR, db) as c:
        c.execute("SELECT integrations.rotate_data_key()")
    source = os.path.join(COORDINATOR_DIR, "data/pg_integrations.key")
    for worker in ("citus_worker1", "citus_worker2"):
        target = os.path.join(ROOT, f"target/clusters/{worker}/data/pg_integrations.key")
        subprocess.run(["install", "-o", "postgres", "-g", "postgres", "-m", "600", source, target], check=True)


def scaled_out_database(prefix, businesses=BUSINESSES):
    """citus_database() after integrations.distribute(): what an operator has
    once scaled out (the tenant table not attached yet)."""
    name = citus_database(prefix, businesses)
    share_master_key(name)
    with connect(COORDINATOR, name) as c:
        c.execute("SELECT integrations.distribute()")
    return name
