"""Calls that route themselves (src/tenancy/route/): on a distributed
database, an RPC with a p_business_id called on the coordinator — in
PostgREST's shape, as a NOLOGIN role, inside a transaction — runs on the
worker that holds the business as one statement, with the caller's role and
signed-in user, its arguments sealed in transit."""

import os
import uuid

import psycopg
import pytest

from conftest import COORDINATOR, NODES, ROOT, connect
from postgrest import RpcError, rpc

OWNER = "a3000000-0000-4000-8000-00000000000a"
STRANGER = "a3000000-0000-4000-8000-00000000000f"
BUSINESSES = [f"c{i}000000-0000-4000-8000-00000000000{i}" for i in range(1, 7)]
T = {"p_business_id": "uuid", "p_config": "jsonb"}
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "SELECT assign_distributed_transaction_id", "PREPARE", "ABORT",
                       "ROLLBACK", "SELECT worker_", "SET ")


def user(sub):
    return {"sub": sub, "aud": "authenticated"}


@pytest.fixture(scope="module")
def db(distributed_db):
    with connect(COORDINATOR, distributed_db) as c:
        for b in BUSINESSES:
            c.execute("INSERT INTO public.businesses VALUES (%s, 'shop', %s)", [b, OWNER])
    return distributed_db


def worker_of(c, business):
    return c.execute("""SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
                        WHERE p.shardid = get_shard_id_for_distribution_column('public.businesses'::regclass, %s::uuid)""",
                     [business]).fetchone()[0]


class RemoteCommands:
    """Citus's remote commands of one connection (citus.log_remote_commands)."""

    def __init__(self, conn):
        self.seen = []
        conn.add_notice_handler(lambda d: self.seen.append((d.message_primary or "", d.message_detail or "")))
        conn.execute("SET citus.log_remote_commands = on")
        conn.execute("SET client_min_messages = log")

    def clear(self):
        self.seen.clear()

    def work(self):
        """(command, detail) of every remote command but transaction control."""
        out = []
        for message, detail in self.seen:
            if message.startswith("issuing "):
                command = message[len("issuing "):]
                if not command.startswith(TRANSACTION_CONTROL):
                    out.append((command, detail))
        return out


def test_postgrest_calls_run_whole_on_the_business_worker(db):
    with connect(COORDINATOR, db) as admin:
        placement = {b: worker_of(admin, b) for b in BUSINESSES}
    assert set(placement.values()) == set(NODES[1:]), "the businesses span both workers"
    with connect(COORDINATOR, db) as c:
        remote = RemoteCommands(c)
        for b in BUSINESSES:
            key = f"hg_{uuid.uuid4().hex}"
            for fn, body, role, claims, kw in [
                ("set_ai_avatar_integration", {"p_business_id": b, "p_provider": "heygen", "p_api_key": key},
                 "authenticated", user(OWNER), {}),
                ("get_ai_avatar_integration", {"p_business_id": b}, "authenticated", user(OWNER),
                 {"volatile": False, "returns_set": True, "scalar": False}),
                ("get_ai_avatar_secret", {"p_business_id": b}, "service_role", {}, {"volatile": False}),
            ]:
                remote.clear()
                out = rpc(c, fn, body, role=role, claims=claims, types=T, **kw)
                if fn == "get_ai_avatar_secret":
                    assert out == key
                if fn == "get_ai_avatar_integration":
                    assert [r["provider"] for r in out] == ["heygen"] and key not in str(out)
                work = remote.work()
                assert len(work) == 1, (fn, work)
                command, detail = work[0]
                assert "integrations.route_call(" in command, command
                assert f"@127.0.0.1:{placement[b]} " in detail, (fn, detail)
                # the API key travels sealed: not in the statement Citus sends
                assert key not in command


def test_a_routed_call_acts_as_its_caller(db):
    b = BUSINESSES[0]
    with connect(COORDINATOR, db) as c:
        rpc(c, "set_ai_avatar_integration", {"p_business_id": b, "p_provider": "heygen", "p_api_key": "hg_x"},
            role="authenticated", claims=user(OWNER), types=T)
        # a stranger is refused on the worker as on one node; anon too; a read-only GET works
        for role, claims, status in [("authenticated", user(STRANGER), 403), ("anon", {}, 401)]:
            with pytest.raises(RpcError) as e:
                rpc(c, "get_ai_avatar_integration", {"p_business_id": b}, role=role, claims=claims, types=T,
                    volatile=False, returns_set=True, scalar=False)
            assert (e.value.status, e.value.sqlstate) == (status, "42501")
        # the owner may not read the secret unless the coordinator's setting says so
        with pytest.raises(RpcError) as e:
            rpc(c, "get_ai_avatar_secret", {"p_business_id": b}, role="authenticated", claims=user(OWNER), types=T)
        assert e.value.sqlstate == "42501"
        c.execute("SET integrations.owner_can_read_secrets = on")
        assert rpc(c, "get_ai_avatar_secret", {"p_business_id": b}, role="authenticated", claims=user(OWNER),
                   types=T) == "hg_x"
        c.execute("RESET integrations.owner_can_read_secrets")
        # the write's audit row, on the worker, names the caller
        who = c.execute("""SELECT actor_role, actor_user_id FROM integrations.audit_log
                           WHERE business_id = %s AND action = 'set' ORDER BY at DESC LIMIT 1""",
                        [b]).fetchone()
        assert who == ("authenticated", uuid.UUID(OWNER))


def test_nologin_roles_and_transaction_blocks(db):
    """What Citus's own delegation cannot do: a role that cannot log in to
    the workers (Supabase's API roles) in autocommit, and a call inside a
    transaction block that the block's ROLLBACK undoes on the worker."""
    b = BUSINESSES[1]
    with connect(COORDINATOR, db) as c:
        remote = RemoteCommands(c)
        c.execute("SET ROLE service_role")
        remote.clear()
        iid = c.execute("SELECT public.set_ai_avatar_integration(%s::uuid, 'heygen', 'hg_nologin')", [b]).fetchone()[0]
        assert c.execute("SELECT public.get_ai_avatar_secret(%s::uuid)", [b]).fetchone()[0] == "hg_nologin"
        assert sum("route_call" in cmd for cmd, _ in remote.work()) == 2
        with c.transaction(force_rollback=True):
            c.execute("SELECT public.delete_ai_avatar_integration(%s::uuid)", [b])
            assert c.execute("SELECT count(*) FROM public.get_ai_avatar_integration(%s::uuid)", [b]).fetchone()[0] == 0
        assert [r[0] for r in c.execute("SELECT id FROM public.get_ai_avatar_integration(%s::uuid)", [b])] == [iid]
        c.execute("RESET ROLE")


def test_route_call_is_not_a_way_in(db):
    b = BUSINESSES[2]
    with connect(COORDINATOR, db) as c:
        c.execute("SELECT public.set_ai_avatar_integration(%s::uuid, 'heygen', 'hg_guarded')", [b])
        c.execute("SET ROLE authenticated")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT integrations.route_call('public.get_ai_avatar_secret(uuid)', '\\x00')")
        c.execute("RESET ROLE")
    port = worker_of(connect(COORDINATOR, db), b)
    with connect(port, db) as w:
        # a call not sealed by the keyring, or sealed for another function, does not open
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("SELECT integrations.route_call('public.get_ai_avatar_secret(uuid)', %s)",
                      [b"\x00\x00\x00\x01" + os.urandom(40)])
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            w.execute("SELECT integrations.route_call('integrations.rotate_data_key()', '\\x00')")


def test_routed_failures_keep_their_sqlstate_and_keep_keys_out_of_logs(db):
    b = BUSINESSES[3]
    marker = f"sk_live_{uuid.uuid4().hex}"
    with connect(COORDINATOR, db) as c:
        # 22023 from the worker: a provider config that is not an object
        with pytest.raises(RpcError) as e:
            rpc(c, "set_ai_avatar_integration",
                {"p_business_id": b, "p_provider": "heygen", "p_api_key": marker, "p_config": [1]},
                role="service_role", types=T)
        assert e.value.status == 400 and e.value.sqlstate == "22023"
        assert marker not in str(e.value)
    for name in ("citus_coordinator", "citus_worker1", "citus_worker2"):
        with open(os.path.join(ROOT, f"target/clusters/{name}/server.log"), errors="replace") as f:
            assert marker not in f.read(), name


def test_calls_made_on_a_worker_route_too(db):
    """A client connected to a worker (Citus syncs the metadata there): a
    business whose shard is on that worker runs in place (Citus's local
    execution brings the routed statement back to the calling backend), one
    on the other worker is routed there."""
    with connect(COORDINATOR, db) as c:
        placement = {b: worker_of(c, b) for b in BUSINESSES}
        for b in BUSINESSES:
            c.execute("SELECT public.set_ai_avatar_integration(%s::uuid, 'heygen', %s)", [b, "hg_w_" + b[:2]])
    for port in NODES[1:]:
        with connect(port, db) as w:
            remote = RemoteCommands(w)
            w.execute("SET ROLE service_role")
            for b in BUSINESSES:
                remote.clear()
                assert w.execute("SELECT public.get_ai_avatar_secret(%s::uuid)", [b]).fetchone()[0] == "hg_w_" + b[:2]
                rows = w.execute("SELECT provider FROM public.get_ai_avatar_integration(%s::uuid)", [b]).fetchall()
                assert rows == [("heygen",)]
                sent = [d for cmd, d in remote.work() if "route_call" in cmd]
                if placement[b] == port:
                    assert all(f":{port} " in d or "local" in d for d in sent), sent
                else:
                    assert sent and all(f":{placement[b]} " in d for d in sent), sent
            w.execute("RESET ROLE")


def test_settings_propagated_to_the_workers_are_refused(db):
    """citus.propagate_set_commands replays a transaction's SET LOCALs on every
    connection Citus opens to a worker, the owner's too: a search path or
    claims of the caller's choosing would reach the owner's statements there.
    The extension refuses to run in such a transaction."""
    b = BUSINESSES[4]
    with connect(COORDINATOR, db) as c:
        c.execute("SELECT public.set_ai_avatar_integration(%s::uuid, 'heygen', 'hg_prop')", [b])
        for settings in (["SET LOCAL search_path = public, pg_catalog"],
                         ["SET LOCAL ROLE authenticated",
                          f"""SET LOCAL request.jwt.claims = '{{"sub": "{OWNER}"}}'"""]):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
                with c.transaction():
                    c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
                    for s in settings:
                        c.execute(s)
                    c.execute("SELECT count(*) FROM public.get_ai_avatar_integration(%s::uuid)", [b])
            assert "propagates SET LOCAL" in str(e.value)
        # inside a savepoint, after the SET: still refused; without propagation: fine
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with c.transaction():
                c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
                c.execute("SET LOCAL search_path = public")
                c.execute("SET LOCAL citus.propagate_set_commands = 'none'")
                with c.transaction():
                    c.execute("SELECT integrations.read_secret(gen_random_uuid())")
        with c.transaction():
            c.execute("SET LOCAL search_path = public")
            assert c.execute("SELECT count(*) FROM public.get_ai_avatar_integration(%s::uuid)", [b]).fetchone()[0] == 1


def test_a_routed_write_is_a_write_to_citus(db):
    """In a read-write transaction block a routed set_* goes as a statement
    Citus counts as a write on the business's shard: the transaction's later
    statements see it whichever connection they take, and writes through two
    workers commit in two phases."""
    with connect(COORDINATOR, db) as c:
        placement = {b: worker_of(c, b) for b in BUSINESSES}
        b1 = BUSINESSES[0]
        b2 = next(b for b in BUSINESSES if placement[b] != placement[b1])
        remote = RemoteCommands(c)
        with c.transaction():
            c.execute("SET LOCAL ROLE service_role")
            for b in (b1, b2):
                c.execute("SELECT public.set_ai_avatar_integration(%s::uuid, 'heygen', %s)", [b, "hg_tx_" + b[:2]])
            count = """SELECT count(*) FROM public.ai_avatar_integrations
                       WHERE business_id IN (%s, %s) AND updated_at = now()"""
            # Citus knows the shards were written (by the owner's connections): a read as
            # another role in the same transaction is refused, not answered without the writes
            with pytest.raises(psycopg.errors.ActiveSqlTransaction):
                with c.transaction():
                    c.execute(count, [b1, b2])
            # as the owner, a multi-shard read sees both writes
            c.execute("RESET ROLE")
            assert c.execute(count, [b1, b2]).fetchone()[0] == 2
        commands = [m for m, _ in remote.seen if m.startswith("issuing ")]
        assert any("integrations.routed_writes" in m and "route_call" in m for m in commands), commands
        assert any(m.startswith("issuing PREPARE TRANSACTION") for m in commands), commands
        for b in (b1, b2):
            assert c.execute("SELECT public.get_ai_avatar_secret(%s::uuid)", [b]).fetchone()[0] == "hg_tx_" + b[:2]
        assert c.execute("SELECT count(*) FROM integrations.routed_writes").fetchone()[0] == 0
