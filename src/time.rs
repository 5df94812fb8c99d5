//! Wall-clock helpers. Wall time is for display and storage only; every duration is measured
//! on the monotonic clock (`tokio::time::Instant`).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static ANCHOR: OnceLock<Instant> = OnceLock::new();

/// Monotonic milliseconds since the process first asked; for comparing instants in
/// atomics. Never goes back, whatever the wall clock does.
pub fn mono_ms() -> i64 {
    mono_ms_at(Instant::now())
}

/// `t` on the [`mono_ms`] scale (0 for an instant before the anchor).
pub fn mono_ms_at(t: Instant) -> i64 {
    let anchor = *ANCHOR.get_or_init(Instant::now);
    t.checked_duration_since(anchor)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

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
