//! Configuration: YAML (`probed.yaml` plus a probes file or folder) into a validated
//! [`Config`].
//!
//! Loading collects *every* problem (syntax, wrong types, unknown keys with a "did you mean",
//! missing env vars, duplicate names, a timeout longer than the interval, a route naming an
//! unknown notifier) and reports each as `file:line:col: message`. A config with any error
//! is never half-used: the daemon refuses to start on it, and a reload keeps the last good
//! one.
//!
//! Strings may use `${VAR}` and `${VAR:-default}`; a key ending in `_file` (e.g.
//! `password_file`) reads that key's value from a file, for secrets kept out of the YAML.

mod load;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::probe::ProbeSpec;
use crate::units::Secret;

pub use load::{closest, load, load_str};

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from.
    pub path: PathBuf,
    /// HTTP API, `/metrics` and status page. Default: `127.0.0.1:9797` (loopback only).
    pub listen: SocketAddr,
    /// Directory of the SQLite file (`probed.db`). Relative paths are relative to the
    /// config file's directory. Default: `./data`.
    pub data_dir: PathBuf,
    /// Bearer token for the API's write endpoints. Without it, writes are refused.
    pub admin_token: Option<Secret>,
    pub defaults: Defaults,
    pub store: StoreOptions,
    pub probes: Vec<ProbeConfig>,
    /// Notifiers by name. Their kind-specific settings are parsed by the alert module.
    pub notifiers: BTreeMap<String, NotifierConfig>,
    pub routes: Vec<Route>,
    /// `watchdog:` section, kept as written until the watchdog module parses it.
    pub watchdog: Option<serde_yaml::Value>,
}

/// `defaults:` applied to every probe that does not set its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// Interval between runs. Default: 30s.
    pub every: Duration,
    /// Hard deadline of one run. Default: 10s (capped at `every`).
    pub timeout: Duration,
    pub alert: AlertSpec,
    /// Most probes running at once, all hosts together. Default: 1024.
    pub max_concurrent: usize,
    /// Most probes running at once against one host. Default: 64.
    pub max_per_host: usize,
    /// Nameservers (`ip:port`) for probe DNS instead of the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            every: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            alert: AlertSpec::default(),
            max_concurrent: 1024,
            max_per_host: 64,
            nameservers: Vec::new(),
        }
    }
}

/// `store:` options.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// How long raw results are kept. Default: 7 days.
    pub retention: Duration,
    /// Results waiting for the writer before new ones are dropped (and counted). Default: 65536.
    pub queue: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(7 * 86400),
            queue: 65536,
        }
    }
}

/// When a probe's state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSpec {
    /// Consecutive failures before `down`. Default: 2.
    pub after: u32,
    /// Consecutive successes before `up` again. Default: 1.
    pub recover_after: u32,
    /// Severity label for routing. Default: `critical`.
    pub severity: String,
}

impl Default for AlertSpec {
    fn default() -> Self {
        AlertSpec {
            after: 2,
            recover_after: 1,
            severity: "critical".into(),
        }
    }
}

/// When a probe runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    /// A cron expression (seconds field optional: 5 fields are prefixed with `0`).
    Cron {
        expr: String,
        schedule: Box<cron::Schedule>,
    },
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            (Schedule::Cron { expr: a, .. }, Schedule::Cron { expr: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Schedule {
    /// The nominal interval: `every`, or the gap between the next two cron fires.
    pub fn interval(&self) -> Duration {
        match self {
            Schedule::Every(d) => *d,
            Schedule::Cron { schedule, .. } => {
                let mut it = schedule.upcoming(chrono::Utc);
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(60)),
                    _ => Duration::from_secs(86400),
                }
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", crate::units::format_duration(*d)),
            Schedule::Cron { expr, .. } => write!(f, "cron {expr}"),
        }
    }
}

/// One probe, with defaults applied.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub name: String,
    pub schedule: Schedule,
    pub timeout: Duration,
    pub alert: AlertSpec,
    /// Status-page component this probe belongs to.
    pub group: Option<String>,
    /// Shown on public feeds and pages.
    pub public: bool,
    /// Free-form labels, for routing.
    pub labels: BTreeMap<String, String>,
    pub spec: ProbeSpec,
    /// Where it was defined (`file:line:col`), for messages.
    pub source: String,
    /// The probe's YAML after interpolation, to tell on reload whether it changed.
    pub raw: serde_yaml::Value,
}

impl ProbeConfig {
    /// True when a reload must restart this probe's task.
    pub fn same_as(&self, other: &ProbeConfig) -> bool {
        self.raw == other.raw
            && self.schedule == other.schedule
            && self.timeout == other.timeout
            && self.alert == other.alert
    }
}

/// A notifier: its kind and its settings as written (parsed by the alert module).
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub kind: String,
    pub settings: serde_yaml::Value,
}

/// Notifier kinds known to the config (implemented by the alert module).
pub const NOTIFIER_KINDS: &[&str] = &["email", "twilio", "pagerduty", "webhook", "alertmanager"];

/// A route: which alerts go to which notifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Labels an alert must carry (`severity` included) for this route to apply.
    pub matchers: BTreeMap<String, String>,
    pub notify: Vec<String>,
    pub fallback: Vec<String>,
}

/// Every problem found in a config, each as `file:line:col: message`.
#[derive(Debug, Clone, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
