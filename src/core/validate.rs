//! Input validation shared by the RPCs: pure functions, plain `#[test]`s.
//! Each returns the message for a `22023` error that names the argument and
//! the rule, never the value: an API key passed in the wrong argument would
//! otherwise end up in the error, and so in the server log.

/// `value` must be one of `allowed`.
pub fn one_of(arg: &str, what: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{arg}: unknown {what}; expected one of: {}",
            allowed.join(", ")
        ))
    }
}

/// A pragmatic e-mail address check (what mail providers accept as a sender):
/// one `@`, a non-empty local part of printable ASCII without spaces or
/// specials, and a domain of dot-separated labels with a TLD of 2+ letters.
pub fn email(arg: &str, value: &str) -> Result<(), String> {
    let bad = || Err(format!("{arg} is not a valid e-mail address"));
    if value.len() > 254 {
        return bad();
    }
    let Some((local, domain)) = value.split_once('@') else {
        return bad();
    };
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
    {
        return bad();
    }
    if !hostname(domain) || !domain.contains('.') {
        return bad();
    }
    let tld = domain.rsplit('.').next().unwrap_or("");
    if tld.len() < 2 || !tld.bytes().all(|b| b.is_ascii_alphabetic()) {
        return bad();
    }
    Ok(())
}

fn hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An absolute http(s) URL with a host name (or `localhost`), an optional port
/// and no credentials, spaces or control characters. `https_only` refuses http.
pub fn url(arg: &str, value: &str, https_only: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{arg} is not a valid {why}"));
    let what = if https_only {
        "https URL"
    } else {
        "http(s) URL"
    };
    if value.len() > 2048 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad(what);
    }
    let lower = value.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if let Some(r) = lower.strip_prefix("http://") {
        if https_only {
            return bad(what);
        }
        r
    } else {
        return bad(what);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return bad(what);
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port {
        if p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n == 0 || n > 65535)
        {
            return bad(what);
        }
    }
    if !(hostname(host) && (host.contains('.') || host == "localhost")) {
        return bad(what);
    }
    Ok(())
}

/// An OAuth redirect URI, parsed rather than prefix-matched: `https://` with
/// a host name (dotted, or `localhost`), or plain `http://` only when the host
/// is exactly `localhost`, `127.0.0.1` or `[::1]`; an optional port from 1 to
/// 65535; no `user:password@`; then an optional path and query of printable
/// ASCII (valid `%XX` escapes) and no fragment. At most 2048 bytes, without
/// whitespace, control characters or backslashes. (`http://localhost.evil.example/cb`
/// and `http://127.0.0.1.nip.io.evil.example:8080/cb` are refused.)
pub fn redirect_uri(arg: &str, value: &str) -> Result<(), String> {
    let must = |rule: &str| Err(format!("{arg} must {rule}"));
    if value.len() > 2048 {
        return must("be at most 2048 bytes");
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return must("not contain whitespace, control characters or backslashes");
    }
    if !value.is_ascii() {
        return must("be ASCII (percent-encode other characters)");
    }
    if value.contains('#') {
        return must("not have a fragment (#)");
    }
    let (https, rest) = match value.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
        _ => return must("be an absolute https URL (http only on localhost)"),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return must("not contain credentials (user:password@)");
    }
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(close) => {
                let (host, after) = authority.split_at(close + 1);
                match after {
                    "" => (host, None),
                    p => match p.strip_prefix(':') {
                        Some(port) => (host, Some(port)),
                        None => return must("have a valid host"),
                    },
                }
            }
            None => return must("have a valid host"),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if let Some(p) = port {
        let valid = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !valid {
            return must("have a port from 1 to 65535");
        }
    }
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return must("have a host");
    }
    let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    if https {
        if !(loopback || (hostname(&host) && host.contains('.'))) {
            return must("have a valid host name");
        }
    } else if !loopback {
        return must("be https (http only on localhost)");
    }
    let valid_path = {
        let b = path.as_bytes();
        b.iter().enumerate().all(|(i, &c)| {
            let escape = c != b'%'
                || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
            escape && c.is_ascii_graphic() && !b"\"<>^`{|}".contains(&c)
        })
    };
    if !valid_path {
        return must("have a path and query of URL characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.com",
            "x_y@example.io",
            "o'neil@example.org",
        ] {
            assert_eq!(email("e", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@b.c",
            "a b@example.com",
            "a@exa mple.com",
            "a..b@example.com",
            ".a@example.com",
            "a@-example.com",
            "a@example..com",
            "a@b@c.com",
            "a@example.c0m",
            "<a@example.com>",
            "a@example.com\n",
        ] {
            let e = email("p_sender_email", bad).unwrap_err();
            assert_eq!(e, "p_sender_email is not a valid e-mail address");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "https://example.com",
            "http://blog.example.com/path?q=1#x",
            "https://my-site.wixsite.com/blog",
            "http://localhost:8080",
            "https://example.com:443/wp-json",
        ] {
            assert_eq!(url("u", ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "ftp://example.com",
            "https://",
            "https://exa mple.com",
            "https://user:pw@example.com",
            "javascript:alert(1)",
            "https://example.com:99999",
            "https://-bad.com",
            "http://nodots",
            "https://example.com\r\n",
        ] {
            assert!(url("p_site_url", bad, false).is_err(), "{bad}");
        }
        assert!(url("api_endpoint", "http://example.com", true).is_err());
        assert!(url("api_endpoint", "https://example.com", true).is_ok());
    }

    #[test]
    fn providers_and_messages() {
        assert!(one_of("p_provider", "AI avatar provider", "heygen", &["heygen"]).is_ok());
        let e = one_of(
            "p_provider",
            "AI avatar provider",
            "hg_key_in_the_wrong_place",
            &["heygen"],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "p_provider: unknown AI avatar provider; expected one of: heygen"
        );
        assert!(!e.contains("hg_key"), "the value is never echoed");
    }

    #[test]
    fn redirect_uris_are_parsed_not_prefix_matched() {
        for ok in [
            "https://app.example.com/oauth/callback?x=1",
            "https://app.example.com/oauth/callback",
            "https://APP.Example.com:8443/cb?a=%20b&c=d",
            "https://app.example.com",
            "https://localhost/cb",
            "http://localhost:3000/cb",
            "http://localhost/cb",
            "HTTP://LOCALHOST:3000/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:65535/cb",
            "http://[::1]:8080/cb",
            "http://[::1]/cb",
            "http://localhost?next=1",
        ] {
            assert_eq!(redirect_uri("p_redirect_uri", ok), Ok(()), "{ok}");
        }
        for bad in [
            // the two attacks: prefixes of a loopback name
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.nip.io.evil.example:8080/cb",
            "http://localhost@evil.example/cb",
            "http://localhost:3000@evil.example/cb",
            "https://user:pw@app.example.com/cb",
            "http://localhostevil.example/cb",
            "http://127.0.0.2/cb",
            "http://[::2]/cb",
            "http://[::1/cb",
            "http://[::1]x/cb",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://app.example.com/cb#",
            "https://app.example.com/c b",
            "https://app.example.com/cb\t",
            "https://app.example.com/cb\n",
            "https://app.example.com\\@evil.example/cb",
            "https://app.example.com/\\evil",
            "https:///cb",
            "https://:443/cb",
            "https://",
            "//app.example.com/cb",
            "app.example.com/cb",
            "javascript:alert(1)",
            "ftp://app.example.com/cb",
            "https://app.example.com:0/cb",
            "https://app.example.com:65536/cb",
            "https://app.example.com:/cb",
            "https://app.example.com:80a/cb",
            "https://app.example.com:1:2/cb",
            "https://-bad.example.com/cb",
            "https://bad_host.example.com/cb",
            "https://intranet/cb",
            "https://app.example.com/cb?x=%zz",
            "https://app.example.com/cb?x=%4",
            "https://app.example.com/cb?x=<script>",
            "https://app.example.com/caf\u{e9}",
            "http://\u{430}pp.example.com/cb",
        ] {
            assert!(redirect_uri("p_redirect_uri", bad).is_err(), "{bad}");
        }
        let long = format!("https://app.example.com/{}", "a".repeat(2048));
        let e = redirect_uri("p_redirect_uri", &long).unwrap_err();
        assert_eq!(e, "p_redirect_uri must be at most 2048 bytes");
        let e = redirect_uri("p_redirect_uri", "http://app.example.com/cb").unwrap_err();
        assert_eq!(e, "p_redirect_uri must be https (http only on localhost)");
        let e = redirect_uri("p_redirect_uri", "https://sk_live_secret@x.example.com").unwrap_err();
        assert!(
            e.starts_with("p_redirect_uri must ") && !e.contains("sk_live"),
            "{e}"
        );
    }
}
