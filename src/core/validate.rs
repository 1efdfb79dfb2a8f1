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
}
