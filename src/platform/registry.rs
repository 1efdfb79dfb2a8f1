//! The provider registry, `public.integration_providers`: which providers
//! exist, where they operate, which payment capabilities and methods they
//! offer, and how they sign webhooks. Adding a provider is a row, never a
//! schema change; country and currency codes are checked against ISO lists.

use pgrx::pg_sys::{self, BuiltinOid};

use crate::core::error::{Error, Result};
use crate::core::validate;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy::caller::require_privileged;

/// ISO 3166-1 alpha-2 country codes (all 249 assigned codes), sorted.
pub const COUNTRIES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// ISO 4217 currency codes in use (funds and metals codes left out), sorted.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XDR", "XOF", "XPF", "XSU", "XUA", "YER", "ZAR", "ZMW",
    "ZWG", "ZWL",
];

/// The values the table's CHECK constraints allow, checked up front for a
/// 22023 that names the argument.
pub const CATEGORIES: &[&str] = &[
    "payment",
    "bnpl",
    "communication",
    "logistics",
    "cloud",
    "commerce",
    "email",
    "ai_avatar",
    "blog",
    "social",
    "devtools",
];
pub const AUTH_METHODS: &[&str] = &["api_key", "bearer_token", "basic_auth", "oauth2"];
pub const WEBHOOK_SIGNING: &[&str] = &[
    "none",
    "unverified",
    "hmac_sha256_hex",
    "hmac_sha256_base64",
    "stripe_v1",
    "paymob_hmac_sha512",
    "tap_hashstring",
    "jwt_hs256",
    "static_header",
    "shared_secret_token",
    "aes_256_gcm_body",
];

/// A provider key: what the table's CHECK allows (`^[a-z][a-z0-9_]{1,62}$`).
pub fn is_provider_key(key: &str) -> bool {
    (2..=63).contains(&key.len())
        && key.as_bytes()[0].is_ascii_lowercase()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub fn is_country(code: &str) -> bool {
    COUNTRIES.binary_search(&code).is_ok()
}

pub fn is_currency(code: &str) -> bool {
    CURRENCIES.binary_search(&code).is_ok()
}

/// Checks an optional filter argument: upper-cased, and an ISO code.
fn code_arg(
    arg: &str,
    value: Option<String>,
    what: &str,
    valid: fn(&str) -> bool,
) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => {
            let code = v.trim().to_ascii_uppercase();
            if valid(&code) {
                Ok(Some(code))
            } else {
                Err(Error::InvalidArgument(format!(
                    "{arg} is not an {what} code"
                )))
            }
        }
    }
}

// For CHECK constraints: every element of the array is a valid code (NULL
// elements are not).
fn all_codes(call: &Call, valid: fn(&str) -> bool) -> Result<pg_sys::Datum> {
    let codes: Option<Vec<Option<String>>> = call.arg(0);
    let ok = codes.is_none_or(|codes| codes.iter().all(|c| c.as_deref().is_some_and(valid)));
    Ok(fcall::datum(ok))
}

sql_function!(pgi_is_iso_countries => is_iso_countries);
/// `integrations.is_iso_countries`, declared in `sql/platform/providers.sql`.
fn is_iso_countries(call: &Call) -> Result<pg_sys::Datum> {
    all_codes(call, is_country)
}
sql_function!(pgi_is_iso_currencies => is_iso_currencies);
/// `integrations.is_iso_currencies`, declared in `sql/platform/providers.sql`.
fn is_iso_currencies(call: &Call) -> Result<pg_sys::Datum> {
    all_codes(call, is_currency)
}

/// Active providers with a payment capability, optionally operating in a
/// country and settling a currency; MENA providers first. The array
/// conditions are containment, which the GIN indexes serve.
static BY_CAPABILITY: Statement = Statement {
    sql: "SELECT p.* FROM public.integration_providers p \
          WHERE p.status = 'active' AND p.payment_capabilities @> ARRAY[$1] \
            AND ($2::text IS NULL OR p.supported_countries @> ARRAY[$2]) \
            AND ($3::text IS NULL OR p.supported_currencies @> ARRAY[$3]) \
          ORDER BY p.is_mena_provider DESC, p.sort_order, p.provider",
    args: &[
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
    ],
    mutating: false,
};

sql_function!(pgi_get_payment_providers_by_capability => get_payment_providers_by_capability);
/// `public.get_payment_providers_by_capability`, declared in `sql/platform/providers.sql`.
fn get_payment_providers_by_capability(call: &Call) -> Result<pg_sys::Datum> {
    let capability: String = call
        .arg::<String>(0)
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::InvalidArgument("p_capability must not be null or empty".into()))?;
    let country = code_arg(
        "p_country",
        call.arg(1),
        "ISO 3166-1 alpha-2 country",
        is_country,
    )?;
    let currency = code_arg("p_currency", call.arg(2), "ISO 4217 currency", is_currency)?;
    call.return_rows(
        &BY_CAPABILITY,
        &[
            capability.as_str().into(),
            country.as_deref().into(),
            currency.as_deref().into(),
        ],
    )
}

static REGISTER: Statement = Statement {
    sql: "INSERT INTO public.integration_providers AS p (provider, display_name, category, website, docs_url, api_base_urls, \
              auth_methods, is_mena_provider, supported_countries, supported_currencies, primary_locale, \
              payment_capabilities, payment_methods, webhook_signing, status, sort_order) \
          VALUES ($1, $2, $3, $4, $5, COALESCE($6, '{}'), COALESCE($7, '{}'), COALESCE($8, false), COALESCE($9, '{}'), \
                  COALESCE($10, '{}'), COALESCE($11, CASE WHEN COALESCE($8, false) THEN 'ar' ELSE 'en' END), \
                  COALESCE($12, '{}'), COALESCE($13, '{}'), COALESCE($14, 'unverified'), 'active', COALESCE($15, 100)) \
          ON CONFLICT (provider) DO UPDATE SET display_name = EXCLUDED.display_name, category = EXCLUDED.category, \
              website = EXCLUDED.website, docs_url = EXCLUDED.docs_url, api_base_urls = EXCLUDED.api_base_urls, \
              auth_methods = EXCLUDED.auth_methods, is_mena_provider = EXCLUDED.is_mena_provider, \
              supported_countries = EXCLUDED.supported_countries, supported_currencies = EXCLUDED.supported_currencies, \
              primary_locale = EXCLUDED.primary_locale, payment_capabilities = EXCLUDED.payment_capabilities, \
              payment_methods = EXCLUDED.payment_methods, webhook_signing = EXCLUDED.webhook_signing, \
              sort_order = EXCLUDED.sort_order \
          RETURNING p.provider",
    args: &[
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::BOOLOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::INT4OID,
    ],
    mutating: true,
};

/// Upper-cases and checks an array of codes.
fn codes(
    arg: &str,
    value: Option<Vec<Option<String>>>,
    what: &str,
    valid: fn(&str) -> bool,
) -> Result<Option<Vec<String>>> {
    let Some(value) = value else { return Ok(None) };
    let mut out = Vec::with_capacity(value.len());
    for (i, c) in value.into_iter().enumerate() {
        let code = c.map(|c| c.trim().to_ascii_uppercase()).unwrap_or_default();
        if !valid(&code) {
            return Err(Error::InvalidArgument(format!(
                "{arg}[{}] is not an {what} code",
                i + 1
            )));
        }
        out.push(code);
    }
    out.sort();
    out.dedup();
    Ok(Some(out))
}

fn words(value: Option<Vec<Option<String>>>) -> Option<Vec<String>> {
    value.map(|v| {
        let mut out: Vec<String> = v
            .into_iter()
            .flatten()
            .map(|w| w.trim().to_ascii_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        out.sort();
        out.dedup();
        out
    })
}

sql_function!(pgi_register_provider => register_provider);
/// `integrations.register_provider`, declared in `sql/platform/providers.sql`.
fn register_provider(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("integrations.register_provider")?;
    let arr = |n: usize| -> Option<Vec<Option<String>>> { call.arg::<Vec<Option<String>>>(n) };
    let provider: String = call.required(0, "p_provider")?;
    let display_name: String = call.required(1, "p_display_name")?;
    let category: String = call.required(2, "p_category")?;
    let invalid = Error::InvalidArgument;
    if !is_provider_key(&provider) {
        return Err(invalid("p_provider must be 2 to 63 lower-case letters, digits or underscores, starting with a letter".into()));
    }
    validate::one_of("p_category", "provider category", &category, CATEGORIES).map_err(invalid)?;
    let auth_methods = words(arr(6));
    for m in auth_methods.iter().flatten() {
        validate::one_of("p_auth_methods", "auth method", m, AUTH_METHODS).map_err(invalid)?;
    }
    if let Some(w) = call.text(13) {
        validate::one_of(
            "p_webhook_signing",
            "webhook signing scheme",
            &w,
            WEBHOOK_SIGNING,
        )
        .map_err(invalid)?;
    }
    if let Some(l) = call.text(10) {
        validate::one_of("p_primary_locale", "locale", &l, &["ar", "en"]).map_err(invalid)?;
    }
    for (n, arg) in [(3, "p_website"), (4, "p_docs_url")] {
        if let Some(u) = call.text(n) {
            validate::url(arg, &u, false).map_err(invalid)?;
        }
    }
    let countries = codes(
        "p_supported_countries",
        arr(8),
        "ISO 3166-1 alpha-2 country",
        is_country,
    )?;
    let currencies = codes(
        "p_supported_currencies",
        arr(9),
        "ISO 4217 currency",
        is_currency,
    )?;
    let sort_order: Option<i32> = call.arg(14);
    let is_mena: Option<bool> = call.arg(7);
    let name = Spi::connect_mut(|c| -> Result<Option<String>> {
        let plan = plans::plan(c, &REGISTER)?;
        let rows = c.update(
            plan,
            None,
            &[
                provider.as_str().into(),
                display_name.as_str().into(),
                category.as_str().into(),
                call.text(3).into(),
                call.text(4).into(),
                arr(5)
                    .map(|v| v.into_iter().flatten().collect::<Vec<String>>())
                    .into(),
                auth_methods.into(),
                is_mena.into(),
                countries.into(),
                currencies.into(),
                call.text(10).into(),
                words(arr(11)).into(),
                words(arr(12)).into(),
                call.text(13).into(),
                sort_order.into(),
            ],
        )?;
        Ok(rows.first().get::<String>(1)?)
    })?;
    Ok(fcall::datum(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lists_are_sorted_unique_and_complete() {
        for list in [COUNTRIES, CURRENCIES] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        }
        assert_eq!(COUNTRIES.len(), 249);
        assert!(COUNTRIES
            .iter()
            .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())));
        assert!(CURRENCIES
            .iter()
            .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn mena_codes_are_known_and_mistakes_are_not() {
        for c in [
            "SA", "AE", "KW", "BH", "QA", "OM", "EG", "JO", "LB", "IQ", "MA", "PS",
        ] {
            assert!(is_country(c), "{c}");
        }
        for c in [
            "SAR", "AED", "KWD", "BHD", "QAR", "OMR", "EGP", "JOD", "USD", "EUR",
        ] {
            assert!(is_currency(c), "{c}");
        }
        for bad in ["UK", "KSA", "UAE", "sa", "", "EU"] {
            assert!(!is_country(bad), "{bad}");
        }
        for bad in ["RMB", "SR", "AE", "usd", "XAU", "XXX"] {
            assert!(!is_currency(bad), "{bad}");
        }
    }

    #[test]
    fn provider_keys() {
        for ok in ["tap_payments", "checkout_com", "aws_me", "p2"] {
            assert!(is_provider_key(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "Tap",
            "2pay",
            "tap-payments",
            "tap payments",
            &"x".repeat(64),
        ] {
            assert!(!is_provider_key(bad), "{bad}");
        }
    }

    #[test]
    fn filter_arguments_are_normalised_or_refused() {
        assert_eq!(
            code_arg("p_country", Some(" sa ".into()), "x", is_country).unwrap(),
            Some("SA".into())
        );
        assert!(code_arg("p_country", Some("KSA".into()), "x", is_country).is_err());
        assert_eq!(code_arg("p_country", None, "x", is_country).unwrap(), None);
        let e = codes(
            "p_supported_countries",
            Some(vec![Some("ae".into()), Some("XX".into())]),
            "ISO country",
            is_country,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "p_supported_countries[2] is not an ISO country code"
        );
        assert_eq!(
            codes(
                "c",
                Some(vec![
                    Some("sa".into()),
                    Some("AE".into()),
                    Some("SA".into())
                ]),
                "x",
                is_country
            )
            .unwrap(),
            Some(vec!["AE".to_string(), "SA".to_string()])
        );
    }

    /// The SQL CHECK constraints list the same auth methods as the Rust code.
    #[test]
    fn auth_method_checks_match_the_code() {
        fn quoted(list: &str) -> Vec<String> {
            list.split(',')
                .map(|w| w.trim().trim_matches('\'').to_string())
                .collect()
        }
        fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
            let from = text.find(start).expect(start) + start.len();
            &text[from..from + text[from..].find(end).expect(end)]
        }
        let want: Vec<String> = AUTH_METHODS.iter().map(|m| m.to_string()).collect();
        let connections = include_str!("../../sql/platform/connections.sql");
        let providers = include_str!("../../sql/platform/providers.sql");
        assert_eq!(
            quoted(between(connections, "CHECK (auth_method IN (", ")")),
            want
        );
        assert_eq!(
            quoted(between(providers, "CHECK (auth_methods <@ ARRAY[", "]")),
            want
        );
    }
}
