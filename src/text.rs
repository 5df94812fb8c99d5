//! Text that several layers share: [`FieldError`] (a spec's problem, found without I/O,
//! that config validation reports for probes and notifiers alike) and the words of reasons
//! (an I/O or TLS error in words, an error's chain of causes, tidied and shortened text).
//! A foundation module: plain text in, plain text out; it names nothing else of the crate.

use std::sync::OnceLock;

/// A problem with one field of a spec, found without any I/O. `path` is relative to the
/// probe (dotted, e.g. `request.url` or `expect.status[2]`); the config loader turns it into
/// `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

// ---- words ---------------------------------------------------------------------------------

/// An I/O error in words: `connection refused`, not `Connection refused (os error 111)`; a
/// wrapped error (rustls inside tokio-rustls) as itself, with its sources.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    if let Some(inner) = e.get_ref() {
        return error_chain(inner);
    }
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by the server".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::UnexpectedEof => "connection closed by the server".into(),
        K::BrokenPipe => "connection closed by the server (broken pipe)".into(),
        K::TimedOut => "connection timed out".into(),
        _ => tidy(&e.to_string()),
    }
}

/// An error and its sources, joined with `: `, each tidied; a source already said is left.
/// A rustls error is put in words ([`rustls_text`]).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let text = |e: &(dyn std::error::Error + 'static)| match e.downcast_ref::<rustls::Error>() {
        Some(tls) => rustls_text(tls),
        None => tidy(&e.to_string()),
    };
    let mut out = text(e);
    let mut source = e.source();
    while let Some(s) = source {
        let text = text(s);
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A rustls error in words: rustls shows some causes as Rust names
/// (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`, `received fatal alert:
/// HandshakeFailure`); they become `invalid peer certificate: the server's certificate is a
/// CA certificate (CA:TRUE); ...` (saying what to do), `received fatal alert: handshake
/// failure`.
pub(crate) fn rustls_text(e: &rustls::Error) -> String {
    static OTHER: OnceLock<regex::Regex> = OnceLock::new();
    static NAME: OnceLock<regex::Regex> = OnceLock::new();
    let other = OTHER.get_or_init(|| regex::Regex::new(r"Other\(OtherError\((\w+)\)\)").unwrap());
    let name =
        NAME.get_or_init(|| regex::Regex::new(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b").unwrap());
    let text = e.to_string();
    let text = other.replace_all(&text, "$1");
    let text = name.replace_all(&text, |c: &regex::Captures<'_>| rust_name_words(&c[0]));
    tidy(&text)
}

/// A rustls or webpki error name in words.
fn rust_name_words(name: &str) -> String {
    match name {
        "UnknownIssuer" => "unknown issuer (not signed by a trusted root)".into(),
        "CaUsedAsEndEntity" => "the server's certificate is a CA certificate (CA:TRUE); if it is \
                                self-signed on purpose, put that certificate itself in ca_file to \
                                trust it"
            .into(),
        "EndEntityUsedAsCa" => "a server's certificate is used as a CA".into(),
        "NotValidYet" => "not valid yet".into(),
        "BadDer" | "BadEncoding" => "badly encoded".into(),
        "UnsupportedCertVersion" => "unsupported certificate version".into(),
        _ => {
            let mut out = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    out.push(' ');
                }
                out.extend(c.to_lowercase());
            }
            out
        }
    }
}

/// Drops ` (os error N)` and a trailing period, and lower-cases the first letter unless the
/// first word is an acronym (`DNS`, `TLS`).
pub(crate) fn tidy(s: &str) -> String {
    let s = s.find(" (os error ").map_or(s, |i| &s[..i]);
    lower_first(s.trim_end_matches('.'))
}

/// Lower-cases the first letter unless the first word is an acronym (`HTTP`, `TLS`).
pub(crate) fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && !b.is_uppercase() => {
            a.to_lowercase().chain(s[a.len_utf8()..].chars()).collect()
        }
        _ => s.to_string(),
    }
}

/// At most 80 characters of `s`, for reasons.
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A regex compile error in one line (the regex crate's own message spans several).
pub(crate) fn regex_error(e: &regex::Error) -> String {
    let s = e.to_string();
    let last = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    format!(
        "invalid regular expression: {}",
        last.trim().trim_start_matches("error: ")
    )
}
