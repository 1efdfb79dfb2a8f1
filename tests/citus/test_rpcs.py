"""The RPCs on a distributed database, called on the coordinator the way
PostgREST calls them (tests/client/postgrest.py): the same answers as on one
node, tenant isolation included, with every row on the shards of its
business's worker — not in the coordinator's empty shells."""

import uuid

import pytest

from conftest import COORDINATOR, NODES, connect
from postgrest import RpcError, rpc

B1 = "b1000000-0000-4000-8000-000000000001"
B2 = "b2000000-0000-4000-8000-000000000002"
OWNER1 = "a1000000-0000-4000-8000-00000000000a"
OWNER2 = "a2000000-0000-4000-8000-00000000000b"
MEMBER1 = "a1000000-0000-4000-8000-0000000000cc"
T = {"p_business_id": "uuid", "p_config": "jsonb", "p_secret_id": "uuid", "p_integration_id": "uuid",
     "p_scopes": "text[]", "p_rate_limit": "integer", "p_credentials": "jsonb", "p_settings": "jsonb",
     "p_connection_config": "jsonb", "p_capabilities": "jsonb", "p_success": "boolean"}


def user(sub):
    return {"sub": sub, "aud": "authenticated"}


@pytest.fixture(scope="module")
def db(distributed_db):
    with connect(COORDINATOR, distributed_db) as c:
        c.execute("INSERT INTO public.businesses VALUES (%s, 'One', %s), (%s, 'Two', %s)", [B1, OWNER1, B2, OWNER2])
        c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'member')", [B1, MEMBER1])
    return distributed_db


def shard_rows(db, table, business):
    """(the port of the worker holding business's shard of table, its rows of business there)."""
    with connect(COORDINATOR, db) as c:
        host = c.execute("""SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
                            WHERE p.shardid = get_shard_id_for_distribution_column(%s::regclass, %s::uuid)""",
                         [table, business]).fetchone()[0]
    with connect(host, db) as w:
        w.execute("SET citus.override_table_visibility = off")
        w.execute("SET search_path = public")  # shard_name() leaves public out
        name = w.execute("SELECT shard_name(%s::regclass, get_shard_id_for_distribution_column(%s::regclass, %s::uuid))",
                         [table, table, business]).fetchone()[0]
        n = w.execute(f"SELECT count(*) FROM {name} WHERE business_id = %s", [business]).fetchone()[0]
    return host, n


@pytest.mark.parametrize("kind,provider", [("ai_avatar", "heygen"), ("email", "brevo"), ("blog", "wordpress")])
def test_owner_flow_of_each_kind(db, kind, provider):
    with connect(COORDINATOR, db) as c:
        key = f"{kind}_live_{uuid.uuid4().hex[:6]}"
        iid = rpc(c, f"set_{kind}_integration", {"p_business_id": B1, "p_provider": provider, "p_api_key": key},
                  role="authenticated", claims=user(OWNER1), types=T)
        uuid.UUID(iid)
        rows = rpc(c, f"get_{kind}_integration", {"p_business_id": B1}, role="authenticated", claims=user(MEMBER1),
                   types=T, volatile=False, returns_set=True, scalar=False)
        assert [r["id"] for r in rows] == [iid] and rows[0]["provider"] == provider and key not in str(rows)
        assert rpc(c, f"get_{kind}_secret", {"p_business_id": B1}, role="service_role", types=T) == key
        # the row and its secret are on the worker holding B1's shard
        port, n = shard_rows(db, f"public.{kind}_integrations", B1)
        assert port in NODES[1:] and n == 1
        assert shard_rows(db, "integrations.secrets", B1)[0] == port
        # a secret read by its id alone (no business to route by): every shard is asked
        secret_id = c.execute(f"SELECT secret_id FROM public.{kind}_integrations WHERE business_id = %s",
                              [B1]).fetchone()[0]
        assert rpc(c, "read_secret", {"p_secret_id": str(secret_id)}, role="service_role", types=T,
                   schema="integrations") == key
        # a member may read, not manage; a stranger neither; anon gets 401
        with pytest.raises(RpcError) as e:
            rpc(c, f"delete_{kind}_integration", {"p_business_id": B1}, role="authenticated", claims=user(MEMBER1), types=T)
        assert (e.value.status, e.value.sqlstate) == (403, "42501")
        for role, claims, status in [("authenticated", user(OWNER2), 403), ("anon", {}, 401)]:
            with pytest.raises(RpcError) as e:
                rpc(c, f"get_{kind}_integration", {"p_business_id": B1}, role=role, claims=claims, types=T,
                    volatile=False, returns_set=True, scalar=False)
            assert (e.value.status, e.value.sqlstate) == (status, "42501")
        # delete: the row and its secret go, on the shard (the row trigger)
        before = c.execute("SELECT count(*) FROM integrations.secrets WHERE business_id = %s", [B1]).fetchone()[0]
        assert rpc(c, f"delete_{kind}_integration", {"p_business_id": B1}, role="authenticated",
                   claims=user(OWNER1), types=T) == ""
        assert rpc(c, f"get_{kind}_secret", {"p_business_id": B1}, role="service_role", types=T) is None
        assert c.execute("SELECT count(*) FROM integrations.secrets WHERE business_id = %s",
                         [B1]).fetchone()[0] == before - 1


def test_secret_reads_are_audited_on_the_shards(db):
    with connect(COORDINATOR, db) as c:
        rpc(c, "set_ai_avatar_integration", {"p_business_id": B2, "p_provider": "heygen", "p_api_key": "hg_two"},
            role="authenticated", claims=user(OWNER2), types=T)
        c.execute("SELECT integrations.flush_audit_log()")
        audited = "SELECT count(*) FROM integrations.audit_log WHERE action = 'read_secret' AND business_id = %s"
        before = c.execute(audited, [B2]).fetchone()[0]
        for _ in range(3):
            # GET /rpc: a READ ONLY transaction, still audited (the shared-memory queue)
            assert rpc(c, "get_ai_avatar_secret", {"p_business_id": B2}, role="service_role", types=T,
                       volatile=False) == "hg_two"
        assert c.execute("SELECT integrations.flush_audit_log()").fetchone()[0] is True
        assert c.execute(audited, [B2]).fetchone()[0] == before + 3
        _, on_shard = shard_rows(db, "integrations.audit_log", B2)
        assert on_shard >= before + 3


def test_connections_api_keys_and_esp(db):
    with connect(COORDINATOR, db) as c:
        iid = rpc(c, "create_integration", {
            "p_business_id": B2, "p_provider": "shopify", "p_name": "Main Store", "p_auth_method": "api_key",
            "p_api_key": "shpat_0123456789abcdef", "p_key_prefix": "shpat_",
            "p_connection_config": {"domain": "two.myshopify.com"}}, role="authenticated", claims=user(OWNER2), types=T)
        got = rpc(c, "get_integration", {"p_integration_id": iid}, role="authenticated", claims=user(OWNER2), types=T,
                  volatile=False)
        assert got["key_prefix"] == "shpat_" and "0123456789abcdef" not in str(got)
        creds = rpc(c, "get_integration_credentials", {"p_integration_id": iid}, role="service_role", types=T)
        assert creds["api_key"] == "shpat_0123456789abcdef"
        # another business's owner gets what an unknown id gets
        assert rpc(c, "get_integration", {"p_integration_id": iid}, role="authenticated", claims=user(OWNER1),
                   types=T, volatile=False) is None
        rpc(c, "update_integration_health", {"p_integration_id": iid, "p_success": True}, role="service_role", types=T)
        [row] = rpc(c, "create_api_key", {"p_business_id": B2, "p_name": "gateway", "p_scopes": ["content:read"],
                                         "p_rate_limit": 100}, role="authenticated", claims=user(OWNER2), types=T,
                    returns_set=True, scalar=False)
        [ok] = rpc(c, "verify_api_key", {"p_api_key": row["api_key"]}, role="service_role", types=T,
                   returns_set=True, scalar=False)
        assert ok["business_id"] == B2
        rpc(c, "set_esp_integration", {"p_business_id": B2, "p_provider": "mailchimp",
                                       "p_credentials": {"api_key": "mc-secret-1"}},
            role="authenticated", claims=user(OWNER2), types=T)
        esp = rpc(c, "get_esp_credentials", {"p_business_id": B2, "p_provider": "mailchimp"}, role="service_role",
                  types=T)
        assert "mc-secret-1" in str(esp)
