//! `kind: push`: heartbeats sent in by jobs, with healthchecks.io's URLs. A job (a backup, a
//! cron task) calls `POST /api/v1/push/{token}` when it succeeds, `/start` when it begins,
//! `/fail` (optionally `?exit_status=N`) or `/{exit status}` (`/$?` in a cron line: 0 is a
//! success, 1-255 a failure) when it ends, `/log` to leave a message that changes nothing.
//! `?rid=<uuid>` pairs a start with its finish, whose time apart is the run's duration. A POST
//! body (the job's output) is kept, its last [`BODY_CAP`] bytes, and its last lines are the
//! reason of a reported failure. The probe is `down` when no success arrived within `period` +
//! `grace`, when the last ping was a failure, or when a started run did not finish within
//! `grace`.
//!
//! The pings live in SQLite (`pushes`), so the clock survives restarts; the check itself only
//! reads the in-memory [`PushBoard`] the API keeps up to date, and never waits on the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{CheckCx, Observation};
use crate::text::FieldError;
use crate::units::{Dur, Secret, format_duration};

/// A push probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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
    /// The body of the last ping that was not a `log` (the job's output, its last
    /// [`BODY_CAP`] bytes).
    pub last_body: Option<String>,
    /// The last finished run's duration: from its `start` (same `rid`, else the start just
    /// before) to its success or failure.
    pub last_duration_ms: Option<i64>,
}

/// The most of a ping's body kept: its last 10 KiB. healthchecks.io keeps the first 100 KB;
/// of a job's output the end (where the error is) is what on-call needs, so it is the tail.
pub const BODY_CAP: usize = 10 * 1024;

/// The most of a body a failure's reason quotes: its last lines, as one line.
pub const REASON_TAIL: usize = 200;

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    /// The job succeeded.
    Ok,
    /// The job failed.
    Fail,
    /// The job began.
    Start,
    /// A message: recorded, changes no state.
    Log,
}

impl PingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PingKind::Ok => "ok",
            PingKind::Fail => "fail",
            PingKind::Start => "start",
            PingKind::Log => "log",
        }
    }
}

/// One ping as the API received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub kind: PingKind,
    pub exit_status: Option<i64>,
    /// `?rid=`: a UUID naming one run, so concurrent runs are timed apart.
    pub rid: Option<String>,
    /// The body, its last [`BODY_CAP`] bytes; `None` when empty.
    pub body: Option<String>,
}

impl Ping {
    pub fn new(kind: PingKind) -> Ping {
        Ping {
            kind,
            exit_status: None,
            rid: None,
            body: None,
        }
    }
}

/// A stored ping, as the results API shows it (never on the public side).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PingRow {
    pub at: String,
    pub kind: String,
    pub exit_status: Option<i64>,
    pub rid: Option<String>,
    pub duration_ms: Option<i64>,
    pub body: Option<String>,
}

/// A ping's kind and the exit status its URL carries.
pub type What = (PingKind, Option<i64>);

/// What a ping's path after the token says: `start`, `fail`, `log`, or an exit status
/// (`0` a success, `1`-`255` a failure). `Err(true)` for a number out of range (a bad
/// request), `Err(false)` for anything else (not found).
pub fn parse_what(what: &str) -> Result<What, bool> {
    match what {
        "start" => Ok((PingKind::Start, None)),
        "fail" => Ok((PingKind::Fail, None)),
        "log" => Ok((PingKind::Log, None)),
        _ if !what.is_empty() && what.len() <= 5 && what.bytes().all(|b| b.is_ascii_digit()) => {
            match what.parse::<i64>() {
                Ok(0) => Ok((PingKind::Ok, Some(0))),
                Ok(c @ 1..=255) => Ok((PingKind::Fail, Some(c))),
                _ => Err(true),
            }
        }
        _ if what.bytes().all(|b| b.is_ascii_digit()) && !what.is_empty() => Err(true),
        _ => Err(false),
    }
}

/// Whether `rid` is a UUID in its usual text form (`8-4-4-4-12` hex digits).
pub fn is_uuid(rid: &str) -> bool {
    let b = rid.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The last [`BODY_CAP`] bytes of `bytes` as text: a character cut at the start is
/// dropped, invalid UTF-8 replaced; `None` when nothing but whitespace is left.
pub fn body_tail(bytes: &[u8]) -> Option<String> {
    let mut tail = &bytes[bytes.len().saturating_sub(BODY_CAP)..];
    if tail.len() < bytes.len() {
        while let [first, rest @ ..] = tail
            && (0x80..0xC0).contains(first)
        {
            tail = rest;
        }
    }
    let text = String::from_utf8_lossy(tail);
    (!text.trim().is_empty()).then(|| text.into_owned())
}

/// The last lines of `body` as one line of at most [`REASON_TAIL`] characters (`…` in
/// front when cut): lines joined with ` | `, control characters dropped.
pub fn reason_tail(body: &str) -> String {
    let lines: Vec<String> = body
        .lines()
        .map(|l| {
            l.chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .filter(|c| !c.is_control())
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" | ");
    let n = joined.chars().count();
    if n <= REASON_TAIL {
        return joined;
    }
    let kept: String = joined.chars().skip(n - (REASON_TAIL - 1)).collect();
    format!("…{}", kept.trim_start())
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
        let secs = (now - t).max(0) as u64 / 1000;
        if secs == 0 {
            return "0s".to_owned();
        }
        format_duration(std::time::Duration::from_secs(secs))
    };
    obs.ok = true;
    if let Some(ms) = st.last_duration_ms {
        obs.duration = std::time::Duration::from_millis(ms.max(0) as u64);
    }
    if st.last_kind.as_deref() == Some("fail") {
        let code = st
            .exit_status
            .map(|c| format!(" (exit status {c})"))
            .unwrap_or_default();
        let output = st
            .last_body
            .as_deref()
            .map(reason_tail)
            .filter(|t| !t.is_empty())
            .map(|t| format!(": {t}"))
            .unwrap_or_default();
        return obs.fail(format!(
            "the job reported a failure{code} {} ago{output}",
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
    fn ping_urls_bodies_and_reasons() {
        let cases: Vec<(&str, Result<What, bool>)> = vec![
            ("0", Ok((PingKind::Ok, Some(0)))),
            ("1", Ok((PingKind::Fail, Some(1)))),
            ("137", Ok((PingKind::Fail, Some(137)))),
            ("255", Ok((PingKind::Fail, Some(255)))),
            ("256", Err(true)),
            ("99999999999999999999", Err(true)),
            ("start", Ok((PingKind::Start, None))),
            ("fail", Ok((PingKind::Fail, None))),
            ("log", Ok((PingKind::Log, None))),
            ("-1", Err(false)),
            ("", Err(false)),
            ("stop", Err(false)),
        ];
        for (what, want) in cases {
            assert_eq!(parse_what(what), want, "{what:?}");
        }
        assert!(is_uuid("0f8fad5b-d9cb-469f-A165-70867728950e"));
        assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
        assert!(!is_uuid("0f8fad5bxd9cb-469f-a165-70867728950e"));

        // The tail is kept, a character cut in two dropped.
        let mut big = "é".repeat(BODY_CAP);
        big.push_str("the end\n");
        let tail = body_tail(big.as_bytes()).unwrap();
        assert!(tail.len() <= BODY_CAP && tail.len() >= BODY_CAP - 1);
        assert!(tail.ends_with("the end\n") && !tail.contains('\u{fffd}'));
        assert_eq!(body_tail(b" \n\t"), None);

        assert_eq!(
            reason_tail("rsync: error\r\n\n\tKilled \x1b[31m\n"),
            "rsync: error | Killed [31m"
        );
        let long = reason_tail(&"line\n".repeat(100));
        assert_eq!(long.chars().count(), REASON_TAIL);
        assert!(long.starts_with('…') && long.ends_with("line"));

        let st = PushState {
            last_ping_at: Some(1_000),
            last_kind: Some("fail".into()),
            exit_status: Some(137),
            last_body: Some("step 1 ok\nstep 2: out of memory\nKilled\n".into()),
            last_duration_ms: Some(4_200),
            ..Default::default()
        };
        let o = verdict(&spec("1h", None), &st, 6_000, Observation::default());
        assert_eq!(
            o.error.as_deref(),
            Some(
                "the job reported a failure (exit status 137) 5s ago: \
                 step 1 ok | step 2: out of memory | Killed"
            )
        );
        assert_eq!(o.duration, std::time::Duration::from_millis(4_200));
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
