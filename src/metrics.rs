//! Prometheus metrics. Probe metrics carry the blackbox_exporter names (`probe_success`,
//! `probe_duration_seconds`, `probe_http_status_code`, `probe_http_duration_seconds{phase}`,
//! `probe_ssl_earliest_cert_expiry`, ...) with a `probe` label, so existing dashboards and
//! alert rules work unchanged. `probed_*` metrics describe the daemon itself.
//!
//! Each probe task holds its own label-resolved handles ([`ProbeMetrics`]), so recording an
//! observation is a handful of atomic stores, not a hash lookup per metric.
//!
//! The gauges that are computed rather than counted (self-health, objectives, probes by
//! state, the store's and the dispatcher's figures) are set at each scrape by
//! [`Metrics::refresh`] from a plain-data [`Gauges`] the caller gathers, since what they
//! measure lives in modules above this one.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::probe::Observation;

/// Every metric the daemon exports.
pub struct Metrics {
    pub registry: Registry,
    probe_success: GaugeVec,
    probe_duration: GaugeVec,
    probe_http_status: GaugeVec,
    probe_http_phase: GaugeVec,
    probe_http_redirects: GaugeVec,
    probe_http_body_len: GaugeVec,
    probe_ssl_expiry: GaugeVec,
    probe_ip_protocol: GaugeVec,
    runs: IntCounterVec,
    skipped: IntCounterVec,
    /// Start lag: how late a run started against its schedule.
    pub schedule_lag: Histogram,
    /// The same lag over the last minute, for the self-check.
    pub recent_lag: LagWindow,
    pub in_flight: IntGauge,
    pub probes_by_state: IntGaugeVec,
    pub store_queue_depth: IntGauge,
    pub store_dropped: IntGauge,
    pub store_written: IntGauge,
    pub store_write_errors: IntGauge,
    pub reloads: IntCounterVec,
    /// Phase timings of the kinds blackbox_exporter has no names for (tcp, tls, dns,
    /// websocket, db_write, redis, backup).
    probe_phase: GaugeVec,
    /// Phase series created per probe, so `forget` removes them all.
    phase_series: std::sync::Mutex<std::collections::HashMap<String, Vec<&'static str>>>,
    pub alerts_delivered: IntGauge,
    pub alert_attempts_failed: IntGauge,
    pub alerts_undeliverable: IntGauge,
    pub notifier_failure_streak: IntGaugeVec,
    pub check_duration: HistogramVec,
    /// The self-checks of `/healthz`: 1 passing, 0 failing, by check.
    pub health_check: IntGaugeVec,
    /// Objectives: burn rate by probe, rule (`1h/5m`) and window (`long`, `short`).
    pub slo_burn_rate: GaugeVec,
    /// Objectives: Apdex score by probe.
    pub slo_apdex: GaugeVec,
    /// Objectives: 1 while the probe is outside them (degraded), by probe.
    pub slo_alert: GaugeVec,
    pub healthy: IntGauge,
    pub lag_p99: Gauge,
    pub probes_overdue: IntGauge,
    pub store_buffered: IntGauge,
    pub outbox_pending: IntGauge,
    pub outbox_oldest_age: Gauge,
    pub alerts_paged_from_memory: IntGauge,
    /// Heartbeat pings and Watchdog alerts sent, by `via` and `result`.
    pub switch_sends: IntGaugeVec,
    /// Wall-clock steps detected ([`crate::clock`]).
    pub clock_steps: IntCounter,
    /// The last step, signed seconds (0 before any).
    pub clock_last_step: Gauge,
}

const HTTP_PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn clock_metrics(r: &Registry) -> (IntCounter, Gauge) {
    let steps = IntCounter::new(
        "probed_clock_steps_total",
        "Wall-clock steps (changes of more than 1 s against the monotonic clock) detected",
    )
    .expect("valid metric");
    r.register(Box::new(steps.clone())).expect("unique metric");
    let last = Gauge::new(
        "probed_clock_last_step_seconds",
        "Size of the last wall-clock step, signed (0 before any)",
    )
    .expect("valid metric");
    r.register(Box::new(last.clone())).expect("unique metric");
    (steps, last)
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let p = &["probe"];
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
        let build = IntGaugeVec::new(
            Opts::new("probed_build_info", "Version of the running probed"),
            &["version"],
        )
        .expect("valid metric");
        r.register(Box::new(build.clone())).expect("unique metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let by_state = IntGaugeVec::new(
            Opts::new("probed_probes", "Configured probes by current state"),
            &["state"],
        )
        .expect("valid metric");
        r.register(Box::new(by_state.clone()))
            .expect("unique metric");
        let streak = IntGaugeVec::new(
            Opts::new(
                "probed_notifier_failure_streak",
                "Consecutive failed delivery attempts per notifier (0 after a success)",
            ),
            &["notifier"],
        )
        .expect("valid metric");
        r.register(Box::new(streak.clone())).expect("unique metric");
        let health_check = IntGaugeVec::new(
            Opts::new(
                "probed_health_check",
                "The daemon's self-checks (as in /healthz): 1 passing, 0 failing",
            ),
            &["check"],
        )
        .expect("valid metric");
        r.register(Box::new(health_check.clone()))
            .expect("unique metric");
        let lag_p99 = Gauge::new(
            "probed_schedule_lag_p99_seconds",
            "99th percentile of scheduler start lag over the last minute",
        )
        .expect("valid metric");
        r.register(Box::new(lag_p99.clone()))
            .expect("unique metric");
        let outbox_oldest_age = Gauge::new(
            "probed_outbox_oldest_undelivered_age_seconds",
            "Age of the oldest alert message not yet delivered (0 when none)",
        )
        .expect("valid metric");
        r.register(Box::new(outbox_oldest_age.clone()))
            .expect("unique metric");
        let switch_sends = IntGaugeVec::new(
            Opts::new(
                "probed_dead_mans_switch_sends_total",
                "Heartbeat pings (via=heartbeat) and Watchdog alerts (via=alertmanager) sent, by result",
            ),
            &["via", "result"],
        )
        .expect("valid metric");
        r.register(Box::new(switch_sends.clone()))
            .expect("unique metric");
        let (clock_steps, clock_last_step) = clock_metrics(&r);
        Metrics {
            slo_burn_rate: gauge_vec(
                &r,
                "probed_slo_burn_rate",
                "Error budget burn rate of a probe with an objective, by rule and window",
                &["probe", "rule", "window"],
            ),
            slo_apdex: gauge_vec(
                &r,
                "probed_slo_apdex",
                "Apdex score of a probe over its window",
                &["probe"],
            ),
            slo_alert: gauge_vec(
                &r,
                "probed_slo_alert",
                "1 while a probe is outside its objectives",
                &["probe"],
            ),
            clock_steps,
            clock_last_step,
            switch_sends,
            health_check,
            healthy: int_gauge(&r, "probed_healthy", "1 when every self-check passes"),
            lag_p99,
            outbox_oldest_age,
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
            alerts_paged_from_memory: int_gauge(
                &r,
                "probed_alerts_paged_from_memory_total",
                "Alert messages delivered from memory while the store could not be written",
            ),
            probe_phase: gauge_vec(
                &r,
                "probed_phase_duration_seconds",
                "Duration of each phase of the last check, for probe kinds other than http",
                &["probe", "phase"],
            ),
            phase_series: Default::default(),
            alerts_delivered: int_gauge(
                &r,
                "probed_alerts_delivered_total",
                "Alert messages accepted by a notifier",
            ),
            alert_attempts_failed: int_gauge(
                &r,
                "probed_alert_attempts_failed_total",
                "Failed delivery attempts (each retried or handed to the fallback)",
            ),
            alerts_undeliverable: int_gauge(
                &r,
                "probed_alerts_undeliverable_total",
                "Alert messages that failed on their channel with no fallback left",
            ),
            notifier_failure_streak: streak,
            probe_success: gauge_vec(&r, "probe_success", "Whether the probe succeeded", p),
            probe_duration: gauge_vec(
                &r,
                "probe_duration_seconds",
                "How long the probe took to complete in seconds",
                p,
            ),
            probe_http_status: gauge_vec(
                &r,
                "probe_http_status_code",
                "Response HTTP status code",
                p,
            ),
            probe_http_phase: gauge_vec(
                &r,
                "probe_http_duration_seconds",
                "Duration of http request by phase, summed over all redirects",
                &["probe", "phase"],
            ),
            probe_http_redirects: gauge_vec(
                &r,
                "probe_http_redirects",
                "The number of redirects",
                p,
            ),
            probe_http_body_len: gauge_vec(
                &r,
                "probe_http_uncompressed_body_length",
                "Length of uncompressed response body",
                p,
            ),
            probe_ssl_expiry: gauge_vec(
                &r,
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                p,
            ),
            probe_ip_protocol: gauge_vec(
                &r,
                "probe_ip_protocol",
                "Specifies whether probe ip protocol is IP4 or IP6",
                p,
            ),
            runs: counter_vec(
                &r,
                "probed_runs_total",
                "Probe runs by result (success or failure)",
                &["probe", "result"],
            ),
            skipped: counter_vec(
                &r,
                "probed_runs_skipped_total",
                "Scheduled runs skipped because the previous run was still going or no slot was free",
                &["probe", "reason"],
            ),
            schedule_lag: lag,
            recent_lag: LagWindow::default(),
            in_flight: int_gauge(&r, "probed_checks_in_flight", "Probe checks running now"),
            probes_by_state: by_state,
            store_queue_depth: int_gauge(
                &r,
                "probed_store_queue_depth",
                "Results waiting for the store writer",
            ),
            store_dropped: int_gauge(
                &r,
                "probed_store_dropped_total",
                "Results dropped: the store queue was full, or the memory buffer overflowed while the store could not be written",
            ),
            store_written: int_gauge(
                &r,
                "probed_store_written_total",
                "Results written to the store",
            ),
            store_write_errors: int_gauge(
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

    /// Resolves the label values of one probe once.
    pub fn probe(&self, name: &str, kind: &'static str) -> ProbeMetrics {
        let l = &[name];
        ProbeMetrics {
            name: name.to_owned(),
            kind,
            success: self.probe_success.with_label_values(l),
            duration: self.probe_duration.with_label_values(l),
            http: (kind == "http").then(|| HttpMetrics {
                status: self.probe_http_status.with_label_values(l),
                phases: HTTP_PHASES.map(|ph| self.probe_http_phase.with_label_values(&[name, ph])),
                redirects: self.probe_http_redirects.with_label_values(l),
                body_len: self.probe_http_body_len.with_label_values(l),
            }),
            phases: Vec::new(),
            ssl_expiry: None,
            ip_protocol: self.probe_ip_protocol.with_label_values(l),
            runs_ok: self.runs.with_label_values(&[name, "success"]),
            runs_failed: self.runs.with_label_values(&[name, "failure"]),
            skipped_overlap: self.skipped.with_label_values(&[name, "overlap"]),
            skipped_capacity: self.skipped.with_label_values(&[name, "capacity"]),
            check_ok: self.check_duration.with_label_values(&[kind, "success"]),
            check_failed: self.check_duration.with_label_values(&[kind, "failure"]),
        }
    }

    /// Records an observation for a probe.
    pub fn observe(&self, m: &mut ProbeMetrics, o: &Observation) {
        m.success.set(if o.ok { 1.0 } else { 0.0 });
        let secs = o.duration.as_secs_f64();
        m.duration.set(secs);
        if o.ok {
            m.runs_ok.inc();
            m.check_ok.observe(secs);
        } else {
            m.runs_failed.inc();
            m.check_failed.observe(secs);
        }
        if let Some(h) = &m.http {
            h.status.set(o.status_code.map(f64::from).unwrap_or(0.0));
            for (i, ph) in HTTP_PHASES.iter().enumerate() {
                let v = o
                    .phases
                    .iter()
                    .find(|(n, _)| n == ph)
                    .map(|(_, d)| d.as_secs_f64())
                    .unwrap_or(0.0);
                h.phases[i].set(v);
            }
            h.redirects.set(o.redirects as f64);
            h.body_len.set(o.size.unwrap_or(0) as f64);
        }
        if m.http.is_none() {
            for (phase, d) in &o.phases {
                let g = match m.phases.iter().find(|(n, _)| n == phase) {
                    Some((_, g)) => g.clone(),
                    None => {
                        let g = self
                            .probe_phase
                            .with_label_values(&[m.name.as_str(), phase]);
                        m.phases.push((phase, g.clone()));
                        self.phase_series
                            .lock()
                            .unwrap()
                            .entry(m.name.clone())
                            .or_default()
                            .push(phase);
                        g
                    }
                };
                g.set(d.as_secs_f64());
            }
        }
        if let Some(ip) = o.ip {
            m.ip_protocol.set(if ip.is_ipv4() { 4.0 } else { 6.0 });
        }
        if let Some(exp) = o.cert_expiry {
            let g = m
                .ssl_expiry
                .get_or_insert_with(|| self.probe_ssl_expiry.with_label_values(&[m.name.as_str()]));
            g.set(exp as f64);
        }
    }

    /// Removes a probe's series (it was removed from the config).
    pub fn forget(&self, name: &str) {
        let l = &[name];
        let _ = self.probe_success.remove_label_values(l);
        let _ = self.probe_duration.remove_label_values(l);
        let _ = self.probe_http_status.remove_label_values(l);
        let _ = self.probe_http_redirects.remove_label_values(l);
        let _ = self.probe_http_body_len.remove_label_values(l);
        let _ = self.probe_ssl_expiry.remove_label_values(l);
        let _ = self.probe_ip_protocol.remove_label_values(l);
        for ph in HTTP_PHASES {
            let _ = self.probe_http_phase.remove_label_values(&[name, ph]);
        }
        for r in ["success", "failure"] {
            let _ = self.runs.remove_label_values(&[name, r]);
        }
        for r in ["overlap", "capacity"] {
            let _ = self.skipped.remove_label_values(&[name, r]);
        }
        if let Some(phases) = self.phase_series.lock().unwrap().remove(name) {
            for ph in phases {
                let _ = self.probe_phase.remove_label_values(&[name, ph]);
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
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
        self.slo_burn_rate.reset();
        self.slo_apdex.reset();
        self.slo_alert.reset();
        for (name, f) in &g.slo {
            let name = name.as_str();
            for b in &f.burn_rates {
                for (window, v) in [("long", b.long), ("short", b.short)] {
                    self.slo_burn_rate
                        .with_label_values(&[name, b.windows.as_str(), window])
                        .set(v);
                }
            }
            if let Some(a) = f.apdex {
                self.slo_apdex.with_label_values(&[name]).set(a);
            }
            self.slo_alert
                .with_label_values(&[name])
                .set(f.alert.is_some() as i64 as f64);
        }
        self.store_buffered.set(g.store_buffered);
        self.outbox_pending.set(g.outbox_pending);
        self.outbox_oldest_age.set(g.outbox_oldest_age);
        self.alerts_paged_from_memory
            .set(g.alerts_paged_from_memory);
        for (via, result, n) in &g.switch_sends {
            self.switch_sends.with_label_values(&[via, result]).set(*n);
        }
        self.store_queue_depth.set(g.store_queue_depth);
        self.store_dropped.set(g.store_dropped);
        self.store_written.set(g.store_written);
        self.store_write_errors.set(g.store_write_errors);
        self.alerts_delivered.set(g.alerts_delivered);
        self.alert_attempts_failed.set(g.alert_attempts_failed);
        self.alerts_undeliverable.set(g.alerts_undeliverable);
        for (name, streak) in &g.notifier_failure_streaks {
            self.notifier_failure_streak
                .with_label_values(&[name.as_str()])
                .set(*streak);
        }
        for (state, n) in &g.probes_by_state {
            self.probes_by_state.with_label_values(&[state]).set(*n);
        }
    }
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

/// One probe's resolved metric handles.
pub struct ProbeMetrics {
    name: String,
    pub kind: &'static str,
    success: Gauge,
    duration: Gauge,
    http: Option<HttpMetrics>,
    /// Phase gauges of non-http kinds, created on first sight.
    phases: Vec<(&'static str, Gauge)>,
    ssl_expiry: Option<Gauge>,
    ip_protocol: Gauge,
    runs_ok: IntCounter,
    runs_failed: IntCounter,
    pub skipped_overlap: IntCounter,
    pub skipped_capacity: IntCounter,
    check_ok: Histogram,
    check_failed: Histogram,
}

struct HttpMetrics {
    status: Gauge,
    phases: [Gauge; 5],
    redirects: Gauge,
    body_len: Gauge,
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
            "probed_slo_burn_rate{probe=\"api\",rule=\"1h/5m\",window=\"long\"} 2.5",
            "probed_slo_apdex{probe=\"api\"} 0.75",
            "probed_slo_alert{probe=\"api\"} 0",
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
    }
}
