"""The platform's RPCs keyed by something other than the business (an OAuth
state, a webhook configuration, an event, an API key or a connection id) on
a distributed database, in PostgREST's call shape on the coordinator: the
row is found on whichever shard holds it, then locked and changed by its
whole key (Citus cannot lock rows across shards). And the keyring across
shards: a data-key rotation, re-encryption and verification of every
secret."""

import hashlib
import hmac
import json
import time

import pytest

from conftest import COORDINATOR, connect
from postgrest import RpcError, rpc

B1 = "b1000000-0000-4000-8000-000000000001"
B2 = "b2000000-0000-4000-8000-000000000002"
B3 = "b3000000-0000-4000-8000-000000000003"
OWNER = "a1000000-0000-4000-8000-00000000000a"
STRANGER = "a2000000-0000-4000-8000-00000000000b"
VERIFIER = "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag"
T = {"p_business_id": "uuid", "p_scopes": "text[]", "p_integration_id": "uuid", "p_config_id": "uuid",
     "p_headers": "jsonb", "p_body": "bytea", "p_limit": "integer", "p_event_id": "uuid", "p_success": "boolean",
     "p_api_key_id": "uuid", "p_rate_limit": "integer", "p_batch_size": "integer", "p_social_accounts": "jsonb"}


def owner():
    return {"sub": OWNER, "aud": "authenticated"}


@pytest.fixture(scope="module")
def db(distributed_db):
    with connect(COORDINATOR, distributed_db) as c:
        for b in (B1, B2, B3):
            c.execute("INSERT INTO public.businesses VALUES (%s, 'shop', %s)", [b, OWNER])
        c.execute("SET search_path = public")
    return distributed_db


def test_oauth_round_trip(db):
    with connect(COORDINATOR, db) as c:
        body = {"p_business_id": B1, "p_provider": "github", "p_redirect_uri": "https://app.example.com/cb",
                "p_scopes": ["repo"], "p_code_verifier": VERIFIER}
        state = rpc(c, "create_oauth_state", body, role="authenticated", claims=owner(), types=T)
        got = rpc(c, "consume_oauth_state", {"p_state": state}, role="service_role", returns_set=True, scalar=False)
        assert got == [{"business_id": B1, "provider": "github", "redirect_uri": "https://app.example.com/cb",
                        "scopes": ["repo"], "code_verifier": VERIFIER}]
        with pytest.raises(RpcError) as e:
            rpc(c, "consume_oauth_state", {"p_state": state}, role="service_role", returns_set=True, scalar=False)
        assert (e.value.status, e.value.sqlstate) == (400, "22023")
        with pytest.raises(RpcError) as e:
            rpc(c, "consume_oauth_state", {"p_state": "forged"}, role="service_role", returns_set=True, scalar=False)
        assert (e.value.status, e.value.sqlstate) == (404, "PT404")
        # the code verifier's secret went with the state
        assert c.execute("SELECT count(*) FROM integrations.secrets WHERE business_id = %s", [B1]).fetchone()[0] == 0


def test_signed_webhook_claimed_and_completed(db):
    with connect(COORDINATOR, db) as c:
        conn = rpc(c, "create_integration", {"p_business_id": B2, "p_provider": "stripe", "p_name": "Live",
                                             "p_auth_method": "api_key", "p_api_key": "sk_live_wh"},
                   role="authenticated", claims=owner(), types=T)
        cfg = rpc(c, "set_webhook_config", {"p_integration_id": conn, "p_signing_secret": "whsec_test"},
                  role="authenticated", claims=owner(), types=T)
        body = json.dumps({"id": "evt_1", "type": "charge.succeeded"}).encode()
        t = int(time.time())
        sig = hmac.new(b"whsec_test", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        call = {"p_config_id": cfg, "p_provider_event_id": "evt_1", "p_event_type": "charge.succeeded",
                "p_headers": {"Stripe-Signature": f"t={t},v1={sig}"}, "p_body": "\\x" + body.hex(),
                "p_body_object_key": "r2://webhooks/evt_1.json"}
        first = rpc(c, "record_webhook_event", call, role="service_role", types=T)
        assert rpc(c, "record_webhook_event", call, role="service_role", types=T) == first
        forged = dict(call, p_provider_event_id="evt_2",
                      p_headers={"Stripe-Signature": f"t={t},v1={hmac.new(b'guess', body, hashlib.sha256).hexdigest()}"})
        with pytest.raises(RpcError) as e:
            rpc(c, "record_webhook_event", forged, role="service_role", types=T)
        assert (e.value.status, e.value.sqlstate) == (403, "42501") and "whsec_test" not in str(e.value)
        claimed = rpc(c, "claim_integration_events", {"p_limit": 5}, role="service_role", types=T,
                      returns_set=True, scalar=False)
        assert [e["id"] for e in claimed] == [first] and claimed[0]["status"] == "processing"
        assert rpc(c, "claim_integration_events", {"p_limit": 5}, role="service_role", types=T,
                   returns_set=True, scalar=False) == []
        rpc(c, "complete_integration_event", {"p_event_id": first, "p_success": False, "p_error": "timeout"},
            role="service_role", types=T)
        assert c.execute("SELECT status FROM public.integration_events WHERE id = %s", [first]).fetchone()[0] == "failed"
        # a stranger cannot see the connection; its owner deletes it, and its secrets and
        # webhook configuration go on its shard
        assert rpc(c, "get_integration", {"p_integration_id": conn}, role="authenticated",
                   claims={"sub": STRANGER, "aud": "authenticated"}, types=T, volatile=False) is None
        assert rpc(c, "delete_integration", {"p_integration_id": conn}, role="authenticated", claims=owner(),
                   types=T) is True
        assert c.execute("SELECT count(*) FROM integrations.secrets WHERE business_id = %s", [B2]).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM public.integration_events WHERE business_id = %s", [B2]).fetchone()[0] == 0


def test_api_key_revoke_and_rotate(db):
    with connect(COORDINATOR, db) as c:
        [row] = rpc(c, "create_api_key", {"p_business_id": B3, "p_name": "gw", "p_scopes": ["content:read"],
                                         "p_rate_limit": 100}, role="authenticated", claims=owner(), types=T,
                    returns_set=True, scalar=False)
        [rotated] = rpc(c, "rotate_api_key", {"p_api_key_id": row["api_key_id"]}, role="authenticated",
                        claims=owner(), types=T, returns_set=True, scalar=False)
        with pytest.raises(RpcError) as e:
            rpc(c, "verify_api_key", {"p_api_key": row["api_key"]}, role="service_role", types=T,
                returns_set=True, scalar=False)
        assert e.value.sqlstate == "42501"
        [ok] = rpc(c, "verify_api_key", {"p_api_key": rotated["api_key"]}, role="service_role", types=T,
                   returns_set=True, scalar=False)
        assert ok["business_id"] == B3
        # the writer adds the uses to the key's row, on its shard
        c.execute("SELECT integrations.flush_audit_log()")
        assert c.execute("SELECT usage_count FROM public.api_keys WHERE id = %s",
                         [rotated["api_key_id"]]).fetchone()[0] == 1
        assert rpc(c, "revoke_api_key", {"p_api_key_id": rotated["api_key_id"]}, role="authenticated",
                   claims=owner(), types=T) is True
        assert rpc(c, "revoke_api_key", {"p_api_key_id": rotated["api_key_id"]}, role="authenticated",
                   claims={"sub": STRANGER, "aud": "authenticated"}, types=T) is False


def test_social_profile_and_metrics(db):
    with connect(COORDINATOR, db) as c:
        profile = rpc(c, "get_or_create_upload_post_profile", {"p_business_id": B3}, role="authenticated",
                      claims=owner(), types=T, scalar=False)
        assert profile["upload_post_username"] == "biz_" + B3.replace("-", "")
        rpc(c, "set_upload_post_social_accounts", {"p_business_id": B3, "p_social_accounts": {"x": "@three"}},
            role="authenticated", claims=owner(), types=T)
        again = rpc(c, "get_or_create_upload_post_profile", {"p_business_id": B3}, role="authenticated",
                    claims=owner(), types=T, scalar=False)
        assert again["id"] == profile["id"] and again["social_accounts"] == {"x": "@three"}


def test_rotation_reencryption_and_verification_cover_every_shard(db):
    with connect(COORDINATOR, db) as c:
        for b in (B1, B2, B3):
            rpc(c, "set_email_integration", {"p_business_id": b, "p_provider": "brevo", "p_api_key": f"br_{b[:2]}"},
                role="authenticated", claims=owner(), types=T)
        total = c.execute("SELECT count(*) FROM integrations.secrets").fetchone()[0]
        assert total >= 3
        new_key = rpc(c, "rotate_data_key", {}, role="service_role", schema="integrations")
        moved = rpc(c, "reencrypt_secrets", {"p_batch_size": 1000}, role="service_role", types=T, schema="integrations")
        assert moved == total
        assert c.execute("SELECT count(*) FROM integrations.secrets WHERE key_id <> %s", [new_key]).fetchone()[0] == 0
        [v] = rpc(c, "verify_secrets", {}, role="service_role", schema="integrations", returns_set=True, scalar=False)
        assert (v["checked"], v["failed"]) == (total, 0)
        status = rpc(c, "keyring_status", {}, role="service_role", schema="integrations", returns_set=True, scalar=False)
        assert {s["key_id"]: s["secrets"] for s in status}[new_key] == total
        for b in (B1, B2, B3):
            assert rpc(c, "get_email_secret", {"p_business_id": b}, role="service_role", types=T) == f"br_{b[:2]}"
