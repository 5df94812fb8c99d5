//! Incidents: what the API lists and the dispatcher's housekeeping reads and queues. The SQL
//! is in `sql/incidents.rs` (the writer opens or recovers an incident in the same
//! transaction as the state change, so a page exists durably before any send is tried);
//! each method here is one short transaction of its own on the backend the store was opened
//! on.

use serde::Serialize;

use super::{Store, StoreError};
use crate::paging::Alert;

/// Why an acknowledgement was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AckError {
    NotFound,
    Resolved,
    Already(String),
}

/// An incident as the API lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct IncidentRow {
    pub id: i64,
    pub probe: String,
    pub severity: String,
    pub state: String,
    pub opened_at: String,
    pub reason: Option<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub recovered_at: Option<String>,
    pub resolved_at: Option<String>,
    pub flaps: i64,
    pub muted: Option<String>,
    /// Messages sent or queued: `notifier event status` each.
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Delivery {
    pub notifier: String,
    pub event: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

/// An open incident as the dispatcher's housekeeping reads it.
#[derive(Debug, Clone)]
pub struct OpenIncident {
    pub id: i64,
    pub probe_id: i64,
    pub probe: String,
    pub opened_at: i64,
    /// The message template, as JSON (an [`Alert`]).
    pub alert: String,
    /// Its first page was queued (not muted, or the mute has ended).
    pub paged: bool,
    pub acknowledged: bool,
    pub recovering: bool,
    /// When the probe came back up, while the incident holds before it resolves.
    pub recovered_at: Option<i64>,
    pub escalation_step: i64,
    pub last_reminder_at: Option<i64>,
    /// The probe's state now (`down`, `degraded`, `up`, ...), as the store has it: several
    /// daemons sharing it agree on it. `None` if the probe is not registered.
    pub probe_state: Option<String>,
}

/// What one housekeeping pass queues for an open incident, in one transaction, in this
/// order: the next escalation step, a reminder, refreshes.
#[derive(Debug, Default)]
pub struct Followups<'a> {
    /// The step the incident moves to, and its notifiers and fallback chain.
    pub escalate: Option<(i64, &'a [String], &'a [String])>,
    /// The route's notifiers and fallback chain.
    pub remind: Option<(&'a [String], &'a [String])>,
    /// The incident's last reminder as the reminder was decided on (it is queued only if
    /// no one else has reminded meanwhile).
    pub last_reminder_at: Option<i64>,
    /// Notifiers re-sent to while the incident fires (receivers that forget: Alertmanager).
    pub refresh: &'a [String],
}

impl Store {
    /// Incidents, newest first; only open ones when `open_only` (the API, `probectl`).
    pub async fn incidents(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        on_db!(&self.db, db => db.incidents(open_only, limit).await)
    }

    /// Acknowledges an open incident: escalation and reminders stop, those paged are told.
    pub async fn acknowledge(
        &self,
        incident: i64,
        by: &str,
        now: i64,
    ) -> Result<Result<(), AckError>, StoreError> {
        on_db!(&self.db, db => db.acknowledge(incident, by, now).await)
    }

    /// Incidents whose recovery has held until `now`.
    pub async fn incidents_due_to_resolve(&self, now: i64) -> Result<Vec<i64>, StoreError> {
        on_db!(&self.db, db => db.incidents_due_to_resolve(now).await)
    }

    /// Resolves an incident whose hold ended: cancels unsent pages, notifies those paged.
    pub async fn resolve_incident(&self, incident: i64, now: i64) -> Result<(), StoreError> {
        on_db!(&self.db, db => db.resolve_incident(incident, now).await)
    }

    /// Every incident not resolved yet, with its probe's state now.
    pub async fn open_incidents(&self) -> Result<Vec<OpenIncident>, StoreError> {
        on_db!(&self.db, db => db.open_incidents().await)
    }

    /// Why probe `probe_id` is `state` (`down`, `degraded`) now, from what was written since
    /// `since` (its incident's opening): the latest failure when down, the objective named
    /// when degraded. Every message of an open incident tells this, not the reason it
    /// opened with.
    pub async fn current_reason(
        &self,
        probe_id: i64,
        state: &str,
        since: i64,
    ) -> Result<Option<String>, StoreError> {
        on_db!(&self.db, db => db.current_reason(probe_id, state, since).await)
    }

    /// Replaces the message template of an open incident (its probe went from `down` to
    /// `degraded` or back).
    pub async fn set_incident_alert(&self, incident: i64, alert: &Alert) -> Result<(), StoreError> {
        on_db!(&self.db, db => db.set_incident_alert(incident, alert).await)
    }

    /// Closes an incident whose probe left the config (nothing will ever recover it): it
    /// recovers now, with no hold.
    pub async fn close_incident_now(&self, incident: i64, now: i64) -> Result<(), StoreError> {
        on_db!(&self.db, db => db.close_incident_now(incident, now).await)
    }

    /// The active silence covering `probe` at `now`, described.
    pub async fn silence_covering(
        &self,
        probe: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        on_db!(&self.db, db => db.silence_covering(probe, now).await)
    }

    /// Why a page from memory would be one too many, read on the read pool (writes are
    /// failing when this is asked): an incident of the probe still open, or a silence.
    pub async fn open_incident_or_silence(
        &self,
        probe_id: i64,
        probe: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        on_db!(&self.db, db => db.open_incident_or_silence(probe_id, probe, now).await)
    }

    /// The dedup keys of the probe's incidents open at or since `since` (unix ms): still
    /// open, or resolved since (read on the read pool).
    pub async fn incident_keys_since(
        &self,
        probe_id: i64,
        since: i64,
    ) -> Result<Vec<String>, StoreError> {
        on_db!(&self.db, db => db.incident_keys_since(probe_id, since).await)
    }

    /// The mute of an incident ended: its first page goes to `route` (notifiers, fallback
    /// chain; none when no route matches any more) and the incident counts as paged.
    pub async fn page_after_mute(
        &self,
        incident: i64,
        alert: &Alert,
        route: Option<(&[String], &[String])>,
        now: i64,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, db => db.page_after_mute(incident, alert, route, now).await)
    }

    /// When each notifier was last queued a firing message of `incident`.
    pub async fn last_sends(&self, incident: i64) -> Result<Vec<(String, i64)>, StoreError> {
        on_db!(&self.db, db => db.last_sends(incident).await)
    }

    /// Queues what housekeeping found due for an open incident, in one transaction.
    pub async fn queue_followups(
        &self,
        incident: i64,
        alert: &Alert,
        f: &Followups<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, db => db.queue_followups(incident, alert, f, now).await)
    }
}
