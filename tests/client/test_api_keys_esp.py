"""Seed 004's API keys and e-mail service providers as PostgREST calls them:
HTTP statuses of every refusal, the hourly limit exact across four sessions in
both modes (preloaded: counted in shared memory; plain: in the key's row), a
restart in the middle of the hour, and a dump and restore of both tables."""

import datetime
import threading
import time

import psycopg
import pytest

import clusters
from clusters import PLAIN, PLAIN_PORT, QUEUED, QUEUED_PORT, cluster, wait_for_server
from conftest import connect, restored_copy
from postgrest import RpcError, rpc

BIZ = "0d000000-0000-4000-8000-000000000004"
OWNER = "0d000000-0000-4000-8000-0000000000aa"
MEMBER = "0d000000-0000-4000-8000-0000000000bb"
STRANGER = "0d000000-0000-4000-8000-0000000000cc"
TYPES = {"p_business_id": "uuid", "p_scopes": "text[]", "p_expires_at": "timestamptz", "p_rate_limit": "integer",
         "p_api_key_id": "uuid", "p_credentials": "jsonb", "p_settings": "jsonb", "p_integration_id": "uuid",
         "p_error": "jsonb"}


def claims(user):
    return {"sub": user, "aud": "authenticated"}


def call(c, fn, body, role="authenticated", user=None, **kw):
    return rpc(c, fn, body, role=role, claims=claims(user) if user else None, types=TYPES, **kw)


def refused(c, fn, body, **kw):
    with pytest.raises(RpcError) as e:
        call(c, fn, body, **kw)
    return e.value


def members(c, business=BIZ):
    c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'owner'), (%s, %s, 'member')",
              [business, OWNER, business, MEMBER])


def create_key(c, limit=1000, scopes=("content:read",), business=BIZ):
    [row] = call(c, "create_api_key", {"p_business_id": business, "p_name": "gateway", "p_scopes": list(scopes),
                                      "p_rate_limit": limit}, user=OWNER, returns_set=True, scalar=False)
    return row["api_key_id"], row["api_key"]


def verify(c, key, scope=None, read_only=False):
    body = {"p_api_key": key} if scope is None else {"p_api_key": key, "p_scope": scope}
    return call(c, "verify_api_key", body, role="service_role", returns_set=True, scalar=False,
                volatile=not read_only)


def test_api_key_calls_answer_with_postgrest_statuses(fresh_db):
    with connect(fresh_db) as c:
        members(c)
        key_id, key = create_key(c, limit=5, scopes=["content:read", "orders:write"])
        assert key.startswith("pgi_") and len(key) == 47
        # the gateway's call, as PostgREST's GET (read-only transaction) on a preloaded server
        [row] = verify(c, key, "content:read", read_only=True)
        assert row == {"api_key_id": key_id, "business_id": BIZ, "scopes": ["content:read", "orders:write"]}
        # refusals: who and what
        e = refused(c, "verify_api_key", {"p_api_key": key}, role="anon", returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (401, "42501")
        e = refused(c, "verify_api_key", {"p_api_key": key}, user=OWNER, returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (403, "42501")
        e = refused(c, "verify_api_key", {"p_api_key": key, "p_scope": "billing:write"}, role="service_role",
                    returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (403, "42501") and "billing:write" in e.message
        e = refused(c, "verify_api_key", {"p_api_key": key, "p_scope": "billing"}, role="service_role",
                    returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (400, "22023")
        # unknown, malformed, revoked and expired keys: one answer, whatever the key was
        answers = set()
        for bad in ["pgi_" + "A" * 43, "pgi_short", key[:-1] + ("A" if key[-1] != "A" else "B")]:
            e = refused(c, "verify_api_key", {"p_api_key": bad}, role="service_role", returns_set=True, scalar=False)
            answers.add((e.status, e.sqlstate, e.message, e.hint, e.detail))
        revoked_id, revoked = create_key(c)
        assert call(c, "revoke_api_key", {"p_api_key_id": revoked_id}, user=OWNER) is True
        expiring_id, expiring = create_key(c)
        c.execute("UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE id = %s", [expiring_id])
        e = refused(c, "rotate_api_key", {"p_api_key_id": expiring_id}, user=OWNER, returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (404, "PT404")
        for bad in [revoked, expiring]:
            e = refused(c, "verify_api_key", {"p_api_key": bad}, role="service_role", returns_set=True, scalar=False)
            answers.add((e.status, e.sqlstate, e.message, e.hint, e.detail))
        assert len(answers) == 1 and next(iter(answers))[:2] == (403, "42501")
        # the limit: 5 an hour, 1 used; the sixth gets 429
        for _ in range(4):
            verify(c, key)
        e = refused(c, "verify_api_key", {"p_api_key": key}, role="service_role", returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (429, "PT429") and "5" in e.message and e.hint

        # members list (no hash anywhere), owners manage, strangers and anon get nothing
        listed = call(c, "list_api_keys", {"p_business_id": BIZ}, user=MEMBER, volatile=False, returns_set=True,
                      scalar=False)
        assert {r["id"] for r in listed} == {key_id, revoked_id, expiring_id}
        assert all("key_hash" not in r and key[12:] not in str(r) for r in listed)
        e = refused(c, "create_api_key", {"p_business_id": BIZ, "p_name": "x", "p_scopes": ["a:b"]}, user=MEMBER,
                    returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (403, "42501")
        e = refused(c, "revoke_api_key", {"p_api_key_id": key_id}, user=MEMBER)
        assert (e.status, e.sqlstate) == (403, "42501")
        # a stranger naming this business's key gets the unknown key's answers, and takes no lock
        assert call(c, "revoke_api_key", {"p_api_key_id": key_id}, user=STRANGER) is False
        e = refused(c, "rotate_api_key", {"p_api_key_id": key_id}, user=STRANGER, returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (404, "PT404")
        e = refused(c, "list_api_keys", {"p_business_id": BIZ}, user=STRANGER, volatile=False, returns_set=True,
                    scalar=False)
        assert (e.status, e.sqlstate) == (403, "42501")
        e = refused(c, "list_api_keys", {"p_business_id": BIZ}, role="anon", volatile=False, returns_set=True,
                    scalar=False)
        assert e.status == 401
        e = refused(c, "create_api_key", {"p_business_id": BIZ, "p_name": "x", "p_scopes": ["Content:Read"]},
                    user=OWNER, returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (400, "22023")
        # rotation: a new key with the same settings, the old one refused
        [rotated] = call(c, "rotate_api_key", {"p_api_key_id": key_id}, user=OWNER, returns_set=True, scalar=False)
        e = refused(c, "verify_api_key", {"p_api_key": key}, role="service_role", returns_set=True, scalar=False)
        assert (e.status, e.sqlstate, e.message) == (403, "42501", next(iter(answers))[2])
        [row] = verify(c, rotated["api_key"], "orders:write")
        assert row["api_key_id"] == rotated["api_key_id"]
        e = refused(c, "rotate_api_key", {"p_api_key_id": key_id}, user=OWNER, returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (404, "PT404")
        # nothing of a key in the server's answers or the audit trail
        c.execute("SELECT integrations.flush_audit_log()")
        trail = c.execute("SELECT string_agg(t::text, ' ') FROM integrations.audit_log t WHERE kind = 'api_key'")
        text = trail.fetchone()[0]
        assert key[4:] not in text and rotated["api_key"][4:] not in text
        actions = c.execute("SELECT action, count(*) FROM integrations.audit_log WHERE kind = 'api_key' "
                            "GROUP BY 1 ORDER BY 1").fetchall()
        assert dict(actions) == {"create": 3, "revoke": 2, "rotate": 1}


def test_a_business_holds_at_most_100_active_keys(fresh_db):
    with connect(fresh_db) as c:
        members(c)
        first_id, _ = create_key(c)
        c.execute("SELECT count(*) FROM generate_series(2, 100) g, LATERAL create_api_key(%s, 'k' || g, '{a:b}') k",
                  [BIZ])
        e = refused(c, "create_api_key", {"p_business_id": BIZ, "p_name": "101st", "p_scopes": ["a:b"]}, user=OWNER,
                    returns_set=True, scalar=False)
        assert (e.status, e.sqlstate) == (400, "23514") and "revoke one" in e.message
        # expired and revoked keys do not count; nor do other businesses' keys
        c.execute("UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE name = 'k2'")
        create_key(c)
        assert call(c, "revoke_api_key", {"p_api_key_id": first_id}, user=OWNER) is True
        create_key(c)
        c.execute("SELECT * FROM create_api_key('0d000000-0000-4000-8000-000000000099', 'other', '{a:b}')")
        assert c.execute("SELECT count(*) FROM api_keys WHERE business_id = %s AND is_active "
                         "AND (expires_at IS NULL OR expires_at > now())", [BIZ]).fetchone()[0] == 100


def test_esp_calls_answer_with_postgrest_statuses(fresh_db):
    creds = {"api_key": "pk_live_esp_client_0001", "list_id": "L42"}
    with connect(fresh_db) as c:
        members(c)
        esp_id = call(c, "set_esp_integration", {"p_business_id": BIZ, "p_provider": "klaviyo", "p_credentials": creds,
                                                 "p_settings": {"double_opt_in": True}}, user=OWNER)
        [row] = call(c, "get_esp_integrations", {"p_business_id": BIZ}, user=MEMBER, volatile=False,
                     returns_set=True, scalar=False)
        assert row["id"] == esp_id and row["credential_fields"] == ["api_key", "list_id"]
        assert "pk_live_esp_client_0001" not in str(row)
        assert call(c, "get_esp_credentials", {"p_business_id": BIZ, "p_provider": "klaviyo"}, role="service_role",
                    volatile=False) == creds
        e = refused(c, "get_esp_credentials", {"p_business_id": BIZ, "p_provider": "klaviyo"}, user=OWNER)
        assert (e.status, e.sqlstate) == (403, "42501")
        e = refused(c, "get_esp_credentials", {"p_business_id": BIZ, "p_provider": "klaviyo"}, role="anon")
        assert e.status == 401
        e = refused(c, "set_esp_integration", {"p_business_id": BIZ, "p_provider": "klaviyo", "p_credentials": creds},
                    user=MEMBER)
        assert (e.status, e.sqlstate) == (403, "42501")
        e = refused(c, "set_esp_integration", {"p_business_id": BIZ, "p_provider": "stripe", "p_credentials": creds},
                    user=OWNER)
        assert (e.status, e.sqlstate) == (400, "22023")
        e = refused(c, "record_esp_sync", {"p_integration_id": esp_id, "p_status": "done"}, role="service_role")
        assert (e.status, e.sqlstate) == (400, "22023")
        e = refused(c, "record_esp_sync", {"p_integration_id": esp_id, "p_status": "error",
                                           "p_error": {"detail": "x" * 200000}}, role="service_role")
        assert (e.status, e.sqlstate) == (400, "22023") and "8192" in e.message
        e = refused(c, "record_esp_sync", {"p_integration_id": BIZ, "p_status": "success"}, role="service_role")
        assert (e.status, e.sqlstate) == (404, "PT404")
        e = refused(c, "record_esp_sync", {"p_integration_id": esp_id, "p_status": "success"}, user=STRANGER)
        assert (e.status, e.sqlstate) == (404, "PT404")
        call(c, "record_esp_sync", {"p_integration_id": esp_id, "p_status": "error",
                                    "p_error": {"authorization": "Klaviyo-API-Key pk_live_esp_client_0001"}},
             role="service_role")
        [row] = call(c, "get_esp_integrations", {"p_business_id": BIZ}, user=OWNER, volatile=False,
                     returns_set=True, scalar=False)
        assert row["sync_status"] == "error" and "pk_live_esp_client_0001" not in str(row["error_log"])
        # realtime subscribers get the row without the sealed parts
        cols = c.execute("SELECT attnames FROM pg_publication_tables WHERE pubname = 'supabase_realtime' "
                         "AND tablename = 'esp_integrations'").fetchone()[0]
        assert "provider" in cols and "credentials" not in cols and "secret_id" not in cols
        assert call(c, "delete_esp_integration", {"p_business_id": BIZ, "p_provider": "klaviyo"}, user=OWNER) is True
        assert call(c, "delete_esp_integration", {"p_business_id": BIZ, "p_provider": "klaviyo"}, user=OWNER) is False


@pytest.mark.single_node
def test_both_tables_survive_dump_and_restore(admin, fresh_db, tmp_path):
    creds = {"api_key": "pk_live_restore_0002", "region": "eu"}
    with connect(fresh_db) as c:
        members(c)
        key_id, key = create_key(c, scopes=["content:read"])
        verify(c, key)
        call(c, "set_esp_integration", {"p_business_id": BIZ, "p_provider": "brevo", "p_credentials": creds},
             user=OWNER)
        c.execute("SELECT integrations.flush_audit_log()")
        before = c.execute("SELECT k::text FROM api_keys k ORDER BY id").fetchall()
        esp_before = c.execute("SELECT e::text FROM esp_integrations e").fetchall()
    for fmt in ("custom", "plain"):
        with restored_copy(admin, fresh_db, fmt, tmp_path) as (copy, dump):
            assert b"pk_live_restore_0002" not in dump and key[4:].encode() not in dump
            with connect(copy) as c:
                assert c.execute("SELECT k::text FROM api_keys k ORDER BY id").fetchall() == before
                assert c.execute("SELECT e::text FROM esp_integrations e").fetchall() == esp_before
                [row] = verify(c, key, "content:read")
                assert row["api_key_id"] == key_id
                assert call(c, "get_esp_credentials", {"p_business_id": BIZ, "p_provider": "brevo"},
                            role="service_role") == creds
                checked, failed, _ = c.execute("SELECT * FROM integrations.verify_secrets()").fetchone()
                assert checked >= 1 and failed == 0
                # the restored tables keep their guards
                with pytest.raises(Exception):
                    c.execute("INSERT INTO esp_integrations (business_id, provider, credentials) "
                              "VALUES (%s, 'brevo', '{\"api_key\": \"clear\"}')", [BIZ])


# --- the limit across sessions and restarts, in both modes --------------------

def wait_out_the_hour_end(margin_s=45):
    """The tests count one clock hour: do not start in its last seconds."""
    now = datetime.datetime.now(datetime.timezone.utc)
    left = 3600 - (now.minute * 60 + now.second)
    if left < margin_s:
        time.sleep(left + 1)


def hammer(port, db, key, sessions=4, attempts=60):
    """`sessions` threads, each on its own connection, verify `attempts` times."""
    passed, limited, other = [], [], []

    def run():
        with clusters.connect(port, db) as c:
            for _ in range(attempts):
                try:
                    verify(c, key)
                    passed.append(1)
                except RpcError as e:
                    (limited if e.status == 429 else other).append(e)

    threads = [threading.Thread(target=run) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not other, other[:3]
    return len(passed), len(limited)


def usage(port, db, key_id):
    with clusters.connect(port, db) as c:
        c.execute("SELECT integrations.flush_audit_log()")
        return c.execute("SELECT usage_count, usage_hour_count FROM api_keys WHERE id = %s", [key_id]).fetchone()


@pytest.fixture(scope="module", params=["queued", "plain"])
def mode(request):
    name, port, preload = (QUEUED, QUEUED_PORT, True) if request.param == "queued" else (PLAIN, PLAIN_PORT, False)
    cluster("start", name, port, preload=preload)
    wait_for_server(port)
    db = clusters.new_db(port, "pgi_keys_")
    with clusters.connect(port, db) as c:
        members(c)
    yield request.param, name, port, db
    cluster("stop", name, port)


@pytest.mark.single_node
def test_four_sessions_pass_exactly_the_limit(mode):
    kind, _, port, db = mode
    wait_out_the_hour_end()
    with clusters.connect(port, db) as c:
        key_id, key = create_key(c, limit=100)
        status = c.execute("SELECT integrations.audit_status() ->> 'mode'").fetchone()[0]
    assert status == {"queued": "queued", "plain": "in_transaction"}[kind]
    assert hammer(port, db, key) == (100, 140)
    assert usage(port, db, key_id) == (100, 100)


@pytest.mark.single_node
def test_a_restart_in_the_middle_of_the_hour_keeps_the_count(mode):
    kind, name, port, db = mode
    wait_out_the_hour_end(90)
    with clusters.connect(port, db) as c:
        key_id, key = create_key(c, limit=50)
    # 30 uses, then a restart right away (what the writer has not committed yet
    # it commits at shutdown), and another once the counts are on disk
    assert hammer(port, db, key, sessions=2, attempts=15) == (30, 0)
    cluster("restart", name, port, preload=kind == "queued")
    wait_for_server(port)
    assert usage(port, db, key_id) == (30, 30)
    assert hammer(port, db, key, sessions=2, attempts=5) == (10, 0)
    assert usage(port, db, key_id) == (40, 40)
    cluster("restart", name, port, preload=kind == "queued")
    wait_for_server(port)
    assert hammer(port, db, key, sessions=2, attempts=10) == (10, 10)
    assert usage(port, db, key_id) == (50, 50)


@pytest.mark.single_node
def test_a_key_in_steady_use_gets_a_row_update_a_second(mode):
    """Preloaded, the writer adds a key's uses to its row once per
    integrations.usage_write_interval (1 s), however many verifications;
    every use is counted all the same."""
    kind, _, port, db = mode
    wait_out_the_hour_end()
    with clusters.connect(port, db) as c:
        key_id, key = create_key(c, limit=1000000)
        c.execute("SELECT integrations.flush_audit_log()")
        updates = "SELECT (integrations.audit_status() ->> 'use_row_updates')::bigint"
        before = c.execute(updates).fetchone()[0]
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 2.5:
            c.execute("SELECT * FROM verify_api_key(%s)", [key])
            n += 1
        assert c.execute("SELECT integrations.flush_audit_log()").fetchone()[0] is True
        after = c.execute(updates).fetchone()[0]
        used = c.execute("SELECT usage_count FROM api_keys WHERE id = %s", [key_id]).fetchone()[0]
    assert used == n and n > 100
    if kind == "queued":
        # 2.5 s: two or three interval writes and the one flush_audit_log asked for
        assert 1 <= after - before <= 4, (n, before, after)
    else:
        assert before is None and after is None  # no writer: each use was its own update


@pytest.mark.single_node
def test_a_locked_key_row_holds_up_neither_the_writer_nor_the_count(mode):
    """A transaction holding a key's row (a revocation in progress, a gateway
    counting in the row) does not stall the audit writer: it skips the row
    and counts those uses once the lock is gone; other records keep flowing.
    Without preloading, a verification counts in the row, so it waits."""
    kind, _, port, db = mode
    wait_out_the_hour_end()
    with clusters.connect(port, db) as c, clusters.connect(port, db, autocommit=False) as locker:
        key_id, key = create_key(c, limit=1000)
        c.execute("SELECT integrations.flush_audit_log()")
        locker.execute("SELECT 1 FROM api_keys WHERE id = %s FOR UPDATE", [key_id])
        if kind == "queued":
            for _ in range(5):
                c.execute("SELECT * FROM verify_api_key(%s)", [key])
            # the uses wait for the row; flush_audit_log says so rather than hang
            assert c.execute("SELECT integrations.flush_audit_log(1500)").fetchone()[0] is False
            # meanwhile audit records still reach the log
            c.execute("SELECT set_esp_integration(%s, 'mailchimp', '{\"api_key\": \"mc_lock\"}')", [BIZ])
            c.execute("SELECT get_esp_credentials(%s, 'mailchimp')", [BIZ])
            deadline = time.monotonic() + 5
            while not c.execute("SELECT count(*) FROM integrations.audit_log WHERE kind = 'esp' "
                                "AND action = 'read_secret' AND provider = 'mailchimp'").fetchone()[0]:
                assert time.monotonic() < deadline, "the writer stalled behind the row lock"
                time.sleep(0.05)
            assert c.execute("SELECT usage_count FROM api_keys WHERE id = %s", [key_id]).fetchone()[0] == 0
            locker.rollback()
            assert c.execute("SELECT integrations.flush_audit_log()").fetchone()[0] is True
            assert c.execute("SELECT usage_count FROM api_keys WHERE id = %s", [key_id]).fetchone()[0] == 5
        else:
            c.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                c.execute("SELECT * FROM verify_api_key(%s)", [key])
            c.execute("RESET lock_timeout")
            locker.rollback()
            c.execute("SELECT * FROM verify_api_key(%s)", [key])
            assert c.execute("SELECT usage_count FROM api_keys WHERE id = %s", [key_id]).fetchone()[0] == 1


@pytest.mark.single_node
def test_keys_beyond_the_limiter_table_are_counted_in_their_rows(mode):
    """integrations.rate_limiter_keys = 1024 (preloaded): of 1,100 keys verified
    in one hour the last ones find the shared table full and are counted in
    their rows — still exactly their limit each. Without preloading there is
    no such setting and every key is counted in its row."""
    kind, name, port, db = mode
    wait_out_the_hour_end(120)
    if kind == "queued":
        with clusters.connect(port) as c:
            c.execute("LOAD 'pg_integrations'")
            c.execute("ALTER SYSTEM SET integrations.rate_limiter_keys = 1024")
        cluster("restart", name, port)
        wait_for_server(port)
    try:
        with clusters.connect(port, db) as c:
            if kind == "queued":
                assert c.execute("SHOW integrations.rate_limiter_keys").fetchone()[0] == "1024"
            # 11 businesses of 100 keys (the most one may hold)
            c.execute("CREATE TABLE many_keys AS SELECT k.* FROM generate_series(0, 1099) g, "
                      "LATERAL create_api_key(('0e100000-0000-4000-8000-' || lpad((g / 100)::text, 12, '0'))::uuid, "
                      "'k' || g, '{content:read}', NULL, 2) k")
            verify_all = ("SELECT count(*) FROM many_keys m, "
                          "LATERAL verify_api_key(m.api_key, 'content:read') v")
            # the first round in one transaction: the keys counted in their rows are the
            # ones this transaction updates (the writer's updates are its own)
            with c.transaction():
                assert c.execute(verify_all).fetchone()[0] == 1100
                in_rows = c.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables "
                                    "WHERE relid = 'api_keys'::regclass").fetchone()[0]
            assert in_rows == (1100 - 1024 if kind == "queued" else 1100)
            assert c.execute(verify_all).fetchone()[0] == 1100
            c.execute("""CREATE FUNCTION pg_temp.over_limit() RETURNS integer LANGUAGE plpgsql AS $$
                DECLARE refused integer := 0; k record;
                BEGIN
                    FOR k IN SELECT api_key FROM many_keys LOOP
                        BEGIN
                            PERFORM verify_api_key(k.api_key);
                        EXCEPTION WHEN configuration_limit_exceeded THEN refused := refused + 1;
                        END;
                    END LOOP;
                    RETURN refused;
                END $$""")
            assert c.execute("SELECT pg_temp.over_limit()").fetchone()[0] == 1100
            c.execute("SELECT integrations.flush_audit_log()")
            counts = c.execute("SELECT usage_count, count(*) FROM api_keys k JOIN many_keys m ON m.api_key_id = k.id "
                               "GROUP BY 1").fetchall()
            assert counts == [(2, 1100)]
    finally:
        if kind == "queued":
            with clusters.connect(port) as c:
                c.execute("LOAD 'pg_integrations'")
                c.execute("ALTER SYSTEM RESET integrations.rate_limiter_keys")
            cluster("restart", name, port)
            wait_for_server(port)
