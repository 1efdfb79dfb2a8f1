"""The seed-compatible RPCs called the way PostgREST calls them: owners,
other users, anon and service_role, with PostgREST's HTTP status mapping."""

import threading
import uuid

import psycopg
import pytest

from conftest import assert_failures_keep_out_of_the_log, connect, create_tenant_table, restored_copy
from postgrest import RpcError, rpc

B1 = "b1000000-0000-4000-8000-000000000001"
B2 = "b2000000-0000-4000-8000-000000000002"
OWNER1 = "a1000000-0000-4000-8000-00000000000a"
OWNER2 = "a2000000-0000-4000-8000-00000000000b"
T = {"p_business_id": "uuid", "p_config": "jsonb", "p_social_accounts": "jsonb"}


def user(sub):
    return {"sub": sub, "aud": "authenticated", "email": f"{sub[:4]}@example.com"}


@pytest.fixture
def tenant_db(fresh_db):
    with connect(fresh_db) as c:
        create_tenant_table(c)
        c.execute("INSERT INTO public.businesses VALUES (%s, %s, 'One'), (%s, %s, 'Two')", [B1, OWNER1, B2, OWNER2])
        c.execute("GRANT SELECT ON public.businesses TO authenticated")
        c.execute("SELECT integrations.attach_tenant_table('public.businesses')")
    return fresh_db


def test_owner_flow_like_the_heygen_settings_form(tenant_db):
    with connect(tenant_db) as c:
        body = {"p_business_id": B1, "p_provider": "heygen", "p_api_key": "hg_live_owner",
                "p_avatar_id": "avatar-7", "p_voice_id": "voice-3"}
        iid = rpc(c, "set_ai_avatar_integration", body, role="authenticated", claims=user(OWNER1), types=T)
        uuid.UUID(iid)
        # POST to a STABLE function (or GET) runs READ ONLY, and still works
        rows = rpc(c, "get_ai_avatar_integration", {"p_business_id": B1}, role="authenticated",
                   claims=user(OWNER1), types=T, volatile=False, returns_set=True, scalar=False)
        assert rows == [{"id": iid, "provider": "heygen", "avatar_id": "avatar-7", "voice_id": "voice-3",
                         "provider_config": {}, "status": "active", "validated_at": rows[0]["validated_at"]}]
        assert "hg_live_owner" not in str(rows)
        # the secret is for back-end callers
        with pytest.raises(RpcError) as e:
            rpc(c, "get_ai_avatar_secret", {"p_business_id": B1}, role="authenticated", claims=user(OWNER1), types=T)
        assert (e.value.status, e.value.sqlstate) == (403, "42501")
        assert rpc(c, "get_ai_avatar_secret", {"p_business_id": B1}, role="service_role", types=T) == "hg_live_owner"
        # the test server preloads the library: a secret read queues its audit record and writes
        # nothing itself, so PostgREST's GET /rpc (a READ ONLY transaction) works and is audited
        # (test_audit_queue.py covers the server without preloading, where GET is refused: 25006)
        c.execute("SELECT integrations.flush_audit_log()")
        audited = "SELECT count(*) FROM integrations.audit_log WHERE action = 'read_secret' AND business_id = %s"
        before = c.execute(audited, [B1]).fetchone()[0]
        assert rpc(c, "get_ai_avatar_secret", {"p_business_id": B1}, role="service_role", types=T,
                   volatile=False) == "hg_live_owner"
        c.execute("SELECT integrations.flush_audit_log()")
        assert c.execute(audited, [B1]).fetchone()[0] == before + 1
        assert rpc(c, "delete_ai_avatar_integration", {"p_business_id": B1}, role="authenticated",
                   claims=user(OWNER1), types=T) == ""
        assert rpc(c, "get_ai_avatar_integration", {"p_business_id": B1}, role="authenticated", claims=user(OWNER1),
                   types=T, volatile=False, returns_set=True, scalar=False) == []


@pytest.mark.parametrize("fn,body", [
    ("set_email_integration", {"p_business_id": B1, "p_provider": "brevo", "p_api_key": "x"}),
    ("get_email_integration", {"p_business_id": B1}),
    ("get_email_secret", {"p_business_id": B1}),
    ("delete_blog_integration", {"p_business_id": B1}),
    ("get_or_create_upload_post_profile", {"p_business_id": B1}),
])
def test_other_users_get_403_and_anon_401(tenant_db, fn, body):
    with connect(tenant_db) as c:
        scalar = fn not in ("get_email_integration", "get_or_create_upload_post_profile")
        for role, claims, status in [("authenticated", user(OWNER2), 403), ("anon", {}, 401)]:
            with pytest.raises(RpcError) as e:
                rpc(c, fn, body, role=role, claims=claims, types=T, scalar=scalar,
                    returns_set=fn == "get_email_integration")
            assert (e.value.status, e.value.sqlstate) == (status, "42501"), (fn, role)


def test_bad_input_is_400_and_names_the_field(tenant_db):
    cases = [
        ("set_ai_avatar_integration", {"p_business_id": B1, "p_provider": "synthesia", "p_api_key": "k"}, "p_provider"),
        ("set_ai_avatar_integration", {"p_business_id": B1, "p_provider": "heygen", "p_api_key": ""}, "p_api_key"),
        ("set_email_integration", {"p_business_id": B1, "p_provider": "brevo", "p_api_key": "k",
                                   "p_sender_email": "nope"}, "p_sender_email"),
        ("set_blog_integration", {"p_business_id": B1, "p_provider": "wix", "p_api_key": "k",
                                  "p_site_url": "javascript:alert(1)"}, "p_site_url"),
        ("set_blog_integration", {"p_business_id": B1, "p_provider": "wix", "p_api_key": "k",
                                  "p_config": [1, 2]}, "p_config"),
        ("set_upload_post_social_accounts", {"p_business_id": B1, "p_social_accounts": "x"}, "p_social_accounts"),
    ]
    with connect(tenant_db) as c:
        for fn, body, field in cases:
            with pytest.raises(RpcError) as e:
                rpc(c, fn, body, role="authenticated", claims=user(OWNER1), types=T)
            assert (e.value.status, e.value.sqlstate) == (400, "22023"), fn
            assert e.value.message.startswith(field), e.value.message
        assert c.execute("SELECT count(*) FROM integrations.secrets").fetchone()[0] == 0
        # a malformed uuid in the body fails in json_to_record, before any function runs
        with pytest.raises(RpcError) as e:
            rpc(c, "get_email_secret", {"p_business_id": "not-a-uuid"}, role="service_role", types=T)
        assert (e.value.status, e.value.sqlstate) == (400, "22P02")


def test_social_profile_object_shape(tenant_db):
    with connect(tenant_db) as c:
        profile = rpc(c, "get_or_create_upload_post_profile", {"p_business_id": B2}, role="authenticated",
                      claims=user(OWNER2), types=T, scalar=False)
        assert profile["business_id"] == B2
        assert profile["upload_post_username"] == "biz_" + B2.replace("-", "")
        assert profile["social_accounts"] == {}
        assert rpc(c, "set_upload_post_social_accounts", {"p_business_id": B2, "p_social_accounts": {"tiktok": "@two"}},
                   role="authenticated", claims=user(OWNER2), types=T) == ""
        again = rpc(c, "get_or_create_upload_post_profile", {"p_business_id": B2}, role="authenticated",
                    claims=user(OWNER2), types=T, scalar=False)
        assert again["id"] == profile["id"] and again["social_accounts"] == {"tiktok": "@two"}


def test_concurrent_sets_leave_one_row_and_one_secret(tenant_db):
    keys = [f"hg_concurrent_{i}" for i in range(8)]
    errors = []
    start = threading.Barrier(len(keys))

    def worker(key):
        try:
            with connect(tenant_db) as c:
                start.wait()
                for n in range(15):
                    rpc(c, "set_ai_avatar_integration",
                        {"p_business_id": B1, "p_provider": "heygen", "p_api_key": f"{key}_{n}"},
                        role="service_role", types=T)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with connect(tenant_db) as c:
        rows = c.execute("SELECT count(*), count(DISTINCT secret_id) FROM ai_avatar_integrations WHERE business_id = %s",
                         [B1]).fetchone()
        assert rows == (1, 1)
        assert c.execute("SELECT count(*) FROM integrations.secrets WHERE business_id = %s", [B1]).fetchone()[0] == 1
        assert c.execute("SELECT get_ai_avatar_secret(%s)", [B1]).fetchone()[0] in {f"{k}_14" for k in keys}
        audited = c.execute("SELECT count(*) FROM integrations.audit_log WHERE action = 'set' AND kind = 'ai_avatar'"
                            ).fetchone()[0]
        assert audited == len(keys) * 15


def test_failed_calls_keep_the_api_key_out_of_the_log(tenant_db):
    marker = "hg_LOGMARKER_" + uuid.uuid4().hex
    with connect(tenant_db) as c:
        assert_failures_keep_out_of_the_log(c, [
            f"SELECT set_ai_avatar_integration('{B1}', 'not-a-provider', '{marker}')",
            f"SELECT set_ai_avatar_integration('not-a-uuid', 'heygen', '{marker}')",
            f"SELECT set_email_integration('{B1}', 'brevo', '{marker}', p_sender_email => 'bad')",
            # the key passed in the wrong argument: not echoed by the error either
            f"SELECT set_ai_avatar_integration('{B1}', '{marker}', 'heygen')",
            f"SELECT set_email_integration('{B1}', 'brevo', 'k', p_sender_email => '{marker}')",
            f"SELECT set_blog_integration('{B1}', 'wix', 'k', p_site_url => '{marker}')",
        ], marker)


@pytest.mark.single_node
def test_dump_and_restore_with_a_tenant_table(tenant_db, admin, tmp_path):
    """Every table of the extension travels in the dump and every key still
    opens; the foreign keys to the app's tenant table (constraints on extension
    tables, which pg_dump leaves out) come back with one re-attach call."""
    with connect(tenant_db) as c:
        c.execute("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_dump', 'a', 'v')", [B1])
        c.execute("SELECT set_email_integration(%s, 'brevo', 'xkeysib-dump', 'S', 'x@example.com')", [B1])
        c.execute("SELECT set_blog_integration(%s, 'wix', 'wix-dump', 'https://two.example')", [B2])
        c.execute("SELECT set_upload_post_social_accounts(%s, '{\"x\":\"@one\"}')", [B1])
        c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'admin')", [B1, OWNER2])
        c.execute("SELECT integrations.flush_audit_log()")
        audit = c.execute("SELECT count(*) FROM integrations.audit_log").fetchone()[0]
        fks_attached = c.execute("SELECT count(*) FROM pg_constraint WHERE confrelid = 'public.businesses'::regclass"
                                 ).fetchone()[0]
    assert fks_attached >= 6
    with restored_copy(admin, tenant_db, "custom", tmp_path) as (target, _):
        with connect(target) as c:
            assert c.execute("SELECT count(*) FROM integrations.audit_log").fetchone()[0] == audit
            fks = "SELECT count(*) FROM pg_constraint WHERE confrelid = 'public.businesses'::regclass"
            assert c.execute(fks).fetchone()[0] == 0
            # Until the tenant table is attached again, deleting a business
            # would orphan its integrations: every call that depends on the
            # tenant table fails closed, and says what to run.
            for sql in ("SELECT get_ai_avatar_secret(%s)", "SELECT integrations.can_access_business(%s)"):
                with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as refused:
                    c.execute(sql, [B1])
                assert "attach_tenant_table" in refused.value.diag.message_hint
            c.execute("SELECT integrations.attach_tenant_table(table_name, owner_column) FROM integrations.tenant_table")
            assert c.execute(fks).fetchone()[0] == fks_attached
            assert c.execute("SELECT get_ai_avatar_secret(%s), get_email_secret(%s), get_blog_secret(%s)",
                             [B1, B1, B2]).fetchone() == ("hg_dump", "xkeysib-dump", "wix-dump")
            assert c.execute("SELECT social_accounts FROM upload_post_profiles WHERE business_id = %s",
                             [B1]).fetchone()[0] == {"x": "@one"}
            assert c.execute("SELECT count(*) FROM integrations.business_members").fetchone()[0] == 1
            # the owner still acts on its business, and a cascade deletes everything
            rows = rpc(c, "get_ai_avatar_integration", {"p_business_id": B1}, role="authenticated",
                       claims=user(OWNER1), types=T, volatile=False, returns_set=True, scalar=False)
            assert [r["provider"] for r in rows] == ["heygen"]
            c.execute("DELETE FROM public.businesses WHERE id = %s", [B1])
            assert c.execute("SELECT count(*) FROM integrations.secrets WHERE business_id = %s", [B1]).fetchone()[0] == 0


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
def test_delete_meets_a_concurrent_change_of_its_secret_as_delete_does(tenant_db, isolation):
    """The secret of a deleted integration is deleted without the executor; it
    keeps DELETE's semantics at each isolation level: in READ COMMITTED the
    newest version of a concurrently updated secret is deleted, in REPEATABLE
    READ and SERIALIZABLE the delete fails with 40001 and changes nothing."""
    with connect(tenant_db) as c, connect(tenant_db, autocommit=False) as t1:
        c.execute("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_before')", [B1])
        secret_id = c.execute("SELECT secret_id FROM ai_avatar_integrations WHERE business_id = %s", [B1]).fetchone()[0]
        t1.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        t1.execute("SELECT count(*) FROM ai_avatar_integrations")  # takes the snapshot
        c.execute("SELECT integrations.update_secret(%s, 'hg_concurrent')", [secret_id])
        if isolation == "read committed":
            t1.execute("SELECT delete_ai_avatar_integration(%s)", [B1])
            t1.commit()
            assert c.execute("SELECT count(*) FROM ai_avatar_integrations WHERE business_id = %s", [B1]).fetchone()[0] == 0
            assert c.execute("SELECT count(*) FROM integrations.secrets WHERE id = %s", [secret_id]).fetchone()[0] == 0
        else:
            with pytest.raises(psycopg.errors.SerializationFailure):
                t1.execute("SELECT delete_ai_avatar_integration(%s)", [B1])
            t1.rollback()
            assert c.execute("SELECT get_ai_avatar_secret(%s)", [B1]).fetchone()[0] == "hg_concurrent"
