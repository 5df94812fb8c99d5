//! Incidents and their deliveries as the API tells them: the rows come from the store
//! (`store/incidents.rs`, which owns every query of incidents and the outbox); a delivery's
//! error, without the admin token, only as a status and a short phrase ([`brief_error`]).

pub use crate::store::{AckError, Delivery, IncidentRow};

/// Said instead of an error no phrase of [`brief_error`] fits.
pub const BRIEF_FAILED: &str = "failed";

/// A delivery's error as the public API shows it: a status and a short phrase from a fixed
/// vocabulary (`http 401`, `smtp 535`, `no answer within 10s`, `connection refused`), so
/// nothing a peer said comes through, whatever it said. The phrase found first wins: a
/// message tells our own words before it quotes the peer.
pub fn brief_error(text: &str) -> String {
    static PHRASES: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = PHRASES.get_or_init(|| {
        regex::Regex::new(concat!(
            r"\bhttp (?P<http>[1-5][0-9]{2})\b",
            r"|(?:: |\()(?P<status>[1-5][0-9]{2}) [a-z]",
            r"|server answered (?P<smtp>[2-5][0-9]{2})\b",
            r"|no answer within (?P<within>[0-9][0-9.]{0,6}(?:ms|s|m|h|d)(?:[0-9]{1,6}(?:ms|s|m))?)",
            r"|connection failed(?:: (?P<cause>connection refused|connection reset|connection closed|connection timed out|dns error|tls|invalid peer certificate))?",
            r"|(?P<conn>connection refused|connection reset|connection closed|connection timed out)",
            r"|(?P<unconfigured>is not configured)",
            r"|(?P<memory>sent from memory while the store could not be written)",
        ))
        .ok()
    });
    let Some(c) = re.as_ref().and_then(|re| re.captures(text)) else {
        return BRIEF_FAILED.into();
    };
    let group = |name: &str| c.name(name).map(|m| m.as_str());
    if let Some(code) = group("http").or(group("status")) {
        format!("http {code}")
    } else if let Some(code) = group("smtp") {
        format!("smtp {code}")
    } else if let Some(d) = group("within") {
        format!("no answer within {d}")
    } else if let Some(cause) = group("cause") {
        match cause {
            "tls" | "invalid peer certificate" => "connection failed: tls".into(),
            other => other.into(),
        }
    } else if let Some(phrase) = group("conn").or(group("memory")) {
        phrase.into()
    } else if group("unconfigured").is_some() {
        "notifier not configured".into()
    } else {
        // `connection failed` without a cause we name.
        "connection failed".into()
    }
}

/// Every delivery's error as [`brief_error`] tells it.
pub fn brief_errors(rows: &mut [IncidentRow]) {
    for d in rows.iter_mut().flat_map(|r| r.deliveries.iter_mut()) {
        if let Some(e) = &d.last_error {
            d.last_error = Some(brief_error(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_error_in_brief_is_a_status_and_a_fixed_phrase() {
        for (text, want) in [
            (
                "http://127.0.0.1:8080: http 400 bad request: authorization: Basic *** x-key: s3cret",
                "http 400",
            ),
            ("pagerduty: 429 too many requests: throttled", "http 429"),
            (
                "twilio: +15550002222: authentication failed (401 unauthorized, code 20003: \
                 Authenticate) (0 of 1 recipients accepted)",
                "http 401",
            ),
            (
                "twilio: +15550002222: 400 bad request: code 21211: invalid 'To' (0 of 1 recipients accepted)",
                "http 400",
            ),
            (
                "twilio: no answer within 10s (0 of 2 recipients accepted)",
                "no answer within 10s",
            ),
            (
                "http://am:9093: no answer within 1m30s",
                "no answer within 1m30s",
            ),
            (
                "http://h:1: connection failed: connection refused",
                "connection refused",
            ),
            (
                "https://h: connection failed: invalid peer certificate: unknown issuer",
                "connection failed: tls",
            ),
            (
                "http://h: connection failed: failed to lookup address information: s3cret.example",
                "connection failed",
            ),
            (
                "smtp 127.0.0.1:25: server answered 535 5.7.8 authentication failed for s3cret",
                "smtp 535",
            ),
            (
                "smtp 127.0.0.1:25: connection error: connection refused",
                "connection refused",
            ),
            (
                "notifier \"pager\" is not configured (or could not be built)",
                "notifier not configured",
            ),
            (
                "sent from memory while the store could not be written",
                "sent from memory while the store could not be written",
            ),
            ("cannot encode the alert: s3cret", BRIEF_FAILED),
            ("", BRIEF_FAILED),
            // What the peer said comes after our own words, and never wins.
            (
                "http://h: http 502 bad gateway: no answer within 9s, http 200, connection refused",
                "http 502",
            ),
        ] {
            let got = brief_error(text);
            assert_eq!(got, want, "{text}");
            assert!(!got.contains("s3cret"));
        }
    }
}
