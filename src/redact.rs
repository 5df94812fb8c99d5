//! Secrets out of every text probed shows or keeps (a probe's reason, a delivery's error,
//! log lines, the API, `probectl`, the SQLite file). A peer that echoes our request back
//! in its error body hands us our own credentials in whatever form they travelled, so
//! [`Secrets`] derives, from the secrets a component sends, every form each takes on the
//! wire, and [`Redactor::redact`] replaces each with `***`.
//!
//! The forms of one secret:
//! - the secret itself, and its base64 (HTTP basic auth, SMTP AUTH): standard and URL-safe
//!   alphabets, with and without padding. Inside a longer base64 text (a password inside
//!   `base64(user:password)`) a secret's encoding depends on where it starts modulo three
//!   bytes; for a secret of [`MIN_ALIGNED`] bytes or more the characters its own bytes
//!   decide are kept for each of the three alignments, so it goes even from a base64 text
//!   nobody registered (only the one or two characters at each end, shared with the
//!   neighbouring bytes, stay);
//! - each of those as the text around it carries it: percent-encoded (RFC 3986 unreserved
//!   characters kept, upper- and lower-case hex; `application/x-www-form-urlencoded`; as
//!   JavaScript's `encodeURIComponent`), JSON-escaped (as serde writes it, with `\/`, with
//!   non-ASCII as `\uXXXX` as Python and PHP write it, with `<>&` as Go writes them), and
//!   HTML-escaped.
//!
//! The pair a basic-auth header carries is registered as one secret ([`Secrets::basic`]),
//! so `Authorization: Basic <base64(user:password)>` goes whole. A derived form shorter
//! than [`MIN_FORM`] characters is not kept (it would blank ordinary words); the secret
//! itself is, however short. Replacement goes longest form first, so a form containing
//! another goes whole.

use std::collections::BTreeSet;

use ::base64::Engine as _;
use ::base64::alphabet;
use ::base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Shortest derived form kept.
pub const MIN_FORM: usize = 4;

/// Shortest secret whose base64 at every alignment is kept (10 characters, 60 of its bits:
/// never a chance match).
pub const MIN_ALIGNED: usize = 8;

/// Authorization schemes whose credentials, after the scheme word, are a secret of their
/// own (RFC 7617 `Basic`, RFC 6750 `Bearer`, and the `Token`/`ApiKey`/`Bot`/`SSWS`/`Splunk`
/// kinds of API keys).
pub const AUTH_SCHEMES: &[&str] = &[
    "basic", "bearer", "token", "apikey", "api-key", "key", "bot", "ssws", "splunk",
];

/// What a redacted secret becomes.
pub const MASK: &str = "***";

/// The secrets of one component, gathered before a [`Redactor`] is made of them.
#[derive(Default)]
pub struct Secrets {
    forms: BTreeSet<String>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// A secret as it is sent (a token, a password, a header value), with every form it
    /// takes. An empty one is ignored.
    pub fn secret(&mut self, s: &str) -> &mut Secrets {
        if s.is_empty() {
            return self;
        }
        self.forms.insert(s.to_string());
        let mut primary = vec![s.to_string()];
        for url_safe in [false, true] {
            for pad in [false, true] {
                primary.push(base64_with(s.as_bytes(), url_safe, pad));
            }
        }
        if s.len() >= MIN_ALIGNED {
            for k in 0..3 {
                let core = aligned(s.as_bytes(), k);
                primary.push(url_safe_alphabet(&core));
                primary.push(core);
            }
        }
        for p in primary {
            for form in wire_forms(&p) {
                if form.chars().count() >= MIN_FORM {
                    self.forms.insert(form);
                }
            }
        }
        self
    }

    /// A user and password sent as HTTP basic auth: the password, and `user:password`
    /// (whose base64 is the header's credentials).
    pub fn basic(&mut self, user: &str, password: &str) -> &mut Secrets {
        self.secret(password);
        self.secret(&format!("{user}:{password}"))
    }

    /// A URL's userinfo as written (percent-encoded): each part as written and decoded,
    /// and the pair as written and as HTTP clients send it (decoded, then base64'd). A user
    /// without a password is the credential itself (`https://TOKEN@host`).
    pub fn userinfo(&mut self, user: &str, password: Option<&str>) -> &mut Secrets {
        let user_decoded = percent_decode(user);
        match password {
            Some(p) => {
                self.secret(p);
                self.secret(&format!("{user}:{p}"));
                self.basic(&user_decoded, &percent_decode(p))
            }
            None if user.is_empty() => self,
            None => {
                self.secret(user);
                self.secret(&user_decoded);
                self.basic(&user_decoded, "")
            }
        }
    }

    /// A header value sent as configured: the value, the credentials after an
    /// authorization scheme ([`AUTH_SCHEMES`]: `Bearer abc…`), and for `Basic` the pair
    /// and password it decodes to.
    pub fn header(&mut self, value: &str) -> &mut Secrets {
        self.secret(value);
        let Some((scheme, cred)) = value.trim().split_once(' ') else {
            return self;
        };
        let cred = cred.trim();
        if !AUTH_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) || cred.len() < MIN_FORM {
            return self;
        }
        self.secret(cred);
        if scheme.eq_ignore_ascii_case("basic")
            && let Some(pair) = base64_decode(cred).and_then(|b| String::from_utf8(b).ok())
            && let Some((user, password)) = pair.split_once(':')
        {
            self.basic(user, password);
        }
        self
    }

    pub fn redactor(&self) -> Redactor {
        let mut forms: Vec<String> = self.forms.iter().cloned().collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Redactor { forms }
    }
}

/// Blanks every registered form of a component's secrets. Its `Debug` shows how many
/// forms it holds, never one of them.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first.
    forms: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    /// `text` with every form of every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for f in &self.forms {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), MASK);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Every form, longest first.
    pub fn into_forms(self) -> Vec<String> {
        self.forms
    }
}

// ---- encodings ------------------------------------------------------------------------------

/// `s` as the texts around it carry it: itself, percent-encoded, JSON-escaped and
/// HTML-escaped (each only where it differs).
fn wire_forms(s: &str) -> Vec<String> {
    // RFC 3986 unreserved; `application/x-www-form-urlencoded`; `encodeURIComponent`.
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    const FORM: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');
    const COMPONENT: &AsciiSet = &UNRESERVED
        .remove(b'!')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    let json = json_escape(s, false);
    let ascii = json_escape(s, true);
    let mut out = vec![
        s.to_string(),
        percent_encode(s, UNRESERVED, false, false),
        percent_encode(s, UNRESERVED, false, true),
        percent_encode(s, FORM, true, false),
        percent_encode(s, COMPONENT, false, false),
        json.replace('/', "\\/"),
        ascii.replace('/', "\\/"),
        json.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"),
        json,
        ascii,
    ];
    let html = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    out.push(html.replace('\'', "&#39;"));
    out.push(html.replace('\'', "&#x27;"));
    out.sort();
    out.dedup();
    out
}

/// Every byte outside `set` as `%XX` (`lower`: lower-case hex); `plus`: a space as `+`, as
/// forms write it.
fn percent_encode(s: &str, set: &'static AsciiSet, plus: bool, lower: bool) -> String {
    utf8_percent_encode(s, set)
        .map(|chunk| match chunk {
            "%20" if plus => "+".to_string(),
            c if lower && c.starts_with('%') => c.to_ascii_lowercase(),
            c => c.to_string(),
        })
        .collect()
}

/// The inside of a JSON string: `"`, `\` and control characters escaped as serde writes
/// them; `ascii`: every non-ASCII character as `\uXXXX` too (UTF-16, lower-case hex, as
/// Python's `ensure_ascii` and PHP write it).
fn json_escape(s: &str, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4), as HTTP basic auth sends it.
pub fn base64(input: &[u8]) -> String {
    STANDARD.encode(input)
}

/// Base64 in the standard or URL-safe (RFC 4648 §5) alphabet, with or without padding.
fn base64_with(input: &[u8], url_safe: bool, pad: bool) -> String {
    match (url_safe, pad) {
        (false, true) => STANDARD.encode(input),
        (false, false) => STANDARD_NO_PAD.encode(input),
        (true, true) => URL_SAFE.encode(input),
        (true, false) => URL_SAFE_NO_PAD.encode(input),
    }
}

fn url_safe_alphabet(s: &str) -> String {
    s.replace('+', "-").replace('/', "_")
}

/// The standard base64 characters that `s` alone decides when it starts `k` bytes (0, 1
/// or 2) past a 3-byte boundary of a longer text: character `i` covers bits `6i..6i+6`,
/// so those from `ceil(8k/6)` up to (not including) `floor(8(k+len)/6)`.
fn aligned(s: &[u8], k: usize) -> String {
    let mut buf = vec![0u8; k];
    buf.extend_from_slice(s);
    buf.extend_from_slice(&[0, 0]);
    let all = base64_with(&buf, false, false);
    let (start, end) = ((8 * k).div_ceil(6), 8 * (k + s.len()) / 6);
    all.get(start..end).unwrap_or_default().to_string()
}

/// Standard base64, padding optional (as clients send `Basic` credentials); `None` for
/// anything else.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s).ok()
}

/// Decodes `%XX` escapes (userinfo may escape `:` and `@`); bad escapes stay as written,
/// bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

// ---- the probes' second line of defence ----------------------------------------------------

/// `a=1&b=2&flag` as `a=***&b=***&flag`.
pub(crate) fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{k}=***"),
            None => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The texts to scrub reasons of: every form each secret takes on the wire (raw, base64,
/// percent-encoded, JSON-escaped: this module), longest first, so a password inside a
/// userinfo goes with it. Secrets shorter than 4 characters ("1", "on") are left: they
/// would blank out ordinary words (they are never put into a message anyway, this list is a
/// second line of defence). A header value's credentials (`Bearer abc...`, and what a
/// `Basic` value decodes to) count on their own.
pub(crate) fn secret_list(secrets: Vec<String>) -> Vec<String> {
    let mut all = Secrets::new();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        all.header(s);
    }
    all.redactor().into_forms()
}

/// Shortest value [`scrub`] blanks out.
const MIN_SECRET: usize = 4;

/// Blanks out any secret that found its way into a message (a second line of defence:
/// messages are built never to include them). `secrets` is a [`secret_list`]; values
/// shorter than 4 characters are left.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= MIN_SECRET && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(f: impl FnOnce(&mut Secrets)) -> Redactor {
        let mut s = Secrets::new();
        f(&mut s);
        s.redactor()
    }

    #[test]
    fn base64_in_both_alphabets() {
        for (input, padded, url_safe_bare) in [
            ("", "", ""),
            ("f", "Zg==", "Zg"),
            ("fo", "Zm8=", "Zm8"),
            ("foo", "Zm9v", "Zm9v"),
            (
                "Aladdin:open sesame",
                "QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
                "QWxhZGRpbjpvcGVuIHNlc2FtZQ",
            ),
            ("\u{fb}\u{ff}", "w7vDvw==", "w7vDvw"),
            ("\u{3ff}\u{3ff}\u{3ff}", "z7/Pv8+/", "z7_Pv8-_"),
        ] {
            assert_eq!(base64(input.as_bytes()), padded, "{input:?}");
            assert_eq!(
                base64_with(input.as_bytes(), true, false),
                url_safe_bare,
                "{input:?}"
            );
            assert_eq!(
                base64_decode(padded).as_deref(),
                Some(input.as_bytes()),
                "{input:?}"
            );
        }
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn percent_json_and_html_forms() {
        let forms = wire_forms("p@ss w/rd\"\\é<'");
        for want in [
            "p@ss w/rd\"\\é<'",
            "p%40ss%20w%2Frd%22%5C%C3%A9%3C%27",
            "p%40ss%20w%2frd%22%5c%c3%a9%3c%27",
            "p%40ss+w%2Frd%22%5C%C3%A9%3C%27",
            "p%40ss%20w%2Frd%22%5C%C3%A9%3C'",
            "p@ss w/rd\\\"\\\\é<'",
            "p@ss w\\/rd\\\"\\\\é<'",
            "p@ss w/rd\\\"\\\\\\u00e9<'",
            "p@ss w\\/rd\\\"\\\\\\u00e9<'",
            "p@ss w/rd\\\"\\\\é\\u003c'",
            "p@ss w/rd&quot;\\é&lt;&#39;",
            "p@ss w/rd&quot;\\é&lt;&#x27;",
        ] {
            assert!(forms.iter().any(|f| f == want), "{want} not in {forms:#?}");
        }
        // serde writes the same JSON.
        let serde = serde_json::to_string("p@ss w/rd\"\\é<'\n\u{1}").unwrap();
        assert_eq!(
            format!("\"{}\"", json_escape("p@ss w/rd\"\\é<'\n\u{1}", false)),
            serde
        );
        assert_eq!(json_escape("🚨", true), "\\ud83d\\udea8");
        assert_eq!(wire_forms("plain-token_1.2"), ["plain-token_1.2"]);
    }

    #[test]
    fn a_secret_goes_in_every_form() {
        let secret = "s3cr\"t/p@ss+w0rd";
        let r = redactor(|s| {
            s.secret(secret);
        });
        let json = serde_json::to_string(secret).unwrap();
        for text in [
            format!("raw {secret} end"),
            format!("json {json} end"),
            "percent s3cr%22t%2Fp%40ss%2Bw0rd end".to_string(),
            "lower s3cr%22t%2fp%40ss%2bw0rd end".to_string(),
            "form s3cr%22t%2Fp%40ss%2Bw0rd end".to_string(),
            format!("base64 {} end", base64(secret.as_bytes())),
            format!(
                "base64 url-safe {} end",
                base64_with(secret.as_bytes(), true, false)
            ),
            format!(
                "json-escaped base64 {} end",
                base64(secret.as_bytes()).replace('/', "\\/")
            ),
            "html s3cr&quot;t/p@ss+w0rd end".to_string(),
        ] {
            let out = r.redact(&text);
            assert!(
                out.ends_with(" end") && out.contains("***"),
                "{text} -> {out}"
            );
            assert!(
                !out.contains("w0rd") && !out.contains("3cr"),
                "{text} -> {out}"
            );
        }
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert!(!format!("{r:?}").contains("w0rd"), "{r:?}");
    }

    #[test]
    fn a_secret_inside_longer_base64_goes_at_every_alignment() {
        let secret = "hunter2-and-more";
        let r = redactor(|s| {
            s.secret(secret);
        });
        for prefix in ["", "a", "ab", "abc", "user:", "someone@example.com:"] {
            for suffix in ["", "x", "xy", "!tail"] {
                let text = format!("{prefix}{secret}{suffix}");
                for url_safe in [false, true] {
                    let b64 = base64_with(text.as_bytes(), url_safe, true);
                    let out = r.redact(&format!("Basic {b64}"));
                    // What is left is at most the two characters at each end that the
                    // secret shares with its neighbours, and whatever encodes them.
                    let left = out.replace("Basic ", "").replace(MASK, "");
                    assert!(out.contains(MASK), "{text:?} ({b64}) -> {out}");
                    let neighbours =
                        base64(prefix.as_bytes()).len() + base64(suffix.as_bytes()).len() + 4;
                    assert!(left.len() <= neighbours, "{text:?} ({b64}) -> {out}");
                }
            }
        }
        // Short secrets are only found whole.
        let short = redactor(|s| {
            s.secret("short");
        });
        assert_eq!(short.redact(&base64(b"user:short")), base64(b"user:short"));
    }

    #[test]
    fn basic_auth_pairs_go_whole() {
        let r = redactor(|s| {
            s.basic("ACabc", "tok3n");
        });
        let header = format!("authorization: Basic {}", base64(b"ACabc:tok3n"));
        assert_eq!(r.redact(&header), "authorization: Basic ***");
        assert_eq!(r.redact("user ACabc:tok3n"), "user ***");
        assert_eq!(r.redact("token tok3n"), "token ***");
    }

    #[test]
    fn userinfo_as_written_decoded_and_sent() {
        let r = redactor(|s| {
            s.userinfo("hook", Some("p%40ss%22w0rd"));
        });
        for (text, want) in [
            ("p%40ss%22w0rd", "***"),
            ("p@ss\"w0rd", "***"),
            ("p@ss\\\"w0rd", "***"),
            ("hook:p%40ss%22w0rd", "***"),
            ("hook:p@ss\"w0rd", "***"),
        ] {
            assert_eq!(r.redact(text), want, "{text}");
        }
        let sent = base64(b"hook:p@ss\"w0rd");
        assert_eq!(r.redact(&format!("Basic {sent}")), "Basic ***");

        // A user alone is the credential: reqwest sends `user:` as basic auth.
        let r = redactor(|s| {
            s.userinfo("tok%2Den-1234", None);
        });
        assert_eq!(r.redact("tok%2Den-1234 tok-en-1234"), "*** ***");
        assert_eq!(
            r.redact(&format!("Basic {}", base64(b"tok-en-1234:"))),
            "Basic ***"
        );
        assert!(
            redactor(|s| {
                s.userinfo("", None);
            })
            .is_empty()
        );
    }

    #[test]
    fn header_values_and_the_credentials_in_them() {
        let r = redactor(|s| {
            s.header("Bearer abcd-efgh-1234");
            s.header(&format!("Basic {}", base64(b"svc:pa55word")));
            s.header("on");
            s.header("probed check");
        });
        assert_eq!(r.redact("token abcd-efgh-1234"), "token ***");
        assert_eq!(r.redact("password pa55word"), "password ***");
        assert_eq!(r.redact("pair svc:pa55word"), "pair ***");
        // Short forms are kept only as the value itself.
        assert_eq!(r.redact("on and on"), "*** and ***");
        assert_eq!(r.redact("b24"), "b24");
        // Only an authorization scheme's credentials count on their own.
        assert_eq!(r.redact("check failed, probed check"), "check failed, ***");
    }

    #[test]
    fn longest_forms_go_first() {
        let r = redactor(|s| {
            s.secret("tok");
            s.secret("tok-98765");
        });
        assert_eq!(r.redact("a tok-98765 b tok"), "a *** b ***");
        assert_eq!(percent_decode("a%40b%zz%4"), "a@b%zz%4");
    }
}
