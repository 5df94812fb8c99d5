//! The outbox's deliveries: which rows are due, how big the backlog is, and each try's
//! outcome, recorded with its consequence (delivered, retry later, fall back, give up) in one
//! transaction. What the outcome is, the dispatcher decides (`alert::dispatch`).

use super::{Store, StoreError};

/// A pending outbox row whose time has come.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub notifier: String,
    /// The message, as JSON (an [`Alert`](crate::paging::Alert)).
    pub alert: String,
    pub attempts: u32,
    /// The notifiers to try next if this one fails for good.
    pub fallback: Vec<String>,
}

/// The outbox's backlog.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    /// Rows pending.
    pub pending: i64,
    /// Creation time (unix ms) of the oldest pending row.
    pub oldest: Option<i64>,
    /// When the next pending row not in flight falls due.
    pub next_due: Option<i64>,
}

/// One try of one outbox row.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub outbox_id: i64,
    pub notifier: &'a str,
    /// When it ended, unix ms.
    pub at: i64,
    pub ok: bool,
    /// What the channel said, or the error.
    pub detail: &'a str,
    pub took_us: i64,
    /// Tries of this row so far, this one included.
    pub attempts: u32,
}

/// What becomes of the row after a try.
#[derive(Debug)]
pub enum AfterAttempt<'a> {
    Delivered,
    /// Tried again at `due_at`.
    Retry {
        due_at: i64,
    },
    /// Failed for good; the page moves to `next` of its fallback chain (with `rest` after
    /// it), its event kept, if there is one. `alert` is the row's message (JSON).
    Failed {
        fallback: Option<(&'a String, &'a [String])>,
        alert: &'a str,
    },
}

impl Store {
    /// Pending rows due by `now`, the most overdue first (at most 256 per pass), claimed
    /// for `claimer` (this daemon's instance) until `now + lease_ms`: rows another daemon
    /// holds a live claim on are left to it; a claim that ran out (its daemon died mid-send)
    /// is taken over. A daemon's own claims are its own again after a restart.
    pub async fn due_deliveries(
        &self,
        now: i64,
        claimer: &str,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        on_db!(&self.db, db => db.due_deliveries(now, claimer, lease_ms).await)
    }

    /// The backlog, the rows `in_flight` left out of its next due time.
    pub async fn outbox_backlog(&self, in_flight: &[i64]) -> Result<Backlog, StoreError> {
        on_db!(&self.db, db => db.outbox_backlog(in_flight).await)
    }

    /// Records a try and what becomes of its row, in one transaction.
    pub async fn record_attempt(
        &self,
        a: &Attempt<'_>,
        after: AfterAttempt<'_>,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, db => db.record_attempt(a, after).await)
    }
}
