//! Webhook signature schemes: HMAC-SHA256 of the body (hex or base64),
//! Stripe's signed timestamp, Paymob's HMAC-SHA512 over ordered fields, HS256
//! JWTs and static header tokens. Pure Rust, no pgrx: every comparison is
//! constant-time, and a refusal never carries the secret or the expected value.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::core::tokens::ct_eq;

/// How far a Stripe-style signed timestamp may be from now.
pub const STRIPE_TOLERANCE_SECONDS: i64 = 300;

/// How long after its `exp` (and before its `nbf`) an HS256 JWT is still
/// accepted, for clock skew between the provider and this server, in seconds.
pub const JWT_LEEWAY_SECONDS: i64 = 60;

/// How far an HS256 JWT's `iat`, when it has one, may be from now either way,
/// in seconds: the window of Stripe's signed timestamps.
pub const JWT_MAX_AGE_SECONDS: i64 = STRIPE_TOLERANCE_SECONDS;

/// Paymob's transaction-callback HMAC: the values of these fields of `obj`,
/// in this order, concatenated.
const PAYMOB_FIELDS: &[&str] = &[
    "amount_cents",
    "created_at",
    "currency",
    "error_occured",
    "has_parent_transaction",
    "id",
    "integration_id",
    "is_3d_secure",
    "is_auth",
    "is_capture",
    "is_refunded",
    "is_standalone_payment",
    "is_voided",
    "order.id",
    "owner",
    "pending",
    "source_data.pan",
    "source_data.sub_type",
    "source_data.type",
    "success",
];

/// What a verified webhook tells the caller so that it can refuse replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Identifies the credential of this delivery, to be accepted once per
    /// configuration: the SHA-256 of the whole token for `jwt_hs256` (its
    /// signature covers neither the body nor an event id, so a captured token
    /// would otherwise pass again with any body until it expires). `None`
    /// for schemes without one.
    pub replay_key: Option<[u8; 32]>,
    /// Unix time after which the credential is refused anyway (`exp` plus
    /// [`JWT_LEEWAY_SECONDS`], or `iat` plus [`JWT_MAX_AGE_SECONDS`] when that
    /// is sooner): how long `replay_key` needs remembering.
    pub replay_until: Option<i64>,
    /// Whether the signature covers a unique event id. When it does not, the
    /// caller refuses a second event with the same body digest within the
    /// tolerance window. False for every current scheme.
    pub signs_event_id: bool,
}

impl Verified {
    /// A verified signature that carries nothing about replays.
    pub const UNBOUND: Verified = Verified {
        replay_key: None,
        replay_until: None,
        signs_event_id: false,
    };
}

/// Why a signature was refused (never with the secret or the expected value).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingHeader(String),
    Mismatch,
    Stale,
    /// A JWT past its `exp` (plus the leeway).
    Expired,
    /// A JWT before its `nbf` (less the leeway).
    NotYetValid,
    Malformed(&'static str),
    Unsupported(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::MissingHeader(h) => write!(f, "the signature header {h} is missing"),
            Refusal::Mismatch => write!(f, "the signature does not match the body"),
            Refusal::Stale => write!(
                f,
                "the signed timestamp is more than {STRIPE_TOLERANCE_SECONDS} seconds from now"
            ),
            Refusal::Expired => write!(f, "the token has expired"),
            Refusal::NotYetValid => write!(f, "the token is not valid yet"),
            Refusal::Malformed(what) => write!(f, "the signature header is malformed: {what}"),
            Refusal::Unsupported(s) => write!(f, "the signing scheme {s} is not supported"),
        }
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn header<'a>(headers: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn json_field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn paymob_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    }
}

/// A JWT NumericDate claim: absent, or seconds since the epoch (a fraction is
/// dropped); anything else is malformed.
fn numeric_date(
    claims: &serde_json::Map<String, Value>,
    name: &str,
    what: &'static str,
) -> std::result::Result<Option<i64>, Refusal> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    if let Some(n) = v.as_i64() {
        return Ok(Some(n));
    }
    match v.as_f64() {
        Some(f) if v.is_number() && (-9.0e18..=9.0e18).contains(&f) => Ok(Some(f.floor() as i64)),
        _ => Err(Refusal::Malformed(what)),
    }
}

/// A base64url (unpadded) segment of a JWT that holds a JSON object.
fn jwt_object(
    segment: &str,
    what: &'static str,
) -> std::result::Result<serde_json::Map<String, Value>, Refusal> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Refusal::Malformed(what))?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Refusal::Malformed(what)),
    }
}

/// An HS256 JWT (RFC 7519) in `Authorization: Bearer …` (Tamara's
/// notification token): the JOSE header must say `"alg": "HS256"` (`none` and
/// every other algorithm are refused, as is a `crit` header this code cannot
/// honour), the signature must match, `exp` must be present and not past
/// (with [`JWT_LEEWAY_SECONDS`]), `nbf` if present not ahead, and `iat` if
/// present within [`JWT_MAX_AGE_SECONDS`] of now.
///
/// Tamara's token binds nothing to the body: its documented payload holds
/// only `exp`, `iat` and `iss` ("Tamara"), e.g. `{"exp":1681216443,
/// "iat":1681215543,"iss":"Tamara"}`, no order id and no body digest. So the
/// body cannot be checked against a claim here; what keeps a captured token
/// from vouching for a forged body is that the caller accepts each token once
/// ([`Verified::replay_key`]) and only until it expires.
fn verify_jwt_hs256(
    authorization: &str,
    secret: &[u8],
    now: i64,
) -> std::result::Result<Verified, Refusal> {
    let given = authorization.trim();
    let token = match given.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => given.get(7..).unwrap_or("").trim_start(),
        _ => given,
    };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed("not a JWT"));
    };
    if header.is_empty() || payload.is_empty() || sig.is_empty() {
        return Err(Refusal::Malformed("not a JWT"));
    }
    let jose = jwt_object(header, "the JWT header is not base64url JSON")?;
    match jose.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => {}
        None => return Err(Refusal::Malformed("the JWT header has no alg")),
        Some(_) => return Err(Refusal::Malformed("the JWT alg is not HS256")),
    }
    if jose.contains_key("crit") {
        return Err(Refusal::Malformed("the JWT header has crit parameters"));
    }
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| Refusal::Malformed("not base64url"))?;
    let signed = token.get(..header.len() + 1 + payload.len()).unwrap_or("");
    if !ct_eq(&sig, &hmac_sha256(secret, &[signed.as_bytes()])) {
        return Err(Refusal::Mismatch);
    }
    let claims = jwt_object(payload, "the JWT payload is not base64url JSON")?;
    let exp = numeric_date(&claims, "exp", "the JWT exp is not a number")?
        .ok_or(Refusal::Malformed("the JWT has no exp"))?;
    let mut until = exp
        .checked_add(JWT_LEEWAY_SECONDS)
        .ok_or(Refusal::Malformed("the JWT exp is out of range"))?;
    if now > until {
        return Err(Refusal::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf", "the JWT nbf is not a number")? {
        let from = nbf
            .checked_sub(JWT_LEEWAY_SECONDS)
            .ok_or(Refusal::Malformed("the JWT nbf is out of range"))?;
        if now < from {
            return Err(Refusal::NotYetValid);
        }
    }
    if let Some(iat) = numeric_date(&claims, "iat", "the JWT iat is not a number")? {
        let skew = now.checked_sub(iat).and_then(i64::checked_abs);
        if skew.is_none_or(|s| s > JWT_MAX_AGE_SECONDS) {
            return Err(Refusal::Stale);
        }
        if let Some(last) = iat.checked_add(JWT_MAX_AGE_SECONDS) {
            until = until.min(last);
        }
    }
    Ok(Verified {
        replay_key: Some(Sha256::digest(token.as_bytes()).into()),
        replay_until: Some(until),
        signs_event_id: false,
    })
}

/// Verify a webhook's signature with the provider's scheme. `now` is Unix time.
/// What comes back lets the caller refuse replays (see [`Verified`]).
pub fn verify(
    scheme: &str,
    header_name: Option<&str>,
    secret: &[u8],
    headers: &serde_json::Map<String, Value>,
    body: &[u8],
    now: i64,
) -> std::result::Result<Verified, Refusal> {
    let unbound = |ok: bool| ok.then_some(Verified::UNBOUND).ok_or(Refusal::Mismatch);
    let need = |default: &str| -> std::result::Result<&str, Refusal> {
        let name = header_name.unwrap_or(default);
        header(headers, name).ok_or_else(|| Refusal::MissingHeader(name.to_string()))
    };
    match scheme {
        "hmac_sha256_hex" => {
            let given = need("Signature")?.trim();
            let given = given.strip_prefix("sha256=").unwrap_or(given);
            let given = hex::decode(given).map_err(|_| Refusal::Malformed("not hex"))?;
            unbound(ct_eq(&given, &hmac_sha256(secret, &[body])))
        }
        "hmac_sha256_base64" => {
            let given = base64::engine::general_purpose::STANDARD
                .decode(need("X-Signature")?.trim())
                .map_err(|_| Refusal::Malformed("not base64"))?;
            unbound(ct_eq(&given, &hmac_sha256(secret, &[body])))
        }
        "stripe_v1" => {
            let value = need("Stripe-Signature")?;
            let mut t: Option<i64> = None;
            let mut sigs = Vec::new();
            for part in value.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", v)) => {
                        t = Some(
                            v.parse()
                                .map_err(|_| Refusal::Malformed("t is not a number"))?,
                        )
                    }
                    Some(("v1", v)) => {
                        sigs.push(hex::decode(v).map_err(|_| Refusal::Malformed("v1 is not hex"))?)
                    }
                    _ => {}
                }
            }
            let t = t.ok_or(Refusal::Malformed("no t="))?;
            if sigs.is_empty() {
                return Err(Refusal::Malformed("no v1="));
            }
            // checked: `t=-9223372036854775808` must not overflow
            let skew = now.checked_sub(t).and_then(i64::checked_abs);
            if skew.is_none_or(|s| s > STRIPE_TOLERANCE_SECONDS) {
                return Err(Refusal::Stale);
            }
            let expected = hmac_sha256(secret, &[t.to_string().as_bytes(), b".", body]);
            // every v1 is compared, whichever matches
            let matched = sigs.iter().fold(false, |m, s| ct_eq(s, &expected) | m);
            unbound(matched)
        }
        "paymob_hmac_sha512" => {
            let given =
                hex::decode(need("hmac")?.trim()).map_err(|_| Refusal::Malformed("not hex"))?;
            let json: Value = serde_json::from_slice(body)
                .map_err(|_| Refusal::Malformed("the body is not JSON"))?;
            let obj = json.get("obj").unwrap_or(&json);
            let concatenated: String = PAYMOB_FIELDS
                .iter()
                .map(|f| paymob_value(json_field(obj, f)))
                .collect();
            let mut m =
                <Hmac<Sha512> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
            m.update(concatenated.as_bytes());
            unbound(ct_eq(&given, &m.finalize().into_bytes()))
        }
        "static_header" | "shared_secret_token" => {
            let given = need("Authorization")?;
            unbound(ct_eq(given.trim().as_bytes(), secret))
        }
        "jwt_hs256" => verify_jwt_hs256(need("Authorization")?, secret, now),
        other => Err(Refusal::Unsupported(other.to_string())),
    }
}

/// Headers worth keeping with an event: everything but credentials and signatures.
pub fn kept_headers(headers: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !(k.contains("signature")
                || k.contains("hmac")
                || k.contains("authorization")
                || k.contains("token")
                || k.contains("secret")
                || k == "cookie"
                || k.contains("api-key")
                || k.contains("apikey"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STRIPE_PAYLOAD: &str = concat!(
        "{\n",
        "  \"id\": \"evt_123\",\n",
        "  \"object\": \"event\",\n",
        "  \"account\": \"acct_123\",\n",
        "  \"api_version\": \"2017-05-25\",\n",
        "  \"created\": 1533204620,\n",
        "  \"data\": {\n",
        "    \"object\": {\n",
        "      \"id\": \"cus_123\",\n",
        "      \"object\": \"customer\",\n",
        "      \"created\": 123456789,\n",
        "      \"email\": \"test@stripe.com\",\n",
        "      \"livemode\": false,\n",
        "      \"metadata\": {}\n",
        "    }\n",
        "  },\n",
        "  \"livemode\": false,\n",
        "  \"pending_webhooks\": 1,\n",
        "  \"request\": {\n",
        "    \"id\": \"req_123\",\n",
        "    \"idempotency_key\": \"idempotency-key-123\"\n",
        "  },\n",
        "  \"type\": \"customer.created\"\n",
        "}\n",
    );

    fn headers(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn hmac_sha256_hex_like_checkout_and_paytabs() {
        let body = br#"{"id":"evt_1","type":"payment_approved"}"#;
        let sig = hex::encode(hmac_sha256(b"whsec", &[body]));
        let ok = headers(json!({"cko-signature": sig}));
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"whsec",
                &ok,
                body,
                0
            ),
            Ok(Verified::UNBOUND)
        );
        let gh = headers(json!({"X-Hub-Signature-256": format!("sha256={sig}")}));
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("X-Hub-Signature-256"),
                b"whsec",
                &gh,
                body,
                0
            ),
            Ok(Verified::UNBOUND)
        );
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"other",
                &ok,
                body,
                0
            ),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"whsec",
                &ok,
                b"tampered",
                0
            ),
            Err(Refusal::Mismatch)
        );
        assert!(matches!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"whsec",
                &headers(json!({})),
                body,
                0
            ),
            Err(Refusal::MissingHeader(_))
        ));
    }

    #[test]
    fn hmac_sha256_base64_like_shopify() {
        let body = b"{}";
        let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(b"shpss", &[body]));
        let h = headers(json!({"X-Shopify-Hmac-Sha256": sig}));
        assert_eq!(
            verify(
                "hmac_sha256_base64",
                Some("X-Shopify-Hmac-Sha256"),
                b"shpss",
                &h,
                body,
                0
            ),
            Ok(Verified::UNBOUND)
        );
        assert_eq!(
            verify(
                "hmac_sha256_base64",
                Some("X-Shopify-Hmac-Sha256"),
                b"x",
                &h,
                body,
                0
            ),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn stripe_signatures_with_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_700_000_000i64;
        let v1 = hex::encode(hmac_sha256(
            b"whsec_test",
            &[t.to_string().as_bytes(), b".", body],
        ));
        let h = headers(json!({"Stripe-Signature": format!("t={t},v1=deadbeef,v1={v1},v0=abc")}));
        assert_eq!(
            verify("stripe_v1", None, b"whsec_test", &h, body, t + 10),
            Ok(Verified::UNBOUND)
        );
        assert_eq!(
            verify("stripe_v1", None, b"whsec_test", &h, body, t + 301),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify("stripe_v1", None, b"wrong", &h, body, t),
            Err(Refusal::Mismatch)
        );
        let h = headers(json!({"Stripe-Signature": format!("v1={v1}")}));
        assert!(matches!(
            verify("stripe_v1", None, b"whsec_test", &h, body, t),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn paymob_hmac_over_ordered_fields() {
        let body = json!({"type": "TRANSACTION", "obj": {
            "amount_cents": 10000, "created_at": "2024-01-01T10:00:00", "currency": "EGP", "error_occured": false,
            "has_parent_transaction": false, "id": 123, "integration_id": 456, "is_3d_secure": true, "is_auth": false,
            "is_capture": false, "is_refunded": false, "is_standalone_payment": true, "is_voided": false,
            "order": {"id": 789}, "owner": 42, "pending": false,
            "source_data": {"pan": "2346", "sub_type": "MasterCard", "type": "card"}, "success": true}});
        let concatenated = "100002024-01-01T10:00:00EGPfalsefalse123456truefalsefalsefalsetruefalse78942false2346MasterCardcardtrue";
        let mut m = <Hmac<Sha512> as Mac>::new_from_slice(b"paymob").unwrap();
        m.update(concatenated.as_bytes());
        let h = headers(json!({"hmac": hex::encode(m.finalize().into_bytes())}));
        let raw = serde_json::to_vec(&body).unwrap();
        assert_eq!(
            verify("paymob_hmac_sha512", Some("hmac"), b"paymob", &h, &raw, 0),
            Ok(Verified::UNBOUND)
        );
        let mut forged = body.clone();
        forged["obj"]["amount_cents"] = json!(1);
        let raw = serde_json::to_vec(&forged).unwrap();
        assert_eq!(
            verify("paymob_hmac_sha512", Some("hmac"), b"paymob", &h, &raw, 0),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn jwt_and_static_headers() {
        let signed = "eyJhbGciOiJIUzI1NiJ9.eyJvcmRlcl9pZCI6IjEiLCJleHAiOjE3MDAwMDA5MDB9";
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(hmac_sha256(b"tamara", &[signed.as_bytes()]));
        let h = headers(json!({"Authorization": format!("Bearer {signed}.{sig}")}));
        let now = 1_700_000_000;
        assert!(verify("jwt_hs256", None, b"tamara", &h, b"{}", now).is_ok());
        assert_eq!(
            verify("jwt_hs256", None, b"nope", &h, b"{}", now),
            Err(Refusal::Mismatch)
        );
        let s = headers(json!({"authorization": "s3cr3t"}));
        assert_eq!(
            verify("static_header", None, b"s3cr3t", &s, b"{}", 0),
            Ok(Verified::UNBOUND)
        );
        assert_eq!(
            verify("static_header", None, b"s3cr3x", &s, b"{}", 0),
            Err(Refusal::Mismatch)
        );
        assert!(matches!(
            verify("aes_256_gcm_body", None, b"k", &s, b"{}", 0),
            Err(Refusal::Unsupported(_))
        ));
    }

    #[test]
    fn signatures_and_credentials_are_not_kept() {
        let kept = kept_headers(&headers(
            json!({"Stripe-Signature": "t=1", "Authorization": "Bearer x",
            "Content-Type": "application/json", "X-Shopify-Hmac-Sha256": "y", "X-Request-Id": "r1"}),
        ));
        let mut keys: Vec<&String> = kept.keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["Content-Type", "X-Request-Id"]);
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }

    // Published examples: each provider's own documentation or official SDK
    // test suite, so the schemes are checked against values we did not compute.

    /// GitHub, "Validating webhook deliveries" (docs: testing the payload validation).
    #[test]
    fn github_published_example() {
        let h = headers(json!({
            "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        }));
        let secret = b"It's a Secret to Everybody";
        let ok = verify(
            "hmac_sha256_hex",
            Some("X-Hub-Signature-256"),
            secret,
            &h,
            b"Hello, World!",
            0,
        );
        assert_eq!(ok, Ok(Verified::UNBOUND));
        let bad = verify(
            "hmac_sha256_hex",
            Some("X-Hub-Signature-256"),
            secret,
            &h,
            b"Hello, World?",
            0,
        );
        assert_eq!(bad, Err(Refusal::Mismatch));
    }

    /// Shopify's PHP and JavaScript SDK tests (`RegistryTest.php`, `validate.test.ts`).
    #[test]
    fn shopify_published_examples() {
        let cases: [(&[u8], &[u8], &str); 2] = [
            (
                b"7008c5f4da4718b9b45d26d3fcbbb157",
                br#"{"foo":"bar"}"#,
                "+R9TwYM4mbLTk3hEAOBkpA7zW2lc9vNFmVKs2u2jtyY=",
            ),
            (
                b"test_secret_key",
                br#"{"foo": "bar"}"#,
                "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
            ),
        ];
        for (secret, body, sig) in cases {
            let h = headers(json!({ "X-Shopify-Hmac-Sha256": sig }));
            let name = Some("X-Shopify-Hmac-Sha256");
            assert_eq!(
                verify("hmac_sha256_base64", name, secret, &h, body, 0),
                Ok(Verified::UNBOUND)
            );
            assert_eq!(
                verify("hmac_sha256_base64", name, b"another secret", &h, body, 0),
                Err(Refusal::Mismatch)
            );
        }
    }

    /// stripe-dotnet's `EventUtilityTest` with its `event_test_signature.json`
    /// (484 bytes, LF line ends, a final newline); the header's `v0` is ignored.
    #[test]
    fn stripe_published_example() {
        const PAYLOAD: &str = STRIPE_PAYLOAD;
        assert_eq!(PAYLOAD.len(), 484);
        let h = headers(json!({
            "Stripe-Signature": "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef"
        }));
        let body = PAYLOAD.as_bytes();
        let at =
            |now: i64, body: &[u8]| verify("stripe_v1", None, b"webhook_secret", &h, body, now);
        assert_eq!(at(1_533_204_620, body), Ok(Verified::UNBOUND));
        assert_eq!(at(1_533_204_620 + 301, body), Err(Refusal::Stale));
        assert_eq!(at(1_533_204_620, &body[..483]), Err(Refusal::Mismatch));
    }

    /// RFC 7515, appendix A.1: the HS256 JWS example (key from its JWK).
    #[test]
    fn jwt_hs256_rfc7515_example() {
        let key = hex::decode(
            "0323354b2b0fa5bc837e0665777ba68f5ab328e6f054c928a90f84b2d2502ebf\
             d3fb5a92d20647ef968ab4c377623d223d2e2172052e4f08c0cd9af567d080a3",
        )
        .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
                     eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
                     dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let h = headers(json!({ "Authorization": format!("Bearer {token}") }));
        // its header is {"typ":"JWT",\r\n "alg":"HS256"}; its exp 1300819380
        let exp = 1_300_819_380;
        let want = Verified {
            replay_key: Some(Sha256::digest(token.as_bytes()).into()),
            replay_until: Some(exp + JWT_LEEWAY_SECONDS),
            signs_event_id: false,
        };
        assert_eq!(
            verify("jwt_hs256", None, &key, &h, b"", exp - 100),
            Ok(want)
        );
        assert_eq!(
            verify("jwt_hs256", None, b"another key", &h, b"", exp - 100),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(
                "jwt_hs256",
                None,
                &key,
                &h,
                b"",
                exp + JWT_LEEWAY_SECONDS + 1
            ),
            Err(Refusal::Expired)
        );
    }

    /// Slack's v0 base string, from the example in Slack's "Verifying requests"
    /// guide (also python-slack-sdk's tests): the HMAC this module uses for
    /// every HMAC-SHA256 scheme gives the published signature.
    #[test]
    fn hmac_matches_slacks_published_example() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let mac = hmac_sha256(
            b"8f742231b10e8888abcd99yyyzzz85a5",
            &[b"v0:1531420618:", body],
        );
        assert_eq!(
            hex::encode(mac),
            "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    /// Paymob's "HMAC Transaction Callback" page: the concatenation of its
    /// sample transaction's fields, in the documented order (the page does not
    /// publish the secret behind its sample HMAC, so only the string is checked).
    #[test]
    fn paymob_published_concatenation() {
        let obj = json!({
            "amount_cents": 100000, "created_at": "2024-06-13T11:33:44.592345", "currency": "EGP",
            "error_occured": false, "has_parent_transaction": false, "id": 192036465,
            "integration_id": 4097558, "is_3d_secure": true, "is_auth": false, "is_capture": false,
            "is_refunded": false, "is_standalone_payment": true, "is_voided": false,
            "order": {"id": 217503754}, "owner": 302852, "pending": false,
            "source_data": {"pan": "2346", "sub_type": "MasterCard", "type": "card"}, "success": true
        });
        let concatenated: String = PAYMOB_FIELDS
            .iter()
            .map(|f| paymob_value(json_field(&obj, f)))
            .collect();
        assert_eq!(
            concatenated,
            "1000002024-06-13T11:33:44.592345EGPfalsefalse1920364654097558truefalsefalsefalsetruefalse217503754302852false2346MasterCardcardtrue"
        );
    }

    fn b64url(v: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    /// A JWT over `header` and `claims`, HMAC-SHA256-signed with `key`
    /// whatever its header says.
    fn jwt(key: &[u8], header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = b64url(&hmac_sha256(key, &[signed.as_bytes()]));
        format!("{signed}.{sig}")
    }

    fn check_jwt(token: &str, key: &[u8], now: i64) -> std::result::Result<Verified, Refusal> {
        let h = headers(json!({ "Authorization": format!("Bearer {token}") }));
        verify("jwt_hs256", None, key, &h, b"{}", now)
    }

    const NOW: i64 = 1_700_000_000;

    /// Only `"alg": "HS256"` passes, even with a signature that matches:
    /// `none`, other algorithms, a lower-case or missing alg, `crit`.
    #[test]
    fn jwt_alg_must_be_hs256() {
        let claims = json!({"exp": NOW + 600});
        let ok = jwt(b"k", json!({"alg": "HS256", "typ": "JWT"}), claims.clone());
        assert!(check_jwt(&ok, b"k", NOW).is_ok());
        for header in [
            json!({"alg": "none"}),
            json!({"alg": "HS512"}),
            json!({"alg": "RS256"}),
            json!({"alg": "hs256"}),
            json!({"alg": "HS256 "}),
            json!({"alg": 256}),
            json!({"alg": null}),
            json!({"typ": "JWT"}),
            json!({"alg": "HS256", "crit": ["exp"]}),
            json!(["alg", "HS256"]),
        ] {
            let token = jwt(b"k", header.clone(), claims.clone());
            assert!(
                matches!(check_jwt(&token, b"k", NOW), Err(Refusal::Malformed(_))),
                "{header}"
            );
        }
        // unsigned `alg: none` tokens, and pieces that are not base64url JSON
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none"}"#),
            b64url(claims.to_string().as_bytes())
        );
        let payload = b64url(claims.to_string().as_bytes());
        for bad in [
            none.as_str(),
            "a.b",
            "a.b.c.d",
            "..",
            &format!("e30.{payload}.c2ln"),
            &format!("bm90IGpzb24.{payload}.c2ln"),
            &format!("{}.{payload}.!!", b64url(br#"{"alg":"HS256"}"#)),
        ] {
            assert!(
                matches!(check_jwt(bad, b"k", NOW), Err(Refusal::Malformed(_))),
                "{bad}"
            );
        }
    }

    /// `exp` is required and enforced with the leeway; `nbf` and `iat` when
    /// present; out-of-range numbers are refused without overflowing.
    #[test]
    fn jwt_claims_are_enforced() {
        let hs = || json!({"alg": "HS256"});
        let at = |claims: Value, now: i64| check_jwt(&jwt(b"k", hs(), claims), b"k", now);
        // a token that expired in 1970 was accepted before
        assert_eq!(at(json!({"exp": 1}), NOW), Err(Refusal::Expired));
        assert!(at(json!({"exp": NOW}), NOW + JWT_LEEWAY_SECONDS).is_ok());
        assert_eq!(
            at(json!({"exp": NOW}), NOW + JWT_LEEWAY_SECONDS + 1),
            Err(Refusal::Expired)
        );
        assert!(at(json!({"exp": NOW as f64 + 0.5}), NOW).is_ok());
        for claims in [
            json!({}),
            json!({"iat": NOW}),
            json!({"exp": "1700000600"}),
            json!({"exp": null}),
            json!({"exp": [NOW]}),
            json!({"exp": i64::MAX}),
            json!({"exp": u64::MAX}),
            json!({"exp": 1e300}),
            json!({"exp": NOW + 600, "nbf": i64::MIN}),
            json!({"exp": NOW + 600, "iat": "now"}),
        ] {
            assert!(
                matches!(at(claims.clone(), NOW), Err(Refusal::Malformed(_))),
                "{claims}"
            );
        }
        let exp = NOW + 3600;
        assert!(at(json!({"exp": exp, "nbf": NOW + 60}), NOW).is_ok());
        assert_eq!(
            at(json!({"exp": exp, "nbf": NOW + 61}), NOW),
            Err(Refusal::NotYetValid)
        );
        assert!(at(json!({"exp": exp, "iat": NOW - 300}), NOW).is_ok());
        assert!(at(json!({"exp": exp, "iat": NOW + 300}), NOW).is_ok());
        assert_eq!(
            at(json!({"exp": exp, "iat": NOW - 301}), NOW),
            Err(Refusal::Stale)
        );
        assert_eq!(
            at(json!({"exp": exp, "iat": NOW + 301}), NOW),
            Err(Refusal::Stale)
        );
        assert_eq!(
            at(json!({"exp": exp, "iat": i64::MIN}), NOW),
            Err(Refusal::Stale)
        );
        assert_eq!(
            at(json!({"exp": exp, "iat": i64::MAX}), -1),
            Err(Refusal::Stale)
        );
        // extreme clocks: refused, never a panic
        for now in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            for claims in [
                json!({"exp": i64::MAX - JWT_LEEWAY_SECONDS, "iat": i64::MIN}),
                json!({"exp": i64::MIN, "nbf": i64::MIN + JWT_LEEWAY_SECONDS}),
                json!({"exp": 0, "iat": i64::MAX, "nbf": i64::MAX}),
            ] {
                let _ = at(claims, now);
            }
        }
    }

    /// The caller gets the SHA-256 of the whole token, the same for the same
    /// token however the header spells `Bearer`, and how long to keep it.
    #[test]
    fn jwt_replay_key_is_the_token_digest() {
        let token = jwt(
            b"k",
            json!({"alg": "HS256"}),
            json!({"exp": NOW + 900, "iat": NOW - 10}),
        );
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let v = check_jwt(&token, b"k", NOW).unwrap();
        assert_eq!(v.replay_key, Some(digest));
        assert!(!v.signs_event_id);
        // iat + 300 comes before exp + 60
        assert_eq!(v.replay_until, Some(NOW - 10 + JWT_MAX_AGE_SECONDS));
        for auth in [
            format!("bearer  {token}"),
            format!("BEARER {token}\n"),
            token.clone(),
        ] {
            let h = headers(json!({ "Authorization": auth }));
            let again = verify("jwt_hs256", None, b"k", &h, b"other body", NOW).unwrap();
            assert_eq!(again.replay_key, Some(digest));
        }
        let other = jwt(
            b"k",
            json!({"alg": "HS256"}),
            json!({"exp": NOW + 900, "iat": NOW - 9}),
        );
        assert_ne!(
            check_jwt(&other, b"k", NOW).unwrap().replay_key,
            Some(digest)
        );
        // the other schemes bind nothing
        let s = headers(json!({"authorization": "s3cr3t"}));
        let v = verify("static_header", None, b"s3cr3t", &s, b"{}", NOW).unwrap();
        assert_eq!(v, Verified::UNBOUND);
    }

    /// Tamara's documented notification token (docs.tamara.co, "Webhook
    /// Registration & Order Authorisation"): header `{"typ":"JWT","alg":"HS256"}`,
    /// payload `{"exp":1681216443,"iat":1681215543,"iss":"Tamara"}` — no claim
    /// ties it to the body. Its secret is not published: it parses and is
    /// refused as a mismatch; one signed the same way passes within its window.
    #[test]
    fn tamara_documented_token() {
        let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE2ODEyMTY0NDMsImlhdCI6MTY4MTIxNTU0MywiaXNzIjoiVGFtYXJhIn0.oD9V-HhWrAUTpti342QduaBeapncZBZ1apSY9dH8vfs";
        let iat = 1_681_215_543;
        assert_eq!(
            check_jwt(token, b"not tamara's", iat + 10),
            Err(Refusal::Mismatch)
        );
        let claims = json!({"exp": 1_681_216_443, "iat": iat, "iss": "Tamara"});
        let ours = jwt(
            b"notification-token",
            json!({"typ": "JWT", "alg": "HS256"}),
            claims,
        );
        assert!(check_jwt(&ours, b"notification-token", iat + 10).is_ok());
        assert_eq!(
            check_jwt(&ours, b"notification-token", iat + JWT_MAX_AGE_SECONDS + 1),
            Err(Refusal::Stale)
        );
    }

    /// `t=-9223372036854775808` overflowed `(now - t).abs()`; extreme
    /// timestamps are stale, overlong and odd headers are handled.
    #[test]
    fn stripe_headers_never_overflow() {
        let body = br#"{"id":"evt_1"}"#;
        let v1 = |t: i64| {
            hex::encode(hmac_sha256(
                b"whsec",
                &[t.to_string().as_bytes(), b".", body],
            ))
        };
        let check = |value: String, now: i64| {
            let h = headers(json!({ "Stripe-Signature": value }));
            verify("stripe_v1", None, b"whsec", &h, body, now)
        };
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            for now in [i64::MIN, -1, 0, NOW, i64::MAX] {
                let r = check(format!("t={t},v1={}", v1(t)), now);
                if (i128::from(t) - i128::from(now)).abs() <= i128::from(STRIPE_TOLERANCE_SECONDS) {
                    assert_eq!(r, Ok(Verified::UNBOUND));
                } else {
                    assert_eq!(r, Err(Refusal::Stale), "t={t} now={now}");
                }
            }
        }
        assert!(matches!(
            check("t=-9223372036854775809,v1=00".into(), NOW),
            Err(Refusal::Malformed(_))
        ));
        // 100 KB: thousands of wrong v1 entries and the right one last
        let mut long = format!("t={NOW}");
        while long.len() < 100_000 {
            long.push_str(&format!(",v1={}", "ab".repeat(32)));
        }
        long.push_str(&format!(",v1={}", v1(NOW)));
        assert_eq!(check(long.clone(), NOW), Ok(Verified::UNBOUND));
        assert_eq!(
            check(long.replace(&v1(NOW), &"cd".repeat(32)), NOW),
            Err(Refusal::Mismatch)
        );
        let junk = format!("t={NOW},{}v1={}", "x=y,".repeat(25_000), v1(NOW));
        assert_eq!(check(junk, NOW), Ok(Verified::UNBOUND));
        for odd in [
            "t=١٧٠٠٠٠٠٠٠٠,v1=00".to_string(),
            format!("t={NOW},v1=€€"),
            format!("t={NOW}€,v1=00"),
            format!("t= {NOW},v1=00"),
            "t=,v1=".into(),
            ",,,=,=".into(),
            "€".into(),
            String::new(),
        ] {
            assert!(
                matches!(check(odd.clone(), NOW), Err(Refusal::Malformed(_))),
                "{odd}"
            );
        }
    }

    /// Hostile header values never make `verify` panic, whatever the scheme.
    #[test]
    fn no_header_value_makes_verify_panic() {
        let pieces = [
            "t=",
            "v1=",
            ",",
            ".",
            "=",
            "-",
            "9223372036854775808",
            "-9223372036854775808",
            "€",
            "\u{0}",
            "Bearer ",
            "bearer",
            "eyJhbGciOiJIUzI1NiJ9",
            "e30",
            "%",
            "sha256=",
            "ab",
            "==",
            " ",
            "\n",
        ];
        let mut state = 0x5eed_0003u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..5_000 {
            let value: String = (0..next(16)).map(|_| pieces[next(pieces.len())]).collect();
            let h = headers(json!({
                "Authorization": value, "Stripe-Signature": value, "hmac": value,
                "Signature": value, "X-Signature": value
            }));
            for scheme in [
                "hmac_sha256_hex",
                "hmac_sha256_base64",
                "stripe_v1",
                "paymob_hmac_sha512",
                "static_header",
                "jwt_hs256",
            ] {
                for now in [i64::MIN, 0, NOW, i64::MAX] {
                    let _ = verify(scheme, None, b"k", &h, value.as_bytes(), now);
                }
            }
        }
    }
}
