//! The clock-shift task: watches the wall clock for steps and moves every pending timer by
//! each (the store's, the push board's, each probe's last result), switching the timers'
//! frame with it. The leaf it works on (the frame, [`now_ms`](crate::clock::now_ms), the
//! gate, the detector) and the design are in `src/clock.rs`; this half needs the store and
//! the probes, so it lives with the daemon that owns them.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::store::{ShiftedTimers, StoreError};
use crate::watchdog::Shared;

/// How long a shift waits for the timers' readers before trying again at the next check.
const GATE_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between shift attempts while the store cannot be written.
const MAX_BACKOFF_MS: i64 = 5_000;

/// What one shift attempt came to.
enum Shift {
    /// Nothing pending (any more).
    None,
    /// Readers held the gate; try at the next check.
    Busy,
    Done(i64, ShiftedTimers),
}

/// Watches for steps until cancelled, shifting the timers after each.
pub async fn watch(shared: Arc<Shared>, cancel: CancellationToken) {
    let offset = crate::time::now_ms() - crate::time::mono_ms();
    clock::frame().settle(offset);
    let mut detector = clock::Detector::new(offset);
    let (mut failures, mut retry_at) = (0u32, 0i64);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(clock::CHECK_EVERY) => {}
        }
        let (wall, mono) = (crate::time::now_ms(), crate::time::mono_ms());
        if let Some(step) = detector.observe(wall - mono) {
            tracing::warn!(
                step = %clock::describe(step),
                step_ms = step,
                "wall clock stepped; shifting pending timers by as much"
            );
            let m = &shared.runner.metrics;
            m.clock_steps.inc();
            m.clock_last_step.set(step as f64 / 1000.0);
        }
        if clock::frame().pending(wall, mono).is_none() {
            // Follow NTP's slewing, so only a real step ever counts as pending.
            clock::frame().settle(wall - mono);
            failures = 0;
            continue;
        }
        if mono < retry_at {
            continue;
        }
        match shift(&shared).await {
            Ok(Shift::Done(delta, n)) => {
                failures = 0;
                tracing::info!(
                    step = %clock::describe(delta),
                    incidents = n.incidents,
                    outbox = n.outbox,
                    pushes = n.pushes,
                    silences = n.silences,
                    "timers shifted by the clock step"
                );
            }
            Ok(Shift::Busy) => tracing::debug!("timers busy; shifting at the next check"),
            Ok(Shift::None) => failures = 0,
            Err(e) => {
                failures += 1;
                let wait = (250i64 << failures.min(5)).min(MAX_BACKOFF_MS);
                retry_at = crate::time::mono_ms() + wait;
                if failures.is_power_of_two() {
                    tracing::error!(
                        error = %e,
                        failures,
                        "cannot shift timers after a clock step; timers keep the old clock until it works, retrying"
                    );
                }
            }
        }
    }
}

/// Moves every pending timer by the step not yet shifted, and switches the frame.
async fn shift(shared: &Shared) -> Result<Shift, StoreError> {
    let Some(_gate) = clock::gate_exclusive(GATE_WAIT).await else {
        return Ok(Shift::Busy);
    };
    let (wall, mono) = (crate::time::now_ms(), crate::time::mono_ms());
    let Some(delta) = clock::frame().pending(wall, mono) else {
        clock::frame().settle(wall - mono);
        return Ok(Shift::None);
    };
    // Silences still running on the clock the timers are kept in.
    let kept_now = clock::frame().at(wall, mono);
    let n = shared.runner.store.shift_timers(delta, kept_now).await?;
    // The push checks read their pings and now under the board's lock: switch the frame
    // under it too.
    shared
        .runner
        .env
        .push
        .shift(delta, || clock::frame().settle(wall - mono));
    // The status API's staleness ("unknown" after two intervals without a result).
    for e in shared.entries() {
        if let Some(last) = e.live.lock().unwrap().last.as_mut() {
            last.at += delta;
        }
    }
    Ok(Shift::Done(delta, n))
}
