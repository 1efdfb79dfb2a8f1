"""A local Citus cluster (scripts/citus.sh: a coordinator and two workers on
loopback, each preloading citus and pg_integrations) and databases on it
shaped like a sharded Supabase project: the Supabase roles and grants, the
app's businesses table distributed by id, the extension, and
integrations.distribute()."""

import os
import subprocess
import sys
import uuid

import psycopg
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
sys.path.insert(0, os.path.join(ROOT, "tests", "client"))  # postgrest.py: calls in PostgREST's shape

COORDINATOR, WORKER1, WORKER2 = (int(p) for p in subprocess.run(
    ["bash", f"{ROOT}/scripts/citus.sh", "ports"], check=True, capture_output=True, text=True).stdout.split())
NODES = (COORDINATOR, WORKER1, WORKER2)
SUPABASE_SHAPE = os.path.join(ROOT, "tests/fixtures/supabase_shape.sql")


def connect(port, db="postgres", **kw):
    # an empty search path: every regclass prints with its schema
    return psycopg.connect(f"host=127.0.0.1 port={port} dbname={db} user=postgres options='-c search_path=pg_catalog'",
                           autocommit=True, **kw)


@pytest.fixture(scope="session")
def cluster():
    subprocess.run(["bash", f"{ROOT}/scripts/citus.sh", "start"], check=True)
    return NODES


def citus_database(prefix):
    """A new database on every node, joined into one Citus cluster, with the
    Supabase shape and a businesses table distributed by id, before CREATE
    EXTENSION pg_integrations (which Citus propagates to the workers)."""
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
        c.execute("CREATE TABLE public.businesses (id uuid PRIMARY KEY, name text NOT NULL, profile_id uuid NOT NULL)")
        c.execute("SELECT create_distributed_table('public.businesses', 'id')")
        c.execute("GRANT SELECT ON public.businesses TO authenticated, service_role")
        c.execute("CREATE EXTENSION pg_integrations")
    return name


def drop_database(name):
    for port in NODES:
        with connect(port) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def citus_db(cluster):
    """A database as citus_database() makes it; the module distributes."""
    name = citus_database("pgi_citus_")
    yield name
    drop_database(name)


def share_master_key(db):
    """The coordinator's master key file on every worker, as an operator copies
    it: a call routed to a worker opens the secrets there. The first data key
    is made first (on an empty keyring, it makes the key file)."""
    with connect(COORDINATOR, db) as c:
        c.execute("SELECT integrations.rotate_data_key()")
    source = os.path.join(ROOT, "target/clusters/citus_coordinator/data/pg_integrations.key")
    for worker in ("citus_worker1", "citus_worker2"):
        target = os.path.join(ROOT, f"target/clusters/{worker}/data/pg_integrations.key")
        subprocess.run(["install", "-o", "postgres", "-g", "postgres", "-m", "600", source, target], check=True)


@pytest.fixture(scope="module")
def distributed_db(cluster):
    """citus_database() after integrations.distribute() and
    attach_tenant_table(): what an operator has once scaled out."""
    name = citus_database("pgi_citus_")
    share_master_key(name)
    with connect(COORDINATOR, name) as c:
        c.execute("SELECT integrations.distribute()")
        c.execute("SELECT integrations.attach_tenant_table('public.businesses', 'profile_id')")
    yield name
    drop_database(name)
