//! Redaction of credentials from URLs and free text before they are stored
//! (API call logs, health-check messages). Pure Rust, no pgrx.

/// Query parameters whose values are credentials (compared case-insensitively,
/// `-` and `_` alike).
const SECRET_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "authorization",
    "signature",
    "sig",
    "secret",
    "client_secret",
    "password",
    "pass",
    "pwd",
    "code",
    "code_verifier",
    "hmac",
    "x_api_key",
    "private_key",
    "session",
    "sessionid",
];
const REDACTED: &str = "REDACTED";

fn is_secret_name(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase().replace('-', "_");
    SECRET_PARAMS.contains(&n.as_str())
}

/// A URL with credentials removed: `user:password@` and the values of secret
/// query parameters (and fragment parameters) become `REDACTED`.
pub fn redact_url(url: &str) -> String {
    let (base, rest) = match url.find(['?', '#']) {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    // userinfo
    let base = match base.find("://") {
        Some(scheme_end) => {
            let after = &base[scheme_end + 3..];
            let authority_end = after.find('/').unwrap_or(after.len());
            match after[..authority_end].rfind('@') {
                Some(at) => format!(
                    "{}{}@{}",
                    &base[..scheme_end + 3],
                    REDACTED,
                    &after[at + 1..]
                ),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let mut out = base;
    let mut rest = rest;
    while !rest.is_empty() {
        let sep = &rest[..1];
        let body_end = rest[1..].find(['#', '?']).map_or(rest.len(), |i| i + 1);
        let body = &rest[1..body_end];
        out.push_str(sep);
        let parts: Vec<String> = body
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(&percent_decode(k)) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
        rest = &rest[body_end..];
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Free text (an error message, a response excerpt) with credentials removed:
/// `Bearer …`/`Basic …` tokens, `name=value` and `"name": "value"` pairs of
/// secret names, and URLs in it.
pub fn redact_text(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut redact_next = false;
    for word in text.split(' ') {
        if redact_next && !word.is_empty() {
            words.push(REDACTED.to_string());
            redact_next = false;
            continue;
        }
        let lower = word.to_ascii_lowercase();
        if lower == "bearer" || lower == "basic" || lower == "token" {
            redact_next = true;
            words.push(word.to_string());
            continue;
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            words.push(redact_url(word));
            continue;
        }
        let w = match word.split_once('=').or_else(|| word.split_once(':')) {
            Some((k, v))
                if is_secret_name(
                    k.trim_matches(|c: char| c == '"' || c == '\'' || c == '{' || c == ','),
                ) && !v.is_empty() =>
            {
                let sep = if word.contains('=') { "=" } else { ":" };
                format!("{k}{sep}{REDACTED}")
            }
            _ => word.to_string(),
        };
        // a quoted JSON value after `"secret":` arrives as the next word
        if let Some(stripped) = lower.trim_end_matches(':').strip_suffix('"') {
            if word.ends_with(':') && is_secret_name(stripped.trim_start_matches(['"', '{', ','])) {
                redact_next = true;
            }
        }
        words.push(w);
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        let cases = [
            ("https://api.example.com/v1/orders?limit=5&api_key=sk_live_1&page=2",
             "https://api.example.com/v1/orders?limit=5&api_key=REDACTED&page=2"),
            ("https://user:pa55@api.example.com/x", "https://REDACTED@api.example.com/x"),
            ("https://api.example.com/cb?code=abc&state=xyz#access_token=t1&token_type=bearer",
             "https://api.example.com/cb?code=REDACTED&state=xyz#access_token=REDACTED&token_type=bearer"),
            ("https://api.example.com/x?Access-Token=t&X-Api-Key=k&sig=s", "https://api.example.com/x?Access-Token=REDACTED&X-Api-Key=REDACTED&sig=REDACTED"),
            ("https://api.example.com/x?a%63cess_token=t", "https://api.example.com/x?a%63cess_token=REDACTED"),
            ("https://api.example.com/plain", "https://api.example.com/plain"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    #[test]
    fn text_loses_its_credentials() {
        let t = redact_text("401 from https://api.x.com/y?token=abc: Authorization: Bearer sk_live_123 rejected; api_key=k9 bad");
        assert!(
            !t.contains("abc") && !t.contains("sk_live_123") && !t.contains("k9"),
            "{t}"
        );
        assert!(t.contains("401") && t.contains("rejected"), "{t}");
        let j = redact_text(r#"{"error": "bad", "client_secret": "cs_1"}"#);
        assert!(!j.contains("cs_1"), "{j}");
    }
}
