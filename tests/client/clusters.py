"""Clusters a test module starts for itself (scripts/cluster.sh), at
PostgreSQL's default durability: `audit_queued` with the library preloaded,
`audit_plain` without. Per server version, like their ports."""

import os
import subprocess
import time
import uuid

import psycopg

from conftest import CLUSTER_SUFFIX, PORT_OFFSET, supabase_shape

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
QUEUED_PORT, PLAIN_PORT, STANDBY_PORT = (p + PORT_OFFSET for p in (28819, 28820, 28821))
QUEUED, PLAIN = "audit_queued" + CLUSTER_SUFFIX, "audit_plain" + CLUSTER_SUFFIX


def cluster(cmd, name, port, preload=True):
    env = dict(os.environ, PGI_PRELOAD="1" if preload else "0")
    subprocess.run(["bash", f"{ROOT}/scripts/cluster.sh", cmd, name, str(port)], check=True, env=env)


def connect(port, db="postgres", autocommit=True):
    return psycopg.connect(f"host=127.0.0.1 port={port} dbname={db} user=postgres", autocommit=autocommit)


def wait_for_server(port, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with connect(port) as c:
                if not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not come back")
        time.sleep(0.3)


def new_db(port, prefix="pgi_audit_"):
    """A Supabase-shaped database with the extension."""
    name = prefix + uuid.uuid4().hex[:8]
    with connect(port) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    with connect(port, name) as c:
        supabase_shape(c)
        c.execute("CREATE EXTENSION pg_integrations")
    return name
