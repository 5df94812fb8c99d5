//! `kind: location`: whether a place can see. Every daemon runs one such probe per location
//! it knows, its own included, named `location:<name>` (made for it, unless the config has
//! its own of that name):
//!
//! - its **own** location is `down` while this daemon is *blind*: most of its probes failed
//!   at once, or its reference checks fail (see `crate::schedule::Sight`): one grouped page
//!   instead of one per probe;
//! - **another** location (several daemons sharing a store) is `down` when no daemon there
//!   has written to the store for `lost_after`, or the one there says it is blind.
//!
//! The probes' verdicts go into the quorum like any other, so with three locations the two
//! that see a third go silent page it once. The check reads the in-memory [`SightBoard`]
//! the daemon keeps (its own blindness; the others' heartbeats, from the store) and never
//! waits on anything.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{CheckCx, Observation};
use crate::text::FieldError;
use crate::units::{Dur, format_duration};

/// A location probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The location watched.
    pub location: String,
    /// How long a location may be silent in the shared store before it counts as lost.
    /// Default: `watchdog.lost_after` (1m).
    pub lost_after: Option<Dur>,
}

/// Default of `lost_after`.
pub const LOST_AFTER: Duration = Duration::from_secs(60);

impl Spec {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        let ok = !self.location.is_empty()
            && self
                .location
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !ok {
            e.push(FieldError::new(
                "location",
                format!(
                    "invalid location name {:?} (use letters, digits and _ . : -)",
                    self.location
                ),
            ));
        }
        if self.lost_after.is_some_and(|d| d.0.is_zero()) {
            e.push(FieldError::new(
                "lost_after",
                "lost_after must be longer than zero",
            ));
        }
        e
    }

    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Nothing is contacted.
    pub fn target_host(&self) -> Option<String> {
        None
    }

    pub fn instance(&self) -> Option<String> {
        None
    }

    pub fn build(&self) -> Result<Check, String> {
        Ok(Check { spec: self.clone() })
    }
}

/// A location as the shared store last told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The daemon there that wrote last.
    pub instance: String,
    /// When it last wrote, unix ms (the daemon's own clock).
    pub seen_at: i64,
    /// Why it cannot see, when it says it is blind.
    pub blind: Option<String>,
}

/// What the checks read: this daemon's location and whether it is blind; the other
/// locations' heartbeats, as last read from the shared store.
#[derive(Debug, Default)]
pub struct SightBoard {
    inner: RwLock<Sight>,
}

#[derive(Debug, Default)]
struct Sight {
    own: String,
    own_blind: Option<String>,
    others: HashMap<String, Seen>,
    /// When the others were last read from the store (unix ms); `None`: never.
    read_at: Option<i64>,
    /// Since when reads have gone on without a gap (unix ms): silence before it is not
    /// counted (after a restart or an outage of the store, every location gets `lost_after`
    /// to be heard from again).
    reading_since: i64,
}

/// A pause between two reads of the store longer than this starts reading afresh.
const READ_GAP_MS: i64 = 6_000;

impl SightBoard {
    pub fn set_own(&self, location: &str) {
        self.inner.write().unwrap().own = location.to_owned();
    }

    /// This daemon is blind (`Some(why)`) or sees again (`None`).
    pub fn set_blind(&self, why: Option<String>) {
        self.inner.write().unwrap().own_blind = why;
    }

    /// The other locations, as just read from the store at `now`. Returns the locations
    /// that were not known before.
    pub fn set_others(&self, seen: HashMap<String, Seen>, now: i64) -> Vec<String> {
        let mut s = self.inner.write().unwrap();
        let new: Vec<String> = seen
            .keys()
            .filter(|l| !s.others.contains_key(*l) && **l != s.own)
            .cloned()
            .collect();
        s.others = seen;
        if s.read_at.is_none_or(|r| now - r > READ_GAP_MS) {
            s.reading_since = now;
        }
        s.read_at = Some(now);
        new
    }

    /// Every location known, this one first.
    pub fn locations(&self) -> Vec<String> {
        let s = self.inner.read().unwrap();
        let mut others: Vec<String> = s.others.keys().filter(|l| **l != s.own).cloned().collect();
        others.sort();
        std::iter::once(s.own.clone()).chain(others).collect()
    }
}

/// The shared board, as `Env` holds it.
pub type Board = Arc<SightBoard>;

/// A runnable location probe.
pub struct Check {
    spec: Spec,
}

impl Check {
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        verdict(
            &self.spec,
            &cx.env.locations,
            crate::time::now_ms(),
            Observation {
                ok: true,
                ..Default::default()
            },
        )
    }
}

/// The verdict on `spec`'s location at `now`.
///
/// While the store has not been read for `lost_after` (it is unreachable from here, or this
/// daemon has no store to share), another location's fate cannot be told from here: the
/// probe stays up, and the others' verdicts decide.
pub fn verdict(spec: &Spec, board: &SightBoard, now: i64, obs: Observation) -> Observation {
    let s = board.inner.read().unwrap();
    let lost_after = spec.lost_after.map_or(LOST_AFTER, |d| d.0);
    if spec.location == s.own {
        return match &s.own_blind {
            Some(why) => obs.fail(format!("probed at {} cannot see: {why}", s.own)),
            None => obs,
        };
    }
    let lost_ms = lost_after.as_millis() as i64;
    let Some(read_at) = s.read_at.filter(|r| now - r <= lost_ms) else {
        return obs;
    };
    // Silence as of the last read, counted while this daemon could read: while reads fail,
    // and until they have gone on for `lost_after`, no location falls silent for it.
    match s.others.get(&spec.location) {
        None => obs.fail(format!(
            "no daemon at {} has ever written to the store",
            spec.location
        )),
        Some(seen) if read_at - seen.seen_at.max(s.reading_since) > lost_ms => obs.fail(format!(
            "no daemon at {} has written to the store for {} (last: {})",
            spec.location,
            format_duration(Duration::from_millis(
                (now - seen.seen_at).max(0) as u64 / 1000 * 1000
            )),
            seen.instance
        )),
        Some(Seen {
            instance,
            blind: Some(why),
            ..
        }) => obs.fail(format!("{instance} at {} cannot see: {why}", spec.location)),
        Some(_) => obs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(location: &str) -> Spec {
        Spec {
            location: location.into(),
            lost_after: Some(Dur(Duration::from_secs(30))),
        }
    }

    fn ok() -> Observation {
        Observation {
            ok: true,
            ..Default::default()
        }
    }

    /// Its own location is down only while blind; another is down when silent past
    /// `lost_after` or blind, and cannot be told apart while the store is not being read.
    #[test]
    fn verdicts() {
        let b = SightBoard::default();
        b.set_own("eu-west");
        let now = 1_000_000;
        assert!(verdict(&spec("eu-west"), &b, now, ok()).ok);
        b.set_blind(Some("48 of 50 probes failed within 30s".into()));
        assert_eq!(
            verdict(&spec("eu-west"), &b, now, ok()).error.as_deref(),
            Some("probed at eu-west cannot see: 48 of 50 probes failed within 30s")
        );
        // Never read from a store: nothing to say about the others.
        assert!(verdict(&spec("us-east"), &b, now, ok()).ok);
        let seen = |at: i64, blind: Option<&str>| Seen {
            instance: "probed-us-1".into(),
            seen_at: at,
            blind: blind.map(str::to_owned),
        };
        // Reading since well before: a location silent for 45 s is lost.
        b.set_others(HashMap::new(), now - 60_000);
        for t in (now - 60_000..now).step_by(2_000) {
            b.set_others(HashMap::new(), t);
        }
        let new = b.set_others(
            [
                ("us-east".to_string(), seen(now - 45_000, None)),
                (
                    "ap-south".to_string(),
                    seen(now - 1_000, Some("its references fail")),
                ),
                ("eu-west".to_string(), seen(now, None)),
            ]
            .into(),
            now,
        );
        assert_eq!(new.len(), 2, "{new:?}");
        assert_eq!(b.locations(), ["eu-west", "ap-south", "us-east"]);
        assert_eq!(
            verdict(&spec("us-east"), &b, now, ok()).error.as_deref(),
            Some("no daemon at us-east has written to the store for 45s (last: probed-us-1)")
        );
        assert_eq!(
            verdict(&spec("ap-south"), &b, now, ok()).error.as_deref(),
            Some("probed-us-1 at ap-south cannot see: its references fail")
        );
        assert!(
            !verdict(&spec("nowhere"), &b, now, ok()).ok,
            "a location no daemon ever wrote from"
        );
        // The store unreachable from here: silence counts as of the last read, and past
        // lost_after there is no verdict on the others at all.
        b.set_others(
            [("us-east".to_string(), seen(now - 1_000, None))].into(),
            now,
        );
        assert!(
            verdict(&spec("us-east"), &b, now + 20_000, ok()).ok,
            "as of the last read"
        );
        assert!(verdict(&spec("us-east"), &b, now + 40_000, ok()).ok);
        assert!(b.set_others(HashMap::new(), now).is_empty());
        // After a gap in the reads (an outage of the store), silence counts afresh.
        b.set_others(
            [("us-east".to_string(), seen(now - 1_000, None))].into(),
            now + 60_000,
        );
        assert!(
            verdict(&spec("us-east"), &b, now + 60_000, ok()).ok,
            "61 s silent, but only heard of again just now"
        );
    }

    #[test]
    fn names_are_checked() {
        let bad = Spec {
            location: "eu west".into(),
            lost_after: Some(Dur(Duration::ZERO)),
        };
        let e: Vec<String> = bad.validate().into_iter().map(|e| e.message).collect();
        assert_eq!(e.len(), 2, "{e:?}");
    }
}
