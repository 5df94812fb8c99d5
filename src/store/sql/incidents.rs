//! Incidents and the durable outbox, in SQL. The functions here take the connection of an
//! open transaction: the writer opens or recovers an incident ([`open_incident`],
//! [`recover_incident`]) in the same transaction as the state change, so a page exists
//! durably before any send is tried. The `Db` methods below are what the alert path and
//! the API call (through `Store`): each one a short transaction of its own.

use sqlx::Row;

use super::{Conn, Db};
use crate::paging::{Alert, Event, PagePlan};
use crate::store::{AckError, Delivery, Followups, IncidentRow, OpenIncident, StoreError};

/// Opens an incident for a probe that went down, and queues its first page, unless one is
/// already open (a flap during the resolve hold): then the same incident simply continues.
pub(crate) async fn open_incident(
    conn: &mut Conn,
    probe_id: i64,
    at: i64,
    plan: &PagePlan,
) -> Result<(), sqlx::Error> {
    let open = sqlx::query(
        "SELECT id, recovered_at FROM incidents WHERE probe_id = $1 AND resolved_at IS NULL",
    )
    .bind(probe_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = open {
        let id: i64 = row.get("id");
        let recovering = row.get::<Option<i64>, _>("recovered_at").is_some();
        sqlx::query(
            "UPDATE incidents SET recovered_at = NULL, resolve_due_at = NULL, recovered_from = NULL, \
             flaps = flaps + $1 WHERE id = $2",
        )
        .bind(recovering as i64)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    let silenced = active_silence(conn, &plan.alert.probe, at).await?;
    let muted = plan.muted.clone().or(silenced);
    let mut alert = plan.alert.clone();
    if alert.fired_as.is_empty() {
        alert.fired_as.push(alert.state.clone());
    }
    // At most one open incident per probe (a unique index): should another writer sharing
    // the store have opened one since the read above, this one is not opened twice, and that
    // one goes on instead.
    let Some(id) = sqlx::query_scalar::<_, i64>(
        "INSERT INTO incidents (probe_id, probe, severity, opened_at, reason, alert, paged, \
         muted, send_resolve) VALUES ($1, $2, $3, $4, $5, '{}', $6, $7, $8) \
         ON CONFLICT (probe_id) WHERE resolved_at IS NULL DO NOTHING RETURNING id",
    )
    .bind(probe_id)
    .bind(&alert.probe)
    .bind(&alert.severity)
    .bind(at)
    .bind(&alert.reason)
    .bind(muted.is_none() as i64)
    .bind(&muted)
    .bind(plan.send_resolve as i64)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    alert.incident = id;
    if !plan.paged_from_memory {
        // With the store's id: a database made afresh restarts incident ids at 1, and must
        // not reuse the keys a pager may still hold open.
        let store_id: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_id'")
            .fetch_one(&mut *conn)
            .await?;
        alert.dedup_key = format!("probed-{}-{store_id}-{id}", alert.source);
    }
    let template = serde_json::to_string(&alert).unwrap_or_default();
    sqlx::query("UPDATE incidents SET alert = $1 WHERE id = $2")
        .bind(&template)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if muted.is_none() {
        let n = enqueue(
            conn,
            &alert,
            Event::Trigger,
            &plan.notify,
            &plan.fallback,
            at,
        )
        .await?;
        if plan.paged_from_memory && n > 0 {
            // Sent from memory while this could not be written: record it, send nothing.
            sqlx::query(
                "UPDATE outbox SET status = 'delivered', delivered_at = $1, \
                 last_error = 'sent from memory while the store could not be written' \
                 WHERE incident_id = $2 AND status = 'pending'",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
    } else {
        tracing::info!(probe = %alert.probe, incident = id, muted = muted.as_deref().unwrap_or(""), "incident opened; paging muted");
    }
    Ok(())
}

/// The probe recovered: the open incident starts its resolve hold. `locations` says who
/// sees it up, for the resolve notice.
pub(crate) async fn recover_incident(
    conn: &mut Conn,
    probe_id: i64,
    at: i64,
    hold_ms: i64,
    locations: &Option<String>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE incidents SET recovered_at = $1, resolve_due_at = $2, recovered_from = $3 \
         WHERE probe_id = $4 AND resolved_at IS NULL",
    )
    .bind(at)
    .bind(at + hold_ms)
    .bind(locations)
    .bind(probe_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queues one message per notifier, each with the fallback chain to try if it fails.
pub(crate) async fn enqueue(
    conn: &mut Conn,
    template: &Alert,
    event: Event,
    notifiers: &[String],
    fallback: &[String],
    now: i64,
) -> Result<usize, sqlx::Error> {
    let mut alert = template.clone();
    alert.event = event;
    alert.at = now;
    let json = serde_json::to_string(&alert).unwrap_or_default();
    let mut n = 0;
    for name in notifiers {
        let chain: Vec<&String> = fallback.iter().filter(|f| *f != name).collect();
        sqlx::query(
            "INSERT INTO outbox (incident_id, event, notifier, created_at, due_at, alert, fallback) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(alert.incident)
        .bind(event.as_str())
        .bind(name)
        .bind(now)
        .bind(now)
        .bind(&json)
        .bind(serde_json::to_string(&chain).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *conn)
        .await?;
        n += 1;
    }
    Ok(n)
}

/// The active silence covering `probe` at `now`, described.
pub(crate) async fn active_silence(
    conn: &mut Conn,
    probe: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    // The running silences are few: matched here, the same on both backends (SQLite's GLOB
    // rules; PostgreSQL has no GLOB).
    let rows = sqlx::query(
        "SELECT id, until, probe FROM silences WHERE until > $1 ORDER BY until DESC, id DESC",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .find(|r| crate::config::silence_glob_match(r.get("probe"), probe))
        .map(|r| {
            format!(
                "silence {} until {}",
                r.get::<i64, _>("id"),
                crate::time::rfc3339(r.get("until"))
            )
        }))
}

/// Notifiers that delivered a page for this incident (they get acknowledge and resolve
/// notices).
pub(crate) async fn paged_notifiers(
    conn: &mut Conn,
    incident: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT notifier FROM outbox WHERE incident_id = $1 AND status = 'delivered' \
         AND event IN ('trigger', 'escalation', 'reminder') ORDER BY notifier",
    )
    .bind(incident)
    .fetch_all(&mut *conn)
    .await
}

/// Stops pages of this incident not yet sent (after a resolve or an ack).
pub(crate) async fn cancel_pending_pages(
    conn: &mut Conn,
    incident: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE outbox SET status = 'cancelled' WHERE incident_id = $1 AND status = 'pending' \
         AND event IN ('trigger', 'escalation', 'reminder')",
    )
    .bind(incident)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Resolves an incident whose hold ended: cancels unsent pages, notifies those paged.
pub(crate) async fn resolve(conn: &mut Conn, incident: i64, now: i64) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "UPDATE incidents SET resolved_at = recovered_at WHERE id = $1 AND resolved_at IS NULL \
         RETURNING alert, recovered_at, send_resolve, recovered_from",
    )
    .bind(incident)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(()) };
    cancel_pending_pages(conn, incident).await?;
    if row.get::<i64, _>("send_resolve") == 0 {
        return Ok(());
    }
    let Ok(mut alert) = serde_json::from_str::<Alert>(row.get("alert")) else {
        return Ok(());
    };
    // The states it fired in stay named (Alertmanager ends each), whatever it is now.
    if !alert.fired_as.contains(&alert.state) && alert.state != "up" {
        alert.fired_as.push(alert.state.clone());
    }
    alert.state = "up".into();
    alert.resolved_at = row.get("recovered_at");
    alert.locations = row.get("recovered_from");
    let to = paged_notifiers(conn, incident).await?;
    enqueue(conn, &alert, Event::Resolve, &to, &[], now).await?;
    Ok(())
}

/// Acknowledges an open incident: escalation and reminders stop, those paged are told.
pub(crate) async fn acknowledge(
    conn: &mut Conn,
    incident: i64,
    by: &str,
    now: i64,
) -> Result<Result<(), AckError>, sqlx::Error> {
    let row =
        sqlx::query("SELECT alert, resolved_at, acknowledged_by FROM incidents WHERE id = $1")
            .bind(incident)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(row) = row else {
        return Ok(Err(AckError::NotFound));
    };
    if row.get::<Option<i64>, _>("resolved_at").is_some() {
        return Ok(Err(AckError::Resolved));
    }
    if let Some(who) = row.get::<Option<String>, _>("acknowledged_by") {
        return Ok(Err(AckError::Already(who)));
    }
    sqlx::query("UPDATE incidents SET acknowledged_at = $1, acknowledged_by = $2 WHERE id = $3")
        .bind(now)
        .bind(by)
        .bind(incident)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE outbox SET status = 'cancelled' WHERE incident_id = $1 AND status = 'pending' \
         AND event IN ('escalation', 'reminder')",
    )
    .bind(incident)
    .execute(&mut *conn)
    .await?;
    if let Ok(mut alert) = serde_json::from_str::<Alert>(row.get("alert")) {
        alert.acknowledged_by = Some(by.to_owned());
        let to = paged_notifiers(conn, incident).await?;
        enqueue(conn, &alert, Event::Acknowledge, &to, &[], now).await?;
    }
    Ok(Ok(()))
}

/// Incidents, newest first; only open ones when `open_only`.
pub(crate) async fn list(
    conn: &mut Conn,
    open_only: bool,
    limit: u32,
) -> Result<Vec<IncidentRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, probe, severity, opened_at, reason, acknowledged_at, acknowledged_by, \
         recovered_at, resolved_at, flaps, muted FROM incidents \
         WHERE ($1 = 0 OR resolved_at IS NULL) ORDER BY id DESC LIMIT $2",
    )
    .bind(open_only as i64)
    .bind(limit.min(10_000) as i64)
    .fetch_all(&mut *conn)
    .await?;
    let t = |v: Option<i64>| v.map(crate::time::rfc3339);
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get("id");
        let deliveries = sqlx::query(
            "SELECT notifier, event, status, attempts, last_error, delivered_at FROM outbox \
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|d| Delivery {
            notifier: d.get("notifier"),
            event: d.get("event"),
            status: d.get("status"),
            attempts: d.get("attempts"),
            last_error: d.get("last_error"),
            delivered_at: t(d.get("delivered_at")),
        })
        .collect();
        let resolved: Option<i64> = r.get("resolved_at");
        let recovered: Option<i64> = r.get("recovered_at");
        let acked: Option<i64> = r.get("acknowledged_at");
        out.push(IncidentRow {
            id,
            probe: r.get("probe"),
            severity: r.get("severity"),
            state: if resolved.is_some() {
                "resolved"
            } else if recovered.is_some() {
                "recovering"
            } else if acked.is_some() {
                "acknowledged"
            } else {
                "open"
            }
            .into(),
            opened_at: crate::time::rfc3339(r.get("opened_at")),
            reason: r.get("reason"),
            acknowledged_at: t(acked),
            acknowledged_by: r.get("acknowledged_by"),
            recovered_at: t(recovered),
            resolved_at: t(resolved),
            flaps: r.get("flaps"),
            muted: r.get("muted"),
            deliveries,
        });
    }
    Ok(out)
}

impl Db {
    /// Incidents, newest first; only open ones when `open_only` (the API, `probectl`).
    pub(crate) async fn incidents(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let mut conn = self.read.acquire().await?;
        Ok(list(&mut conn, open_only, limit).await?)
    }

    /// Acknowledges an open incident: escalation and reminders stop, those paged are told.
    pub(crate) async fn acknowledge(
        &self,
        incident: i64,
        by: &str,
        now: i64,
    ) -> Result<Result<(), AckError>, StoreError> {
        let mut tx = self.write.begin().await?;
        let r = acknowledge(&mut tx, incident, by, now).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Incidents whose recovery has held until `now`.
    pub(crate) async fn incidents_due_to_resolve(&self, now: i64) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM incidents WHERE resolved_at IS NULL AND resolve_due_at <= $1",
        )
        .bind(now)
        .fetch_all(&self.write)
        .await?)
    }

    /// Resolves an incident whose hold ended: cancels unsent pages, notifies those paged.
    pub(crate) async fn resolve_incident(&self, incident: i64, now: i64) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        resolve(&mut tx, incident, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every incident not resolved yet, with its probe's state now.
    pub(crate) async fn open_incidents(&self) -> Result<Vec<OpenIncident>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, i.probe_id, i.probe, i.opened_at, i.alert, i.paged, \
             i.acknowledged_at, i.recovered_at, i.escalation_step, i.last_reminder_at, \
             p.state AS probe_state \
             FROM incidents i LEFT JOIN probes p ON p.id = i.probe_id \
             WHERE i.resolved_at IS NULL",
        )
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let recovered_at: Option<i64> = r.get("recovered_at");
                OpenIncident {
                    id: r.get("id"),
                    probe_id: r.get("probe_id"),
                    probe: r.get("probe"),
                    opened_at: r.get("opened_at"),
                    alert: r.get("alert"),
                    paged: r.get::<i64, _>("paged") != 0,
                    acknowledged: r.get::<Option<i64>, _>("acknowledged_at").is_some(),
                    recovering: recovered_at.is_some(),
                    recovered_at,
                    escalation_step: r.get("escalation_step"),
                    last_reminder_at: r.get("last_reminder_at"),
                    probe_state: r.get("probe_state"),
                }
            })
            .collect())
    }

    /// Why probe `probe_id` is `state` now, from what is written since `since` (the
    /// incident's opening, unix ms): when `down`, the latest failure (a location's latest
    /// result, else the latest failing result kept); when `degraded`, the objective the
    /// probe's change to it named. `None` when nothing says.
    pub(crate) async fn current_reason(
        &self,
        probe_id: i64,
        state: &str,
        since: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.read.acquire().await?;
        if state == "degraded" {
            return Ok(sqlx::query_scalar(
                "SELECT reason FROM state_changes WHERE probe_id = $1 AND loc = $2 \
                 AND to_state = 'degraded' AND at >= $3 AND reason IS NOT NULL \
                 ORDER BY at DESC LIMIT 1",
            )
            .bind(probe_id)
            .bind(crate::store::OVERALL)
            .bind(since)
            .fetch_optional(&mut *conn)
            .await?);
        }
        // Each location's latest result: a failing one is the freshest word there is.
        let latest: Option<String> = sqlx::query_scalar(
            "SELECT error FROM probe_locations WHERE probe_id = $1 AND ok = 0 \
             AND checked_at >= $2 AND error IS NOT NULL ORDER BY checked_at DESC LIMIT 1",
        )
        .bind(probe_id)
        .bind(since)
        .fetch_optional(&mut *conn)
        .await?;
        if latest.is_some() {
            return Ok(latest);
        }
        // Still down, but its latest runs passed (short of `recover_after`): the last
        // failure, among the results of this incident.
        Ok(sqlx::query_scalar(
            "SELECT error FROM results WHERE probe_id = $1 AND at >= $2 AND ok = 0 \
             AND error IS NOT NULL ORDER BY at DESC LIMIT 1",
        )
        .bind(probe_id)
        .bind(since)
        .fetch_optional(&mut *conn)
        .await?)
    }

    /// Replaces the message template of an open incident (the probe went from `down` to
    /// `degraded` or back: one incident, told in its new state from now on).
    pub(crate) async fn set_incident_alert(
        &self,
        incident: i64,
        alert: &Alert,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE incidents SET alert = $1 WHERE id = $2 AND resolved_at IS NULL")
            .bind(serde_json::to_string(alert).unwrap_or_default())
            .bind(incident)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Closes an incident whose probe left the config (nothing will ever recover it): it
    /// recovers now, with no hold.
    pub(crate) async fn close_incident_now(
        &self,
        incident: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE incidents SET recovered_at = $1, resolve_due_at = $2 WHERE id = $3")
            .bind(now)
            .bind(now)
            .bind(incident)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The active silence covering `probe` at `now`, described.
    pub(crate) async fn silence_covering(
        &self,
        probe: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.write.acquire().await?;
        Ok(active_silence(&mut conn, probe, now).await?)
    }

    /// Why a page from memory would be one too many, read on the read pool (writes are
    /// failing when this is asked): an incident of the probe still open, or a silence.
    pub(crate) async fn open_incident_or_silence(
        &self,
        probe_id: i64,
        probe: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let open = sqlx::query(
            "SELECT id FROM incidents WHERE probe_id = $1 AND resolved_at IS NULL LIMIT 1",
        )
        .bind(probe_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = open {
            return Ok(Some(format!(
                "incident {} is still open",
                r.get::<i64, _>("id")
            )));
        }
        Ok(active_silence(&mut conn, probe, now).await?)
    }

    pub(crate) async fn incident_keys_since(
        &self,
        probe_id: i64,
        since: i64,
    ) -> Result<Vec<String>, StoreError> {
        let alerts: Vec<String> = sqlx::query_scalar(
            "SELECT alert FROM incidents WHERE probe_id = $1 \
             AND (resolved_at IS NULL OR resolved_at >= $2)",
        )
        .bind(probe_id)
        .bind(since)
        .fetch_all(&self.read)
        .await?;
        Ok(alerts
            .iter()
            .filter_map(|a| serde_json::from_str::<Alert>(a).ok())
            .map(|a| a.dedup_key)
            .collect())
    }

    /// The mute of an incident ended: its first page goes to `route` (notifiers, fallback
    /// chain; none when no route matches any more) and the incident counts as paged.
    pub(crate) async fn page_after_mute(
        &self,
        incident: i64,
        alert: &Alert,
        route: Option<(&[String], &[String])>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        // Once, whoever gets here first (several daemons may share the store).
        let first =
            sqlx::query("UPDATE incidents SET paged = 1, muted = NULL WHERE id = $1 AND paged = 0")
                .bind(incident)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        if let (true, Some((notify, fallback))) = (first, route) {
            enqueue(&mut tx, alert, Event::Trigger, notify, fallback, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When each notifier was last queued a firing message of `incident`.
    pub(crate) async fn last_sends(&self, incident: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT notifier, max(created_at) AS last FROM outbox WHERE incident_id = $1 \
             AND event != 'resolve' GROUP BY notifier",
        )
        .bind(incident)
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|l| (l.get("notifier"), l.get("last")))
            .collect())
    }

    /// Queues what housekeeping found due for an open incident, in one transaction.
    pub(crate) async fn queue_followups(
        &self,
        incident: i64,
        alert: &Alert,
        f: &Followups<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        // Each step and reminder is taken from the state it was decided on: when several
        // daemons share the store and decide the same, the first to write it queues it, the
        // others find it taken.
        if let Some((step, notify, fallback)) = f.escalate {
            let won = sqlx::query(
                "UPDATE incidents SET escalation_step = $1 WHERE id = $2 AND escalation_step = $3",
            )
            .bind(step)
            .bind(incident)
            .bind(step - 1)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if won {
                enqueue(&mut tx, alert, Event::Escalation, notify, fallback, now).await?;
            }
        }
        if let Some((notify, fallback)) = f.remind {
            let won = sqlx::query(
                "UPDATE incidents SET last_reminder_at = $1 WHERE id = $2 \
                 AND COALESCE(last_reminder_at, -1) = COALESCE($3, -1)",
            )
            .bind(now)
            .bind(incident)
            .bind(f.last_reminder_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if won {
                enqueue(&mut tx, alert, Event::Reminder, notify, fallback, now).await?;
            }
        }
        for name in f.refresh {
            enqueue(
                &mut tx,
                alert,
                Event::Reminder,
                std::slice::from_ref(name),
                &[],
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
