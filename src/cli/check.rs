//! `probectl check`: probectl as a Nagios / Icinga plugin, per the Monitoring Plugins
//! development guidelines. One line on stdout, `PROBED <STATE> - <summary> | <perfdata>`,
//! then (for the all-probes check) one line per probe that is not OK; the exit status is
//! the state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
//!
//! Pure functions of a [`StatusReport`]: the command in `mod.rs` fetches it and prints.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::evaluate::State;
use crate::report::{ProbeStatus, StatusReport};

/// The service name at the head of every first line.
const SERVICE: &str = "PROBED";

/// How many non-OK probes the all-probes check lists under its first line.
const MAX_DETAILS: usize = 50;

/// A plugin state, with its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Nagios {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Nagios {
    pub fn code(self) -> u8 {
        match self {
            Nagios::Ok => 0,
            Nagios::Warning => 1,
            Nagios::Critical => 2,
            Nagios::Unknown => 3,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Nagios::Ok => "OK",
            Nagios::Warning => "WARNING",
            Nagios::Critical => "CRITICAL",
            Nagios::Unknown => "UNKNOWN",
        }
    }

    /// Which of two states wins, as `probectl status` ranks them: CRITICAL, then UNKNOWN,
    /// then WARNING, then OK.
    fn worst(self, other: Nagios) -> Nagios {
        let rank = |s: Nagios| match s {
            Nagios::Ok => 0,
            Nagios::Warning => 1,
            Nagios::Unknown => 2,
            Nagios::Critical => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }

    /// A probe's state as a plugin state. A paused probe is OK (not running on purpose),
    /// as it is for `probectl status`.
    pub fn of(s: State) -> Nagios {
        match s {
            State::Up | State::Paused => Nagios::Ok,
            State::Degraded => Nagios::Warning,
            State::Down => Nagios::Critical,
            State::Pending | State::Unknown => Nagios::Unknown,
        }
    }
}

/// `--warning` / `--critical`: last latency at or above which an up probe is WARNING /
/// CRITICAL.
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    pub warning: Option<Duration>,
    pub critical: Option<Duration>,
}

impl Thresholds {
    fn judge(&self, latency_ms: f64) -> Nagios {
        let over = |t: Option<Duration>| t.is_some_and(|t| latency_ms >= t.as_secs_f64() * 1e3);
        if over(self.critical) {
            Nagios::Critical
        } else if over(self.warning) {
            Nagios::Warning
        } else {
            Nagios::Ok
        }
    }
}

/// One performance datum: `label=value[UOM];[warn];[crit];[min];[max]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    /// `s`, `%`, or empty (a count).
    pub uom: &'static str,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Perf {
    fn new(label: impl Into<String>, value: f64, uom: &'static str) -> Perf {
        Perf {
            label: label.into(),
            value,
            uom,
            warn: None,
            crit: None,
            min: None,
            max: None,
        }
    }
}

/// A number as perfdata writes it: no exponent, at most 6 decimals, no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

impl fmt::Display for Perf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Labels with spaces, `=` or quotes are single-quoted (quotes doubled).
        let label = if self.label.contains([' ', '=', '\'']) {
            format!("'{}'", self.label.replace('\'', "''"))
        } else {
            self.label.clone()
        };
        let opt = |v: Option<f64>| v.map(num).unwrap_or_default();
        let s = format!(
            "{label}={}{};{};{};{};{}",
            num(self.value),
            self.uom,
            opt(self.warn),
            opt(self.crit),
            opt(self.min),
            opt(self.max)
        );
        // Trailing unfilled fields may be dropped.
        f.write_str(s.trim_end_matches(';'))
    }
}

/// What the plugin prints, and its exit status.
#[derive(Debug, Clone, Serialize)]
pub struct Plugin {
    pub service: &'static str,
    pub state: Nagios,
    pub exit: u8,
    pub summary: String,
    pub perfdata: Vec<Perf>,
    /// Lines after the first (the all-probes check: each probe that is not OK).
    pub details: Vec<String>,
}

impl Plugin {
    fn new(state: Nagios, summary: String, perfdata: Vec<Perf>, details: Vec<String>) -> Plugin {
        Plugin {
            service: SERVICE,
            state,
            exit: state.code(),
            // `|` starts the perfdata: never in the text.
            summary: summary.replace('|', "/"),
            perfdata,
            details: details.into_iter().map(|d| d.replace('|', "/")).collect(),
        }
    }

    /// The plugin's stdout.
    pub fn render(&self) -> String {
        let mut out = format!("{} {} - {}", self.service, self.state.word(), self.summary);
        if !self.perfdata.is_empty() {
            let perf: Vec<String> = self.perfdata.iter().map(Perf::to_string).collect();
            out.push_str(" | ");
            out.push_str(&perf.join(" "));
        }
        out.push('\n');
        for d in &self.details {
            out.push_str(d);
            out.push('\n');
        }
        out
    }
}

/// The daemon could not be asked (or answered nonsense): UNKNOWN, with the reason.
pub fn unreachable(error: &str) -> Plugin {
    Plugin::new(Nagios::Unknown, super::one_line(error, 200), vec![], vec![])
}

fn latency_text(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// Why a probe is in its state, in a few words.
fn reason(p: &ProbeStatus) -> String {
    let err = p.last_error.as_deref().map(|e| super::one_line(e, 120));
    match p.state {
        State::Up | State::Paused => String::new(),
        State::Down => err.unwrap_or_else(|| "failing".into()),
        State::Degraded => p
            .slo
            .as_ref()
            .and_then(|s| s.alert.as_deref())
            .map(|e| super::one_line(e, 120))
            .or(err)
            .unwrap_or_else(|| "outside an objective".into()),
        State::Pending => "no verdict yet".into(),
        State::Unknown => match err {
            Some(e) => format!("no result for two intervals (stale); last error: {e}"),
            None => "no result for two intervals (stale)".into(),
        },
    }
}

/// The state of one probe with the thresholds applied, and its sentence.
fn judge(p: &ProbeStatus, t: &Thresholds) -> (Nagios, String) {
    let mut state = Nagios::of(p.state);
    let mut text = format!("{} {}", p.name, p.state);
    let why = reason(p);
    if !why.is_empty() {
        text.push_str(": ");
        text.push_str(&why);
    }
    if let Some(ms) = p.last_latency_ms.filter(|_| p.state != State::Paused) {
        text.push_str(&format!(", {}", latency_text(ms)));
        // Latency thresholds judge a probe that answers; a down or stale one is
        // already worse or unknowable.
        if matches!(p.state, State::Up | State::Degraded) {
            let by_latency = t.judge(ms);
            if by_latency != Nagios::Ok {
                let limit = match by_latency {
                    Nagios::Critical => t.critical,
                    _ => t.warning,
                };
                if let Some(l) = limit {
                    text.push_str(&format!(
                        " (>= {} {})",
                        crate::units::format_duration(l),
                        by_latency.word().to_lowercase()
                    ));
                }
            }
            state = state.worst(by_latency);
        }
    }
    (state, text)
}

/// `probectl check <probe>`.
pub fn probe(r: &StatusReport, name: &str, t: &Thresholds) -> Plugin {
    let Some(p) = r.probes.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = r.probes.iter().map(|p| p.name.as_str()).collect();
        let hint = crate::config::closest(name, &names)
            .map(|n| format!("; did you mean {n:?}?"))
            .unwrap_or_default();
        return Plugin::new(
            Nagios::Unknown,
            format!("the daemon has no probe named {name:?}{hint}"),
            vec![],
            vec![],
        );
    };
    let (state, text) = judge(p, t);
    let mut perf = Vec::new();
    if let Some(ms) = p.last_latency_ms {
        perf.push(Perf {
            warn: t.warning.map(|d| d.as_secs_f64()),
            crit: t.critical.map(|d| d.as_secs_f64()),
            min: Some(0.0),
            ..Perf::new("latency", ms / 1e3, "s")
        });
    }
    if let Some(u) = p.uptime_24h {
        perf.push(Perf {
            min: Some(0.0),
            max: Some(100.0),
            ..Perf::new("uptime", u, "%")
        });
    }
    Plugin::new(state, text, perf, vec![])
}

/// `probectl check` with no probe: every probe and the daemon's own health. The state is
/// that of `probectl status` (CRITICAL if any probe is down, else UNKNOWN if any is
/// pending or stale, else WARNING if any is degraded or the daemon is unhealthy), with the
/// latency thresholds applied to every probe.
pub fn all(r: &StatusReport, t: &Thresholds) -> Plugin {
    let mut state = if r.daemon.healthy {
        Nagios::Ok
    } else {
        Nagios::Warning
    };
    let mut not_ok: Vec<(Nagios, String)> = Vec::new();
    for p in &r.probes {
        let (s, text) = judge(p, t);
        state = state.worst(s);
        if s != Nagios::Ok {
            not_ok.push((s, text));
        }
    }
    // Worst first, then by name (the text starts with it).
    let rank = |s: Nagios| match s {
        Nagios::Critical => 0,
        Nagios::Unknown => 1,
        Nagios::Warning => 2,
        Nagios::Ok => 3,
    };
    not_ok.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)).then_with(|| a.1.cmp(&b.1)));

    let count = |s: State| r.probes.iter().filter(|p| p.state == s).count();
    let mut summary = format!("{} probes: {}", r.probes.len(), super::state_counts(r));
    if !r.daemon.healthy {
        let problems = if r.daemon.problems.is_empty() {
            "a self-check fails".to_owned()
        } else {
            super::one_line(&r.daemon.problems.join("; "), 160)
        };
        summary = format!("probed unhealthy ({problems}); {summary}");
    }
    let over_threshold = not_ok
        .iter()
        .filter(|(_, text)| text.contains(" (>= "))
        .count();
    if over_threshold > 0 {
        summary.push_str(&format!(", {over_threshold} over a latency threshold"));
    }
    if let Some((_, first)) = not_ok.first() {
        summary.push_str(&format!("; {first}"));
    }

    let total = r.probes.len() as f64;
    let mut perf = vec![];
    for s in [
        State::Up,
        State::Down,
        State::Degraded,
        State::Pending,
        State::Unknown,
        State::Paused,
    ] {
        perf.push(Perf {
            min: Some(0.0),
            max: Some(total),
            ..Perf::new(s.to_string(), count(s) as f64, "")
        });
    }
    let mut details: Vec<String> = not_ok
        .iter()
        .take(MAX_DETAILS)
        .map(|(s, text)| format!("{}: {text}", s.word()))
        .collect();
    if not_ok.len() > MAX_DETAILS {
        details.push(format!("… and {} more", not_ok.len() - MAX_DETAILS));
    }
    Plugin::new(state, summary, perf, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DaemonStatus;

    fn probe_status(name: &str, state: State, ms: Option<f64>, err: Option<&str>) -> ProbeStatus {
        ProbeStatus {
            name: name.into(),
            kind: "http".into(),
            state,
            since: None,
            last_checked_at: None,
            last_latency_ms: ms,
            last_error: err.map(str::to_owned),
            uptime_24h: Some(99.9),
            consecutive_failures: 0,
            schedule: "every 30s".into(),
            group: None,
            slo: None,
            locations: vec![],
        }
    }

    fn report(healthy: bool, probes: Vec<ProbeStatus>) -> StatusReport {
        StatusReport {
            daemon: DaemonStatus {
                alive: true,
                healthy,
                problems: if healthy {
                    vec![]
                } else {
                    vec!["store: cannot write".into()]
                },
                checks: vec![],
                version: "0.1.0".into(),
                started_at: None,
                uptime_seconds: Some(60),
                probes: probes.len(),
                store_queue_depth: 0,
                store_dropped: 0,
                store_write_errors: 0,
                runs_skipped: 0,
                error: None,
            },
            probes,
        }
    }

    #[test]
    fn perfdata_format() {
        let cases = [
            (Perf::new("up", 3.0, ""), "up=3"),
            (
                Perf {
                    warn: Some(0.5),
                    crit: Some(2.0),
                    min: Some(0.0),
                    ..Perf::new("latency", 0.0123, "s")
                },
                "latency=0.0123s;0.5;2;0",
            ),
            (
                Perf {
                    min: Some(0.0),
                    max: Some(100.0),
                    ..Perf::new("uptime", 99.9, "%")
                },
                "uptime=99.9%;;;0;100",
            ),
            (Perf::new("it's = x", 1e-9, "s"), "'it''s = x'=0s"),
        ];
        for (p, want) in cases {
            assert_eq!(p.to_string(), want);
        }
    }

    #[test]
    fn one_probe_states() {
        let t = Thresholds::default();
        let cases = [
            (
                State::Up,
                None,
                Nagios::Ok,
                "PROBED OK - api up, 12ms | latency=0.012s;;;0 uptime=99.9%;;;0;100\n",
            ),
            (
                State::Degraded,
                None,
                Nagios::Warning,
                "PROBED WARNING - api degraded: outside an objective, 12ms | latency=0.012s;;;0 uptime=99.9%;;;0;100\n",
            ),
            (
                State::Down,
                Some("connection refused | x"),
                Nagios::Critical,
                "PROBED CRITICAL - api down: connection refused / x, 12ms | latency=0.012s;;;0 uptime=99.9%;;;0;100\n",
            ),
            (
                State::Pending,
                None,
                Nagios::Unknown,
                "PROBED UNKNOWN - api pending: no verdict yet, 12ms | latency=0.012s;;;0 uptime=99.9%;;;0;100\n",
            ),
            (
                State::Unknown,
                None,
                Nagios::Unknown,
                "PROBED UNKNOWN - api unknown: no result for two intervals (stale), 12ms | latency=0.012s;;;0 uptime=99.9%;;;0;100\n",
            ),
            (
                State::Paused,
                None,
                Nagios::Ok,
                "PROBED OK - api paused | latency=0.012s;;;0 uptime=99.9%;;;0;100\n",
            ),
        ];
        for (state, err, want_state, want) in cases {
            let r = report(true, vec![probe_status("api", state, Some(12.0), err)]);
            let p = probe(&r, "api", &t);
            assert_eq!(p.state, want_state, "{state}");
            assert_eq!(p.render(), want, "{state}");
        }
    }

    #[test]
    fn latency_thresholds() {
        let t = Thresholds {
            warning: Some(Duration::from_millis(500)),
            critical: Some(Duration::from_secs(2)),
        };
        for (ms, want) in [
            (499.0, Nagios::Ok),
            (500.0, Nagios::Warning),
            (2500.0, Nagios::Critical),
        ] {
            let r = report(true, vec![probe_status("api", State::Up, Some(ms), None)]);
            let p = probe(&r, "api", &t);
            assert_eq!(p.state, want, "{ms}");
            assert!(p.render().contains(";0.5;2;0 "), "{}", p.render());
        }
        // A stale probe stays UNKNOWN whatever its last latency.
        let r = report(
            true,
            vec![probe_status("api", State::Unknown, Some(9e3), None)],
        );
        assert_eq!(probe(&r, "api", &t).state, Nagios::Unknown);
    }

    #[test]
    fn unknown_probe_hints() {
        let r = report(true, vec![probe_status("web-home", State::Up, None, None)]);
        let p = probe(&r, "web-hom", &Thresholds::default());
        assert_eq!(p.exit, 3);
        assert_eq!(
            p.render(),
            "PROBED UNKNOWN - the daemon has no probe named \"web-hom\"; did you mean \"web-home\"?\n"
        );
    }

    #[test]
    fn all_probes() {
        let t = Thresholds::default();
        let r = report(
            true,
            vec![
                probe_status("a", State::Up, Some(1.0), None),
                probe_status("b", State::Down, None, Some("refused")),
                probe_status("c", State::Pending, None, None),
            ],
        );
        let p = all(&r, &t);
        assert_eq!(p.state, Nagios::Critical);
        assert_eq!(
            p.render(),
            "PROBED CRITICAL - 3 probes: 1 up, 1 down, 1 pending; b down: refused \
             | up=1;;;0;3 down=1;;;0;3 degraded=0;;;0;3 pending=1;;;0;3 unknown=0;;;0;3 paused=0;;;0;3\n\
             CRITICAL: b down: refused\nUNKNOWN: c pending: no verdict yet\n"
        );
        // The ranking of `probectl status`: unknown over degraded, unhealthy is a warning.
        let cases = [
            (true, vec![State::Up, State::Paused], Nagios::Ok),
            (false, vec![State::Up], Nagios::Warning),
            (true, vec![State::Degraded, State::Unknown], Nagios::Unknown),
            (true, vec![State::Degraded], Nagios::Warning),
            (true, vec![], Nagios::Ok),
        ];
        for (healthy, states, want) in cases {
            let probes = states
                .iter()
                .enumerate()
                .map(|(i, s)| probe_status(&format!("p{i}"), *s, None, None))
                .collect();
            let r = report(healthy, probes);
            let p = all(&r, &t);
            assert_eq!(p.state, want, "{healthy} {states:?}");
            assert_eq!(
                p.exit,
                super::super::status_exit(&r),
                "{healthy} {states:?}"
            );
        }
        let r = report(false, vec![]);
        assert!(
            all(&r, &t)
                .summary
                .starts_with("probed unhealthy (store: cannot write); 0 probes")
        );
    }
}
