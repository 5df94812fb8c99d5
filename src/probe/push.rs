//! `kind: push`: heartbeats sent in by jobs, as healthchecks.io does. A job (a backup, a
//! cron task) calls `POST /api/v1/push/{token}` when it succeeds, `/start` when it begins,
//! `/fail` (optionally `?exit_status=N`) when it fails. The probe is `down` when no success
//! arrived within `period` + `grace`, when the last ping was a failure, or when a started run
//! did not finish within `grace`.
//!
//! The pings live in SQLite (`pushes`), so the clock survives restarts; the check itself only
//! reads the in-memory [`PushBoard`] the API keeps up to date, and never waits on the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::{CheckCx, Observation};
use crate::text::FieldError;
use crate::units::{Dur, Secret, format_duration};

/// A push probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The secret in the ping URL (`/api/v1/push/{token}`): at least 16 characters of
    /// letters, digits, `-` and `_`. Never shown in output.
    pub token: Secret,
    /// How often the job should succeed, e.g. `25h` for a nightly job with slack.
    pub period: Dur,
    /// Extra time before a late ping counts as missing, and how long a started run may take.
    /// Default: a tenth of the period, at least 1 minute.
    pub grace: Option<Dur>,
}

impl Spec {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        let t = self.token.expose();
        if t.len() < 16 {
            e.push(FieldError::new(
                "token",
                "token must be at least 16 characters (it is the only secret in the ping URL)",
            ));
        }
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            e.push(FieldError::new(
                "token",
                "token may hold only letters, digits, - and _",
            ));
        }
        if self.period.0.is_zero() {
            e.push(FieldError::new("period", "period must be longer than zero"));
        }
        e
    }

    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// No target: nothing is contacted.
    pub fn target_host(&self) -> Option<String> {
        None
    }

    pub fn instance(&self) -> Option<String> {
        None
    }

    pub fn grace(&self) -> std::time::Duration {
        self.grace
            .map(|g| g.0)
            .unwrap_or_else(|| (self.period.0 / 10).max(std::time::Duration::from_secs(60)))
    }

    pub fn build(&self) -> Result<Check, String> {
        Ok(Check { spec: self.clone() })
    }
}

/// What the daemon knows of one push probe's pings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushState {
    pub first_seen_at: i64,
    pub last_ping_at: Option<i64>,
    /// `ok`, `fail` or `start`.
    pub last_kind: Option<String>,
    pub exit_status: Option<i64>,
    pub last_success_at: Option<i64>,
    pub started_at: Option<i64>,
    pub pings: i64,
}

/// Pings by token, shared by the API (writer) and the checks (readers).
#[derive(Debug, Default)]
pub struct PushBoard {
    states: RwLock<HashMap<String, PushState>>,
}

impl PushBoard {
    pub fn get(&self, token: &str) -> Option<PushState> {
        self.states.read().unwrap().get(token).cloned()
    }
    pub fn set(&self, token: &str, s: PushState) {
        self.states.write().unwrap().insert(token.to_owned(), s);
    }
    pub fn replace_all(&self, all: HashMap<String, PushState>) {
        *self.states.write().unwrap() = all;
    }

    /// The pings of `token` and the time to judge them at ([`crate::clock::now_ms`]), read
    /// under one lock, so a clock step's [`shift`](Self::shift) never pairs shifted pings
    /// with an unshifted now, or the reverse.
    pub fn get_with_now(&self, token: &str) -> (Option<PushState>, i64) {
        let states = self.states.read().unwrap();
        (states.get(token).cloned(), crate::clock::now_ms())
    }

    /// Moves every timestamp by `delta_ms` (a wall-clock step, see [`crate::clock`]) and runs
    /// `then` (the clock's switch to the new time) under the same lock.
    pub fn shift(&self, delta_ms: i64, then: impl FnOnce()) {
        let mut states = self.states.write().unwrap();
        for s in states.values_mut() {
            s.first_seen_at += delta_ms;
            for t in [
                &mut s.last_ping_at,
                &mut s.last_success_at,
                &mut s.started_at,
            ] {
                if let Some(t) = t.as_mut() {
                    *t += delta_ms;
                }
            }
        }
        then();
    }
}

/// The shared board, as `Env` holds it.
pub type Board = Arc<PushBoard>;

/// A runnable push probe.
pub struct Check {
    spec: Spec,
}

impl Check {
    pub fn token(&self) -> &str {
        self.spec.token.expose()
    }

    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let obs = Observation {
            ok: true,
            ..Default::default()
        };
        let (st, now) = cx.env.push.get_with_now(self.spec.token.expose());
        let Some(st) = st else {
            return obs.fail(
                "no ping state: push probes are judged by the daemon from the pings it receives \
                 (see probectl status)",
            );
        };
        verdict(&self.spec, &st, now, obs)
    }
}

/// The verdict for `st` at `now`.
pub fn verdict(spec: &Spec, st: &PushState, now: i64, mut obs: Observation) -> Observation {
    obs.push = Some(crate::probe::PushSeen {
        last_ping_at: st.last_ping_at,
        exit_status: st.exit_status,
    });
    let period = spec.period.0.as_millis() as i64;
    let grace = spec.grace().as_millis() as i64;
    let ago = |t: i64| {
        format_duration(std::time::Duration::from_millis(
            (now - t).max(0) as u64 / 1000 * 1000,
        ))
    };
    obs.ok = true;
    if st.last_kind.as_deref() == Some("fail") {
        let code = st
            .exit_status
            .map(|c| format!(" (exit status {c})"))
            .unwrap_or_default();
        return obs.fail(format!(
            "the job reported a failure{code} {} ago",
            ago(st.last_ping_at.unwrap_or(now))
        ));
    }
    if st.last_kind.as_deref() == Some("start")
        && let Some(started) = st.started_at
        && now - started > grace
    {
        return obs.fail(format!(
            "the job started {} ago and has not finished (grace {})",
            ago(started),
            format_duration(spec.grace())
        ));
    }
    let since = st.last_success_at.unwrap_or(st.first_seen_at);
    if now - since > period + grace {
        let what = if st.last_success_at.is_some() {
            "last successful ping"
        } else {
            "no ping since the probe was added"
        };
        return obs.fail(format!(
            "{what} {} ago (period {} + grace {})",
            ago(since),
            spec.period,
            format_duration(spec.grace())
        ));
    }
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(period: &str, grace: Option<&str>) -> Spec {
        Spec {
            token: Secret::new("0123456789abcdef-token"),
            period: Dur(crate::units::parse_duration(period).unwrap()),
            grace: grace.map(|g| Dur(crate::units::parse_duration(g).unwrap())),
        }
    }

    #[test]
    fn verdicts() {
        let h = 3_600_000i64;
        let s = spec("25h", Some("1h"));
        let base = PushState {
            first_seen_at: 0,
            ..Default::default()
        };
        let cases: Vec<(&str, PushState, i64, Option<&str>)> = vec![
            ("fresh, never pinged", base.clone(), 2 * h, None),
            (
                "never pinged for 30h",
                base.clone(),
                30 * h,
                Some("no ping since the probe was added 1d6h ago (period 1d1h + grace 1h)"),
            ),
            (
                "pinged 10h ago",
                PushState {
                    last_ping_at: Some(20 * h),
                    last_kind: Some("ok".into()),
                    last_success_at: Some(20 * h),
                    ..base.clone()
                },
                30 * h,
                None,
            ),
            (
                "silent for 30h after a ping",
                PushState {
                    last_ping_at: Some(h),
                    last_kind: Some("ok".into()),
                    last_success_at: Some(h),
                    ..base.clone()
                },
                31 * h,
                Some("last successful ping 1d6h ago (period 1d1h + grace 1h)"),
            ),
            (
                "reported failure",
                PushState {
                    last_ping_at: Some(h),
                    last_kind: Some("fail".into()),
                    exit_status: Some(3),
                    last_success_at: Some(0),
                    ..base.clone()
                },
                2 * h,
                Some("the job reported a failure (exit status 3) 1h ago"),
            ),
            (
                "started, still within grace",
                PushState {
                    last_ping_at: Some(h),
                    last_kind: Some("start".into()),
                    started_at: Some(h),
                    ..base.clone()
                },
                h + 30 * 60_000,
                None,
            ),
            (
                "started, never finished",
                PushState {
                    last_ping_at: Some(h),
                    last_kind: Some("start".into()),
                    started_at: Some(h),
                    ..base.clone()
                },
                3 * h,
                Some("the job started 2h ago and has not finished (grace 1h)"),
            ),
        ];
        for (name, st, now, want) in cases {
            let o = verdict(&s, &st, now, Observation::default());
            assert_eq!(o.error.as_deref(), want, "{name}");
            assert_eq!(o.ok, want.is_none(), "{name}");
        }
    }

    #[test]
    fn a_shift_moves_every_ping_time_and_switches_under_the_lock() {
        let board = PushBoard::default();
        let pinged = PushState {
            first_seen_at: 1_000,
            last_ping_at: Some(5_000),
            last_kind: Some("ok".into()),
            last_success_at: Some(5_000),
            pings: 1,
            ..Default::default()
        };
        board.set("a", pinged.clone());
        board.set(
            "b",
            PushState {
                first_seen_at: 2_000,
                ..Default::default()
            },
        );
        let mut switched = false;
        board.shift(-3_600_000, || switched = true);
        assert!(switched);
        assert_eq!(
            board.get("a").unwrap(),
            PushState {
                first_seen_at: 1_000 - 3_600_000,
                last_ping_at: Some(5_000 - 3_600_000),
                last_success_at: Some(5_000 - 3_600_000),
                ..pinged
            }
        );
        let b = board.get("b").unwrap();
        assert_eq!(b.first_seen_at, 2_000 - 3_600_000);
        assert_eq!(
            (b.last_ping_at, b.started_at),
            (None, None),
            "NULLs stay NULL"
        );
        let (none, now) = board.get_with_now("nope");
        assert!(none.is_none() && now > 0);
    }

    #[test]
    fn validate() {
        let mut s = spec("1h", None);
        assert!(s.validate().is_empty());
        assert_eq!(s.grace(), std::time::Duration::from_secs(360));
        s.token = Secret::new("short");
        assert_eq!(s.validate().len(), 1);
        s.token = Secret::new("has spaces in the token!!");
        assert_eq!(s.validate().len(), 1);
        assert_eq!(spec("1m", None).grace(), std::time::Duration::from_secs(60));
    }
}
