"""Soak: several PostgREST-shaped client sessions for a bounded time, mixing
set / get / get-secret / delete of the seed kinds with connection and webhook
calls on a few businesses so that they collide. Afterwards the invariants
hold; the operation counts and the invariant results are printed.

SOAK_SECONDS (default 30) and SOAK_SESSIONS (default 4) bound the run."""

import collections
import hashlib
import hmac
import json
import os
import random
import threading
import time

from conftest import connect
from postgrest import RpcError, rpc

SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
SESSIONS = int(os.environ.get("SOAK_SESSIONS", "4"))
BUSINESSES = [f"5a000000-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
OWNER = "5b000000-0000-4000-8000-00000000000b"
TYPES = {"p_business_id": "uuid", "p_integration_id": "uuid", "p_config_id": "uuid", "p_headers": "jsonb",
         "p_body": "bytea", "p_success": "boolean", "p_response_time_ms": "integer", "p_config": "jsonb"}
WEBHOOK_SECRET = "whsec_soak"
# Outcomes a colliding client may legitimately get: a conflict with a
# concurrent create (23505, 409), a row another session deleted before the
# call looked (PT404, 404), or one deleted between the look-up and the insert
# that refers to it (23503, 409). Each is a whole-call rollback.
EXPECTED_ERRORS = {"23503", "23505", "PT404"}


class Session:
    def __init__(self, db, n, stats, mine):
        self.db, self.n, self.stats, self.mine = db, n, stats, mine
        self.rng = random.Random(n)
        self.seq = 0
        self.owner = {"sub": OWNER, "aud": "authenticated"}

    def call(self, fn, body, role="authenticated", **kw):
        claims = self.owner if role == "authenticated" else None
        return rpc(self.conn, fn, body, role=role, claims=claims, types=TYPES, **kw)

    def key(self, b):
        self.seq += 1
        return f"hg-{BUSINESSES.index(b)}-{self.n}-{self.seq}"

    # each operation returns the audit entries it caused: [(kind, action, target)]
    def set_avatar(self, b):
        rid = self.call("set_ai_avatar_integration", {"p_business_id": b, "p_provider": "heygen",
                                                      "p_api_key": self.key(b), "p_avatar_id": "av"})
        self.mine["avatar_rows"].add(rid)
        return [("ai_avatar", "set", rid)]

    def get_avatar(self, b):
        self.call("get_ai_avatar_integration", {"p_business_id": b}, volatile=False, returns_set=True, scalar=False)
        return []

    def get_avatar_secret(self, b):
        got = self.call("get_ai_avatar_secret", {"p_business_id": b}, role="service_role")
        if got is None:
            return []
        # never another business's key
        assert got.startswith(f"hg-{BUSINESSES.index(b)}-"), (b, got)
        return [("ai_avatar", "read_secret", None)]

    def delete_avatar(self, b):
        self.call("delete_ai_avatar_integration", {"p_business_id": b})
        return []  # deletions are checked row by row afterwards

    def create_connection(self, b):
        iid = self.call("create_integration", {"p_business_id": b, "p_provider": "checkout_com", "p_name": "Live",
                                               "p_auth_method": "bearer_token", "p_api_key": self.key(b)})
        return [("connection", "set", iid)]

    def connection_of(self, b):
        got = self.call("get_integration_by_provider", {"p_business_id": b, "p_provider": "checkout_com"},
                        volatile=False)
        return got and got["id"]

    def rotate_connection_key(self, b):
        iid = self.connection_of(b)
        if not iid:
            return []
        self.call("update_integration", {"p_integration_id": iid, "p_api_key": self.key(b)})
        return [("connection", "set", iid)]

    def read_credentials(self, b):
        iid = self.connection_of(b)
        if not iid:
            return []
        creds = self.call("get_integration_credentials", {"p_integration_id": iid}, role="service_role")
        if creds is None:  # deleted meanwhile
            return []
        token = creds["bearer_token"]
        assert token is None or token.startswith(f"hg-{BUSINESSES.index(b)}-"), (b, creds)
        return [("connection", "read_secret", iid)]

    def health(self, b):
        iid = self.connection_of(b)
        if iid:
            self.call("update_integration_health", {"p_integration_id": iid, "p_success": self.rng.random() < 0.8,
                                                    "p_response_time_ms": self.rng.randint(20, 900)},
                      role="service_role")
        return []

    def delete_connection(self, b):
        iid = self.connection_of(b)
        if iid and self.call("delete_integration", {"p_integration_id": iid}):
            return [("connection", "delete", iid)]
        return []

    def webhook(self, b):
        iid = self.connection_of(b)
        if not iid:
            return []
        cfg = self.call("set_webhook_config", {"p_integration_id": iid, "p_signing_secret": WEBHOOK_SECRET})
        self.mine["audits"].append(("webhook_config", "set", cfg))  # committed, whatever happens next
        body = json.dumps({"id": f"evt_{self.rng.randint(1, 20)}"}).encode()  # repeats: idempotency under load
        sig = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        self.call("record_webhook_event", {"p_config_id": cfg, "p_provider_event_id": json.loads(body)["id"],
                                           "p_event_type": "payment_approved", "p_headers": {"Cko-Signature": sig},
                                           "p_body": "\\x" + body.hex(), "p_body_object_key": "r2://soak"},
                  role="service_role")
        return []

    OPS = [("set_avatar", 5), ("get_avatar", 3), ("get_avatar_secret", 4), ("delete_avatar", 2),
           ("create_connection", 2), ("rotate_connection_key", 2), ("read_credentials", 3), ("health", 2),
           ("delete_connection", 1), ("webhook", 2)]

    def run(self, deadline):
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        with connect(self.db) as self.conn:
            while time.monotonic() < deadline:
                op = self.rng.choices(names, weights)[0]
                b = self.rng.choice(BUSINESSES)
                try:
                    self.mine["audits"].extend(getattr(self, op)(b))
                    self.stats[(op, "ok")] += 1
                except RpcError as e:
                    if e.sqlstate not in EXPECTED_ERRORS:
                        raise
                    self.stats[(op, e.sqlstate)] += 1


def test_soak_keeps_every_invariant(fresh_db):
    with connect(fresh_db) as c:
        c.execute("CREATE TABLE soak_businesses (id uuid PRIMARY KEY, profile_id uuid)")
        c.cursor().executemany("INSERT INTO soak_businesses VALUES (%s, %s)", [(b, OWNER) for b in BUSINESSES])
        c.execute("SELECT integrations.attach_tenant_table('soak_businesses')")
        audit_before = c.execute("SELECT count(*) FROM integrations.audit_log").fetchone()[0]
        start_time = c.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

    sentinel = connect(fresh_db)  # ended by any crash-restart of the server
    stats = collections.Counter()
    mines = [{"audits": [], "avatar_rows": set()} for _ in range(SESSIONS)]
    errors = []
    deadline = time.monotonic() + SECONDS

    def worker(n):
        try:
            Session(fresh_db, n, stats, mines[n]).run(deadline)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 120)
    assert not errors, errors[0]

    expected = collections.Counter()
    avatar_rows = set()
    for m in mines:
        expected.update((kind, action) for kind, action, _ in m["audits"])
        avatar_rows |= m["avatar_rows"]
    with connect(fresh_db) as c:
        q = lambda sql, *a: c.execute(sql, list(a)).fetchone()[0]  # noqa: E731
        refs = ("SELECT secret_id FROM ai_avatar_integrations UNION ALL SELECT secret_id FROM email_integrations "
                "UNION ALL SELECT secret_id FROM blog_integrations UNION ALL SELECT code_verifier_secret_id "
                "FROM integration_oauth_states UNION ALL SELECT signing_secret_id FROM integration_webhook_configs "
                "UNION ALL SELECT unnest(ARRAY[api_key_secret_id, basic_password_secret_id, "
                "oauth_access_token_secret_id, oauth_refresh_token_secret_id]) FROM integration_connections")
        c.execute("SELECT integrations.flush_audit_log(30000)")  # queued secret reads
        audit = collections.Counter(dict(((k, a), n) for k, a, n in c.execute(
            "SELECT kind, action, count(*) FROM integrations.audit_log GROUP BY 1, 2").fetchall()))
        invariants = {
            "server never restarted": q("SELECT pg_postmaster_start_time()") == start_time
                and sentinel.execute("SELECT 1").fetchone()[0] == 1,
            "no orphan secret (every secret belongs to a row)":
                q(f"SELECT count(*) FROM integrations.secrets WHERE id NOT IN (SELECT r FROM ({refs}) x(r) "
                  "WHERE r IS NOT NULL)") == 0,
            "no row without its secret": q("SELECT count(*) FROM ai_avatar_integrations WHERE secret_id IS NULL") == 0
                and q("SELECT count(*) FROM integration_connections WHERE api_key_secret_id IS NULL") == 0,
            "no secret referenced twice": q(f"SELECT count(*) FROM (SELECT r FROM ({refs}) x(r) WHERE r IS NOT NULL "
                                            "GROUP BY r HAVING count(*) > 1) d") == 0,
            "each secret bound to its row's business": q(
                "SELECT count(*) FROM ai_avatar_integrations a JOIN integrations.secrets s ON s.id = a.secret_id "
                "WHERE s.business_id <> a.business_id") == 0 and q(
                "SELECT count(*) FROM integration_connections i JOIN integrations.secrets s "
                "ON s.id = i.api_key_secret_id WHERE s.business_id <> i.business_id") == 0,
            "no duplicate (business, provider) rows":
                q("SELECT count(*) FROM (SELECT 1 FROM ai_avatar_integrations GROUP BY business_id, provider "
                  "HAVING count(*) > 1) d") == 0
                and q("SELECT count(*) FROM (SELECT 1 FROM integration_connections "
                      "GROUP BY business_id, provider, environment, name HAVING count(*) > 1) d") == 0,
            "no duplicate webhook event": q("SELECT count(*) FROM (SELECT 1 FROM integration_events "
                                            "GROUP BY config_id, provider_event_id HAVING count(*) > 1) d") == 0,
            "every secret opens": c.execute("SELECT failed FROM integrations.verify_secrets()").fetchone()[0] == 0,
            "one audit entry per write (sets, reads, connection deletes)":
                all(audit[k] == expected[k] for k in expected) and sum(audit.values()) - audit_before
                == sum(expected.values()) + audit[("ai_avatar", "delete")],
            "one delete entry per deleted avatar row, none for live ones": q(
                "SELECT count(*) FROM unnest(%s::uuid[]) r(id) WHERE (SELECT count(*) FROM integrations.audit_log a "
                "WHERE a.kind = 'ai_avatar' AND a.action = 'delete' AND a.target_id = r.id) "
                "<> CASE WHEN EXISTS (SELECT 1 FROM ai_avatar_integrations WHERE id = r.id) THEN 0 ELSE 1 END",
                list(avatar_rows)) == 0,
        }
        secrets = q("SELECT count(*) FROM integrations.secrets")
        orphans = c.execute(f"SELECT s.id, s.description, s.created_at, s.updated_at FROM integrations.secrets s "
                            f"WHERE id NOT IN (SELECT r FROM ({refs}) x(r) WHERE r IS NOT NULL)").fetchall()
        if orphans:  # for the report: what leaked
            print("\norphan secrets (id, description, created, updated):", orphans[:5])

    total = sum(stats.values())
    print(f"\nsoak: {SESSIONS} sessions x {SECONDS:.0f} s, {total} calls ({total / SECONDS:.0f}/s), "
          f"{secrets} secrets left, {len(avatar_rows)} avatar rows made")
    for op, _ in Session.OPS:
        outcomes = ", ".join(f"{o} {stats[(op, o)]}" for o in ["ok", *sorted(EXPECTED_ERRORS)] if stats[(op, o)])
        print(f"  {op:<22} {outcomes}")
    print("  audit entries: " + ", ".join(f"{k}/{a} {n}" for (k, a), n in sorted(audit.items())))
    for name, ok in invariants.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    assert all(invariants.values()), [n for n, ok in invariants.items() if not ok]
    # the run really collided: conflicts or vanished rows happened, and every kind of call succeeded
    assert all(stats[(op, "ok")] > 0 for op, _ in Session.OPS), stats
