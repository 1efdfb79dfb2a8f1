"""The integration platform's RPCs as PostgREST calls them: the provider
registry and the OAuth round trip."""

import pytest

from conftest import connect
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
