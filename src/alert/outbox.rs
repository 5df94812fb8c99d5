//! Incidents and the durable outbox, in SQL. Every function takes the connection of an
//! open transaction: the store writer calls [`on_down`] / [`on_up`] in the same
//! transaction as the state change, so an alert exists durably before any send is tried.

use serde::Serialize;
use sqlx::{Row, SqliteConnection};

use super::plan::PagePlan;
use super::{Alert, Event};

/// Opens an incident for a probe that went down, and queues its first page, unless one is
/// already open (a flap during the resolve hold): then the same incident simply continues.
pub async fn on_down(
    conn: &mut SqliteConnection,
    probe_id: i64,
    at: i64,
    plan: &PagePlan,
) -> Result<(), sqlx::Error> {
    let open = sqlx::query(
        "SELECT id, recovered_at FROM incidents WHERE probe_id = ? AND resolved_at IS NULL",
    )
    .bind(probe_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = open {
        let id: i64 = row.get("id");
        let recovering = row.get::<Option<i64>, _>("recovered_at").is_some();
        sqlx::query(
            "UPDATE incidents SET recovered_at = NULL, resolve_due_at = NULL, \
             flaps = flaps + ? WHERE id = ?",
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
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (probe_id, probe, severity, opened_at, reason, alert, paged, \
         muted, send_resolve) VALUES (?, ?, ?, ?, ?, '{}', ?, ?, ?) RETURNING id",
    )
    .bind(probe_id)
    .bind(&alert.probe)
    .bind(&alert.severity)
    .bind(at)
    .bind(&alert.reason)
    .bind(muted.is_none() as i64)
    .bind(&muted)
    .bind(plan.send_resolve as i64)
    .fetch_one(&mut *conn)
    .await?;
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
    sqlx::query("UPDATE incidents SET alert = ? WHERE id = ?")
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
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, \
                 last_error = 'sent from memory while the store could not be written' \
                 WHERE incident_id = ? AND status = 'pending'",
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

/// The probe recovered: the open incident starts its resolve hold.
pub async fn on_up(
    conn: &mut SqliteConnection,
    probe_id: i64,
    at: i64,
    hold_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE incidents SET recovered_at = ?, resolve_due_at = ? \
         WHERE probe_id = ? AND resolved_at IS NULL",
    )
    .bind(at)
    .bind(at + hold_ms)
    .bind(probe_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queues one message per notifier, each with the fallback chain to try if it fails.
pub async fn enqueue(
    conn: &mut SqliteConnection,
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
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
pub async fn active_silence(
    conn: &mut SqliteConnection,
    probe: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, until FROM silences WHERE until > ? AND ? GLOB probe ORDER BY until DESC LIMIT 1",
    )
    .bind(now)
    .bind(probe)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| {
        format!(
            "silence {} until {}",
            r.get::<i64, _>("id"),
            crate::time::rfc3339(r.get("until"))
        )
    }))
}

/// Notifiers that delivered a page for this incident (they get acknowledge and resolve
/// notices).
pub async fn paged_notifiers(
    conn: &mut SqliteConnection,
    incident: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT notifier FROM outbox WHERE incident_id = ? AND status = 'delivered' \
         AND event IN ('trigger', 'escalation', 'reminder') ORDER BY notifier",
    )
    .bind(incident)
    .fetch_all(&mut *conn)
    .await
}

/// Stops pages of this incident not yet sent (after a resolve or an ack).
pub async fn cancel_pending_pages(
    conn: &mut SqliteConnection,
    incident: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE outbox SET status = 'cancelled' WHERE incident_id = ? AND status = 'pending' \
         AND event IN ('trigger', 'escalation', 'reminder')",
    )
    .bind(incident)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Resolves an incident whose hold ended: cancels unsent pages, notifies those paged.
pub async fn resolve(
    conn: &mut SqliteConnection,
    incident: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "UPDATE incidents SET resolved_at = recovered_at WHERE id = ? AND resolved_at IS NULL \
         RETURNING alert, recovered_at, send_resolve",
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
    alert.state = "up".into();
    alert.resolved_at = row.get("recovered_at");
    let to = paged_notifiers(conn, incident).await?;
    enqueue(conn, &alert, Event::Resolve, &to, &[], now).await?;
    Ok(())
}

/// Why an acknowledgement was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AckError {
    NotFound,
    Resolved,
    Already(String),
}

/// Acknowledges an open incident: escalation and reminders stop, those paged are told.
pub async fn acknowledge(
    conn: &mut SqliteConnection,
    incident: i64,
    by: &str,
    now: i64,
) -> Result<Result<(), AckError>, sqlx::Error> {
    let row = sqlx::query("SELECT alert, resolved_at, acknowledged_by FROM incidents WHERE id = ?")
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
    sqlx::query("UPDATE incidents SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?")
        .bind(now)
        .bind(by)
        .bind(incident)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE outbox SET status = 'cancelled' WHERE incident_id = ? AND status = 'pending' \
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

/// Said instead of an error no phrase of [`brief_error`] fits.
pub const BRIEF_FAILED: &str = "failed";

/// A delivery's error as the public API shows it: a status and a short phrase from a fixed
/// vocabulary (`http 401`, `smtp 535`, `no answer within 10s`, `connection refused`), so
/// nothing a peer said comes through, whatever it said. The phrase found first wins: a
/// message tells our own words before it quotes the peer.
pub fn brief_error(text: &str) -> String {
    static PHRASES: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = PHRASES.get_or_init(|| {
        regex::Regex::new(concat!(
            r"\bhttp (?P<http>[1-5][0-9]{2})\b",
            r"|(?:: |\()(?P<status>[1-5][0-9]{2}) [a-z]",
            r"|server answered (?P<smtp>[2-5][0-9]{2})\b",
            r"|no answer within (?P<within>[0-9][0-9.]{0,6}(?:ms|s|m|h|d)(?:[0-9]{1,6}(?:ms|s|m))?)",
            r"|connection failed(?:: (?P<cause>connection refused|connection reset|connection closed|connection timed out|dns error|tls|invalid peer certificate))?",
            r"|(?P<conn>connection refused|connection reset|connection closed|connection timed out)",
            r"|(?P<unconfigured>is not configured)",
            r"|(?P<memory>sent from memory while the store could not be written)",
        ))
        .ok()
    });
    let Some(c) = re.as_ref().and_then(|re| re.captures(text)) else {
        return BRIEF_FAILED.into();
    };
    let group = |name: &str| c.name(name).map(|m| m.as_str());
    if let Some(code) = group("http").or(group("status")) {
        format!("http {code}")
    } else if let Some(code) = group("smtp") {
        format!("smtp {code}")
    } else if let Some(d) = group("within") {
        format!("no answer within {d}")
    } else if let Some(cause) = group("cause") {
        match cause {
            "tls" | "invalid peer certificate" => "connection failed: tls".into(),
            other => other.into(),
        }
    } else if let Some(phrase) = group("conn").or(group("memory")) {
        phrase.into()
    } else if group("unconfigured").is_some() {
        "notifier not configured".into()
    } else {
        // `connection failed` without a cause we name.
        "connection failed".into()
    }
}

/// Every delivery's error as [`brief_error`] tells it.
pub fn brief_errors(rows: &mut [IncidentRow]) {
    for d in rows.iter_mut().flat_map(|r| r.deliveries.iter_mut()) {
        if let Some(e) = &d.last_error {
            d.last_error = Some(brief_error(e));
        }
    }
}

/// Incidents, newest first; only open ones when `open_only`.
pub async fn list(
    conn: &mut SqliteConnection,
    open_only: bool,
    limit: u32,
) -> Result<Vec<IncidentRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, probe, severity, opened_at, reason, acknowledged_at, acknowledged_by, \
         recovered_at, resolved_at, flaps, muted FROM incidents \
         WHERE (? = 0 OR resolved_at IS NULL) ORDER BY id DESC LIMIT ?",
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
             WHERE incident_id = ? ORDER BY id",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_error_in_brief_is_a_status_and_a_fixed_phrase() {
        for (text, want) in [
            (
                "http://127.0.0.1:8080: http 400 bad request: authorization: Basic *** x-key: s3cret",
                "http 400",
            ),
            ("pagerduty: 429 too many requests: throttled", "http 429"),
            (
                "twilio: +15550002222: authentication failed (401 unauthorized, code 20003: \
                 Authenticate) (0 of 1 recipients accepted)",
                "http 401",
            ),
            (
                "twilio: +15550002222: 400 bad request: code 21211: invalid 'To' (0 of 1 recipients accepted)",
                "http 400",
            ),
            (
                "twilio: no answer within 10s (0 of 2 recipients accepted)",
                "no answer within 10s",
            ),
            (
                "http://am:9093: no answer within 1m30s",
                "no answer within 1m30s",
            ),
            (
                "http://h:1: connection failed: connection refused",
                "connection refused",
            ),
            (
                "https://h: connection failed: invalid peer certificate: unknown issuer",
                "connection failed: tls",
            ),
            (
                "http://h: connection failed: failed to lookup address information: s3cret.example",
                "connection failed",
            ),
            (
                "smtp 127.0.0.1:25: server answered 535 5.7.8 authentication failed for s3cret",
                "smtp 535",
            ),
            (
                "smtp 127.0.0.1:25: connection error: connection refused",
                "connection refused",
            ),
            (
                "notifier \"pager\" is not configured (or could not be built)",
                "notifier not configured",
            ),
            (
                "sent from memory while the store could not be written",
                "sent from memory while the store could not be written",
            ),
            ("cannot encode the alert: s3cret", BRIEF_FAILED),
            ("", BRIEF_FAILED),
            // What the peer said comes after our own words, and never wins.
            (
                "http://h: http 502 bad gateway: no answer within 9s, http 200, connection refused",
                "http 502",
            ),
        ] {
            let got = brief_error(text);
            assert_eq!(got, want, "{text}");
            assert!(!got.contains("s3cret"));
        }
    }
}
