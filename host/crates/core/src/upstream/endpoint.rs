//! Turning a plugin's path into a URL below the API base, and nothing else.
//!
//! Plugins name upstream paths (the Advoware proxy hands through whatever
//! `endpoint=` a caller sends), so this is the one place that keeps every
//! kind's requests inside its API: no `..` (plain or percent-encoded), no
//! absolute or scheme-relative URLs, no encoded slashes or backslashes that a
//! server might decode into a way out.

use percent_encoding::percent_decode_str;
use reqwest::Url;

/// `base` joined with `path` (one leading `/` is allowed) and the query pairs.
/// A query written into `path` (`appointments?kuerzel=SB`) comes first, then `query`.
pub fn resolve(base: &Url, path: &str, query: &[(String, String)]) -> Result<Url, String> {
    let (path, embedded) = path.split_once('?').unwrap_or((path, ""));
    let relative = path.strip_prefix('/').unwrap_or(path);
    if relative.is_empty() {
        return Err("the endpoint is empty".into());
    }
    if relative.starts_with('/') || relative.contains("://") || has_scheme(relative) {
        return Err(format!(
            "endpoint `{path}` is an absolute URL; give a path below the API base"
        ));
    }
    if let Some(c) = relative
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '\\' | '#'))
    {
        return Err(format!(
            "endpoint `{}` holds {c:?}; give a plain path",
            path.escape_debug()
        ));
    }
    let segments: Vec<&str> = relative.split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        check_segment(segment, index + 1 == segments.len())
            .map_err(|why| format!("endpoint `{path}` {why}"))?;
    }
    let mut url = Url::parse(&format!("{base}{relative}"))
        .map_err(|e| format!("endpoint `{path}` does not make a URL: {e}"))?;
    // The URL parser normalises; anything it moved outside the base is refused.
    if !url.as_str().starts_with(base.as_str()) {
        return Err(format!("endpoint `{path}` leaves the API base"));
    }
    if embedded.contains('#') {
        return Err(format!("endpoint `{path}` holds a fragment (`#`)"));
    }
    let embedded: Vec<(String, String)> = form_urlencoded::parse(embedded.as_bytes())
        .into_owned()
        .collect();
    if !embedded.is_empty() || !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(embedded)
            .extend_pairs(query);
    }
    Ok(url)
}

/// What a path segment may hold once decoded: ASCII letters and digits and
/// `-._~!$'()*+,=:@`. An allow-list, because servers differ in what else they
/// read as a dot or a slash (`;` parameters, `%u002e`, full-width dots, NUL).
fn check_segment(segment: &str, last: bool) -> Result<(), String> {
    let bytes = segment.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'%'
            && !(bytes.get(index + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(index + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err("holds a `%` that is not a percent-escape".into());
        }
    }
    let decoded = percent_decode_str(segment).collect::<Vec<u8>>();
    if decoded.is_empty() {
        // `appointments/` is fine; `a//b` is not a path anyone means.
        return if last {
            Ok(())
        } else {
            Err("holds an empty segment (`//`)".into())
        };
    }
    if decoded.iter().all(|b| *b == b'.') {
        return Err("leaves the API base (`.` or `..`)".into());
    }
    if let Some(byte) = decoded.iter().find(|b| {
        !(b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            ))
    }) {
        return Err(match byte {
            b'/' | b'\\' => "holds an encoded slash or backslash".into(),
            _ => format!(
                "holds {:?}; a path segment may hold letters, digits and -._~!$'()*+,=:@",
                char::from(*byte)
            ),
        });
    }
    Ok(())
}

/// `mailto:x`, `http:evil`: a scheme before the first `/`.
fn has_scheme(text: &str) -> bool {
    let first = text.split('/').next().unwrap_or_default();
    first.split_once(':').is_some_and(|(scheme, _)| {
        scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://relay.example:90/api/v1/advonet/").unwrap()
    }

    #[test]
    fn paths_below_the_base_are_joined() {
        let url = resolve(&base(), "appointments/4711", &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://relay.example:90/api/v1/advonet/appointments/4711"
        );
        let url = resolve(&base(), "/employees", &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://relay.example:90/api/v1/advonet/employees"
        );
    }

    #[test]
    fn query_pairs_are_encoded() {
        let query = [
            ("kuerzel".to_owned(), "SB".to_owned()),
            ("text".to_owned(), "a&b c".to_owned()),
        ];
        let url = resolve(&base(), "appointments", &query).unwrap();
        assert_eq!(url.query(), Some("kuerzel=SB&text=a%26b+c"));
    }

    #[test]
    fn escapes_are_refused() {
        for path in [
            "",
            "/",
            "../Token",
            "appointments/../../Token",
            "%2e%2e/Token",
            "appointments/%2E%2E/%2e%2E/x",
            ".%2e/x",
            "./employees",
            "appointments%2f..%2fx",
            "a%5c..%5cb",
            "a\\..\\b",
            "https://evil.example/x",
            "//evil.example/x",
            "http:evil.example",
            "javascript:alert(1)",
            "employees#x",
            "employees?x=1#y",
            "../Token?x=1",
            "employees\r\nX-Injected: 1",
            "emp loyees",
            "..;/Token",
            "appointments/.;/x",
            "%u002e%u002e/Token",
            "..%00/Token",
            "...",
            "..%20/Token",
            "\u{ff0e}\u{ff0e}/Token",
            "%EF%BC%8E%EF%BC%8E/Token",
            "%25252e/Token",
            "appointments//x",
            "a%3bb",
        ] {
            assert!(
                resolve(&base(), path, &[]).is_err(),
                "`{path}` must be refused"
            );
        }
    }

    #[test]
    fn a_query_inside_the_path_comes_before_the_others() {
        let query = [("to".to_owned(), "2026-12-31".to_owned())];
        let url = resolve(&base(), "appointments?kuerzel=SB&from=2026-12-01", &query).unwrap();
        assert_eq!(url.path(), "/api/v1/advonet/appointments");
        assert_eq!(
            url.query(),
            Some("kuerzel=SB&from=2026-12-01&to=2026-12-31")
        );
    }

    #[test]
    fn dots_inside_names_and_trailing_slashes_are_fine() {
        let url = resolve(&base(), "documents/file.v2..pdf", &[]).unwrap();
        assert!(url.path().ends_with("/documents/file.v2..pdf"));
        let url = resolve(&base(), "appointments/", &[]).unwrap();
        assert!(url.path().ends_with("/appointments/"));
        let url = resolve(&base(), "Beteiligte/5001/Adressen(1)", &[]).unwrap();
        assert!(url.path().ends_with("/Beteiligte/5001/Adressen(1)"));
    }
}

/// Generated endpoints against the one promise: whatever a caller sends, a URL
/// that comes out stays below the API base, on its host, with no `.`/`..`
/// segment and no encoded slash. CI runs the default number of cases; a longer
/// run: `PROPTEST_CASES=200000 cargo test -p bitbylaw-advoware endpoint`.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Pieces that make paths interesting: dots, slashes and their encodings,
    /// schemes, queries, fragments, unicode look-alikes.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("appointments".to_owned()),
            Just("4711".to_owned()),
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E%2e".to_owned()),
            Just("%2f".to_owned()),
            Just("%5c".to_owned()),
            Just("\\".to_owned()),
            Just("..;".to_owned()),
            Just("%u002e".to_owned()),
            Just("%00".to_owned()),
            Just("\u{ff0e}".to_owned()),
            Just("?".to_owned()),
            Just("#".to_owned()),
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just("http:".to_owned()),
            Just("//evil.example".to_owned()),
            Just("%".to_owned()),
            Just("@".to_owned()),
            "[a-zA-Z0-9._~%-]{0,6}",
            any::<String>(),
        ]
    }

    fn endpoint() -> impl Strategy<Value = String> {
        proptest::collection::vec(piece(), 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn a_resolved_url_stays_below_the_api_base(path in endpoint()) {
            let base = Url::parse("https://relay.example:90/api/v1/advonet/").unwrap();
            if let Ok(url) = resolve(&base, &path, &[]) {
                prop_assert!(url.as_str().starts_with(base.as_str()), "{url}");
                prop_assert_eq!(url.host_str(), base.host_str());
                prop_assert_eq!(url.port(), base.port());
                let below = &url.path()[base.path().len()..];
                for segment in below.split('/') {
                    let decoded = percent_decode_str(segment).decode_utf8_lossy();
                    prop_assert!(decoded != "." && decoded != "..", "{url}");
                    prop_assert!(!decoded.contains('/') && !decoded.contains('\\'), "{url}");
                }
                prop_assert!(url.fragment().is_none(), "{url}");
            }
        }
    }
}
