//! `X-Twilio-Signature` computation and validation.
//!
//! Guarantees: the comparison is constant-time; a missing, empty or
//! non-base64 header never validates; a signature is accepted for the URL as
//! given, with the scheme's default port added, or with any explicit port
//! removed (Twilio's own libraries accept all three, because proxies and
//! Twilio disagree on whether `:443` is part of the URL).
//!
//! Algorithm (protocols.md §2.5): HMAC-SHA1 keyed with the auth token over the
//! full URL followed by, for form POSTs, every parameter name + value with
//! names sorted by code point and, for a repeated name, each distinct value in
//! sorted order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// The query parameter that carries the body hash of JSON webhooks.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Computes the signature Twilio would send for a form POST (or, with no
/// params, a GET or JSON request) to `url`. Used by our test clients and the
/// CLI to act as Twilio.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(raw_signature(auth_token, url, params))
}

/// Appends the `bodySHA256` query parameter to `url` and signs the result, as
/// Twilio does for JSON-body webhooks. Returns `(signed_url, signature)`.
pub fn sign_json(auth_token: &str, url: &str, raw_body: &[u8]) -> (String, String) {
    let sep = if url.contains('?') { '&' } else { '?' };
    let signed_url = format!(
        "{url}{sep}{BODY_SHA256_PARAM}={}",
        hex::encode(Sha256::digest(raw_body))
    );
    let sig = sign(auth_token, &signed_url, &[]);
    (signed_url, sig)
}

/// Validates a form-POST (or GET, with empty `params`) signature.
pub fn validate(auth_token: &str, url: &str, params: &[(String, String)], header_sig: &str) -> bool {
    let Some(expected) = decode_header(header_sig) else {
        return false;
    };
    // Evaluate every candidate so timing does not reveal which URL form matched.
    url_candidates(url)
        .iter()
        .fold(subtle::Choice::from(0), |acc, candidate| {
            acc | raw_signature(auth_token, candidate, params).as_slice().ct_eq(&expected)
        })
        .into()
}

/// Validates a JSON-body webhook: the signature covers the URL alone, and the
/// URL's `bodySHA256` query value must equal the lowercase hex SHA-256 of
/// `raw_body`. A URL without `bodySHA256` never validates.
pub fn validate_json(auth_token: &str, url: &str, raw_body: &[u8], header_sig: &str) -> bool {
    let Some(claimed) = query_value(url, BODY_SHA256_PARAM) else {
        return false;
    };
    let actual = hex::encode(Sha256::digest(raw_body));
    let body_ok: bool = actual.as_bytes().ct_eq(claimed.to_ascii_lowercase().as_bytes()).into();
    let sig_ok = validate(auth_token, url, &[], header_sig);
    body_ok & sig_ok
}

fn raw_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails; if it somehow
    // did, an empty signature can never equal a decoded 20-byte header.
    let Ok(mut mac) = HmacSha1::new_from_slice(auth_token.as_bytes()) else {
        return Vec::new();
    };
    mac.update(url.as_bytes());
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Byte order of UTF-8 equals code-point order, which is what Twilio uses.
    sorted.sort_unstable();
    sorted.dedup();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

fn decode_header(header_sig: &str) -> Option<Vec<u8>> {
    let trimmed = header_sig.trim();
    if trimmed.is_empty() {
        return None;
    }
    BASE64.decode(trimmed).ok()
}

/// The URL as given, with the default port added (if it had none) and with
/// any port removed.
fn url_candidates(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    // An IPv6 literal contains colons; only a colon after `]` starts a port.
    let port_colon = match hostport.rfind(']') {
        Some(close) => hostport[close..].find(':').map(|i| close + i),
        None => hostport.rfind(':'),
    };
    match port_colon {
        Some(i) => out.push(format!("{scheme}://{userinfo}{}{tail}", &hostport[..i])),
        None => {
            let default_port = match scheme.to_ascii_lowercase().as_str() {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            };
            if let Some(port) = default_port {
                out.push(format!("{scheme}://{userinfo}{hostport}:{port}{tail}"));
            }
        }
    }
    out
}

fn query_value<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| match pair.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn vector_params() -> Vec<(String, String)> {
        p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn signs_the_reference_vector() {
        assert_eq!(sign("12345", URL, &vector_params()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(validate("12345", URL, &vector_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn params_are_sorted_by_code_point_not_input_order() {
        let mut shuffled = vector_params();
        shuffled.reverse();
        assert!(validate("12345", URL, &shuffled, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn explicit_default_https_port_vector() {
        let url = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &vector_params()), "kvajT1Ptam85bY51eRf/AJRuM3w=");
        assert!(validate("12345", url, &vector_params(), "kvajT1Ptam85bY51eRf/AJRuM3w="));
        // Twilio signed with :443 but our proxy rebuilt the URL without it, and vice versa.
        assert!(validate("12345", URL, &vector_params(), "kvajT1Ptam85bY51eRf/AJRuM3w="));
        assert!(validate("12345", url, &vector_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn explicit_default_http_port_vector() {
        let url = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &vector_params()), "0ZXoZLH/DfblKGATFgpif+LLRf4=");
        assert!(validate("12345", url, &vector_params(), "0ZXoZLH/DfblKGATFgpif+LLRf4="));
        assert!(validate(
            "12345",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &vector_params(),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ));
    }

    #[test]
    fn non_default_port_vector_and_port_removal() {
        let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &vector_params()), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
        assert!(validate("12345", url, &vector_params(), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="));
        // Signed without the port (e.g. Twilio saw the public URL), received with it.
        let without = sign("12345", "http://mycompany.com/myapp.php?foo=1&bar=2", &vector_params());
        assert!(validate("12345", url, &vector_params(), &without));
        // A non-default port is never invented: a URL without a port does not accept the :1234 signature.
        assert!(!validate(
            "12345",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &vector_params(),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        ));
    }

    #[test]
    fn repeated_names_use_each_distinct_value_sorted() {
        let params = p(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(sign("12345", URL, &params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        assert!(validate("12345", URL, &params, "IK+Dwps556ElfBT0I3Rgjkr1wJU="));
    }

    #[test]
    fn json_body_vector() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert!(validate_json("12345", url, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
        let (signed_url, sig) = sign_json("12345", URL, body);
        assert_eq!(signed_url, url);
        assert_eq!(sig, "a9nBmqA0ju/hNViExpshrM61xv4=");
    }

    #[test]
    fn json_body_must_match_its_hash() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert!(!validate_json(
            "12345",
            url,
            br#"{"property": "other", "boolean": true}"#,
            "a9nBmqA0ju/hNViExpshrM61xv4="
        ));
        // The signature alone is fine, so only the body check can have failed above.
        assert!(validate("12345", url, &[], "a9nBmqA0ju/hNViExpshrM61xv4="));
    }

    #[test]
    fn json_without_body_hash_param_is_rejected() {
        let body = b"{}";
        let sig = sign("12345", URL, &[]);
        assert!(!validate_json("12345", URL, body, &sig));
    }

    #[test]
    fn derived_switchboard_vector() {
        let params = p(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", "CA11111111111111111111111111111111"),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", "+15551230000"),
            ("To", "+15559870000"),
        ]);
        let url = "https://example.com/twilio/voice";
        assert_eq!(sign("test_auth_token", url, &params), "q5+XLrAUCCUnucHEnR3OmOUl5y8=");
        assert!(validate(
            "test_auth_token",
            url,
            &params,
            "q5+XLrAUCCUnucHEnR3OmOUl5y8="
        ));
    }

    #[test]
    fn wrong_token_is_rejected() {
        assert!(!validate(
            "54321",
            URL,
            &vector_params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn missing_or_garbage_header_is_rejected() {
        assert!(!validate("12345", URL, &vector_params(), ""));
        assert!(!validate("12345", URL, &vector_params(), "   "));
        assert!(!validate("12345", URL, &vector_params(), "not base64!!"));
        assert!(!validate("12345", URL, &[], ""));
    }

    #[test]
    fn tampered_param_is_rejected() {
        let mut params = vector_params();
        params[2].1 = "9999".into();
        assert!(!validate("12345", URL, &params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        let mut extra = vector_params();
        extra.push(("Injected".into(), "1".into()));
        assert!(!validate("12345", URL, &extra, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn replay_to_a_different_url_is_rejected() {
        let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!validate(
            "12345",
            "https://mycompany.com/other.php?foo=1&bar=2",
            &vector_params(),
            sig
        ));
        assert!(!validate(
            "12345",
            "https://mycompany.com/myapp.php?bar=2&foo=1",
            &vector_params(),
            sig
        ));
        assert!(!validate(
            "12345",
            "https://evil.com/myapp.php?foo=1&bar=2",
            &vector_params(),
            sig
        ));
    }

    #[test]
    fn port_candidates_handle_userinfo_and_ipv6() {
        assert_eq!(
            url_candidates("https://u:p@host/x"),
            vec!["https://u:p@host/x".to_owned(), "https://u:p@host:443/x".to_owned()]
        );
        assert_eq!(
            url_candidates("http://[::1]:8080/x?y=1"),
            vec!["http://[::1]:8080/x?y=1".to_owned(), "http://[::1]/x?y=1".to_owned()]
        );
        assert_eq!(url_candidates("wss://host/x"), vec!["wss://host/x".to_owned()]);
    }
}
