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
