//! The status report: the JSON of `GET /api/v1/status` and `/healthz` that the API serves
//! and `probectl` reads, one set of types for both sides so they cannot drift apart. Plain
//! data below every module that fills or reads it: the API builds it, the watchdog's
//! self-checks are [`HealthCheck`]s, the public views read each probe's [`ProbeStatus`].

use serde::{Deserialize, Serialize};

use crate::evaluate::State;

/// `GET /api/v1/status` and `probectl status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub daemon: DaemonStatus,
    pub probes: Vec<ProbeStatus>,
}

/// The daemon itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// The daemon answered (`probectl` prints `false` when it could not reach it).
    pub alive: bool,
    /// Every self-check passed (see `/healthz`).
    pub healthy: bool,
    /// Names of the failing self-checks, with their reasons.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Every self-check, passing or not, with what it measured.
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
    pub version: String,
    pub started_at: Option<String>,
    pub uptime_seconds: Option<u64>,
    pub probes: usize,
    pub store_queue_depth: usize,
    pub store_dropped: u64,
    pub store_write_errors: u64,
    pub runs_skipped: u64,
    /// Why the daemon could not be reached (set by `probectl` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One self-check of the daemon (`/healthz`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthCheck {
    /// `runtime`, `scheduler lag`, `overdue probes`, `store`, `store queue`,
    /// `alert delivery`, `notifiers`, `config`.
    pub name: String,
    pub ok: bool,
    /// What it measured, or why it fails.
    pub detail: String,
}

/// One probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub name: String,
    pub kind: String,
    pub state: State,
    /// When the current state began (RFC 3339).
    pub since: Option<String>,
    pub last_checked_at: Option<String>,
    pub last_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    /// Successful runs over the last 24 hours, in percent.
    pub uptime_24h: Option<f64>,
    pub consecutive_failures: u32,
    /// `every 30s` or `cron ...`.
    pub schedule: String,
    pub group: Option<String>,
    /// Its objectives' figures (burn rates, Apdex, the alert that is on), with `slo:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::slo::Figures>,
    /// Each location's own verdict, when several share a store (`probectl status
    /// --locations`); the probe's `state` is their quorum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<LocationStatus>,
}

/// One location's verdict on a probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LocationStatus {
    pub location: String,
    pub state: State,
    /// Its latest result (RFC 3339).
    pub last_checked_at: Option<String>,
    pub last_error: Option<String>,
    /// No result for two intervals: it counts toward no quorum.
    pub stale: bool,
    /// Its daemon says it cannot see: its verdicts on targets count toward no quorum.
    #[serde(default)]
    pub blind: bool,
}
