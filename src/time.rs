//! Wall-clock helpers. Wall time is for display and storage only; every duration is measured
//! on the monotonic clock (`tokio::time::Instant`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix ms as RFC 3339 UTC with milliseconds, e.g. `2026-11-21T10:37:05.123Z`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A short "how long ago" for tables: `5s ago`, `3m ago`, `2h ago`, `4d ago`.
pub fn ago(ms: i64, now: i64) -> String {
    let s = ((now - ms).max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}
