"""integrations.distribute(p_route_calls => true): a back end's bare
`SELECT get_ai_avatar_secret(...)` runs on the worker that holds the
business, in one round trip (Citus's remote commands logged and counted),
with the master key file on every node, and its audit row is written there."""

import time

import psycopg
import pytest

from conftest import COORDINATOR, NODES, connect

BUSINESSES = [f"b{i}000000-0000-4000-8000-00000000000{i}" for i in range(1, 7)]
OWNER = "a1000000-0000-4000-8000-00000000000a"


@pytest.fixture(scope="module")
def routed_db(distributed_db):
    with connect(COORDINATOR, distributed_db) as c:
        plan = [s for (s,) in c.execute("SELECT * FROM integrations.distribute(p_route_calls => true)")]
        assert any("create_distributed_function('public.get_ai_avatar_secret(uuid)'" in s for s in plan)
        assert c.execute("SELECT count(*) FROM integrations.distribute(p_route_calls => true)").fetchone()[0] == 0
        # a back end's login role (Citus connects to the workers as the calling role)
        c.execute("DROP ROLE IF EXISTS pgi_backend")
        c.execute("CREATE ROLE pgi_backend LOGIN IN ROLE service_role")
        for b in BUSINESSES:
            c.execute("INSERT INTO public.businesses VALUES (%s, 'shop', %s)", [b, OWNER])
            c.execute("SELECT public.set_ai_avatar_integration(%s::uuid, 'heygen', %s)", [b, "hg_" + b[:2]])
    yield distributed_db
    with connect(COORDINATOR, distributed_db) as c:
        c.execute("DROP ROLE IF EXISTS pgi_backend")


def worker_of(c, business):
    return c.execute("""SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
                        WHERE p.shardid = get_shard_id_for_distribution_column('public.ai_avatar_integrations'::regclass, %s::uuid)""",
                     [business]).fetchone()[0]


def test_a_bare_call_runs_on_the_business_worker_in_one_round_trip(routed_db):
    with connect(COORDINATOR, routed_db) as admin:
        placement = {b: worker_of(admin, b) for b in BUSINESSES}
    assert set(placement.values()) == set(NODES[1:]), "the businesses span both workers"
    notices = []
    with psycopg.connect(f"host=127.0.0.1 port={COORDINATOR} dbname={routed_db} user=pgi_backend",
                         autocommit=True) as c:
        c.add_notice_handler(lambda d: notices.append((d.message_primary or "", d.message_detail or "")))
        c.execute("SET citus.log_remote_commands = on")
        c.execute("SET client_min_messages = log")
        for b in BUSINESSES:
            notices.clear()
            assert c.execute("SELECT get_ai_avatar_secret(%s::uuid)", [b]).fetchone()[0] == "hg_" + b[:2]
            remote = [(m, d) for m, d in notices if m.startswith("issuing ")]
            assert len(remote) == 1, remote
            message, detail = remote[0]
            assert "get_ai_avatar_secret" in message
            assert detail.startswith(f"on server pgi_backend@127.0.0.1:{placement[b]} "), detail
        # inside a transaction block Citus does not delegate; the call routes itself, through
        # the tenant table's row on the same worker (test_routed_calls.py)
        notices.clear()
        with c.transaction():
            assert c.execute("SELECT get_ai_avatar_secret(%s::uuid)", [BUSINESSES[0]]).fetchone()[0] == "hg_b1"
        routed = [(m, d) for m, d in notices if m.startswith("issuing ") and "route_call" in m]
        assert len(routed) == 1 and f"127.0.0.1:{placement[BUSINESSES[0]]} " in routed[0][1], notices
        assert not any(m.startswith("issuing ") and "get_ai_avatar_secret" in m and "route_call" not in m
                       for m, _ in notices)


def test_a_routed_read_is_audited_on_its_worker(routed_db):
    b = BUSINESSES[1]
    with connect(COORDINATOR, routed_db) as admin:
        port = worker_of(admin, b)
        audited = "SELECT count(*) FROM integrations.audit_log WHERE action = 'read_secret' AND business_id = %s"
        before = admin.execute(audited, [b]).fetchone()[0]
    with psycopg.connect(f"host=127.0.0.1 port={COORDINATOR} dbname={routed_db} user=pgi_backend",
                         autocommit=True) as c:
        c.execute("SELECT get_ai_avatar_secret(%s::uuid)", [b])
    # the read queued its record on the worker: that worker's writer commits it
    with connect(port, routed_db) as w:
        assert w.execute("SELECT integrations.flush_audit_log()").fetchone()[0] is True
    deadline = time.monotonic() + 10
    with connect(COORDINATOR, routed_db) as admin:
        while admin.execute(audited, [b]).fetchone()[0] < before + 1:
            assert time.monotonic() < deadline, "the routed read was not audited"
            time.sleep(0.2)


def test_a_data_key_rotation_on_the_coordinator_reaches_routed_reads(routed_db):
    with psycopg.connect(f"host=127.0.0.1 port={COORDINATOR} dbname={routed_db} user=pgi_backend",
                         autocommit=True) as c:
        # every worker backend of this connection caches the current data key now
        for b in BUSINESSES:
            assert c.execute("SELECT get_ai_avatar_secret(%s::uuid)", [b]).fetchone()[0] == "hg_" + b[:2]
        with connect(COORDINATOR, routed_db) as admin:
            new_key = admin.execute("SELECT integrations.rotate_data_key()").fetchone()[0]
            admin.execute("SELECT integrations.reencrypt_secrets(1000)")
            assert admin.execute("SELECT count(*) FROM integrations.secrets WHERE key_id <> %s",
                                 [new_key]).fetchone()[0] == 0
        # the workers open the re-sealed secrets with the new key, read from their copy of the keyring
        for b in BUSINESSES:
            assert c.execute("SELECT get_ai_avatar_secret(%s::uuid)", [b]).fetchone()[0] == "hg_" + b[:2]
        # and a new secret sealed on the coordinator under the new key opens on its worker
        with connect(COORDINATOR, routed_db) as admin:
            admin.execute("SELECT public.set_ai_avatar_integration(%s::uuid, 'heygen', 'hg_after_rotation')",
                          [BUSINESSES[2]])
        assert c.execute("SELECT get_ai_avatar_secret(%s::uuid)", [BUSINESSES[2]]).fetchone()[0] == "hg_after_rotation"
