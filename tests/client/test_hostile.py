"""Hostile conditions around the PostgREST call shape (issue: security): the
server runs with RUST_BACKTRACE set, failing back-end calls hold keys in
their statement text, and the API roles call through `authenticator`."""
import os
import uuid

import psycopg
import pytest

from conftest import CLUSTER_DIR, assert_failures_keep_out_of_the_log, connect
from fill import B1, OWNER, fill_every_table
from postgrest import RpcError, rpc


def postmaster_environment():
    with open(os.path.join(CLUSTER_DIR, "data", "postmaster.pid")) as f:
        pid = f.readline().strip()
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read().split(b"\0")


def test_no_rust_backtrace_reaches_a_client(fresh_db):
    """pgrx appends a Rust backtrace to DETAIL when std captures one, as it
    does with RUST_BACKTRACE set; PostgREST would return it as `details`."""
    assert b"RUST_BACKTRACE=1" in postmaster_environment(), "the test cluster must run with RUST_BACKTRACE=1"
    with connect(fresh_db) as c:
        fill_every_table(c)
    with connect(fresh_db) as c:
        # an error PostgreSQL raises inside the Rust code (a write in a read-only transaction)
        with pytest.raises(RpcError) as e:
            rpc(c, "set_ai_avatar_integration", {"p_business_id": B1, "p_provider": "heygen", "p_api_key": "k"},
                role="service_role", volatile=False, types={"p_business_id": "uuid"})
        assert e.value.sqlstate == "25006"
        # and one of our own
        with pytest.raises(RpcError) as ours:
            rpc(c, "set_ai_avatar_integration", {"p_business_id": B1, "p_provider": "nope", "p_api_key": "k"},
                role="service_role", types={"p_business_id": "uuid"})
        assert ours.value.sqlstate == "22023"
        for err in (e.value, ours.value):
            for field in (err.message, err.detail, err.hint):
                assert not (field and ("backtrace" in field or ".rs:" in field)), field


def test_failing_back_end_calls_never_log_their_keys(fresh_db):
    """The statement text of any failing statement that names a function of
    the extension stays out of the log, whichever function it is."""
    marker = "sk_live_LOGMARKER_" + uuid.uuid4().hex
    with connect(fresh_db) as c:
        ids = fill_every_table(c)
    with connect(fresh_db) as c:
        assert_failures_keep_out_of_the_log(c, [
            f"SELECT log_integration_api_call('{ids['cko']}', 'GET', 'https://x.example/?q={marker}', 999, 1, NULL)",
            f"SELECT log_integration_api_call('{ids['cko']}', 'BREW', 'https://x.example/', 200, 1, '{marker}')",
            f"SELECT complete_integration_event('{ids['event']}', false, 'Authorization: {marker}')",
            f"SELECT update_integration_health('{ids['cko']}', false, 'key {marker}', -5)",
            f"SELECT record_webhook_event('{ids['cfg']}', 'e', NULL, '{{\"Cko-Signature\": \"{marker}\"}}', '\\x00', NULL)",
            f"SELECT record_webhook_event('not-a-uuid', 'e', NULL, '{{\"Authorization\": \"{marker}\"}}', '\\x00', NULL)",
            f"SELECT integrations.create_secret('{B1}', '{marker}', repeat('d', 2000))",
        ], marker)


def test_authenticator_switches_role_as_postgrest_does(fresh_db):
    """Through the `authenticator` login: the owner acts on its business after
    SET LOCAL ROLE, and authenticator itself (NOINHERIT) is no one."""
    with connect(fresh_db) as c:
        fill_every_table(c)
    with connect(fresh_db, user="authenticator") as c:
        rows = rpc(c, "get_ai_avatar_integration", {"p_business_id": B1}, role="authenticated",
                   claims={"sub": OWNER}, volatile=False, returns_set=True, scalar=False,
                   types={"p_business_id": "uuid"})
        assert [r["provider"] for r in rows] == ["heygen"]
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT get_ai_avatar_secret(%s)", [B1])
        assert e.value.diag.sqlstate == "42501"


# The role matrix (docs/security.md, "Who may do what"): what each call needs.
USE, MANAGE, BACK_END = "use", "manage", "back end"


def test_every_cell_of_the_role_matrix(fresh_db):
    """Each RPC that acts on a business, called through PostgREST by its
    member, admin and owner, and by a stranger: members read and record,
    owners and admins also change, back-end functions are for neither."""
    from fill import B2, MEMBER
    admin = "f0000000-0000-4000-8000-0000000000ad"
    stranger = "f0000000-0000-4000-8000-0000000000ff"
    with connect(fresh_db) as c:
        ids = fill_every_table(c)
        c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'admin')", [B2, admin])
        conn_id = str(c.execute("SELECT create_integration(%s, 'checkout_com', 'Matrix', 'bearer_token', "
                                "p_api_key => 'sk_matrix')", [B2]).fetchone()[0])
        cfg = str(c.execute("SELECT set_webhook_config(%s, 'whsec_matrix')", [conn_id]).fetchone()[0])
        event = str(c.execute("INSERT INTO integration_events (config_id, integration_id, business_id, provider_event_id, "
                              "body_sha256) VALUES (%s, %s, %s, 'evt_m', sha256('x')) RETURNING id",
                              [cfg, conn_id, B2]).fetchone()[0])
        c.execute("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_m')", [B2])
        types = {name: dict(zip(args or [], argtypes)) for name, args, argtypes in c.execute(
            "SELECT p.proname, p.proargnames[1:p.pronargs], ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) "
            "FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace").fetchall()}
    gh = ids["gh"]
    calls = [
        (USE, "get_ai_avatar_integration", {"p_business_id": B2}, True),
        (USE, "get_blog_integration", {"p_business_id": B2}, True),
        (USE, "get_or_create_upload_post_profile", {"p_business_id": B2}, False),
        (USE, "get_integration", {"p_integration_id": conn_id}, False),
        (USE, "list_integrations", {"p_business_id": B2}, True),
        (USE, "get_integration_by_provider", {"p_business_id": B2, "p_provider": "checkout_com"}, False),
        (USE, "update_integration_health", {"p_integration_id": conn_id, "p_success": True}, False),
        (USE, "update_integration_sync_stats", {"p_integration_id": conn_id, "p_total_records": 1,
                                                "p_last_sync_count": 1, "p_failed_sync_count": 0}, False),
        (USE, "record_integration_metric", {"p_integration_id": conn_id, "p_success": True, "p_latency_ms": 5}, False),
        (USE, "log_integration_api_call", {"p_integration_id": conn_id, "p_method": "GET", "p_url": "https://x.example/",
                                           "p_status": 200, "p_latency_ms": 5, "p_error": None}, False),
        (USE, "log_webhook_body_access", {"p_event_id": event, "p_purpose": "support"}, False),
        (USE, "create_oauth_state", {"p_business_id": B2, "p_provider": "github",
                                     "p_redirect_uri": "https://app.example.com/cb"}, False),
        (MANAGE, "set_ai_avatar_integration", {"p_business_id": B2, "p_provider": "heygen", "p_api_key": "k2"}, False),
        (MANAGE, "delete_ai_avatar_integration", {"p_business_id": B2}, False),
        (MANAGE, "set_blog_integration", {"p_business_id": B2, "p_provider": "wix", "p_api_key": "k3"}, False),
        (MANAGE, "delete_blog_integration", {"p_business_id": B2}, False),
        (MANAGE, "set_upload_post_social_accounts", {"p_business_id": B2, "p_social_accounts": {}}, False),
        (MANAGE, "delete_upload_post_profile", {"p_business_id": B2}, False),
        (MANAGE, "create_integration", {"p_business_id": B2, "p_provider": "stripe", "p_name": "New",
                                        "p_auth_method": "api_key", "p_api_key": "sk_new_0123456789"}, False),
        (MANAGE, "update_integration", {"p_integration_id": conn_id, "p_name": "Renamed"}, False),
        (MANAGE, "delete_integration", {"p_integration_id": conn_id}, False),
        (MANAGE, "set_integration_oauth_tokens", {"p_integration_id": gh, "p_access_token": "gho_new", "p_refresh_token": None,
                                                  "p_expires_at": None, "p_scopes": None}, False),
        (MANAGE, "set_webhook_config", {"p_integration_id": conn_id, "p_signing_secret": "whsec_new"}, False),
        (BACK_END, "get_integration_credentials", {"p_integration_id": conn_id}, False),
        (BACK_END, "list_integrations_needing_refresh", {}, True),
        (BACK_END, "claim_integration_events", {"p_limit": 1}, True),
        (BACK_END, "complete_integration_event", {"p_event_id": event, "p_success": True}, False),
        (BACK_END, "cleanup_expired_oauth_states", {}, False),
    ]
    users = {"member": MEMBER, "admin": admin, "owner": OWNER, "stranger": stranger}
    cells = 0
    with connect(fresh_db) as c:
        for need, fn, body, returns_set in calls:
            for who, sub in users.items():
                allowed = who != "stranger" and (need == USE or (need == MANAGE and who in ("admin", "owner")))
                try:
                    result = rpc(c, fn, body, role="authenticated", claims={"sub": sub}, types=types[fn],
                                 returns_set=returns_set, scalar=fn not in ("get_or_create_upload_post_profile",),
                                 tx_rollback=True)
                    outcome = "ok" if allowed or result not in (None, [], False) else "nothing"
                except RpcError as e:
                    outcome = e.sqlstate
                    status = e.status
                cells += 1
                if allowed:
                    assert outcome == "ok", (fn, who, outcome)
                else:
                    # refused: 403; or, for a stranger naming another tenant's
                    # connection, what an unknown id gets (404, or no row)
                    assert outcome in ("42501", "PT404", "nothing"), (fn, who, outcome)
                    assert outcome == "42501" or who == "stranger", (fn, who, outcome)
                    assert outcome == "nothing" or status in (403, 404), (fn, who, status)
    assert cells == len(calls) * len(users)
    print(f"\nrole matrix: {cells} cells ({len(calls)} calls x {len(users)} callers)")


def test_generated_secrets_never_reach_a_stored_column(fresh_db):
    """Secrets in every position a URL or an error text can hold them, stored
    through the RPCs that keep URLs and error texts: none survives anywhere in
    the rows (the redaction's unit tests cover the forms one by one)."""
    import random
    rng = random.Random(10)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    names = ["accessToken", "access_token", "clientSecret", "client-secret", "auth_token", "apiToken", "api_key",
             "X-Amz-Signature", "sig", "password", "passwd", "sessionId", "code", "hmac", "refresh_token", "apikey",
             "credential", "x-api-key", "Authorization", "private_key"]
    forms = [
        "https://api.example.com/v1/x?limit=5&{n}={s}&page=2",
        "https://api.example.com/cb#{n}={s}&state=xyz",
        "https://user:{s}@api.example.com/x",
        "401 from upstream: {n}: {s}",
        "401 from upstream: {n}:\t{s} rejected",
        "Authorization: Bearer {s}",
        "Authorization: {s}",
        "X-Api-Key: {s}",
        "request failed\n{n}={s}\n",
        '{{"error": "bad", "{n}": "{s}"}}',
        '{{"{n}":"{s}","other":1}}',
        "GET https://api.example.com/?{n}={s} -> 403",
    ]
    secrets = []
    with connect(fresh_db) as c:
        ids = fill_every_table(c)
        c.execute("UPDATE integration_events SET status = 'processing' WHERE id = %s", [ids["event"]])
        for i in range(300):
            secret = "gen" + "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 40)))
            secrets.append(secret)
            text = rng.choice(forms).format(n=rng.choice(names), s=secret)
            url = text if text.startswith("http") else "https://api.example.com/v1?" + rng.choice(names) + "=" + secret
            c.execute("SELECT log_integration_api_call(%s, 'GET', %s, 500, 10, %s)", [ids["cko"], url, text])
            c.execute("SELECT update_integration_health(%s, false, %s, 10)", [ids["cko"], text])
            if i % 10 == 0:
                c.execute("UPDATE integration_events SET status = 'processing', attempts = 0 WHERE id = %s", [ids["event"]])
                c.execute("SELECT complete_integration_event(%s, false, %s)", [ids["event"], text])
        stored = "\n".join(row[0] for row in c.execute(
            "SELECT l::text FROM integration_api_logs l UNION ALL SELECT c::text FROM integration_connections c "
            "UNION ALL SELECT e::text FROM integration_events e UNION ALL SELECT m::text FROM integration_metrics_hourly m"))
    survivors = [s for s in secrets if s in stored]
    assert survivors == [], survivors[:5]
    assert "REDACTED" in stored


def test_a_stranger_never_holds_a_connections_row_lock(fresh_db):
    """A caller who may not act on a connection is refused before its row is
    locked: it cannot block the owner's writes, nor tell an existing id from
    an unknown one by a lock timeout."""
    stranger = "f0000000-0000-4000-8000-0000000000ff"
    with connect(fresh_db) as c:
        ids = fill_every_table(c)
    with connect(fresh_db, autocommit=False) as attacker, connect(fresh_db) as owner:
        attacker.execute("SELECT set_config('role', 'authenticated', true), "
                         "set_config('request.jwt.claims', %s, true)", ['{"sub": "%s"}' % stranger])
        for fn in ("delete_integration(%s)", "update_integration_health(%s, true)", "update_integration(%s, 'x')"):
            attacker.execute("SAVEPOINT s")
            try:
                attacker.execute(f"SELECT {fn}", [ids["cko"]])
            except psycopg.Error:
                pass
            attacker.execute("RELEASE SAVEPOINT s") if attacker.info.transaction_status == 2 else \
                attacker.execute("ROLLBACK TO SAVEPOINT s")
        # the attacker's transaction stays open; the owner's write must not wait on it
        owner.execute("SET lock_timeout = '2s'")
        owner.execute("SELECT update_integration(%s, p_name => 'still mine')", [ids["cko"]])
        assert owner.execute("SELECT name FROM integration_connections WHERE id = %s",
                             [ids["cko"]]).fetchone()[0] == "still mine"
        attacker.rollback()


def test_a_hostile_search_path_never_runs_the_callers_operators(fresh_db):
    """The hot readers pin no search path in their declarations (it costs a
    tenth of a call); every statement they run still does. mallory puts an
    `=` for uuid and text of its own ahead of pg_catalog and calls them in new
    sessions, where the first call runs their set-up statements (keyring,
    function names, tenant table): mallory's operator never runs."""
    with connect(fresh_db) as c:
        fill_every_table(c)
        c.execute("SET ROLE mallory")
        c.execute("CREATE TABLE mallory.ran (who text, at timestamptz DEFAULT now())")
        c.execute("GRANT INSERT ON mallory.ran TO PUBLIC")
        for t in ("uuid", "text"):
            c.execute(f"""CREATE FUNCTION mallory.eq_{t}(a {t}, b {t}) RETURNS boolean LANGUAGE plpgsql AS $$
                BEGIN INSERT INTO mallory.ran (who) VALUES (current_user); RETURN a OPERATOR(pg_catalog.=) b; END $$""")
            c.execute(f"GRANT EXECUTE ON FUNCTION mallory.eq_{t}({t}, {t}) TO PUBLIC")
            c.execute(f"CREATE OPERATOR mallory.= (LEFTARG = {t}, RIGHTARG = {t}, FUNCTION = mallory.eq_{t})")
        c.execute("GRANT USAGE ON SCHEMA mallory TO PUBLIC")
        c.execute("RESET ROLE")
        secret_id = c.execute("SELECT secret_id FROM ai_avatar_integrations WHERE business_id = %s", [B1]).fetchone()[0]
    calls = [
        ("SELECT get_ai_avatar_secret(%s)", [B1]),
        ("SELECT count(*) FROM get_ai_avatar_integration(%s)", [B1]),
        ("SELECT get_email_secret(%s)", [B1]),
        ("SELECT integrations.read_secret(%s)", [secret_id]),
        ("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_after')", [B1]),
        ("SELECT get_ai_avatar_secret(%s)", [B1]),
    ]
    for role in ("service_role", "postgres"):
        for sql, args in calls:
            with connect(fresh_db) as s:  # a new backend: first-call paths included
                s.execute("SET search_path = mallory, pg_catalog, public")
                if role != "postgres":
                    s.execute(f"SET ROLE {role}")
                s.execute(sql, args)
    with connect(fresh_db) as c:
        # the probe works: the operator runs when a statement of mallory's search path uses it
        c.execute("SET search_path = mallory, pg_catalog")
        c.execute("SELECT gen_random_uuid() = gen_random_uuid()")
        c.execute("RESET search_path")
        assert c.execute("SELECT count(*) FROM mallory.ran").fetchone()[0] == 1
