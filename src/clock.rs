//! Wall-clock steps: NTP stepping a wrong clock, an operator's `date -s`, a VM resumed with a
//! stale clock.
//!
//! Durations never see them: they are measured on the monotonic clock, and the scheduler
//! advances on it after the first fire. What a step does break are the *timers* kept as
//! wall-clock instants (unix ms) because they must survive a restart: a push probe's last
//! ping (`pushes`, and the in-memory push board), an incident's opening, recovery and
//! reminder times (escalation, resolve hold, reminders compare them with now), the outbox's
//! due times (retries) and creation times (Alertmanager refresh, oldest-undelivered age), and
//! silences' ends. Compared with a clock stepped forward by an hour, every push probe is late
//! (false pages) and every escalation fires at once; stepped back, a missing ping or an
//! unacknowledged page waits an hour longer than it should.
//!
//! # Design
//!
//! * **Detection.** `offset = wall - monotonic` is constant while the wall clock runs
//!   normally (NTP slewing moves it by well under a millisecond a second). The daemon's watch
//!   (`daemon/clock.rs`, it needs the store and the probes) samples it
//!   every 250 ms; a change of more than [`STEP_MS`] is a step. It is logged (`wall clock
//!   stepped`, with its size) and counted (`probed_clock_steps_total`,
//!   `probed_clock_last_step_seconds`).
//! * **Shift.** Either the clock was wrong before the step or it is wrong after it; we cannot
//!   tell which, but the monotonic clock tells exactly how much time passed. So every pending
//!   timer moves by the step Δ (one store transaction, `Store::shift_timers`,
//!   plus the push board and each probe's last-result time in memory): each keeps the time it
//!   had left, measured on the new clock. History (results, state changes, delivery attempts,
//!   resolved incidents, expired silences) keeps the times it was recorded with.
//! * **One frame.** Stored timers and the "now" they are compared with must be on the same
//!   clock. [`now_ms`] is the time timers use: the wall clock, except while a detected step has
//!   not been shifted into the stored timers yet, when it is the pre-step clock carried on by
//!   the monotonic one (`monotonic + the old offset`). It even notices a step before
//!   the watch does (it compares the offsets on every call), so nothing fires in the up to
//!   250 ms before the shift, and nothing fires wrongly while the store cannot be written
//!   and the shift waits (it is retried with backoff up to 5 s, never dropped: the pending
//!   Δ is simply `offset - the offset the timers are kept in`, however many steps that is).
//!   The switch to the new frame happens together with the shift: [`gate`] is held (shared)
//!   by whoever reads "now" and then writes or compares stored timers (the dispatcher's pass,
//!   a delivery being recorded, the push and silence API), and the shift holds it
//!   exclusively; the push board moves its times and switches the frame under its own lock.
//!
//! Known limits. A probe run that starts before a shift and has its state change committed
//! after it (within the run's duration plus the writer's linger) opens or recovers its
//! incident at a time Δ off. A change of at most [`STEP_MS`] is not a step: the timers absorb
//! it, as they would a slew. Suspend/resume moves the offset too (the monotonic clock stops
//! while suspended), so timers are shifted by the time asleep: a monitor that slept saw
//! nothing, and counts from when it woke.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A change of the wall-to-monotonic offset larger than this is a step.
pub const STEP_MS: i64 = 1_000;
/// How often the watch samples the offset.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The offset (`wall - monotonic`, ms) the stored timers are kept in; `UNSET` before the
/// daemon starts watching (then [`now_ms`] is plain wall time).
pub struct Frame {
    base: AtomicI64,
}

const UNSET: i64 = i64::MIN;

impl Frame {
    pub const fn new() -> Frame {
        Frame {
            base: AtomicI64::new(UNSET),
        }
    }

    /// Timer time at wall clock `wall` and monotonic `mono`: `wall`, unless it has stepped
    /// away from the frame, then the frame's clock (`mono + base`).
    pub fn at(&self, wall: i64, mono: i64) -> i64 {
        let base = self.base.load(Ordering::Acquire);
        if base == UNSET {
            return wall;
        }
        let kept = mono + base;
        if (wall - kept).abs() > STEP_MS {
            kept
        } else {
            wall
        }
    }

    /// The step not yet shifted into the timers, if any.
    pub fn pending(&self, wall: i64, mono: i64) -> Option<i64> {
        let base = self.base.load(Ordering::Acquire);
        if base == UNSET {
            return None;
        }
        let delta = wall - mono - base;
        (delta.abs() > STEP_MS).then_some(delta)
    }

    /// The timers are now kept in `offset` (after a shift, or following a slew).
    pub fn settle(&self, offset: i64) {
        self.base.store(offset, Ordering::Release);
    }
}

impl Default for Frame {
    fn default() -> Self {
        Frame::new()
    }
}

/// The daemon's frame (one daemon per process).
static FRAME: Frame = Frame::new();
/// Held shared by readers of [`now_ms`] that compare or write stored timers; exclusively by
/// the shift.
static GATE: RwLock<()> = RwLock::const_new(());

/// Now, in unix ms, for timers: the wall clock, on the same footing as the stored timers
/// (see the module docs). Use it for anything compared with, or stored as, a timer.
pub fn now_ms() -> i64 {
    FRAME.at(crate::time::now_ms(), crate::time::mono_ms())
}

/// Hold while reading [`now_ms`] and then comparing it with, or writing, stored timers: a
/// shift cannot land in between. Held briefly; never across a send.
pub async fn gate() -> RwLockReadGuard<'static, ()> {
    GATE.read().await
}

/// The daemon's frame, for the task that watches for steps and shifts the timers.
pub fn frame() -> &'static Frame {
    &FRAME
}

/// The gate held exclusively, for a shift: `None` if the timers' readers hold it for longer
/// than `wait`.
pub async fn gate_exclusive(wait: Duration) -> Option<RwLockWriteGuard<'static, ()>> {
    tokio::time::timeout(wait, GATE.write()).await.ok()
}

/// Spots steps in a series of offsets.
#[derive(Debug)]
pub struct Detector {
    seen: i64,
}

impl Detector {
    pub fn new(offset: i64) -> Detector {
        Detector { seen: offset }
    }

    /// The step since the last sample, if the offset moved by more than [`STEP_MS`].
    pub fn observe(&mut self, offset: i64) -> Option<i64> {
        let step = offset - self.seen;
        self.seen = offset;
        (step.abs() > STEP_MS).then_some(step)
    }
}

/// `+1h`, `-2.5s`: a step for people (to the second from 10 s up, since two clock reads
/// jitter by a millisecond).
pub fn describe(step_ms: i64) -> String {
    let mut ms = step_ms.unsigned_abs();
    if ms >= 10_000 {
        ms = (ms + 500) / 1000 * 1000;
    }
    let d = Duration::from_millis(ms);
    format!(
        "{}{}",
        if step_ms < 0 { "-" } else { "+" },
        crate::units::format_duration(d)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn the_detector_ignores_slew_and_jitter_and_reports_steps_signed() {
        let mut d = Detector::new(1_000_000);
        // Millisecond jitter of two clock reads, and slewing.
        for o in [1_000_001, 999_999, 1_000_000, 1_000_400, 1_000_900] {
            assert_eq!(d.observe(o), None, "{o}");
        }
        assert_eq!(d.observe(1_000_900 + H), Some(H), "an hour forward");
        assert_eq!(
            d.observe(1_000_900 + H + 3),
            None,
            "the new offset is the norm"
        );
        assert_eq!(
            d.observe(1_000_903 - 1_500),
            Some(-H - 1_500),
            "back past the start"
        );
        assert_eq!(
            d.observe(1_000_903 - 1_500 - 1_000),
            None,
            "exactly 1 s is not a step"
        );
        assert_eq!(d.observe(1_000_903 - 1_500 - 2_001), Some(-1_001));
    }

    #[test]
    fn the_frame_keeps_the_old_clock_until_the_step_is_shifted() {
        let f = Frame::new();
        // Not watching: plain wall time.
        assert_eq!(f.at(5 * H, 10), 5 * H);
        assert_eq!(f.pending(5 * H, 10), None);
        let base = 5 * H;
        f.settle(base);
        // Running normally, with jitter and slew: the wall clock itself.
        assert_eq!(f.at(base + 1_000, 1_000), base + 1_000);
        assert_eq!(f.at(base + 1_250, 1_000), base + 1_250);
        assert_eq!(f.pending(base + 1_250, 1_000), None);
        // Stepped forward an hour at monotonic 2000: timers go on in the old frame.
        assert_eq!(f.at(base + 2_500 + H, 2_500), base + 2_500);
        assert_eq!(f.pending(base + 2_500 + H, 2_500), Some(H));
        // Back again before the shift landed: nothing to shift.
        assert_eq!(f.at(base + 2_600, 2_600), base + 2_600);
        assert_eq!(f.pending(base + 2_600, 2_600), None);
        // Back an hour: the same.
        assert_eq!(f.at(base + 3_000 - H, 3_000), base + 3_000);
        assert_eq!(f.pending(base + 3_000 - H, 3_000), Some(-H));
        // Shifted: the frame is the new clock.
        f.settle(base - H);
        assert_eq!(f.at(base + 3_100 - H, 3_100), base + 3_100 - H);
        assert_eq!(f.pending(base + 3_100 - H, 3_100), None);
    }

    #[test]
    fn steps_read_signed() {
        assert_eq!(describe(H), "+1h");
        assert_eq!(describe(-H), "-1h");
        assert_eq!(describe(-2_500), "-2.5s");
        assert_eq!(describe(3_600_001), "+1h");
        assert_eq!(describe(-3_599_999), "-1h");
    }
}
