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
pub mod modules;
pub mod notify;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::probe::ProbeSpec;
use crate::units::Secret;

pub(crate) use load::nested_too_deep;
pub use load::schema::{config_schema, probes_file_schema};
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
    /// Shared: the daemon, its alert plan and each probe's task hold the same values, not
    /// copies (at 10,000 probes each copy cost about 9 MB).
    pub probes: Vec<Arc<ProbeConfig>>,
    /// Notifiers by name. Their kind-specific settings are parsed by the alert module.
    pub notifiers: BTreeMap<String, NotifierConfig>,
    pub routes: Vec<Route>,
    /// Scheduled quiet times: pages for matching probes are muted while one is active.
    pub maintenance: Vec<Maintenance>,
    /// Delivery settings of the alert path.
    pub alerting: AlertingOptions,
    /// This daemon's name in pages and dedup keys. Default: the host name.
    pub instance: String,
    /// Where this daemon stands (`eu-west`): its results are tagged with it, probes may be
    /// kept to some locations (`locations:`), and requests say it in their `User-Agent`.
    /// Default: the instance name.
    pub location: String,
    /// Base URL people reach this daemon at, for links in pages (e.g.
    /// `https://probed.example.com`). Default: none (no links).
    pub external_url: Option<String>,
    /// `watchdog:`: self-checks, heartbeats and the Alertmanager `Watchdog` alert (peers
    /// become probes named `peer:<name>`).
    pub watchdog: WatchdogOptions,
    /// `status_page:`: the public page, feeds and Statuspage-style JSON.
    pub status_page: StatusPageOptions,
    /// `modules:` and the `modules:` of `modules_file:` (a blackbox.yml): the
    /// blackbox_exporter modules `GET /probe` runs, by name.
    pub modules: BTreeMap<String, modules::Module>,
    /// `probe_endpoint:`: the targets `GET /probe` may check. Without it `/probe` is off.
    pub probe_endpoint: Option<modules::ProbeEndpoint>,
}

impl Config {
    /// The config with a `location:<name>` probe ([`crate::probe::location`]) for each of
    /// `locations` it does not watch itself (a probe of that name): every daemon watches
    /// every location it knows, its own included.
    pub fn with_location_probes(mut self, locations: &[String]) -> Config {
        for loc in locations {
            let name = format!("location:{loc}");
            if self.probes.iter().any(|p| p.name == name) {
                continue;
            }
            let mut raw = serde_yaml::Mapping::new();
            raw.insert("name".into(), name.clone().into());
            raw.insert("kind".into(), "location".into());
            raw.insert("location".into(), loc.clone().into());
            self.probes.push(Arc::new(ProbeConfig {
                name,
                schedule: Schedule::Every(Duration::from_secs(2)),
                timeout: Duration::from_secs(1),
                alert: AlertSpec {
                    after: 1,
                    recover_after: 1,
                    within: None,
                    resolve_hold: None,
                    severity: self.defaults.alert.severity.clone(),
                    locations: None,
                },
                group: Some("probed".into()),
                public: false,
                title: None,
                description: Some(format!("whether probed at {loc} can see")),
                labels: [("location".to_string(), loc.clone())].into(),
                slo: None,
                locations: Vec::new(),
                spec: ProbeSpec::Location(Arc::new(crate::probe::location::Spec {
                    location: loc.clone(),
                    lost_after: Some(crate::units::Dur(self.watchdog.lost_after)),
                })),
                source: "built in (every location is watched)".into(),
                raw: RawDigest::of(&serde_yaml::Value::Mapping(raw)),
            }));
        }
        self
    }
}

/// `status_page:` options. What appears there is every probe with `public: true`, grouped by
/// `group`, under its `title`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPageOptions {
    /// The page's name. Default: `<instance> status`.
    pub title: String,
    /// A line under the title.
    pub description: Option<String>,
    /// The page's public address, for feeds and the Statuspage JSON. Default:
    /// `external_url` + `/status`, else the listen address.
    pub url: Option<String>,
    /// Days of history in the uptime bars. Default: 90.
    pub history_days: u32,
}

/// `watchdog:` options.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogOptions {
    /// Outbound heartbeats (`watchdog.heartbeat`): the dead-man's switch.
    pub heartbeats: Vec<Heartbeat>,
    /// Self-check: the scheduler's start lag (p99 over the last minute) above this makes the
    /// daemon unhealthy. Default: 1s.
    pub max_lag: Duration,
    /// Self-check: a page still undelivered after this long makes the daemon unhealthy.
    /// Default: 5m.
    pub max_undelivered_age: Duration,
    /// An always-firing `Watchdog` alert to Alertmanager while the daemon is healthy.
    pub alertmanager: Option<WatchdogAlert>,
    /// When this daemon counts as blind: most of its probes failing at once.
    pub blind: BlindOptions,
    /// `reference`: addresses that should always answer (any HTTP answer counts). When every
    /// one fails (and the shared store, if any, cannot be reached either), this daemon is
    /// blind. Default: none.
    pub reference: Vec<String>,
    /// A location silent in the shared store this long is lost (`location:<name>` goes
    /// down). Default: 1m.
    pub lost_after: Duration,
}

impl Default for WatchdogOptions {
    fn default() -> Self {
        WatchdogOptions {
            heartbeats: Vec::new(),
            max_lag: Duration::from_secs(1),
            max_undelivered_age: Duration::from_secs(300),
            alertmanager: None,
            blind: BlindOptions::default(),
            reference: Vec::new(),
            lost_after: Duration::from_secs(60),
        }
    }
}

/// `watchdog.blind`: a daemon whose probes fail at once against most of the hosts it
/// watches cannot tell its targets are down from being cut off itself. Blind, its failures
/// count toward no quorum, its own probes page no one, and `location:<its location>` pages
/// once instead. Hosts, not probes, are counted: fifty probes of one host that is down are
/// that host's outage, not blindness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlindOptions {
    /// Share of the hosts (with a result within `within`) whose every probe failed.
    /// Default: 80%.
    pub failing: u32,
    /// Fewest hosts with a result within `within` for the share to mean anything.
    /// Default: 3.
    pub min_hosts: usize,
    /// How recent a result must be to count. Default: 1m.
    pub within: Duration,
}

impl Default for BlindOptions {
    fn default() -> Self {
        BlindOptions {
            failing: 80,
            min_hosts: 3,
            within: Duration::from_secs(60),
        }
    }
}

/// `watchdog.alertmanager`: the always-firing `Watchdog` alert (Prometheus' convention),
/// for a dead man's snitch behind Alertmanager to page when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogAlert {
    /// Notifiers of kind `alertmanager` to send it through.
    pub notify: Vec<String>,
    /// How often it is sent; each send ends three of these ahead. Default: 1m.
    pub every: Duration,
}

/// One outbound heartbeat (healthchecks.io style): pinged every `every` while the daemon is
/// healthy; `<url>/fail` with the reasons when it is not; silent when it is dead.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The ping URL. It usually holds a secret (a UUID): never shown.
    pub url: Secret,
    /// Default: 60s.
    pub every: Duration,
    /// Deadline of one ping. Default: 10s (at most `every`).
    pub timeout: Duration,
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
    /// `url`: a PostgreSQL database (`postgres://user:password@host/db`) several daemons
    /// share. Absent: the embedded SQLite file under `data_dir`. It holds a password: never
    /// shown but as `store::postgres::display_url` writes it.
    pub url: Option<Secret>,
    /// How long raw results are kept. Default: 7 days.
    pub retention: Duration,
    /// Results waiting for the writer before new ones are dropped (and counted). Default: 65536.
    pub queue: usize,
    /// Results held in memory while the store cannot be written (disk full, read-only, locked),
    /// written when it comes back. Past this, the oldest are dropped and counted. Default:
    /// 200000 (about 60 MB).
    pub buffer: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            url: None,
            retention: Duration::from_secs(7 * 86400),
            queue: 65536,
            buffer: 200_000,
        }
    }
}

/// When a probe's state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSpec {
    /// Failures before `down`: `after` in a row, or, with `within`, `after` among the last
    /// `within` runs. Default: 2.
    pub after: u32,
    /// Count failures over the last `within` runs instead of in a row (at most 64).
    pub within: Option<u32>,
    /// How long a recovered probe must stay up before its incident resolves (and the
    /// resolve notice goes out). A failure meanwhile continues the same incident, so a
    /// flapping probe pages once. Default: three intervals.
    pub resolve_hold: Option<Duration>,
    /// Consecutive successes before `up` again. Default: 1.
    pub recover_after: u32,
    /// Severity label for routing. Default: `critical`.
    pub severity: String,
    /// How many locations must see a probe down for it to be down (and up again for it to
    /// recover), when several share a store: `2`, or `50%` of those reporting. Default: a
    /// majority of the locations reporting. Never more than report: a lone survivor still
    /// pages.
    pub locations: Option<Quorum>,
}

/// `alert.locations`: a number of locations, or a share of those reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    Count(u32),
    /// 1 to 100.
    Percent(u32),
}

impl Quorum {
    /// Locations needed out of `reporting` (at least 1, at most `reporting`); `None` is a
    /// majority.
    pub fn needed(rule: Option<Quorum>, reporting: usize) -> usize {
        let n = match rule {
            None => reporting / 2 + 1,
            Some(Quorum::Count(c)) => c as usize,
            Some(Quorum::Percent(p)) => (p as usize * reporting).div_ceil(100),
        };
        n.clamp(1, reporting.max(1))
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::Count(n) => write!(f, "{n}"),
            Quorum::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Default for AlertSpec {
    fn default() -> Self {
        AlertSpec {
            after: 2,
            within: None,
            resolve_hold: None,
            recover_after: 1,
            severity: "critical".into(),
            locations: None,
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
    /// Display name on the status page, feeds and badges. Default: the name.
    pub title: Option<String>,
    /// One line about what it watches, shown on the status page.
    pub description: Option<String>,
    /// Free-form labels, for routing.
    pub labels: BTreeMap<String, String>,
    /// Service-level objectives: burn-rate and Apdex alerts ([`crate::slo`]).
    pub slo: Option<crate::slo::SloSpec>,
    /// The locations that run it (`locations: [eu-west, us-east]`). Empty: every location.
    pub locations: Vec<String>,
    pub spec: ProbeSpec,
    /// Where it was defined (`file:line:col`), for messages.
    pub source: String,
    /// A digest of the probe's YAML after interpolation, to tell on reload whether it
    /// changed.
    pub raw: RawDigest,
}

/// A digest (SHA-256, first 16 bytes) of one probe's YAML after interpolation. Keeping the
/// YAML itself cost about 1.7 KB a probe, 17 MB at 10,000 probes; the digest answers the one
/// question it was kept for: did a reload change the probe.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawDigest([u8; 16]);

impl RawDigest {
    pub fn of(v: &serde_yaml::Value) -> RawDigest {
        use sha2::Digest;
        // Serialised as YAML, keys in the order written: a probe whose keys were only
        // reordered restarts on reload, which is harmless.
        let text = serde_yaml::to_string(v).unwrap_or_else(|_| format!("{v:?}"));
        let full = sha2::Sha256::digest(text.as_bytes());
        let mut out = [0; 16];
        out.copy_from_slice(&full[..16]);
        RawDigest(out)
    }
}

impl std::fmt::Debug for RawDigest {
    // It digests interpolated values (secrets among them): never printed, even as a hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawDigest(..)")
    }
}

impl ProbeConfig {
    /// Whether a daemon at `location` runs this probe.
    pub fn runs_at(&self, location: &str) -> bool {
        self.locations.is_empty() || self.locations.iter().any(|l| l == location)
    }

    /// What people see it called: `title`, else the name.
    pub fn display_name(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }

    /// True when a reload must restart this probe's task.
    pub fn same_as(&self, other: &ProbeConfig) -> bool {
        self.raw == other.raw
            && self.schedule == other.schedule
            && self.timeout == other.timeout
            && self.alert == other.alert
    }
}

/// A notifier: its kind, its parsed settings, and the settings as written (to tell on
/// reload whether it changed).
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub kind: String,
    pub spec: notify::NotifierSpec,
    pub settings: serde_yaml::Value,
}

/// Notifier kinds known to the config.
pub const NOTIFIER_KINDS: &[&str] = notify::KINDS;

/// A route: which alerts go to which notifiers, and what happens when nobody answers.
/// The first route whose `match` holds applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Labels an alert must carry for this route to apply: the probe's `labels` plus
    /// `severity`, `probe`, `kind` and `group`. Empty: every alert.
    pub matchers: BTreeMap<String, String>,
    /// Paged at once.
    pub notify: Vec<String>,
    /// Tried in order when a channel keeps failing (after its retries), until one delivers.
    pub fallback: Vec<String>,
    /// Further notifiers paged while the incident stays open and unacknowledged.
    pub escalate: Vec<EscalationStep>,
    /// Re-page `notify` this often while the incident stays open and unacknowledged.
    pub remind_every: Option<Duration>,
    /// Send resolve notices on recovery. Default: true.
    pub resolve: bool,
}

/// One escalation step.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationStep {
    /// Time since the incident opened.
    pub after: Duration,
    pub notify: Vec<String>,
}

/// A maintenance window: pages for matching probes are muted while it is active (results
/// are still recorded, states still change, incidents still open).
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub name: String,
    /// Probe names or globs (`api-*`). Empty: every probe.
    pub probes: Vec<String>,
    pub when: MaintenanceTime,
}

#[derive(Debug, Clone)]
pub enum MaintenanceTime {
    /// Starts at each cron fire, lasts `duration`.
    Cron {
        expr: String,
        schedule: Box<cron::Schedule>,
        duration: Duration,
    },
    /// Fixed start and end, unix ms.
    Fixed { start: i64, end: i64 },
}

impl Maintenance {
    /// Whether the window applies to `probe` (at some time).
    pub fn covers(&self, probe: &str) -> bool {
        self.probes.is_empty() || self.probes.iter().any(|g| glob_match(g, probe))
    }

    /// The window in progress at `now`, else the next one to start within `horizon_ms`, as
    /// (start, end) unix ms.
    pub fn current_or_next(&self, now: i64, horizon_ms: i64) -> Option<(i64, i64)> {
        let (start, end) = match &self.when {
            MaintenanceTime::Fixed { start, end } => (*start, *end),
            MaintenanceTime::Cron {
                schedule, duration, ..
            } => {
                let now_t = chrono::DateTime::from_timestamp_millis(now)?;
                let d = chrono::Duration::from_std(*duration).ok()?;
                let fire = schedule.after(&(now_t - d)).next()?;
                let start = fire.timestamp_millis();
                (start, start + d.num_milliseconds())
            }
        };
        (end > now && start <= now + horizon_ms).then_some((start, end))
    }

    /// Whether the window is active at `now` (unix ms) for `probe`.
    pub fn active(&self, probe: &str, now: i64) -> bool {
        if !self.covers(probe) {
            return false;
        }
        match &self.when {
            MaintenanceTime::Fixed { start, end } => (*start..*end).contains(&now),
            MaintenanceTime::Cron {
                schedule, duration, ..
            } => {
                // Active when a fire happened within the last `duration`.
                let Some(now_t) = chrono::DateTime::from_timestamp_millis(now) else {
                    return false;
                };
                let Ok(d) = chrono::Duration::from_std(*duration) else {
                    return false;
                };
                schedule
                    .after(&(now_t - d))
                    .next()
                    .is_some_and(|fire| fire <= now_t)
            }
        }
    }
}

/// `*` matches any run of characters, `?` one character; everything else is literal. Linear
/// in practice: on a mismatch only the last `*` is retried, one character further (never
/// the exponential backtracking of a naive matcher, which `*a*a*a*a*b` would trigger).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    glob_with(&p, name, |i, c| match p[i] {
        '*' => None,
        '?' => Some((1, true)),
        l => Some((1, l == c)),
    })
}

/// Whether a silence's `pattern` covers the probe `name`, by SQLite's `GLOB` rules (as
/// silences have always matched): `*` any run of characters, `?` one character, `[abc]`,
/// `[a-z]` and `[^abc]` a character of (or not of) a class, `]` first in a class a literal;
/// case-sensitive, no escapes. The same on every backend, and linear as [`glob_match`].
pub fn silence_glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    glob_with(&p, name, |i, c| match p[i] {
        '*' => None,
        '?' => Some((1, true)),
        '[' => {
            let mut k = i + 1;
            let negated = p.get(k) == Some(&'^');
            if negated {
                k += 1;
            }
            let start = k;
            let mut hit = false;
            while k < p.len() && (p[k] != ']' || k == start) {
                if k + 2 < p.len() && p[k + 1] == '-' && p[k + 2] != ']' {
                    hit |= (p[k]..=p[k + 2]).contains(&c);
                    k += 3;
                } else {
                    hit |= p[k] == c;
                    k += 1;
                }
            }
            if k >= p.len() {
                // Never closed: SQLite matches nothing with it.
                return Some((p.len() - i, false));
            }
            Some((k + 1 - i, hit != negated))
        }
        l => Some((1, l == c)),
    })
}

/// The matching loop of both globs. `item(i, c)` reads the pattern item at `i` against the
/// character `c`: `None` for a `*`, else how many pattern characters the item takes and
/// whether `c` matches it. On a mismatch only the last `*` is retried, one character further.
fn glob_with(p: &[char], name: &str, item: impl Fn(usize, char) -> Option<(usize, bool)>) -> bool {
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    // The last `*` seen, and where in `name` its match currently ends.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match (i < p.len()).then(|| item(i, n[j])) {
            Some(None) => {
                star = Some((i, j));
                i += 1;
            }
            Some(Some((len, true))) => {
                i += len;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    star = Some((si, sj + 1));
                    i = si + 1;
                    j = sj + 1;
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Why `pattern` is not a valid silence pattern (SQLite's `GLOB`: `*`, `?` and `[...]`
/// classes, `[^...]` negated, `]` first in a class is literal), if it is not: an unclosed
/// `[` would never match anything, so the silence would mute nothing.
pub fn silence_pattern_error(pattern: &str) -> Option<String> {
    if pattern.trim().is_empty() {
        return Some("\"probe\" is empty".into());
    }
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' {
            let mut k = i + 1;
            if b.get(k) == Some(&b'^') {
                k += 1;
            }
            if b.get(k) == Some(&b']') {
                k += 1;
            }
            match b[k.min(b.len())..].iter().position(|&c| c == b']') {
                Some(end) => i = k + end,
                None => {
                    return Some(format!(
                        "invalid probe pattern {pattern:?}: \"[\" at {} is never closed with \"]\" \
                         (patterns take *, ? and [abc])",
                        i + 1
                    ));
                }
            }
        }
        i += 1;
    }
    None
}

/// `alerting:` settings of the delivery path.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingOptions {
    /// Attempts on one channel before the fallback chain takes over. Default: 5.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter. Default: 2s.
    pub retry_base: Duration,
    /// Longest retry delay. Default: 5m.
    pub retry_max: Duration,
}

impl Default for AlertingOptions {
    fn default() -> Self {
        AlertingOptions {
            max_attempts: 5,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("api-*", "api-write", true),
            ("api-*", "web", false),
            ("*", "anything", true),
            ("db?", "db1", true),
            ("db?", "db12", false),
            ("exact", "exact", true),
            ("*-write", "api-write", true),
            ("*a*b", "xaxb", true),
            ("a*", "a", true),
            ("*", "", true),
            ("?", "", false),
            ("a*c*e", "abcde", true),
            ("a*c*e", "abcd", false),
            ("**x", "yyx", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} ~ {n}");
        }
        // A naive backtracking matcher takes 2^20 steps here; this one is linear.
        let hostile = "*a".repeat(20) + "b";
        assert!(!glob_match(&hostile, &"a".repeat(200)));
    }

    #[test]
    fn silence_patterns() {
        for ok in ["api-*", "db[12]", "x[^a]y", "[]]", "[^]x]", "plain"] {
            assert_eq!(silence_pattern_error(ok), None, "{ok}");
        }
        assert_eq!(
            silence_pattern_error("[").as_deref(),
            Some(
                "invalid probe pattern \"[\": \"[\" at 1 is never closed with \"]\" (patterns take *, ? and [abc])"
            )
        );
        assert!(silence_pattern_error("api-[a").is_some());
        assert!(
            silence_pattern_error("[]").is_some(),
            "] first is literal: still open"
        );
        assert!(silence_pattern_error(" ").is_some());
    }

    #[test]
    fn maintenance_windows() {
        let hour = 3_600_000;
        let fixed = Maintenance {
            name: "m".into(),
            probes: vec!["api-*".into()],
            when: MaintenanceTime::Fixed {
                start: 10 * hour,
                end: 11 * hour,
            },
        };
        assert!(fixed.active("api-x", 10 * hour + 1));
        assert!(!fixed.active("web", 10 * hour + 1), "not a matching probe");
        assert!(!fixed.active("api-x", 11 * hour), "end is exclusive");
        let schedule: cron::Schedule = "0 0 2 * * *".parse().unwrap();
        let nightly = Maintenance {
            name: "nightly".into(),
            probes: vec![],
            when: MaintenanceTime::Cron {
                expr: "0 0 2 * * *".into(),
                schedule: Box::new(schedule),
                duration: std::time::Duration::from_secs(1800),
            },
        };
        let day = 24 * hour;
        assert!(nightly.active("any", day + 2 * hour + 60_000), "02:01");
        assert!(
            !nightly.active("any", day + 2 * hour + 31 * 60_000),
            "02:31"
        );
        assert!(!nightly.active("any", day + hour), "01:00");
    }
}
