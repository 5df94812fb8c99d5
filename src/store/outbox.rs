//! The outbox's deliveries: which rows are due, how big the backlog is, and each try's
//! outcome, recorded with its consequence (delivered, retry later, fall back, give up) in one
//! transaction. What the outcome is, the dispatcher decides (`alert::dispatch`).

use sqlx::Row;

use super::incidents::enqueue;
use super::{Store, StoreError};
use crate::paging::Alert;

/// Rows read per delivery pass.
const DUE_PER_PASS: i64 = 256;

/// A pending outbox row whose time has come.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub notifier: String,
    /// The message, as JSON (an [`Alert`]).
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
    /// Pending rows due by `now`, the most overdue first (at most 256 per pass).
    pub async fn due_deliveries(&self, now: i64) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, notifier, alert, attempts, fallback FROM outbox \
             WHERE status = 'pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?",
        )
        .bind(now)
        .bind(DUE_PER_PASS)
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DueDelivery {
                id: r.get("id"),
                notifier: r.get("notifier"),
                alert: r.get("alert"),
                attempts: r.get::<i64, _>("attempts") as u32,
                fallback: serde_json::from_str(r.get("fallback")).unwrap_or_default(),
            })
            .collect())
    }

    /// The backlog, the rows `in_flight` left out of its next due time.
    pub async fn outbox_backlog(&self, in_flight: &[i64]) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS n, min(created_at) AS oldest FROM outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.read)
        .await?;
        let pending: i64 = row.get("n");
        let next_due = if pending as usize > in_flight.len() {
            let due: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT id, due_at FROM outbox WHERE status = 'pending' ORDER BY due_at LIMIT ?",
            )
            .bind(in_flight.len() as i64 + 1)
            .fetch_all(&self.read)
            .await?;
            due.into_iter()
                .find(|(id, _)| !in_flight.contains(id))
                .map(|(_, at)| at)
        } else {
            None
        };
        Ok(Backlog {
            pending,
            oldest: row.get("oldest"),
            next_due,
        })
    }

    /// Records a try and what becomes of its row, in one transaction.
    pub async fn record_attempt(
        &self,
        a: &Attempt<'_>,
        after: AfterAttempt<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (outbox_id, notifier, at, ok, detail, duration_us) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(a.outbox_id)
        .bind(a.notifier)
        .bind(a.at)
        .bind(a.ok as i64)
        .bind(a.detail)
        .bind(a.took_us)
        .execute(&mut *tx)
        .await?;
        match after {
            AfterAttempt::Delivered => {
                sqlx::query(
                    "UPDATE outbox SET status = 'delivered', attempts = ?, delivered_at = ?, \
                     last_error = NULL WHERE id = ? AND status = 'pending'",
                )
                .bind(a.attempts as i64)
                .bind(a.at)
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
            }
            AfterAttempt::Retry { due_at } => {
                sqlx::query(
                    "UPDATE outbox SET attempts = ?, last_error = ?, due_at = ? \
                     WHERE id = ? AND status = 'pending'",
                )
                .bind(a.attempts as i64)
                .bind(a.detail)
                .bind(due_at)
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
            }
            AfterAttempt::Failed { fallback, alert } => {
                sqlx::query(
                    "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ? \
                     WHERE id = ? AND status = 'pending'",
                )
                .bind(a.attempts as i64)
                .bind(a.detail)
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
                if let Some((next, rest)) = fallback {
                    let alert: Alert = serde_json::from_str(alert)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                    // The page moves on; its event stays what it was.
                    let mut template = alert.clone();
                    template.at = a.at;
                    enqueue(
                        &mut tx,
                        &template,
                        alert.event,
                        std::slice::from_ref(next),
                        rest,
                        a.at,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
