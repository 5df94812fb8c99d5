//! Prometheus metrics, in two parts.
//!
//! * **Probe series**, rendered by hand from each probe's compact state ([`ProbeSeries`]):
//!   blackbox_exporter's families with its names, labels and units (`probe_success`,
//!   `probe_duration_seconds`, `probe_http_duration_seconds{phase}`,
//!   `probe_ssl_earliest_cert_expiry`, `probe_tls_version_info`, ...), so existing dashboards
//!   and alert rules work unchanged, plus probed's own (`probed_probe_state`, the run
//!   counters, push pings, objectives). Every series of a probe carries `probe` (its name),
//!   `instance` (its target: a URL without userinfo, query or fragment, or `host:port`), and
//!   the probe's own `labels:`, so a scrape with `honor_labels: true` keeps the target in
//!   `instance` as a blackbox scrape does. Each probe's labels differ, which a registry of
//!   fixed label names cannot express; and rendering from one small struct per probe costs
//!   less than a registry child per series.
//! * **The daemon's own** (`probed_*`), in a `prometheus` registry: counters as counters,
//!   gauges as gauges. The ones computed rather than counted (self-health, objectives, probes
//!   by state, the store's and the dispatcher's figures) are set at each scrape by
//!   [`Metrics::refresh`] from a plain-data [`Gauges`] the caller gathers, since what they
//!   measure lives in modules above this one; totals kept elsewhere as atomics advance their
//!   counters by the difference.
//!
//! Each probe task holds its [`ProbeMetrics`], so recording an observation is one lock and a
//! copy, not a lookup per metric.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::ProbeConfig;
use crate::probe::Observation;

/// Every metric the daemon exports.
pub struct Metrics {
    pub registry: Registry,
    /// Every probe's series, by probe name.
    probes: RwLock<BTreeMap<String, Arc<ProbeSeries>>>,
    /// The objectives' figures of the last refresh, by probe name.
    slo: Mutex<Vec<(String, crate::slo::Figures)>>,
    /// Start lag: how late a run started against its schedule.
    pub schedule_lag: Histogram,
    /// The same lag over the last minute, for the self-check.
    pub recent_lag: LagWindow,
    pub in_flight: IntGauge,
    pub probes_by_state: IntGaugeVec,
    pub store_queue_depth: IntGauge,
    store_dropped: IntCounter,
    store_written: IntCounter,
    store_write_errors: IntCounter,
    pub reloads: IntCounterVec,
    alerts_delivered: IntCounter,
    alert_attempts_failed: IntCounter,
    alerts_undeliverable: IntCounter,
    alerts_paged_from_memory: IntCounter,
    pub notifier_failure_streak: IntGaugeVec,
    pub check_duration: HistogramVec,
    /// The self-checks of `/healthz`: 1 passing, 0 failing, by check.
    pub health_check: IntGaugeVec,
    pub healthy: IntGauge,
    pub lag_p99: Gauge,
    pub probes_overdue: IntGauge,
    pub store_buffered: IntGauge,
    pub outbox_pending: IntGauge,
    pub outbox_oldest_age: Gauge,
    /// Heartbeat pings and Watchdog alerts sent, by `via` and `result`.
    switch_sends: IntCounterVec,
    /// Wall-clock steps detected ([`crate::clock`]).
    pub clock_steps: IntCounter,
    /// The last step, signed seconds (0 before any).
    pub clock_last_step: Gauge,
}

const HTTP_PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

/// The states of `probed_probe_state`, in the order of [`ProbeSeries::state`].
pub const STATES: [&str; 6] = ["pending", "up", "down", "degraded", "paused", "unknown"];

/// Label names a probe's own `labels:` may not take: the series' own labels win, and a
/// probe label of that name is exported as `exported_<name>` (Prometheus' own rule for a
/// clash, and what the Alertmanager notifier does).
const RESERVED_LABELS: &[&str] = &[
    "probe",
    "instance",
    "job",
    "phase",
    "state",
    "result",
    "reason",
    "rule",
    "window",
    "version",
    "fingerprint_sha256",
    "subject",
    "issuer",
    "subjectalternative",
    "le",
    "quantile",
];

fn gauge_vec_int(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// Moves counter `c` up to `total`, a count kept elsewhere that only grows.
fn advance(c: &IntCounter, total: i64) {
    let total = total.max(0) as u64;
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let lag = Histogram::with_opts(
            HistogramOpts::new(
                "probed_schedule_lag_seconds",
                "How late probe runs start against their schedule",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(lag.clone())).expect("unique metric");
        let check_duration = HistogramVec::new(
            HistogramOpts::new(
                "probed_check_duration_seconds",
                "Duration of probe checks by kind and result",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind", "result"],
        )
        .expect("valid metric");
        r.register(Box::new(check_duration.clone()))
            .expect("unique metric");
        let build = gauge_vec_int(
            &r,
            "probed_build_info",
            "Version of the running probed",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            probes: RwLock::new(BTreeMap::new()),
            slo: Mutex::new(Vec::new()),
            clock_steps: counter(
                &r,
                "probed_clock_steps_total",
                "Wall-clock steps (changes of more than 1 s against the monotonic clock) detected",
            ),
            clock_last_step: gauge(
                &r,
                "probed_clock_last_step_seconds",
                "Size of the last wall-clock step, signed (0 before any)",
            ),
            switch_sends: counter_vec(
                &r,
                "probed_dead_mans_switch_sends_total",
                "Heartbeat pings (via=heartbeat) and Watchdog alerts (via=alertmanager) sent, by result",
                &["via", "result"],
            ),
            health_check: gauge_vec_int(
                &r,
                "probed_health_check",
                "The daemon's self-checks (as in /healthz): 1 passing, 0 failing",
                &["check"],
            ),
            healthy: int_gauge(&r, "probed_healthy", "1 when every self-check passes"),
            lag_p99: gauge(
                &r,
                "probed_schedule_lag_p99_seconds",
                "99th percentile of scheduler start lag over the last minute",
            ),
            outbox_oldest_age: gauge(
                &r,
                "probed_outbox_oldest_undelivered_age_seconds",
                "Age of the oldest alert message not yet delivered (0 when none)",
            ),
            probes_overdue: int_gauge(
                &r,
                "probed_probes_overdue",
                "Probes whose run is past due by more than their timeout plus 5 s",
            ),
            store_buffered: int_gauge(
                &r,
                "probed_store_buffered",
                "Results taken off the queue and not yet written (held in memory while the store cannot be written)",
            ),
            outbox_pending: int_gauge(
                &r,
                "probed_outbox_pending",
                "Alert messages waiting in the outbox",
            ),
            alerts_paged_from_memory: counter(
                &r,
                "probed_alerts_paged_from_memory_total",
                "Alert messages delivered from memory while the store could not be written",
            ),
            alerts_delivered: counter(
                &r,
                "probed_alerts_delivered_total",
                "Alert messages accepted by a notifier",
            ),
            alert_attempts_failed: counter(
                &r,
                "probed_alert_attempts_failed_total",
                "Failed delivery attempts (each retried or handed to the fallback)",
            ),
            alerts_undeliverable: counter(
                &r,
                "probed_alerts_undeliverable_total",
                "Alert messages that failed on their channel with no fallback left",
            ),
            notifier_failure_streak: gauge_vec_int(
                &r,
                "probed_notifier_failure_streak",
                "Consecutive failed delivery attempts per notifier (0 after a success)",
                &["notifier"],
            ),
            schedule_lag: lag,
            recent_lag: LagWindow::default(),
            in_flight: int_gauge(&r, "probed_checks_in_flight", "Probe checks running now"),
            probes_by_state: gauge_vec_int(
                &r,
                "probed_probes",
                "Configured probes by current state",
                &["state"],
            ),
            store_queue_depth: int_gauge(
                &r,
                "probed_store_queue_depth",
                "Results waiting for the store writer",
            ),
            store_dropped: counter(
                &r,
                "probed_store_dropped_total",
                "Results dropped: the store queue was full, or the memory buffer overflowed while the store could not be written",
            ),
            store_written: counter(
                &r,
                "probed_store_written_total",
                "Results written to the store",
            ),
            store_write_errors: counter(
                &r,
                "probed_store_write_errors_total",
                "Failed store commits (each retried)",
            ),
            reloads: counter_vec(
                &r,
                "probed_config_reloads_total",
                "Config reloads by result",
                &["result"],
            ),
            check_duration,
            registry: r,
        }
    }

    /// The series of probe `cfg`, created (or, for a probe reconfigured, relabelled with its
    /// counters kept) and handed to its task.
    pub fn probe(&self, cfg: &ProbeConfig) -> ProbeMetrics {
        let kind = cfg.spec.kind();
        let labels = series_labels(&cfg.name, cfg.spec.instance().as_deref(), &cfg.labels);
        let mut probes = self.probes.write().unwrap();
        let series = match probes.get(&cfg.name) {
            Some(s) if s.kind == kind && s.labels == labels => s.clone(),
            old => {
                let s = Arc::new(ProbeSeries::new(kind, labels));
                if let Some(old) = old {
                    for (a, b) in [
                        (&s.runs_ok, &old.runs_ok),
                        (&s.runs_failed, &old.runs_failed),
                        (&s.skipped_overlap, &old.skipped_overlap),
                        (&s.skipped_capacity, &old.skipped_capacity),
                    ] {
                        a.store(b.load(Relaxed), Relaxed);
                    }
                    s.state.store(old.state.load(Relaxed), Relaxed);
                }
                probes.insert(cfg.name.clone(), s.clone());
                s
            }
        };
        ProbeMetrics {
            kind,
            series,
            check_ok: self.check_duration.with_label_values(&[kind, "success"]),
            check_failed: self.check_duration.with_label_values(&[kind, "failure"]),
        }
    }

    /// Records an observation for a probe.
    pub fn observe(&self, m: &mut ProbeMetrics, o: &Observation) {
        let secs = o.duration.as_secs_f64();
        if o.ok {
            m.series.runs_ok.fetch_add(1, Relaxed);
            m.check_ok.observe(secs);
        } else {
            m.series.runs_failed.fetch_add(1, Relaxed);
            m.check_failed.observe(secs);
        }
        // The reason is for people, not for series: kept out of memory here.
        let mut last = m.series.last.lock().unwrap();
        match last.as_mut() {
            Some(l) => {
                l.ok = o.ok;
                l.duration = o.duration;
                l.phases.clone_from(&o.phases);
                l.status_code = o.status_code;
                l.ip = o.ip;
                l.cert_expiry = o.cert_expiry;
                l.size = o.size;
                l.redirects = o.redirects;
                l.tls.clone_from(&o.tls);
                l.http = o.http;
                l.failed_due_to_regex = o.failed_due_to_regex;
                l.dns = o.dns;
                l.push = o.push;
            }
            None => {
                *last = Some(Observation {
                    error: None,
                    ..o.clone()
                })
            }
        }
    }

    /// Removes a probe's series (it was removed from the config).
    pub fn forget(&self, name: &str) {
        self.probes.write().unwrap().remove(name);
    }

    /// The exposition text: the daemon's registry, then every probe's series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_to(&mut |chunk| {
            out.push_str(&chunk);
            true
        });
        out
    }

    /// The exposition text in pieces, each handed to `emit` as soon as it is whole: the
    /// daemon's registry, then each family of the probe series with all its samples. At
    /// 10,000 probes the whole text is about 25 MB; built in one piece it cost twice that in
    /// memory at every scrape (and the allocator kept it), while a family is at most a few
    /// MB. `emit` returns false to stop (the scraper went away).
    pub fn render_to(&self, emit: &mut dyn FnMut(String) -> bool) {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        if !emit(String::from_utf8(buf).unwrap_or_default()) {
            return;
        }
        self.render_probes(emit, crate::time::now_ms());
    }

    /// Sets the gauges that are computed rather than counted (self-health, objectives,
    /// probes by state, the store's, the dispatcher's and the dead man's switch's figures)
    /// to `g`, gathered by the caller; and the lag p99 from [`Metrics::recent_lag`].
    pub fn refresh(&self, g: &Gauges) {
        for (name, ok) in &g.checks {
            self.health_check
                .with_label_values(&[name.replace(' ', "_").as_str()])
                .set(*ok as i64);
        }
        self.healthy.set(g.checks.iter().all(|(_, ok)| *ok) as i64);
        self.lag_p99
            .set(self.recent_lag.p99().map_or(0.0, |d| d.as_secs_f64()));
        self.probes_overdue.set(g.probes_overdue);
        // Objectives: rebuilt whole, so removed probes leave no series behind.
        *self.slo.lock().unwrap() = g.slo.clone();
        if !g.probe_states.is_empty() {
            let probes = self.probes.read().unwrap();
            for (name, state) in &g.probe_states {
                if let (Some(s), Some(i)) =
                    (probes.get(name), STATES.iter().position(|x| x == state))
                {
                    s.state.store(i as u8, Relaxed);
                }
            }
        }
        self.store_buffered.set(g.store_buffered);
        self.outbox_pending.set(g.outbox_pending);
        self.outbox_oldest_age.set(g.outbox_oldest_age);
        advance(&self.alerts_paged_from_memory, g.alerts_paged_from_memory);
        for (via, result, n) in &g.switch_sends {
            advance(&self.switch_sends.with_label_values(&[via, result]), *n);
        }
        self.store_queue_depth.set(g.store_queue_depth);
        advance(&self.store_dropped, g.store_dropped);
        advance(&self.store_written, g.store_written);
        advance(&self.store_write_errors, g.store_write_errors);
        advance(&self.alerts_delivered, g.alerts_delivered);
        advance(&self.alert_attempts_failed, g.alert_attempts_failed);
        advance(&self.alerts_undeliverable, g.alerts_undeliverable);
        for (name, streak) in &g.notifier_failure_streaks {
            self.notifier_failure_streak
                .with_label_values(&[name.as_str()])
                .set(*streak);
        }
        for (state, n) in &g.probes_by_state {
            self.probes_by_state.with_label_values(&[state]).set(*n);
        }
    }

    /// Every probe's series, family by family (each family's samples together, as the
    /// exposition format requires), each family handed to `emit` whole, at `now_ms` (for
    /// ages). Each probe is visited once per family: rendering a family keeps only that
    /// family's samples, so no more than one family is ever held.
    fn render_probes(&self, emit: &mut dyn FnMut(String) -> bool, now_ms: i64) {
        let series: Vec<(String, Arc<ProbeSeries>)> = self
            .probes
            .read()
            .unwrap()
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        // Objectives, from the last refresh.
        let slo = self.slo.lock().unwrap().clone();
        let slo_labels: Vec<String> = slo
            .iter()
            .map(|(name, _)| {
                series
                    .binary_search_by(|(n, _)| n.as_str().cmp(name))
                    .ok()
                    .map(|i| series[i].1.labels.clone())
                    .unwrap_or_else(|| series_labels(name, None, &BTreeMap::new()))
            })
            .collect();
        for (i, (name, kind, help)) in FAMILIES.iter().enumerate() {
            let mut out = String::with_capacity(RENDER_CHUNK + 4096);
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let head = out.len();
            let mut any = false;
            for (_, s) in &series {
                s.render(
                    &mut |f, extra, v| {
                        if f as usize == i {
                            sample(&mut out, name, &s.labels, extra, v)
                        }
                    },
                    now_ms,
                );
                // A large family goes out in pieces: the text stays one family's samples
                // together, and no more than a piece is held.
                if out.len() >= RENDER_CHUNK {
                    any = true;
                    let piece =
                        std::mem::replace(&mut out, String::with_capacity(RENDER_CHUNK + 4096));
                    if !emit(piece) {
                        return;
                    }
                }
            }
            for ((_, f), labels) in slo.iter().zip(&slo_labels) {
                let mut put = |g: F, extra: &[(&str, &str)], v: f64| {
                    if g as usize == i {
                        sample(&mut out, name, labels, extra, v)
                    }
                };
                for b in &f.burn_rates {
                    for (window, v) in [("long", b.long), ("short", b.short)] {
                        put(
                            F::SloBurnRate,
                            &[("rule", &b.windows), ("window", window)],
                            v,
                        );
                    }
                }
                if let Some(a) = f.apdex {
                    put(F::SloApdex, &[], a);
                }
                put(F::SloAlert, &[], f.alert.is_some() as u8 as f64);
            }
            if !any && out.len() == head {
                continue;
            }
            if !out.is_empty() && !emit(out) {
                return;
            }
        }
    }
}

/// Appends each family that has samples in `fams` to `out`: its `HELP`, its `TYPE`, its
/// samples together.
fn write_families(out: &mut String, fams: &[String]) {
    for (i, (name, kind, help)) in FAMILIES.iter().enumerate() {
        if fams[i].is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        out.push_str(&fams[i]);
    }
}

/// One check's exposition as blackbox_exporter's `/probe` answers it: the families one
/// observation of a probe of `kind` gives, under the same names, help and types as the
/// probe series of `/metrics`, without labels (the scrape adds them).
pub fn render_observation(kind: &str, o: &Observation) -> String {
    let mut fams: Vec<String> = vec![String::new(); FAMILIES.len()];
    observation(
        &mut |f, extra, v| {
            let i = f as usize;
            sample(&mut fams[i], FAMILIES[i].0, "", extra, v)
        },
        kind,
        o,
        crate::time::now_ms(),
    );
    let mut out = String::new();
    write_families(&mut out, &fams);
    out
}

/// Where a probe's samples go: (family, extra labels, value).
type Put<'a> = dyn FnMut(F, &[(&str, &str)], f64) + 'a;

/// Bytes of exposition text rendered before they are handed on (see [`Metrics::render_to`]).
const RENDER_CHUNK: usize = 128 << 10;

/// The families of the probe series, in exposition order: (name, type, help).
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "probe_success",
        "gauge",
        "Displays whether or not the probe was a success",
    ),
    (
        "probe_duration_seconds",
        "gauge",
        "Returns how long the probe took to complete in seconds",
    ),
    (
        "probe_dns_lookup_time_seconds",
        "gauge",
        "Returns the time taken for probe dns lookup in seconds",
    ),
    (
        "probe_ip_protocol",
        "gauge",
        "Specifies whether probe ip protocol is IP4 or IP6",
    ),
    (
        "probe_ip_addr_hash",
        "gauge",
        "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
    ),
    (
        "probe_http_status_code",
        "gauge",
        "Response HTTP status code",
    ),
    (
        "probe_http_content_length",
        "gauge",
        "Length of http content response",
    ),
    (
        "probe_http_uncompressed_body_length",
        "gauge",
        "Length of uncompressed response body",
    ),
    ("probe_http_redirects", "gauge", "The number of redirects"),
    (
        "probe_http_ssl",
        "gauge",
        "Indicates if SSL was used for the final redirect",
    ),
    (
        "probe_http_version",
        "gauge",
        "Returns the version of HTTP of the probe response",
    ),
    (
        "probe_http_duration_seconds",
        "gauge",
        "Duration of http request by phase, summed over all redirects",
    ),
    (
        "probe_failed_due_to_regex",
        "gauge",
        "Indicates if probe failed due to regex",
    ),
    (
        "probe_ssl_earliest_cert_expiry",
        "gauge",
        "Returns last SSL chain expiry in unixtime",
    ),
    (
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "gauge",
        "Returns last SSL chain expiry in timestamp",
    ),
    (
        "probe_ssl_last_chain_info",
        "gauge",
        "Contains SSL leaf certificate information",
    ),
    (
        "probe_tls_version_info",
        "gauge",
        "Returns the TLS version used or NaN when unknown",
    ),
    (
        "probe_dns_answer_rrs",
        "gauge",
        "Returns number of entries in the answer resource record list",
    ),
    (
        "probe_dns_query_succeeded",
        "gauge",
        "Displays whether or not the query was executed successfully",
    ),
    (
        "probe_dns_serial",
        "gauge",
        "Returns the serial number of the zone",
    ),
    (
        "probed_phase_duration_seconds",
        "gauge",
        "Duration of each phase of the last check, for probe kinds other than http",
    ),
    (
        "probed_push_last_ping_timestamp_seconds",
        "gauge",
        "When a push probe's job last pinged, unix seconds",
    ),
    (
        "probed_push_last_ping_age_seconds",
        "gauge",
        "Seconds since a push probe's job last pinged",
    ),
    (
        "probed_push_last_exit_status",
        "gauge",
        "The exit status a push probe's job last reported",
    ),
    (
        "probed_probe_state",
        "gauge",
        "The probe's state: 1 for the state it is in, 0 for the others",
    ),
    (
        "probed_runs_total",
        "counter",
        "Probe runs by result (success or failure)",
    ),
    (
        "probed_runs_skipped_total",
        "counter",
        "Scheduled runs skipped because the previous run was still going or no slot was free",
    ),
    (
        "probed_slo_burn_rate",
        "gauge",
        "Error budget burn rate of a probe with an objective, by rule and window",
    ),
    (
        "probed_slo_apdex",
        "gauge",
        "Apdex score of a probe over its window",
    ),
    (
        "probed_slo_alert",
        "gauge",
        "1 while a probe is outside its objectives",
    ),
];

/// Index of each family in [`FAMILIES`].
#[derive(Clone, Copy)]
enum F {
    Success,
    Duration,
    DnsLookup,
    IpProtocol,
    IpHash,
    HttpStatus,
    HttpContentLength,
    HttpBodyLength,
    HttpRedirects,
    HttpSsl,
    HttpVersion,
    HttpPhase,
    FailedRegex,
    SslEarliest,
    SslChainExpiry,
    SslChainInfo,
    TlsVersion,
    DnsAnswer,
    DnsSucceeded,
    DnsSerial,
    Phase,
    PushLast,
    PushAge,
    PushExit,
    State,
    Runs,
    Skipped,
    SloBurnRate,
    SloApdex,
    SloAlert,
}

/// One probe's series: its labels, rendered once, and what its last observation showed.
pub struct ProbeSeries {
    kind: &'static str,
    /// `probe="…",instance="…",team="core"`: the labels every series of the probe carries.
    labels: String,
    /// The last observation (its reason left out).
    last: Mutex<Option<Observation>>,
    runs_ok: AtomicU64,
    runs_failed: AtomicU64,
    skipped_overlap: AtomicU64,
    skipped_capacity: AtomicU64,
    /// Index of its state in [`STATES`] (set at each scrape's refresh).
    state: AtomicU8,
}

impl ProbeSeries {
    fn new(kind: &'static str, labels: String) -> ProbeSeries {
        ProbeSeries {
            kind,
            labels,
            last: Mutex::new(None),
            runs_ok: AtomicU64::new(0),
            runs_failed: AtomicU64::new(0),
            skipped_overlap: AtomicU64::new(0),
            skipped_capacity: AtomicU64::new(0),
            state: AtomicU8::new(0),
        }
    }

    /// Hands each of this probe's samples to `put` (its family, extra labels, value); the
    /// caller adds the probe's labels.
    fn render(&self, put: &mut Put<'_>, now_ms: i64) {
        let state = self.state.load(Relaxed) as usize;
        for (i, s) in STATES.iter().enumerate() {
            put(F::State, &[("state", s)], (i == state) as u8 as f64);
        }
        put(
            F::Runs,
            &[("result", "success")],
            self.runs_ok.load(Relaxed) as f64,
        );
        put(
            F::Runs,
            &[("result", "failure")],
            self.runs_failed.load(Relaxed) as f64,
        );
        put(
            F::Skipped,
            &[("reason", "overlap")],
            self.skipped_overlap.load(Relaxed) as f64,
        );
        put(
            F::Skipped,
            &[("reason", "capacity")],
            self.skipped_capacity.load(Relaxed) as f64,
        );
        let last = self.last.lock().unwrap();
        if let Some(o) = last.as_ref() {
            observation(put, self.kind, o, now_ms);
        }
    }
}

/// Hands `put` the samples one observation of a probe of `kind` gives (blackbox's families
/// and probed's phases and pings), at `now_ms` (for ages).
fn observation(put: &mut Put<'_>, kind: &str, o: &Observation, now_ms: i64) {
    put(F::Success, &[], o.ok as u8 as f64);
    if let Some(p) = &o.push {
        // A push has no duration or address of its own: its pings say what it knows.
        if let Some(at) = p.last_ping_at {
            put(F::PushLast, &[], at as f64 / 1000.0);
            put(F::PushAge, &[], ((now_ms - at).max(0)) as f64 / 1000.0);
        }
        if let Some(code) = p.exit_status {
            put(F::PushExit, &[], code as f64);
        }
        return;
    }
    put(F::Duration, &[], o.duration.as_secs_f64());
    let phase = |name: &str| {
        o.phases
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.as_secs_f64())
    };
    if let Some(r) = phase("resolve") {
        put(F::DnsLookup, &[], r);
    }
    if let Some(ip) = o.ip {
        put(F::IpProtocol, &[], if ip.is_ipv4() { 4.0 } else { 6.0 });
        put(F::IpHash, &[], fnv32a(ip.to_string().as_bytes()) as f64);
    }
    if kind == "http" {
        put(F::HttpStatus, &[], o.status_code.map_or(0.0, f64::from));
        let h = o.http.unwrap_or_default();
        put(
            F::HttpContentLength,
            &[],
            if o.http.is_some() {
                h.content_length as f64
            } else {
                0.0
            },
        );
        put(F::HttpBodyLength, &[], o.size.unwrap_or(0) as f64);
        put(F::HttpRedirects, &[], o.redirects as f64);
        put(F::HttpSsl, &[], h.ssl as u8 as f64);
        put(F::HttpVersion, &[], h.version);
        for ph in HTTP_PHASES {
            put(F::HttpPhase, &[("phase", ph)], phase(ph).unwrap_or(0.0));
        }
    } else {
        for (name, d) in &o.phases {
            put(F::Phase, &[("phase", name)], d.as_secs_f64());
        }
    }
    if let Some(failed) = o.failed_due_to_regex {
        put(F::FailedRegex, &[], failed as u8 as f64);
    }
    if let Some(exp) = o.cert_expiry {
        put(F::SslEarliest, &[], exp as f64);
    }
    if let Some(t) = &o.tls {
        if let Some(exp) = t.chain_expiry {
            put(F::SslChainExpiry, &[], exp as f64);
        }
        if !t.fingerprint_sha256.is_empty() {
            put(
                F::SslChainInfo,
                &[
                    ("fingerprint_sha256", &t.fingerprint_sha256),
                    ("subject", &t.subject),
                    ("issuer", &t.issuer),
                    ("subjectalternative", &t.sans),
                ],
                1.0,
            );
        }
        put(F::TlsVersion, &[("version", t.version)], 1.0);
    }
    if kind == "dns" {
        put(F::DnsSucceeded, &[], o.dns.is_some() as u8 as f64);
        if let Some(d) = o.dns {
            put(F::DnsAnswer, &[], d.answer as f64);
            if let Some(serial) = d.serial {
                put(F::DnsSerial, &[], serial as f64);
            }
        }
    }
}

/// One sample line: `name{labels,extra="…"} value`; with no labels at all, `name value`
/// (`probe_success 1`, as blackbox's `/probe` writes it).
fn sample(buf: &mut String, name: &str, labels: &str, extra: &[(&str, &str)], v: f64) {
    buf.push_str(name);
    if !labels.is_empty() || !extra.is_empty() {
        buf.push('{');
        buf.push_str(labels);
        for (i, (k, val)) in extra.iter().enumerate() {
            if i > 0 || !labels.is_empty() {
                buf.push(',');
            }
            buf.push_str(k);
            buf.push_str("=\"");
            escape_into(buf, val);
            buf.push('"');
        }
        buf.push('}');
    }
    buf.push(' ');
    if v.is_nan() {
        buf.push_str("NaN");
    } else if v.is_infinite() {
        buf.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(buf, "{v}");
    }
    buf.push('\n');
}

/// A label value escaped for the text format: `\`, `"` and newlines.
fn escape_into(buf: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '"' => buf.push_str("\\\""),
            '\n' => buf.push_str("\\n"),
            c => buf.push(c),
        }
    }
}

/// `probe="…",instance="…"` and the probe's own labels: names made valid
/// (`[a-zA-Z_][a-zA-Z0-9_]*`, anything else `_`), a reserved name as `exported_<name>`,
/// `__` prefixes left out.
/// `instance` is the probe name when the probe has no target of its own.
fn series_labels(name: &str, instance: Option<&str>, own: &BTreeMap<String, String>) -> String {
    let mut s = String::from("probe=\"");
    escape_into(&mut s, name);
    s.push_str("\",instance=\"");
    escape_into(&mut s, instance.unwrap_or(name));
    s.push('"');
    for (k, v) in own {
        let mut key: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if key.starts_with(|c: char| c.is_ascii_digit()) {
            key.insert(0, '_');
        }
        if key.is_empty() || key.starts_with("__") {
            continue;
        }
        if RESERVED_LABELS.contains(&key.as_str()) {
            key.insert_str(0, "exported_");
        }
        s.push(',');
        s.push_str(&key);
        s.push_str("=\"");
        escape_into(&mut s, v);
        s.push('"');
    }
    s
}

/// 32-bit FNV-1a, as blackbox_exporter hashes the address for `probe_ip_addr_hash`.
fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The values of the computed gauges at one moment, as plain data: what they measure lives
/// above this module (the self-checks, the probes, the store writer, the dispatcher, the
/// watchdog), so the caller gathers it and [`Metrics::refresh`] writes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// Every self-check of `/healthz`: its name and whether it passes.
    pub checks: Vec<(String, bool)>,
    pub probes_overdue: i64,
    /// The objectives' figures of each probe that has `slo:`, by probe name.
    pub slo: Vec<(String, crate::slo::Figures)>,
    /// Probes by state name, every state (zeros too).
    pub probes_by_state: Vec<(&'static str, i64)>,
    /// Each probe's state (one of [`STATES`]), by probe name.
    pub probe_states: Vec<(String, &'static str)>,
    pub store_buffered: i64,
    pub store_queue_depth: i64,
    pub store_dropped: i64,
    pub store_written: i64,
    pub store_write_errors: i64,
    pub outbox_pending: i64,
    /// How long the oldest undelivered message has waited, in seconds (0 with none).
    pub outbox_oldest_age: f64,
    pub alerts_paged_from_memory: i64,
    pub alerts_delivered: i64,
    pub alert_attempts_failed: i64,
    pub alerts_undeliverable: i64,
    /// Failed delivery attempts in a row, by notifier.
    pub notifier_failure_streaks: Vec<(String, i64)>,
    /// Dead man's switch sends as `(via, result, count)`.
    pub switch_sends: Vec<(&'static str, &'static str, i64)>,
}

/// One probe's handle on its series, held by its task.
pub struct ProbeMetrics {
    pub kind: &'static str,
    series: Arc<ProbeSeries>,
    check_ok: Histogram,
    check_failed: Histogram,
}

impl ProbeMetrics {
    /// `n` scheduled runs skipped: the previous run was still going.
    pub fn skipped_overlap(&self, n: u64) {
        self.series.skipped_overlap.fetch_add(n, Relaxed);
    }

    /// A scheduled run skipped: no slot was free.
    pub fn skipped_capacity(&self) {
        self.series.skipped_capacity.fetch_add(1, Relaxed);
    }
}

/// Upper bounds of the [`LagWindow`] buckets, ms.
const LAG_BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
];
const LAG_SLOTS: usize = 6;
const LAG_SLOT_SECS: i64 = 10;

/// Scheduler start lag over the last minute: six 10-second slots of a small histogram,
/// each reset when its slot comes round again. Lock-free, so every run can record.
#[derive(Debug, Default)]
pub struct LagWindow {
    slots: [LagSlot; LAG_SLOTS],
}

#[derive(Debug, Default)]
struct LagSlot {
    /// Which 10-second period the counts belong to (+1, so 0 means never used).
    epoch: AtomicU64,
    counts: [AtomicU64; LAG_BOUNDS_MS.len() + 1],
}

impl LagWindow {
    pub fn observe(&self, lag: std::time::Duration) {
        self.observe_at(lag, crate::time::mono_ms());
    }

    fn observe_at(&self, lag: std::time::Duration, now_ms: i64) {
        let epoch = (now_ms / 1000 / LAG_SLOT_SECS) as u64 + 1;
        let slot = &self.slots[epoch as usize % LAG_SLOTS];
        if slot.epoch.load(Relaxed) != epoch && slot.epoch.swap(epoch, Relaxed) != epoch {
            for c in &slot.counts {
                c.store(0, Relaxed);
            }
        }
        let ms = lag.as_millis() as u64;
        let i = LAG_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LAG_BOUNDS_MS.len());
        slot.counts[i].fetch_add(1, Relaxed);
    }

    /// The 99th percentile over the last minute, as the upper bound of its bucket (`None`
    /// with no runs; past the last bound, that bound).
    pub fn p99(&self) -> Option<std::time::Duration> {
        self.p99_at(crate::time::mono_ms())
    }

    fn p99_at(&self, now_ms: i64) -> Option<std::time::Duration> {
        let epoch = (now_ms / 1000 / LAG_SLOT_SECS) as u64 + 1;
        let mut counts = [0u64; LAG_BOUNDS_MS.len() + 1];
        for slot in &self.slots {
            let e = slot.epoch.load(Relaxed);
            if e != 0 && e + (LAG_SLOTS as u64) > epoch && e <= epoch {
                for (sum, c) in counts.iter_mut().zip(&slot.counts) {
                    *sum += c.load(Relaxed);
                }
            }
        }
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = total - total / 100;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                let ms = LAG_BOUNDS_MS[i.min(LAG_BOUNDS_MS.len() - 1)];
                return Some(std::time::Duration::from_millis(ms));
            }
        }
        None
    }
}

#[cfg(test)]
mod lag_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn p99_of_the_last_minute_only() {
        let w = LagWindow::default();
        assert_eq!(w.p99_at(0), None);
        for _ in 0..990 {
            w.observe_at(Duration::from_micros(300), 1_000);
        }
        for _ in 0..10 {
            w.observe_at(Duration::from_millis(700), 1_000);
        }
        // 99% at or under 1 ms.
        assert_eq!(w.p99_at(2_000), Some(Duration::from_millis(1)));
        for _ in 0..20 {
            w.observe_at(Duration::from_millis(700), 15_000);
        }
        assert_eq!(w.p99_at(16_000), Some(Duration::from_millis(1000)));
        // A minute later the old slots no longer count; new runs reuse them.
        assert_eq!(w.p99_at(75_000), None);
        w.observe_at(Duration::from_millis(40), 75_000);
        assert_eq!(w.p99_at(75_500), Some(Duration::from_millis(50)));
        // Beyond the last bound: that bound.
        w.observe_at(Duration::from_secs(90), 76_000);
        w.observe_at(Duration::from_secs(90), 76_000);
        assert_eq!(w.p99_at(76_500), Some(Duration::from_millis(30_000)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gathered values land in their series; objectives are rebuilt whole.
    #[test]
    fn refresh_writes_the_gathered_gauges() {
        let m = Metrics::new();
        let figures = crate::slo::Figures {
            burn_rates: vec![crate::slo::BurnFigure {
                windows: "1h/5m".into(),
                factor: 14.4,
                long: 2.5,
                short: 0.5,
                firing: false,
            }],
            apdex: Some(0.75),
            ..Default::default()
        };
        let mut g = Gauges {
            checks: vec![("runtime".into(), true), ("store queue".into(), false)],
            probes_overdue: 2,
            slo: vec![("api".into(), figures)],
            probes_by_state: vec![("up", 3), ("down", 1)],
            store_queue_depth: 7,
            outbox_oldest_age: 1.5,
            notifier_failure_streaks: vec![("hook".into(), 4)],
            switch_sends: vec![("heartbeat", "ok", 9)],
            ..Default::default()
        };
        m.refresh(&g);
        let text = m.render();
        for line in [
            "probed_healthy 0",
            "probed_health_check{check=\"runtime\"} 1",
            "probed_health_check{check=\"store_queue\"} 0",
            "probed_probes_overdue 2",
            "probed_slo_burn_rate{probe=\"api\",instance=\"api\",rule=\"1h/5m\",window=\"long\"} 2.5",
            "probed_slo_apdex{probe=\"api\",instance=\"api\"} 0.75",
            "probed_slo_alert{probe=\"api\",instance=\"api\"} 0",
            "probed_probes{state=\"up\"} 3",
            "probed_store_queue_depth 7",
            "probed_outbox_oldest_undelivered_age_seconds 1.5",
            "probed_notifier_failure_streak{notifier=\"hook\"} 4",
            "probed_dead_mans_switch_sends_total{result=\"ok\",via=\"heartbeat\"} 9",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        g.slo.clear();
        m.refresh(&g);
        assert!(!m.render().contains("probed_slo_apdex{"));
        // Totals kept elsewhere are counters that follow them.
        g.store_written = 5;
        m.refresh(&g);
        g.store_written = 12;
        m.refresh(&g);
        let text = m.render();
        assert!(
            text.contains("# TYPE probed_store_written_total counter"),
            "{text}"
        );
        assert!(text.contains("probed_store_written_total 12"), "{text}");
    }

    /// A probe's series carry its target as `instance` (no userinfo, no query) and its own
    /// labels, blackbox's families for what it saw, and its state one-hot; a push probe
    /// exports its pings, not zeros.
    #[test]
    fn probe_series_carry_target_labels_and_blackbox_families() {
        let cfg = crate::config::load_str(
            "probes:\n  - name: api\n    kind: http\n    \
             request: { url: \"https://u:pw-5@api.example.com:8443/health?token=t-6\" }\n    \
             labels: { team: core, instance: clash, my-tier: \"1\" }\n  \
             - { name: job, kind: push, token: tok-123456789012, period: 1h }\n",
            std::path::Path::new("/tmp/p.yaml"),
            &|_| None,
        )
        .unwrap();
        let m = Metrics::new();
        let mut api = m.probe(&cfg.probes[0]);
        let mut job = m.probe(&cfg.probes[1]);
        let obs = Observation {
            ok: true,
            duration: std::time::Duration::from_millis(250),
            phases: vec![("resolve", std::time::Duration::from_micros(15))],
            status_code: Some(200),
            ip: Some("127.0.0.1".parse().unwrap()),
            cert_expiry: Some(1_900_000_000),
            size: Some(42),
            tls: Some(Box::new(crate::probe::TlsSeen {
                version: "TLS 1.3",
                chain_expiry: Some(1_900_000_000),
                fingerprint_sha256: "ab12".into(),
                subject: "CN=api.example.com".into(),
                issuer: "CN=Test \"CA\"".into(),
                sans: "api.example.com".into(),
            })),
            http: Some(crate::probe::HttpSeen {
                version: 2.0,
                content_length: 42,
                ssl: true,
            }),
            failed_due_to_regex: Some(false),
            ..Default::default()
        };
        m.observe(&mut api, &obs);
        let ping = Observation {
            ok: true,
            push: Some(crate::probe::PushSeen {
                last_ping_at: Some(1_000_000),
                exit_status: Some(0),
            }),
            ..Default::default()
        };
        m.observe(&mut job, &ping);
        m.refresh(&Gauges {
            probe_states: vec![("api".into(), "degraded")],
            ..Default::default()
        });
        let mut text = String::new();
        m.render_probes(
            &mut |chunk| {
                text.push_str(&chunk);
                true
            },
            1_030_000,
        );
        let l = "probe=\"api\",instance=\"https://api.example.com:8443/health\",exported_instance=\"clash\",my_tier=\"1\",team=\"core\"";
        for line in [
            format!("probe_success{{{l}}} 1"),
            format!("probe_duration_seconds{{{l}}} 0.25"),
            format!("probe_dns_lookup_time_seconds{{{l}}} 0.000015"),
            format!("probe_http_version{{{l}}} 2"),
            format!("probe_http_ssl{{{l}}} 1"),
            format!("probe_http_content_length{{{l}}} 42"),
            format!("probe_failed_due_to_regex{{{l}}} 0"),
            format!("probe_tls_version_info{{{l},version=\"TLS 1.3\"}} 1"),
            format!(
                "probe_ssl_last_chain_info{{{l},fingerprint_sha256=\"ab12\",subject=\"CN=api.example.com\",issuer=\"CN=Test \\\"CA\\\"\",subjectalternative=\"api.example.com\"}} 1"
            ),
            format!("probe_ip_addr_hash{{{l}}} {}", fnv32a(b"127.0.0.1")),
            format!("probed_probe_state{{{l},state=\"degraded\"}} 1"),
            format!("probed_probe_state{{{l},state=\"up\"}} 0"),
            format!("probed_runs_total{{{l},result=\"success\"}} 1"),
            "probed_push_last_ping_age_seconds{probe=\"job\",instance=\"job\"} 30".to_string(),
            "probed_push_last_exit_status{probe=\"job\",instance=\"job\"} 0".to_string(),
        ] {
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("pw-5") && !text.contains("t-6"), "{text}");
        assert!(
            !text.contains(",instance=\"clash\""),
            "a probe label may not replace instance: {text}"
        );
        assert!(
            !text.contains("probe_duration_seconds{probe=\"job\""),
            "a push has no duration: {text}"
        );
        // Each family once, its samples together.
        for f in ["probe_success", "probed_probe_state"] {
            assert_eq!(text.matches(&format!("# TYPE {f} ")).count(), 1, "{text}");
        }
        assert!(text.contains("# TYPE probed_runs_total counter"));
    }

    /// `/probe`'s exposition: the same families as a probe's series, with no labels at all
    /// (`probe_success 1`, no braces), extra labels alone in braces.
    #[test]
    fn one_observation_renders_without_labels() {
        let obs = Observation {
            ok: true,
            duration: std::time::Duration::from_millis(250),
            phases: vec![("connect", std::time::Duration::from_millis(2))],
            status_code: Some(204),
            ..Default::default()
        };
        let text = render_observation("http", &obs);
        for line in [
            "# TYPE probe_success gauge",
            "probe_success 1",
            "probe_duration_seconds 0.25",
            "probe_http_status_code 204",
            "probe_http_duration_seconds{phase=\"connect\"} 0.002",
            "probe_http_duration_seconds{phase=\"resolve\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(!text.contains("probed_probe_state") && !text.contains("probed_runs_total"));
        let tcp = render_observation("tcp", &obs);
        assert!(tcp.contains("probed_phase_duration_seconds{phase=\"connect\"} 0.002"));
        assert!(!tcp.contains("probe_http_status_code"), "{tcp}");
    }
}
