"""A database that uses every table of the extension, for the fault, restore
and upgrade-style tests, and the checks that every row and secret survived."""

import hashlib
import hmac

from conftest import create_tenant_table

# Every table the extension creates (the API log's partitions are counted
# through their parent).
EXTENSION_TABLES = [
    "integrations.keys", "integrations.secrets", "integrations.tenant_table", "integrations.business_members",
    "integrations.audit_log", "ai_avatar_integrations", "email_integrations", "blog_integrations",
    "upload_post_profiles", "integration_providers", "integration_oauth_states", "integration_connections",
    "integration_api_logs", "integration_metrics_hourly", "integration_webhook_configs", "integration_events",
    "webhook_access_logs", "api_keys", "esp_integrations",
]

B1 = "f1000000-0000-4000-8000-000000000001"
B2 = "f1000000-0000-4000-8000-000000000002"
OWNER = "f0000000-0000-4000-8000-00000000000a"
MEMBER = "f0000000-0000-4000-8000-00000000000e"
VERIFIER = "v" * 64
WEBHOOK_SECRET = "whsec_fill"
WEBHOOK_BODY = b'{"id":"evt_fill","type":"payment_approved"}'


def webhook_headers():
    sig = hmac.new(WEBHOOK_SECRET.encode(), WEBHOOK_BODY, hashlib.sha256).hexdigest()
    return '{"Cko-Signature": "%s"}' % sig


def fill_every_table(c):
    """Fills every extension table through the RPCs (as a superuser, autocommit
    connection); returns the ids the checks need."""
    ids = {}
    create_tenant_table(c, "public.fill_businesses", "id uuid PRIMARY KEY, profile_id uuid")
    c.execute("INSERT INTO fill_businesses VALUES (%s, %s), (%s, %s) ON CONFLICT DO NOTHING", [B1, OWNER, B2, OWNER])
    c.execute("SELECT integrations.attach_tenant_table('fill_businesses')")
    c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'member') ON CONFLICT DO NOTHING", [B2, MEMBER])
    one = lambda sql, *args: c.execute(sql, list(args)).fetchone()[0]  # noqa: E731
    ids["store"] = str(one("SELECT integrations.create_secret(%s, 'store-value', 'standalone')", B1))
    one("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_fill', 'avatar', 'voice')", B1)
    one("SELECT set_email_integration(%s, 'brevo', 'xkeysib-fill', 'Fill', 'fill@example.com')", B1)
    one("SELECT set_blog_integration(%s, 'wordpress', 'wp fill pass', 'https://blog.example.com', 'ed')", B2)
    c.execute("SELECT set_upload_post_social_accounts(%s, '{\"x\": \"@fill\"}')", [B1])
    c.execute("SELECT integrations.register_provider('fill_pay', 'Fill Pay', 'payment', p_is_mena_provider => true, "
              "p_supported_countries => '{AE}', p_payment_capabilities => '{one_time}')")
    ids["cko"] = str(one("SELECT create_integration(%s, 'checkout_com', 'Live', 'bearer_token', "
                         "p_api_key => 'sk_cko_fill')", B1))
    ids["gh"] = str(one("SELECT create_integration(%s, 'github', 'Repos', 'oauth2', p_access_token => 'gho_fill', "
                        "p_refresh_token => 'ghr_fill')", B2))
    c.execute("SELECT update_integration_health(%s, true, NULL, 100)", [ids["cko"]])
    ids["state"] = one("SELECT create_oauth_state(%s, 'github', 'https://app.example.com/cb', NULL, %s)", B2, VERIFIER)
    c.execute("SELECT integrations.create_api_log_partitions(1)")
    c.execute("SELECT log_integration_api_call(%s, 'GET', 'https://api.checkout.com/payments?x=1', 200, 50)", [ids["cko"]])
    c.execute("INSERT INTO integration_api_logs (logged_at, integration_id, business_id, method, url) "
              "VALUES (now() - interval '10 days', %s, %s, 'GET', 'https://old.example.com')", [ids["cko"], B1])
    c.execute("SELECT record_integration_metric(%s, true, 70)", [ids["cko"]])
    ids["cfg"] = str(one("SELECT set_webhook_config(%s, %s)", ids["cko"], WEBHOOK_SECRET))
    ids["event"] = str(one("SELECT record_webhook_event(%s, 'evt_fill', 'payment_approved', %s, %s, 'r2://k')",
                           ids["cfg"], webhook_headers(), WEBHOOK_BODY))
    c.execute("SELECT log_webhook_body_access(%s, 'support')", [ids["event"]])
    key_id, ids["api_key"] = c.execute("SELECT * FROM create_api_key(%s, 'fill', '{content:read}')", [B1]).fetchone()
    ids["api_key_id"] = str(key_id)
    ids["esp"] = str(one("SELECT set_esp_integration(%s, 'klaviyo', '{\"api_key\": \"pk_fill\", \"list_id\": \"L1\"}')",
                         B2))
    return ids


# The built-in providers are inserted by CREATE EXTENSION, so a restored
# database has them with new timestamps; everything else must match exactly.
ROW_TEXT = {
    "integration_providers":
        "CASE WHEN r.builtin THEN (to_jsonb(r) - 'created_at' - 'updated_at')::text ELSE r::text END",
}


def table_digests(c):
    """Row count and a digest of every row's full contents, per table."""
    out = {}
    for t in EXTENSION_TABLES:
        row = ROW_TEXT.get(t, "r::text")
        n, digest = c.execute(f"SELECT count(*), md5(coalesce(string_agg({row}, '|' ORDER BY {row}), '')) "
                              f"FROM {t} r").fetchone()
        out[t] = (n, digest)
    return out


def assert_every_table_filled(digests):
    empty = [t for t, (n, _) in digests.items() if n == 0]
    assert not empty, f"tables left empty: {empty}"


def assert_secrets_open(c, ids, consume_state=True):
    """Every secret opens: all of them through verify_secrets(), and each kind
    through the RPC that uses it."""
    checked, failed, failed_ids = c.execute("SELECT * FROM integrations.verify_secrets()").fetchone()
    assert checked > 0 and failed == 0, (checked, failed, failed_ids)
    assert c.execute("SELECT integrations.read_secret(%s)", [ids["store"]]).fetchone()[0] == "store-value"
    assert c.execute("SELECT get_ai_avatar_secret(%s), get_email_secret(%s), get_blog_secret(%s)",
                     [B1, B1, B2]).fetchone() == ("hg_fill", "xkeysib-fill", "wp fill pass")
    assert c.execute("SELECT get_integration_credentials(%s)->>'bearer_token'", [ids["cko"]]).fetchone()[0] == "sk_cko_fill"
    assert c.execute("SELECT get_integration_credentials(%s)->>'refresh_token'", [ids["gh"]]).fetchone()[0] == "ghr_fill"
    # the signing secret still verifies: a replay is recognised as the same event
    again = c.execute("SELECT record_webhook_event(%s, 'evt_fill', 'payment_approved', %s, %s, 'r2://k')",
                      [ids["cfg"], webhook_headers(), WEBHOOK_BODY]).fetchone()[0]
    assert str(again) == ids["event"]
    assert c.execute("SELECT get_esp_credentials(%s, 'klaviyo')->>'api_key'", [B2]).fetchone()[0] == "pk_fill"
    # the key's hash is still the key's: it verifies
    got = c.execute("SELECT api_key_id FROM verify_api_key(%s, 'content:read')", [ids["api_key"]]).fetchone()[0]
    assert str(got) == ids["api_key_id"]
    if consume_state:
        got = c.execute("SELECT provider, code_verifier FROM consume_oauth_state(%s)", [ids["state"]]).fetchone()
        assert got == ("github", VERIFIER)
