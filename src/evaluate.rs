//! The per-probe state machine and the rules between a probe's objectives and its state.
//!
//! The states ([`State`]): `pending` until the first verdict; then `up`, or `down` after
//! `alert.after` consecutive failures, back to `up` after `alert.recover_after` consecutive
//! successes; `degraded` when the probe works but is outside one of its objectives
//! ([`crate::slo`]). [`Verdicts::observe`] moves between those four. Two more are shown, never
//! kept: `unknown`, when there is no fresh data (the status report says it of a probe that
//! missed two runs, rather than repeat an old verdict), and `paused` (not run on purpose;
//! reserved, nothing pauses a probe yet).
//! [`judge`] feeds one result through the objectives and the state machine: objectives count
//! only the runs of a probe that is not down, start afresh when it goes down, and a change to
//! `degraded` pages at the objective's severity.
//!
//! Pure: no I/O, no clock reads (times are passed in), so it is tested with tables and
//! resumed exactly after a restart from what the store persisted.
//!
//! A state change is a [`Transition`]. It is the seam for paging: `alert::plan::page_for`
//! decides what it pages, and the store writes both in the same transaction as the result
//! that caused it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AlertSpec, Quorum};
use crate::slo::Tracker;

/// A probe's state as users see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No verdict yet (just added, or never run).
    #[default]
    Pending,
    Up,
    Down,
    /// Working but outside an objective (used by SLO evaluation).
    Degraded,
    /// Not running on purpose.
    Paused,
    /// No fresh data: the daemon is unreachable or its results are stale.
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Up => "up",
            State::Down => "down",
            State::Degraded => "degraded",
            State::Paused => "paused",
            State::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "up" => State::Up,
            "down" => State::Down,
            "degraded" => State::Degraded,
            "paused" => State::Paused,
            "unknown" => State::Unknown,
            _ => return None,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the state machine keeps per probe (persisted in the `probes` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdicts {
    pub state: State,
    /// When the current state began (unix ms); `None` while pending since ever.
    pub since: Option<i64>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// The last 64 verdicts, bit 0 the newest, 1 = failure.
    pub recent: u64,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            state: State::Pending,
            since: None,
            consecutive_failures: 0,
            consecutive_successes: 0,
            recent: 0,
        }
    }
}

/// A state change, caused by the observation at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub at: i64,
    /// The failing observation's reason (for a change to `down`).
    pub reason: Option<String>,
}

impl Verdicts {
    /// Feeds one verdict. `breach` is why the probe is outside its objectives (see
    /// [`crate::slo`]), if it is: a working probe is then `degraded` instead of `up`.
    /// Returns the transition it caused, if any.
    pub fn observe(
        &mut self,
        ok: bool,
        at: i64,
        reason: Option<&str>,
        alert: &AlertSpec,
        breach: Option<&str>,
    ) -> Option<Transition> {
        if ok {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
        }
        self.recent = (self.recent << 1) | (!ok as u64);
        // `after` in a row, or `after` among the last `within` runs.
        let failing = match alert.within {
            Some(m) => {
                let mask = if m >= 64 { u64::MAX } else { (1u64 << m) - 1 };
                !ok && (self.recent & mask).count_ones() >= alert.after.max(1)
            }
            None => !ok && self.consecutive_failures >= alert.after.max(1),
        };
        let next = match self.state {
            // The first success is a verdict; failures need `after` in a row, as from up.
            State::Pending if ok => State::Up,
            State::Pending | State::Up | State::Degraded | State::Unknown | State::Paused
                if failing =>
            {
                State::Down
            }
            State::Down if ok && self.consecutive_successes >= alert.recover_after.max(1) => {
                State::Up
            }
            State::Unknown | State::Paused if ok => State::Up,
            s => s,
        };
        // Objectives: working, but outside them, is degraded (and back once inside).
        let next = match (next, breach.is_some()) {
            (State::Up, true) => State::Degraded,
            (State::Degraded, false) => State::Up,
            (n, _) => n,
        };
        if next == self.state {
            if self.since.is_none() && self.state != State::Pending {
                self.since = Some(at);
            }
            return None;
        }
        let t = Transition {
            from: self.state,
            to: next,
            at,
            reason: match next {
                State::Degraded => breach.map(str::to_owned),
                _ if ok => None,
                _ => reason.map(str::to_owned),
            },
        };
        self.state = next;
        self.since = Some(at);
        Some(t)
    }
}

/// A state change and the severity it pages at, when an objective's rule sets one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub transition: Transition,
    /// The objective's own severity (the workbook's slow burn is a ticket), for a change to
    /// `degraded` only; `None`: the route's.
    pub severity: Option<String>,
}

/// One result of a probe, through its objectives (`slo`, when it has `slo:`) and its state
/// machine. The rules between the two:
/// - objectives count the runs of a probe that is not down (a down probe's incident already
///   covers them), and start afresh when it goes down;
/// - a working probe outside an objective is `degraded`; the reason is worded only when the
///   probe may become degraded now (it is the transition's), a probe already degraded stays
///   so without it;
/// - a change to `degraded` pages at the objective's severity, if its rule has one.
///
/// Pure, as [`Verdicts::observe`] is.
pub fn judge(
    verdicts: &mut Verdicts,
    slo: Option<&mut Tracker>,
    at: i64,
    (ok, took): (bool, Duration),
    reason: Option<&str>,
    alert: &AlertSpec,
) -> Option<Judged> {
    let mut slo = slo;
    let outside = slo.as_deref_mut().is_some_and(|slo| {
        if verdicts.state != State::Down {
            slo.add(at, ok, took);
        }
        slo.evaluate(at)
    });
    let breach = outside.then(|| {
        (verdicts.state != State::Degraded)
            .then(|| slo.as_deref().and_then(|s| s.reason(at)))
            .flatten()
            .unwrap_or_default()
    });
    let transition = verdicts.observe(ok, at, reason, alert, breach.as_deref())?;
    if verdicts.state == State::Down
        && let Some(slo) = slo.as_deref_mut()
    {
        slo.reset();
    }
    let severity = (transition.to == State::Degraded)
        .then(|| {
            slo.as_deref()
                .and_then(Tracker::severity)
                .map(str::to_owned)
        })
        .flatten();
    Some(Judged {
        transition,
        severity,
    })
}

/// One location's say on a probe: its own verdict, judged on its own runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    pub location: String,
    pub state: State,
    /// Its latest result, unix ms (`None`: it has none).
    pub checked_at: Option<i64>,
    /// Why it failed, when it sees the probe down or degraded.
    pub reason: Option<String>,
    /// Its location says it is blind: its verdicts on targets count toward no quorum.
    pub blind: bool,
}

/// The locations' votes on one probe, counted: what a quorum of them says, and who said
/// what.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// What the quorum says; `None` when no state has enough locations behind it (a split,
    /// or nobody reporting): the probe keeps the state it has.
    pub state: Option<State>,
    /// Reporting locations, by what they see.
    pub down: Vec<String>,
    pub degraded: Vec<String>,
    pub up: Vec<String>,
    /// Locations with no result within `stale_after_ms`: they count neither way.
    pub stale: Vec<String>,
    /// Locations needed to agree (of those reporting).
    pub needed: usize,
}

impl Tally {
    /// Locations reporting.
    pub fn reporting(&self) -> usize {
        self.down.len() + self.degraded.len() + self.up.len()
    }

    /// Who sees what, when more than one location has a say: `from eu-west, us-east (2 of
    /// 3); ap-south sees it up`. `None` for a lone location (its pages read as they always
    /// have).
    pub fn describe(&self, state: State) -> Option<String> {
        if self.reporting() + self.stale.len() <= 1 {
            return None;
        }
        let seeing = match state {
            State::Down => self.down.clone(),
            State::Degraded => [self.down.as_slice(), self.degraded.as_slice()].concat(),
            _ => [self.up.as_slice(), self.degraded.as_slice()].concat(),
        };
        let mut s = format!(
            "from {} ({} of {})",
            seeing.join(", "),
            seeing.len(),
            self.reporting()
        );
        let others: Vec<(&str, &[String])> = match state {
            State::Down => vec![("up", &self.up), ("degraded", &self.degraded)],
            State::Degraded => vec![("up", &self.up)],
            _ => vec![("down", &self.down)],
        };
        for (what, who) in others {
            if !who.is_empty() {
                let verb = if who.len() == 1 { "sees" } else { "see" };
                s.push_str(&format!("; {} {verb} it {what}", who.join(", ")));
            }
        }
        if !self.stale.is_empty() {
            s.push_str(&format!(
                "; no recent result from {}",
                self.stale.join(", ")
            ));
        }
        Some(s)
    }
}

/// Counts `votes` under `rule` (`alert.locations`; `None`: a majority of those reporting).
/// A vote counts when its result is at most `stale_after_ms` old at `now` and it is a
/// verdict (`up`, `degraded`, `down`; not `pending`). The probe is `down` when `needed` of
/// the reporting locations see it down; else `degraded` when `needed` see it down or
/// degraded; else `up` when `needed` see it working. Otherwise nothing is decided, so a
/// location that drops out or disagrees never flips the probe by itself: going down and
/// coming back both take a quorum. Pure.
pub fn tally(votes: &[Vote], rule: Option<Quorum>, now: i64, stale_after_ms: i64) -> Tally {
    let mut t = Tally::default();
    for v in votes {
        let fresh = v.checked_at.is_some_and(|at| now - at <= stale_after_ms);
        let slot = match v.state {
            _ if !fresh => &mut t.stale,
            State::Down => &mut t.down,
            State::Degraded => &mut t.degraded,
            State::Up => &mut t.up,
            _ => continue,
        };
        slot.push(v.location.clone());
    }
    for l in [&mut t.down, &mut t.degraded, &mut t.up, &mut t.stale] {
        l.sort();
    }
    let reporting = t.reporting();
    t.needed = Quorum::needed(rule, reporting);
    if reporting == 0 {
        return t;
    }
    let (down, degraded, up) = (t.down.len(), t.degraded.len(), t.up.len());
    t.state = if down >= t.needed {
        Some(State::Down)
    } else if down + degraded >= t.needed {
        Some(State::Degraded)
    } else if up + degraded >= t.needed {
        Some(State::Up)
    } else {
        None
    };
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(after: u32, recover_after: u32) -> AlertSpec {
        AlertSpec {
            after,
            recover_after,
            ..AlertSpec::default()
        }
    }

    /// The rules between objectives and down, run by [`judge`] on a probe with an Apdex
    /// objective (100 ms target, a ticket's severity) and `after: 2`.
    #[test]
    fn judge_degrades_pages_at_the_objectives_severity_and_down_resets_it() {
        let spec: crate::slo::SloSpec = serde_yaml::from_str(
            "apdex: { target: 100ms, min: 0.85, window: 2s, severity: warning }\nmin_runs: 5",
        )
        .unwrap();
        let mut slo = Tracker::new(&spec);
        let mut v = Verdicts::default();
        let a = alert(2, 1);
        let (fast, slow) = (Duration::from_millis(10), Duration::from_millis(900));
        let at = std::cell::Cell::new(0);
        let run = |v: &mut Verdicts, slo: &mut Tracker, ok: bool, took: Duration| {
            at.set(at.get() + 100);
            let reason = (!ok).then_some("status 503");
            judge(v, Some(slo), at.get(), (ok, took), reason, &a)
        };
        // Working and fast: up, then nothing.
        let up = run(&mut v, &mut slo, true, fast).expect("pending to up");
        assert_eq!((up.transition.to, up.severity), (State::Up, None));
        for _ in 0..5 {
            assert_eq!(run(&mut v, &mut slo, true, fast), None);
        }
        // Working but slow: degraded, worded, at the objective's severity.
        let d = (0..30)
            .find_map(|_| run(&mut v, &mut slo, true, slow))
            .expect("slow runs degrade the probe");
        assert_eq!(d.transition.to, State::Degraded);
        assert!(
            d.transition
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("Apdex")),
            "{d:?}"
        );
        assert_eq!(d.severity.as_deref(), Some("warning"));
        // Failing: down, at the route's severity, and the objective starts afresh.
        assert_eq!(run(&mut v, &mut slo, false, slow), None);
        let down = run(&mut v, &mut slo, false, slow).expect("two failures: down");
        assert_eq!((down.transition.to, down.severity), (State::Down, None));
        assert_eq!(
            slo.figures(at.get()).apdex,
            None,
            "no runs counted: reset when down"
        );
        // While down, runs do not count to the objective.
        assert_eq!(run(&mut v, &mut slo, false, slow), None);
        assert_eq!(slo.figures(at.get()).apdex, None);
        // Back and fast: up, not degraded.
        let back = run(&mut v, &mut slo, true, fast).expect("recovered");
        assert_eq!((back.transition.to, back.severity), (State::Up, None));
    }

    #[test]
    fn table() {
        let cases = [
            ("+", alert(3, 2), "up*"),
            ("--", alert(3, 2), "pending pending"),
            ("---", alert(3, 2), "pending pending down*"),
            ("+--+---", alert(3, 2), "up* up up up up up down*"),
            ("---++", alert(3, 2), "pending pending down* down up*"),
            (
                "---+-++",
                alert(3, 2),
                "pending pending down* down down down up*",
            ),
            ("+-", alert(1, 1), "up* down*"),
            ("+-+", alert(1, 1), "up* down* up*"),
            // after: 0 is treated as 1 (config validation rejects it anyway)
            ("-", alert(0, 0), "down*"),
        ];
        for (seq, a, want) in cases {
            assert_eq!(run(seq, &a), want, "sequence {seq} with {a:?}");
        }
    }

    #[test]
    fn n_failures_out_of_the_last_m_runs() {
        let a = AlertSpec {
            after: 3,
            within: Some(5),
            ..alert(3, 1)
        };
        let cases = [
            // Never three in a row, but three of the last five: down.
            ("+-+-+-", "up* up up up up down*"),
            // Three failures spread over more than five runs: still up.
            ("+-++-++-", "up* up up up up up up up"),
            ("+---", "up* up up down*"),
        ];
        for (seq, want) in cases {
            assert_eq!(run(seq, &a), want, "sequence {seq}");
        }
    }

    #[test]
    fn transition_carries_reason_and_time() {
        let mut v = Verdicts::default();
        let a = alert(1, 1);
        assert_eq!(
            v.observe(false, 42, Some("status 503"), &a, None),
            Some(Transition {
                from: State::Pending,
                to: State::Down,
                at: 42,
                reason: Some("status 503".into())
            })
        );
        assert_eq!(v.since, Some(42));
        let t = v.observe(true, 50, None, &a, None).unwrap();
        assert_eq!((t.from, t.to, t.reason), (State::Down, State::Up, None));
    }

    #[test]
    fn resumes_from_persisted_counters() {
        // Two failures persisted before a restart; the third after it still trips `down`.
        let mut v = Verdicts {
            state: State::Up,
            since: Some(1),
            consecutive_failures: 2,
            consecutive_successes: 0,
            recent: 0b11,
        };
        let t = v.observe(false, 9, Some("x"), &alert(3, 1), None).unwrap();
        assert_eq!(t.to, State::Down);
    }

    /// Runs a sequence of verdicts (`+` ok, `-` fail, `b` ok but outside the objectives, `x`
    /// failed and outside them) and returns the state after each one, with a `*` where a
    /// transition happened; checks each transition's reason on the way.
    fn run(seq: &str, a: &AlertSpec) -> String {
        let mut v = Verdicts::default();
        let mut out = Vec::new();
        for (i, c) in seq.chars().enumerate() {
            let ok = matches!(c, '+' | 'b');
            let breach = matches!(c, 'b' | 'x').then_some("burning");
            let t = v.observe(ok, i as i64, Some("boom"), a, breach);
            if let Some(t) = &t {
                match t.to {
                    State::Degraded => assert_eq!(t.reason.as_deref(), Some("burning")),
                    State::Down => assert_eq!(t.reason.as_deref(), Some("boom")),
                    _ => assert_eq!(t.reason, None),
                }
            }
            out.push(format!(
                "{}{}",
                v.state.as_str(),
                if t.is_some() { "*" } else { "" }
            ));
        }
        out.join(" ")
    }

    #[test]
    fn objectives_make_a_working_probe_degraded() {
        let a = alert(2, 1);
        let cases = [
            ("+bb+", "up* degraded* degraded up*"),
            ("b", "degraded*"),
            // Failures while degraded: one is not enough to be down, two are.
            ("+bxx", "up* degraded* degraded down*"),
            // Down dominates; recovering while still outside: degraded, in one step.
            ("+--b", "up* up down* degraded*"),
            ("+--+b+", "up* up down* up* degraded* up*"),
        ];
        for (seq, want) in cases {
            assert_eq!(run(seq, &a), want, "sequence {seq}");
        }
    }

    fn vote(location: &str, state: State, at: i64) -> Vote {
        Vote {
            location: location.into(),
            state,
            checked_at: Some(at),
            reason: None,
            blind: false,
        }
    }

    /// The quorum over the locations that report: a lone location decides alone, one
    /// place cut off pages no one, two of three page, a split keeps the state, a stale
    /// location counts neither way, and the rule caps at those reporting.
    #[test]
    fn quorums() {
        use State::*;
        let (now, stale) = (100_000, 10_000);
        let fresh = now - 1_000;
        let old = now - 20_000;
        let q = |votes: &[(&str, State, i64)], rule| {
            let v: Vec<Vote> = votes.iter().map(|(l, s, at)| vote(l, *s, *at)).collect();
            tally(&v, rule, now, stale)
        };
        for (votes, rule, want, needed) in [
            (vec![("eu", Down, fresh)], None, Some(Down), 1),
            (vec![("eu", Up, fresh)], None, Some(Up), 1),
            (vec![("eu", Degraded, fresh)], None, Some(Degraded), 1),
            (vec![("eu", Pending, fresh)], None, None, 1),
            (vec![("eu", Down, old)], None, None, 1),
            (
                vec![("eu", Down, fresh), ("us", Up, fresh), ("ap", Up, fresh)],
                None,
                Some(Up),
                2,
            ),
            (
                vec![("eu", Down, fresh), ("us", Down, fresh), ("ap", Up, fresh)],
                None,
                Some(Down),
                2,
            ),
            // One of three gone: a split of the other two decides nothing.
            (
                vec![("eu", Down, fresh), ("us", Up, fresh), ("ap", Down, old)],
                None,
                None,
                2,
            ),
            // Two of three gone: the survivor decides (never more than report).
            (
                vec![("eu", Down, fresh), ("us", Up, old), ("ap", Up, old)],
                Some(Quorum::Count(2)),
                Some(Down),
                1,
            ),
            (
                vec![("eu", Down, fresh), ("us", Up, fresh), ("ap", Up, fresh)],
                Some(Quorum::Count(1)),
                Some(Down),
                1,
            ),
            (
                vec![("eu", Down, fresh), ("us", Up, fresh), ("ap", Up, fresh)],
                Some(Quorum::Percent(50)),
                Some(Up),
                2,
            ),
            (
                vec![("eu", Down, fresh), ("us", Up, fresh)],
                Some(Quorum::Percent(50)),
                Some(Down),
                1,
            ),
            (
                vec![
                    ("eu", Down, fresh),
                    ("us", Degraded, fresh),
                    ("ap", Up, fresh),
                ],
                None,
                Some(Degraded),
                2,
            ),
            (
                vec![
                    ("eu", Degraded, fresh),
                    ("us", Up, fresh),
                    ("ap", Up, fresh),
                ],
                None,
                Some(Up),
                2,
            ),
        ] {
            let t = q(&votes, rule);
            assert_eq!((t.state, t.needed), (want, needed), "{votes:?} {rule:?}");
        }
    }

    #[test]
    fn who_sees_what() {
        let now = 100_000;
        let t = tally(
            &[
                vote("us-east", State::Down, now),
                vote("eu-west", State::Down, now),
                vote("ap-south", State::Up, now),
            ],
            None,
            now,
            10_000,
        );
        assert_eq!(
            t.describe(State::Down).as_deref(),
            Some("from eu-west, us-east (2 of 3); ap-south sees it up")
        );
        let t = tally(
            &[
                vote("us-east", State::Up, now),
                vote("eu-west", State::Up, now),
                vote("ap-south", State::Down, now - 60_000),
            ],
            None,
            now,
            10_000,
        );
        assert_eq!(
            t.describe(State::Up).as_deref(),
            Some("from eu-west, us-east (2 of 2); no recent result from ap-south")
        );
        let lone = tally(&[vote("eu", State::Down, now)], None, now, 10_000);
        assert_eq!(
            lone.describe(State::Down),
            None,
            "a lone location reads as before"
        );
    }
}
