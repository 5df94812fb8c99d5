//! The public words for an incident: a title and an opening sentence per probe kind ("the
//! nightly backup did not report in", "the certificate of Checkout expires in 9 days",
//! "Public API answered 500"), from the probe's kind, its display name and the state it is
//! in.
//!
//! The probe's failure reason is internal text (it names hosts, addresses, paths); it is
//! never shown. Only a number is ever read out of it, and only in a known phrase: an HTTP
//! status code (`status 500, expected 200`) and a certificate's time left (`expires in 9
//! days`). Everything else here is a fixed sentence around the display name, which is public.

use super::Status;

/// The incident's title: `Checkout is down`, `Nightly backup did not report in`, ...
pub fn title(kind: &str, name: &str, state: Status, reason: Option<&str>) -> String {
    if state == Status::DegradedPerformance {
        return format!("{name} is degraded");
    }
    match kind {
        "push" => format!("{name} did not report in"),
        "tls" if cert_expiry(reason.unwrap_or("")).is_some() => {
            format!("The certificate of {name} is expiring")
        }
        _ => format!("{name} is down"),
    }
}

/// The first update's sentence (without "We are investigating.").
pub fn opening(kind: &str, name: &str, state: Status, reason: Option<&str>) -> String {
    let reason = reason.unwrap_or("");
    if state == Status::DegradedPerformance {
        return format!("{name} is slower or less reliable than usual.");
    }
    match kind {
        "http" => match http_status(reason) {
            Some(code) => format!("{name} answered {code}."),
            None if timed_out(reason) => format!("{name} did not answer in time."),
            None => format!("{name} is not responding as expected."),
        },
        "push" if reason.contains("has not finished") => {
            format!("{name} started but did not finish in time.")
        }
        "push" => format!("{name} did not report in."),
        "backup" => format!("{name}: the latest backup is missing, too old or too small."),
        "tls" => match cert_expiry(reason) {
            Some(Expiry::In(left)) => format!("The certificate of {name} expires in {left}."),
            Some(Expiry::Expired) => format!("The certificate of {name} has expired."),
            None => format!("The secure connection to {name} cannot be established."),
        },
        "dns" => format!("{name} does not resolve as expected."),
        "db_write" => format!("{name} is not accepting writes."),
        "tcp" | "redis" | "websocket" if timed_out(reason) => {
            format!("{name} did not answer in time.")
        }
        _ => format!("{name} is not responding as expected."),
    }
}

/// Whether a kind measures a response time worth showing (a push probe's or a backup
/// check's duration is not one).
pub fn has_latency(kind: &str) -> bool {
    !matches!(kind, "push" | "backup" | "location")
}

/// The status code of `status 500, expected 200`: three digits, nothing else.
fn http_status(reason: &str) -> Option<u16> {
    let rest = &reason[reason.find("status ")? + "status ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() == 3)
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|c| (100..600).contains(c))
}

fn timed_out(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("timed out") || r.contains("timeout") || r.contains("deadline")
}

enum Expiry {
    /// `9 days`, `5 hours`: a count and a unit, rebuilt from known words.
    In(String),
    Expired,
}

/// From `certificate for X expires in 9 days (min_days_left 14)` or `... expired 2 days ago`.
fn cert_expiry(reason: &str) -> Option<Expiry> {
    if let Some(i) = reason.find(" expires in ") {
        let mut words = reason[i + " expires in ".len()..].split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        let unit = words
            .next()?
            .trim_end_matches(|c: char| !c.is_ascii_alphabetic());
        let unit = ["second", "minute", "hour", "day"]
            .into_iter()
            .find(|u| unit.trim_end_matches('s') == *u)?;
        return Some(Expiry::In(format!(
            "{n} {unit}{}",
            if n == 1 { "" } else { "s" }
        )));
    }
    reason.contains(" expired ").then_some(Expiry::Expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per kind and reason, the public words: never a host, address or path of the reason.
    #[test]
    fn words_per_kind_without_the_reason_s_internals() {
        let down = Status::MajorOutage;
        let cases: &[(&str, &str, Option<&str>, &str, &str)] = &[
            (
                "http",
                "Public API",
                Some("status 500, expected 200-399 from 10.0.0.5:8443/internal"),
                "Public API is down",
                "Public API answered 500.",
            ),
            (
                "http",
                "Public API",
                Some("timed out after 5s connecting to db.internal"),
                "Public API is down",
                "Public API did not answer in time.",
            ),
            (
                "http",
                "Public API",
                Some("connect to 10.0.0.5:443: connection refused"),
                "Public API is down",
                "Public API is not responding as expected.",
            ),
            (
                "push",
                "Nightly backup",
                Some("no ping since the probe was added 1d6h ago (period 1d + grace 1h)"),
                "Nightly backup did not report in",
                "Nightly backup did not report in.",
            ),
            (
                "push",
                "Nightly backup",
                Some("the job started 3h ago and has not finished (grace 1h)"),
                "Nightly backup did not report in",
                "Nightly backup started but did not finish in time.",
            ),
            (
                "tls",
                "Checkout",
                Some("certificate for db.internal expires in 9 days (min_days_left 14)"),
                "The certificate of Checkout is expiring",
                "The certificate of Checkout expires in 9 days.",
            ),
            (
                "tls",
                "Checkout",
                Some("certificate for pay.internal expired 2 days ago (notAfter 2026-01-01)"),
                "The certificate of Checkout is expiring",
                "The certificate of Checkout has expired.",
            ),
            (
                "tls",
                "Checkout",
                Some("tls: invalid peer certificate: UnknownIssuer for 10.1.2.3"),
                "Checkout is down",
                "The secure connection to Checkout cannot be established.",
            ),
            (
                "db_write",
                "Orders",
                Some("postgres://app@10.0.0.7/orders: read-only"),
                "Orders is down",
                "Orders is not accepting writes.",
            ),
            (
                "dns",
                "Mail",
                None,
                "Mail is down",
                "Mail does not resolve as expected.",
            ),
        ];
        for (kind, name, reason, want_title, want_body) in cases {
            let t = title(kind, name, down, *reason);
            let b = opening(kind, name, down, *reason);
            assert_eq!(
                (t.as_str(), b.as_str()),
                (*want_title, *want_body),
                "{kind} {reason:?}"
            );
            for secret in [
                "10.",
                "internal",
                "postgres",
                "8443",
                "1d6h",
                "min_days_left",
            ] {
                assert!(!t.contains(secret) && !b.contains(secret), "{t} / {b}");
            }
        }
        // Degraded, whatever the kind: slower or less reliable.
        assert_eq!(
            opening(
                "http",
                "API",
                Status::DegradedPerformance,
                Some("status 500")
            ),
            "API is slower or less reliable than usual."
        );
        assert_eq!(
            title("push", "Backup", Status::DegradedPerformance, None),
            "Backup is degraded"
        );
        // Only a real code: `status 5000`, `status abc` are not codes.
        assert_eq!(http_status("status 5000"), None);
        assert_eq!(http_status("status abc"), None);
        assert!(!has_latency("push") && !has_latency("backup") && has_latency("http"));
    }
}
