"""The integration platform's RPCs as PostgREST calls them: the provider
registry and the OAuth round trip."""

import pytest

from conftest import connect, restored_copy
from postgrest import RpcError, rpc

BIZ = "0b000000-0000-4000-8000-000000000001"
OWNER = "0c000000-0000-4000-8000-00000000000c"
VERIFIER = "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag"


def test_anyone_searches_the_registry_with_get(fresh_db):
    with connect(fresh_db) as c:
        rows = rpc(c, "get_payment_providers_by_capability", {"p_capability": "one_time", "p_country": "sa"},
                   role="anon", volatile=False, returns_set=True, scalar=False)
        keys = [r["provider"] for r in rows]
        assert keys[:2] == ["tap_payments", "paymob"]
        assert "stripe" not in keys  # Stripe's SA support is unverified
        mena = [r["is_mena_provider"] for r in rows]
        assert mena == sorted(mena, reverse=True), "MENA providers first"
        assert all("SA" in r["supported_countries"] for r in rows)
        bnpl = rpc(c, "get_payment_providers_by_capability",
                   {"p_capability": "bnpl", "p_country": "KW", "p_currency": "KWD"},
                   role="anon", volatile=False, returns_set=True, scalar=False)
        assert [r["provider"] for r in bnpl] == ["tabby"]
        with pytest.raises(RpcError) as e:
            rpc(c, "get_payment_providers_by_capability", {"p_capability": "one_time", "p_country": "KSA"},
                role="anon", volatile=False, returns_set=True, scalar=False)
        assert (e.value.status, e.value.sqlstate) == (400, "22023")


def test_oauth_round_trip(fresh_db):
    with connect(fresh_db) as c:
        c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'owner')", [BIZ, OWNER])
        owner = {"sub": OWNER, "aud": "authenticated"}
        body = {"p_business_id": BIZ, "p_provider": "github", "p_redirect_uri": "https://app.example.com/cb",
                "p_scopes": ["repo"], "p_code_verifier": VERIFIER}
        state = rpc(c, "create_oauth_state", body, role="authenticated", claims=owner,
                    types={"p_business_id": "uuid", "p_scopes": "text[]"})
        assert len(state) == 43
        # the provider redirects back; the callback handler (service_role) consumes the state once
        got = rpc(c, "consume_oauth_state", {"p_state": state}, role="service_role", returns_set=True, scalar=False)
        assert got == [{"business_id": BIZ, "provider": "github", "redirect_uri": "https://app.example.com/cb",
                        "scopes": ["repo"], "code_verifier": VERIFIER}]
        with pytest.raises(RpcError) as e:
            rpc(c, "consume_oauth_state", {"p_state": state}, role="service_role", returns_set=True, scalar=False)
        assert (e.value.status, e.value.sqlstate) == (400, "22023")
        with pytest.raises(RpcError) as e:
            rpc(c, "consume_oauth_state", {"p_state": "forged"}, role="service_role", returns_set=True, scalar=False)
        assert (e.value.status, e.value.sqlstate) == (404, "PT404")
        with pytest.raises(RpcError) as e:
            rpc(c, "create_oauth_state", dict(body, p_redirect_uri="http://evil.example.com/cb"), role="authenticated",
                claims=owner, types={"p_business_id": "uuid", "p_scopes": "text[]"})
        assert (e.value.status, e.value.sqlstate) == (400, "22023")
        with pytest.raises(RpcError) as e:
            rpc(c, "create_oauth_state", body, role="anon", types={"p_business_id": "uuid", "p_scopes": "text[]"})
        assert e.value.status == 401


def test_shopify_connection_flow(fresh_db):
    shop_biz = "0f000000-0000-4000-8000-000000000001"
    owner = {"sub": OWNER, "aud": "authenticated"}
    types = {"p_business_id": "uuid", "p_integration_id": "uuid", "p_connection_config": "jsonb",
             "p_capabilities": "jsonb", "p_success": "boolean", "p_response_time_ms": "integer",
             "p_total_records": "bigint", "p_last_sync_count": "bigint", "p_failed_sync_count": "bigint"}
    with connect(fresh_db) as c:
        c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'owner')", [shop_biz, OWNER])
        iid = rpc(c, "create_integration", {
            "p_business_id": shop_biz, "p_provider": "shopify", "p_name": "Main Store", "p_auth_method": "api_key",
            "p_api_key": "shpat_0123456789abcdef", "p_key_prefix": "shpat_",
            "p_connection_config": {"domain": "mystore.myshopify.com", "api_version": "2024-01", "timeout": 30000},
            "p_capabilities": {"can_sync": True, "can_push": False, "can_webhook": True, "sync_frequency": "hourly"},
        }, role="authenticated", claims=owner, types=types)
        # the owner reads it back: no secret anywhere in the answer
        got = rpc(c, "get_integration", {"p_integration_id": iid}, role="authenticated", claims=owner, types=types,
                  volatile=False)
        assert got["key_prefix"] == "shpat_" and got["has_credentials"] is True
        assert "0123456789abcdef" not in str(got) and "api_key_secret_id" not in got
        listed = rpc(c, "list_integrations", {"p_business_id": shop_biz}, role="authenticated", claims=owner,
                     types=types, volatile=False, returns_set=True)
        assert [i["id"] for i in listed] == [iid]
        # credentials: the back end only
        with pytest.raises(RpcError) as e:
            rpc(c, "get_integration_credentials", {"p_integration_id": iid}, role="authenticated", claims=owner,
                types=types)
        assert e.value.status == 403
        creds = rpc(c, "get_integration_credentials", {"p_integration_id": iid}, role="service_role", types=types)
        assert creds["api_key"] == "shpat_0123456789abcdef" and creds["auth_method"] == "api_key"
        # a worker records health and a sync
        for ok in (False, False, False):
            rpc(c, "update_integration_health", {"p_integration_id": iid, "p_success": ok, "p_error_message": "503"},
                role="service_role", types=types)
        assert rpc(c, "get_integration", {"p_integration_id": iid}, role="service_role", types=types)["status"] == "error"
        rpc(c, "update_integration_health", {"p_integration_id": iid, "p_success": True, "p_response_time_ms": 90},
            role="service_role", types=types)
        rpc(c, "update_integration_sync_stats", {"p_integration_id": iid, "p_total_records": 120,
                                                 "p_last_sync_count": 20, "p_failed_sync_count": 0},
            role="service_role", types=types)
        after = rpc(c, "get_integration", {"p_integration_id": iid}, role="service_role", types=types)
        assert (after["status"], after["consecutive_failures"], after["total_records"]) == ("active", 0, 120)
        # a credential that does not fit the auth method is a 400
        with pytest.raises(RpcError) as e:
            rpc(c, "create_integration", {"p_business_id": shop_biz, "p_provider": "shopify", "p_name": "B",
                                          "p_auth_method": "basic_auth", "p_api_key": "shpat_x"},
                role="authenticated", claims=owner, types=types)
        assert (e.value.status, e.value.sqlstate) == (400, "22023")
        assert rpc(c, "delete_integration", {"p_integration_id": iid}, role="authenticated", claims=owner,
                   types=types) is True


def test_signed_webhook_accepted_once_forged_refused(fresh_db):
    import hashlib
    import hmac
    import json
    import time

    biz = "0a100000-0000-4000-8000-000000000001"
    with connect(fresh_db) as c:
        conn = c.execute("SELECT create_integration(%s, 'stripe', 'Live', 'api_key', p_api_key => 'sk_live_wh')",
                         [biz]).fetchone()[0]
        cfg = str(c.execute("SELECT set_webhook_config(%s, 'whsec_test')", [conn]).fetchone()[0])
        body = json.dumps({"id": "evt_1", "type": "charge.succeeded"}).encode()
        t = int(time.time())
        sig = hmac.new(b"whsec_test", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        types = {"p_config_id": "uuid", "p_headers": "jsonb", "p_body": "bytea"}
        # PostgREST passes bytea from JSON as text in \x hex form
        call = {"p_config_id": cfg, "p_provider_event_id": "evt_1", "p_event_type": "charge.succeeded",
                "p_headers": {"Stripe-Signature": f"t={t},v1={sig}"}, "p_body": "\\x" + body.hex(),
                "p_body_object_key": "r2://webhooks/evt_1.json"}
        first = rpc(c, "record_webhook_event", call, role="service_role", types=types)
        again = rpc(c, "record_webhook_event", call, role="service_role", types=types)
        assert first == again
        assert c.execute("SELECT count(*) FROM integration_events").fetchone()[0] == 1
        forged = dict(call, p_provider_event_id="evt_2",
                      p_headers={"Stripe-Signature": f"t={t},v1={hmac.new(b'guess', body, hashlib.sha256).hexdigest()}"})
        with pytest.raises(RpcError) as e:
            rpc(c, "record_webhook_event", forged, role="service_role", types=types)
        assert (e.value.status, e.value.sqlstate) == (403, "42501")
        assert "whsec_test" not in str(e.value)
        stored = c.execute("SELECT body_sha256, body_object_key FROM integration_events").fetchone()
        assert bytes(stored[0]) == hashlib.sha256(body).digest() and stored[1] == "r2://webhooks/evt_1.json"
        # a worker takes it and finishes it
        claimed = rpc(c, "claim_integration_events", {"p_limit": 5}, role="service_role",
                      types={"p_limit": "integer"}, returns_set=True, scalar=False)
        assert [e["id"] for e in claimed] == [first] and claimed[0]["status"] == "processing"
        rpc(c, "complete_integration_event", {"p_event_id": first, "p_success": True}, role="service_role",
            types={"p_event_id": "uuid", "p_success": "boolean"})
        assert c.execute("SELECT status FROM integration_events").fetchone()[0] == "done"


@pytest.mark.single_node
def test_every_platform_table_survives_dump_and_restore(fresh_db, admin, tmp_path):
    """Connections, OAuth states, webhook configurations and events, metrics and
    API logs (a run-time daily partition and the default one), added providers:
    all in the dump, and every secret still opens after the restore."""
    import hashlib
    import hmac

    biz = "0a200000-0000-4000-8000-000000000002"
    verifier = "v" * 50
    with connect(fresh_db) as c:
        c.execute("SELECT integrations.register_provider('noon_payments', 'Noon Payments', 'payment', "
                  "p_is_mena_provider => true, p_supported_countries => '{AE}', p_payment_capabilities => '{one_time}')")
        conn = c.execute("SELECT create_integration(%s, 'checkout_com', 'Live', 'bearer_token', p_api_key => 'sk_cko_dump')",
                         [biz]).fetchone()[0]
        gh = c.execute("SELECT create_integration(%s, 'github', 'Repos', 'oauth2', p_access_token => 'gho_dump', "
                       "p_refresh_token => 'ghr_dump')", [biz]).fetchone()[0]
        cfg = c.execute("SELECT set_webhook_config(%s, 'whsec_dump')", [conn]).fetchone()[0]
        body = b'{"id":"evt_dump"}'
        sig = hmac.new(b"whsec_dump", body, hashlib.sha256).hexdigest()
        c.execute("SELECT record_webhook_event(%s, 'evt_dump', 'payment_approved', %s, %s, 'r2://k')",
                  [cfg, '{"Cko-Signature": "%s"}' % sig, body])
        state = c.execute("SELECT create_oauth_state(%s, 'github', 'https://app.example.com/cb', NULL, %s)",
                          [biz, verifier]).fetchone()[0]
        c.execute("SELECT integrations.create_api_log_partitions(1)")
        c.execute("SELECT log_integration_api_call(%s, 'GET', 'https://api.checkout.com/payments?x=1', 200, 50)", [conn])
        c.execute("INSERT INTO integration_api_logs (logged_at, integration_id, business_id, method, url) "
                  "VALUES (now() - interval '10 days', %s, %s, 'GET', 'https://old.example.com')", [conn, biz])
        counts = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in [
            "integration_connections", "integration_oauth_states", "integration_webhook_configs", "integration_events",
            "integration_metrics_hourly", "integration_api_logs", "integration_providers", "integrations.secrets"]}
    with restored_copy(admin, fresh_db, "custom", tmp_path) as (target, _):
        with connect(target) as c:
            for t, n in counts.items():
                assert c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == n, t
            creds = c.execute("SELECT get_integration_credentials(%s)", [conn]).fetchone()[0]
            assert creds["bearer_token"] == "sk_cko_dump"
            assert c.execute("SELECT get_integration_credentials(%s)->>'refresh_token'", [gh]).fetchone()[0] == "ghr_dump"
            # the restored signing secret still verifies, and the event is still known (a replay)
            again = c.execute("SELECT record_webhook_event(%s, 'evt_dump', 'payment_approved', %s, %s, 'r2://k')",
                              [cfg, '{"Cko-Signature": "%s"}' % sig, body]).fetchone()[0]
            assert c.execute("SELECT count(*) FROM integration_events").fetchone()[0] == 1 and again is not None
            got = c.execute("SELECT provider, code_verifier FROM consume_oauth_state(%s)", [state]).fetchone()
            assert got == ("github", verifier)
            assert c.execute("SELECT count(*) FROM get_payment_providers_by_capability('one_time', 'AE') "
                             "WHERE provider = 'noon_payments'").fetchone()[0] == 1
