"""Fixtures of the Citus level: the local cluster and databases on it
(citus_cluster.py), distributed or about to be."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "client"))  # postgrest.py: calls in PostgREST's shape

from citus_cluster import (COORDINATOR, NODES, ROOT, citus_database,  # noqa: E402,F401
                           connect, drop_database, scaled_out_database, start)


@pytest.fixture(scope="session")
def cluster():
    start()
    return NODES


@pytest.fixture(scope="module")
def citus_db(cluster):
    """A database as citus_database() makes it; the module distributes."""
    name = citus_database("pgi_citus_")
    yield name
    drop_database(name)


@pytest.fixture(scope="module")
def distributed_db(cluster):
    """scaled_out_database() with the tenant table attached."""
    name = scaled_out_database("pgi_citus_")
    with connect(COORDINATOR, name) as c:
        c.execute("SELECT integrations.attach_tenant_table('public.businesses', 'profile_id')")
    yield name
    drop_database(name)
