//! The daemon's HTTP API (axum): `/metrics`, `/probe` (blackbox_exporter's, in
//! [`probe`]), `/healthz`, `/api/v1/status`, `/api/v1/probes/{name}/results`. Listens on
//! loopback unless configured otherwise.
//! Nothing here returns a probe's URL, headers or any other config value that could hold a
//! secret: only names, states, timings and the probes' own error text (which the probes
//! write without userinfo or header values).

mod probe;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{FromRef, Path, Query, State as AxState};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::evaluate::State;
use crate::report::{DaemonStatus, ProbeStatus, StatusReport};
use crate::watchdog::{Shared, problems_of};

/// What the handlers share: the daemon's state, and the public view's cache (which only
/// the public documents read). A handler extracts either as its `State`.
#[derive(Clone)]
struct ApiState {
    shared: Arc<Shared>,
    /// The public view (status page, feeds, Statuspage JSON, badges), rebuilt at most every
    /// [`crate::public::CACHE_FOR`].
    public: Arc<crate::public::Cache>,
}

impl FromRef<ApiState> for Arc<Shared> {
    fn from_ref(s: &ApiState) -> Arc<Shared> {
        s.shared.clone()
    }
}

/// The API's routes over `shared`, with a public view cache of their own.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/probe", get(probe::probe))
        .route("/healthz", get(healthz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/probes/{name}/results", get(results))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}/ack", axum::routing::post(ack))
        .route("/api/v1/silences", get(silences).post(add_silence))
        // healthchecks.io's ping URLs; GET (and so HEAD) and POST alike, with or without a
        // trailing slash.
        .route("/api/v1/push/{token}", get(push_ok).post(push_ok))
        .route("/api/v1/push/{token}/", get(push_ok).post(push_ok))
        .route(
            "/api/v1/push/{token}/{what}",
            get(push_other).post(push_other),
        )
        .route(
            "/api/v1/push/{token}/{what}/",
            get(push_other).post(push_other),
        )
        .route("/status", get(status_page))
        .route("/api/v2/summary.json", get(sp_summary))
        .route("/api/v2/status.json", get(sp_status))
        .route("/api/v2/components.json", get(sp_components))
        .route("/api/v2/incidents.json", get(sp_incidents))
        .route("/api/v2/incidents/unresolved.json", get(sp_unresolved))
        .route("/api/v2/scheduled-maintenances.json", get(sp_maintenances))
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(sp_maintenances_upcoming),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(sp_maintenances_active),
        )
        .route("/feed.atom", get(feed_atom))
        .route("/feed.rss", get(feed_rss))
        .route("/badge/{probe}/{file}", get(badge))
        .fallback(not_found)
        .with_state(ApiState {
            shared,
            public: Default::default(),
        })
}

/// Serves `router` on `listener` until `shutdown` completes, with the connection limits of
/// [`server`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    limits: server::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(shared), limits, shutdown).await
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not found"})),
    )
        .into_response()
}

/// Rendering for ten thousand probes takes tens of milliseconds: off the runtime's worker
/// threads, so probe timers never wait behind a scrape. The text goes out family by family
/// as it is rendered (two families in hand at most), never whole: at 10,000 probes it is
/// about 25 MB.
async fn metrics(AxState(s): AxState<Arc<Shared>>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(1);
    tokio::task::spawn_blocking(move || {
        s.refresh_gauges();
        // A scraper that went away closes the channel: rendering stops there.
        s.runner
            .metrics
            .render_to(&mut |chunk| tx.blocking_send(chunk).is_ok());
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn healthz(AxState(s): AxState<Arc<Shared>>) -> Response {
    let checks = s.health();
    let problems = problems_of(&checks);
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({
            "status": if problems.is_empty() { "ok" } else { "unhealthy" },
            "problems": problems,
            "checks": checks,
        })),
    )
        .into_response()
}

async fn status(AxState(s): AxState<Arc<Shared>>) -> Response {
    // Built and serialized off the worker threads, as for /metrics.
    match tokio::task::spawn_blocking(move || serde_json::to_vec(&build_status(&s))).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({"error": "cannot build the status report"})),
        )
            .into_response(),
    }
}

/// The status report, from memory only (no store reads), so it answers fast at any size.
pub fn build_status(s: &Shared) -> StatusReport {
    // The timers' clock: staleness compares it with each probe's last result.
    let now = crate::clock::now_ms();
    let probes = s.reported_entries();
    // Measured on the monotonic clock (anchored when the daemon started), so a clock step
    // neither stretches the uptime nor hides a stale probe behind a start "in the future".
    let uptime_ms = crate::time::mono_ms();
    let started = now - uptime_ms;
    let mut out = Vec::with_capacity(probes.len());
    for e in &probes {
        let cfg = &e.cfg;
        // Copy out what is needed under the lock; format after releasing it.
        let (verdicts, (overall, overall_since), last, uptime_24h, slo, locations) = {
            let live = e.live.lock().unwrap();
            let locations = locations_of(s, e, &live, now);
            let last = match &live.last {
                Some(l) => Some((
                    l.at,
                    Some(l.duration_us),
                    if l.ok { None } else { l.error.clone() },
                )),
                // A probe kept to other locations: their latest verdict.
                None => s.runner.votes.read().unwrap().get(&e.id).and_then(|vs| {
                    vs.iter()
                        .filter_map(|v| Some((v.checked_at?, v)))
                        .max_by_key(|(at, _)| *at)
                        .map(|(at, v)| {
                            let error = v.reason.clone().filter(|_| v.state != State::Up);
                            (at, None, error)
                        })
                }),
            };
            (
                live.verdicts.clone(),
                (live.overall, live.overall_since),
                last,
                live.window.uptime_24h(now),
                live.slo.as_ref().map(|t| t.figures(now)),
                locations,
            )
        };
        let mut state = overall;
        // Stale: the probe should have run twice since its last result. Say so rather than
        // repeat an old verdict.
        let last_at = last.as_ref().map(|l| l.0).unwrap_or(started);
        if state != State::Paused && now - last_at.max(started) > e.stale_after_ms {
            state = State::Unknown;
        }
        out.push(ProbeStatus {
            name: cfg.name.clone(),
            kind: cfg.spec.kind().to_owned(),
            state,
            since: overall_since.map(crate::time::rfc3339),
            last_checked_at: last.as_ref().map(|l| crate::time::rfc3339(l.0)),
            last_latency_ms: last.as_ref().and_then(|l| l.1).map(|us| us as f64 / 1000.0),
            last_error: last.and_then(|l| l.2),
            uptime_24h,
            consecutive_failures: verdicts.consecutive_failures,
            schedule: e.schedule_text.clone(),
            group: cfg.group.clone(),
            slo,
            locations,
        });
    }
    let checks = s.health();
    let problems = problems_of(&checks);
    let st = &s.runner.store.stats;
    StatusReport {
        daemon: DaemonStatus {
            alive: true,
            healthy: problems.is_empty(),
            problems,
            checks,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: Some(crate::time::rfc3339(s.started_at)),
            uptime_seconds: Some((uptime_ms / 1000) as u64),
            probes: out.len(),
            store_queue_depth: s.runner.store.queue_depth(),
            store_dropped: st.dropped.load(Ordering::Relaxed),
            store_write_errors: st.write_errors.load(Ordering::Relaxed),
            runs_skipped: s.runs_skipped(),
            error: None,
        },
        probes: out,
    }
}

/// Each location's verdict on `e`, with a shared store: this one's and the others' as last
/// read (none for a lone daemon).
fn locations_of(
    s: &Shared,
    e: &crate::schedule::ProbeEntry,
    live: &crate::schedule::Live,
    now: i64,
) -> Vec<crate::report::LocationStatus> {
    if !s.runner.shared_store() {
        return Vec::new();
    }
    let mut votes = s
        .runner
        .votes
        .read()
        .unwrap()
        .get(&e.id)
        .cloned()
        .unwrap_or_default();
    // Not this location's to judge when the probe is kept to others.
    let here = e.cfg.runs_at(&s.runner.location);
    votes.extend(here.then(|| {
        crate::evaluate::Vote {
            location: s.runner.location.clone(),
            blind: s.runner.blind().is_some(),
            state: live.verdicts.state,
            checked_at: live.last.as_ref().map(|l| l.at),
            reason: live
                .last
                .as_ref()
                .filter(|l| !l.ok)
                .and_then(|l| l.error.clone()),
        }
    }));
    votes.sort_by(|a, b| a.location.cmp(&b.location));
    votes
        .into_iter()
        .map(|v| crate::report::LocationStatus {
            stale: v.checked_at.is_none_or(|at| now - at > e.stale_after_ms),
            blind: v.blind,
            last_checked_at: v.checked_at.map(crate::time::rfc3339),
            last_error: v.reason.filter(|_| v.state != State::Up),
            state: v.state,
            location: v.location,
        })
        .collect()
}

#[derive(Deserialize)]
struct ResultsQuery {
    limit: Option<u32>,
    /// Only results before this time (unix ms), for paging back.
    before: Option<i64>,
}

async fn results(
    AxState(s): AxState<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> Response {
    match s
        .runner
        .store
        .results(&name, q.limit.unwrap_or(100), q.before)
        .await
    {
        Ok(Some(rows)) => {
            // A push probe's pings too, with the bodies its job sent (this API is the
            // operator's; the public documents never carry them).
            let pings = match s.runner.store.recent_pings(&name, 20).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "pings query failed");
                    Vec::new()
                }
            };
            let mut v = serde_json::json!({"probe": name, "results": rows});
            if !pings.is_empty() {
                v["pings"] = serde_json::json!(pings);
            }
            Json(v).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no probe named {name:?}")})),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "results query failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"error": "store query failed"})),
            )
                .into_response()
        }
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({"error": msg.into()}))).into_response()
}

/// Writes need `Authorization: Bearer <admin_token>`. Compared in constant time; the
/// token itself is never echoed.
/// `None` when authorized, else the 401 to answer.
fn refuse_unauthorized(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let config = s.config.read().unwrap().clone();
    let Some(token) = config.admin_token.as_ref() else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "writes are disabled: set admin_token in the config",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let want = token.expose().as_bytes();
    let got = given.as_bytes();
    let mut diff = (want.len() != got.len()) as u8;
    for (i, b) in want.iter().enumerate() {
        diff |= b ^ got.get(i).copied().unwrap_or(0);
    }
    (diff != 0).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer ...)",
        )
    })
}

#[derive(Deserialize)]
struct IncidentsQuery {
    /// Only open (unresolved) incidents.
    open: Option<bool>,
    limit: Option<u32>,
}

/// Incidents with their deliveries. A delivery's error quotes the peer's answer, so
/// without the admin token it is told only as a status and a short phrase
/// ([`crate::alert::outbox::brief_error`]); with it, in full (secrets removed).
async fn incidents(
    AxState(s): AxState<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<IncidentsQuery>,
) -> Response {
    let full = refuse_unauthorized(&s, &headers).is_none();
    match s
        .runner
        .store
        .incidents(q.open.unwrap_or(false), q.limit.unwrap_or(100))
        .await
    {
        Ok(mut rows) => {
            if !full {
                crate::alert::outbox::brief_errors(&mut rows);
            }
            Json(serde_json::json!({"incidents": rows})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "incidents query failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store query failed")
        }
    }
}

#[derive(Deserialize, Default)]
struct AckBody {
    by: Option<String>,
}

async fn ack(
    AxState(s): AxState<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // The token first: a client without it learns nothing about the body it sent.
    if let Some(r) = refuse_unauthorized(&s, &headers) {
        return r;
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<AckBody>(&body) {
            Ok(b) => Some(b),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid body (want {{\"by\": \"name\"}} or nothing): {e}"),
                );
            }
        }
    };
    let by = body
        .and_then(|b| b.by)
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into());
    let by: String = by.chars().take(100).collect();
    let result = s
        .runner
        .store
        .acknowledge(id, &by, crate::time::now_ms())
        .await;
    use crate::alert::outbox::AckError;
    match result {
        Ok(Ok(())) => {
            s.runner.store.alerts_queued.notify_one();
            tracing::info!(incident = id, by = %by, "incident acknowledged");
            Json(serde_json::json!({"incident": id, "acknowledged_by": by})).into_response()
        }
        Ok(Err(AckError::NotFound)) => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
        Ok(Err(AckError::Resolved)) => error(
            StatusCode::CONFLICT,
            format!("incident {id} is already resolved"),
        ),
        Ok(Err(AckError::Already(who))) => error(
            StatusCode::CONFLICT,
            format!("incident {id} was already acknowledged by {who}"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "ack failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store write failed")
        }
    }
}

#[derive(Deserialize)]
struct SilenceBody {
    /// Probe name or glob.
    probe: String,
    /// How long, e.g. `1h`.
    #[serde(rename = "for")]
    for_: String,
    reason: Option<String>,
    by: Option<String>,
}

async fn add_silence(
    AxState(s): AxState<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<SilenceBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(r) = refuse_unauthorized(&s, &headers) {
        return r;
    }
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let d = match crate::units::parse_duration(&b.for_) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "\"for\" must be longer than zero"),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(e) = crate::config::silence_pattern_error(&b.probe) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    // A silence's end is a timer (see crate::clock).
    let _frame = crate::clock::gate().await;
    let now = crate::clock::now_ms();
    let until = now + d.as_millis() as i64;
    let r = s
        .runner
        .store
        .add_silence(
            &b.probe,
            until,
            now,
            b.by.as_deref().unwrap_or("api"),
            b.reason.as_deref(),
        )
        .await;
    match r {
        Ok(id) => {
            tracing::info!(silence = id, probe = %b.probe, until = %crate::time::rfc3339(until), "silence added");
            (
                StatusCode::CREATED,
                Json(serde_json::json!({"id": id, "probe": b.probe, "until": crate::time::rfc3339(until)})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "adding a silence failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store write failed")
        }
    }
}

async fn silences(AxState(s): AxState<Arc<Shared>>) -> Response {
    match s.runner.store.silences_active(crate::clock::now_ms()).await {
        Ok(rows) => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id,
                        "probe": r.probe,
                        "until": crate::time::rfc3339(r.until),
                        "created_at": crate::time::rfc3339(r.created_at),
                        "created_by": r.created_by,
                        "reason": r.reason,
                    })
                })
                .collect();
            Json(serde_json::json!({"silences": v})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "silences query failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store query failed")
        }
    }
}

#[derive(Deserialize)]
struct PushQuery {
    exit_status: Option<i64>,
    /// A run id (a UUID): pairs a `start` with its finish.
    rid: Option<String>,
}

async fn push_ok(
    AxState(s): AxState<Arc<Shared>>,
    Path(token): Path<String>,
    Query(q): Query<PushQuery>,
    body: axum::body::Body,
) -> Response {
    // `?exit_status=N` with N != 0 is a failure, as healthchecks.io reads it.
    let kind = match q.exit_status {
        Some(c) if c != 0 => PingKind::Fail,
        _ => PingKind::Ok,
    };
    push(&s, &token, kind, q, body).await
}

async fn push_other(
    AxState(s): AxState<Arc<Shared>>,
    Path((token, what)): Path<(String, String)>,
    Query(mut q): Query<PushQuery>,
    body: axum::body::Body,
) -> Response {
    match crate::probe::push::parse_what(&what) {
        Ok((kind, code)) => {
            if code.is_some() {
                q.exit_status = code;
            }
            if kind == PingKind::Start {
                q.exit_status = None;
            }
            push(&s, &token, kind, q, body).await
        }
        Err(true) => error(
            StatusCode::BAD_REQUEST,
            "an exit status is a number from 0 to 255",
        ),
        Err(false) => not_found().await,
    }
}

use crate::probe::push::{Ping, PingKind};

/// Reads a ping's body to its end, keeping its last [`crate::probe::push::BODY_CAP`]
/// bytes (twice that at most in memory). `None` if the client broke off.
async fn body_tail(body: axum::body::Body) -> Option<Option<String>> {
    use http_body_util::BodyExt;
    const CAP: usize = crate::probe::push::BODY_CAP;
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map(|f| f.into_data().unwrap_or_default()) else {
            return None;
        };
        buf.extend_from_slice(&data);
        if buf.len() > 2 * CAP {
            buf.drain(..buf.len() - CAP);
        }
    }
    Some(crate::probe::push::body_tail(&buf))
}

/// Records a ping for the push probe whose token this is. The token is the credential; an
/// unknown one is a plain 404 (nothing says which tokens exist).
async fn push(
    s: &Shared,
    token: &str,
    kind: PingKind,
    q: PushQuery,
    body: axum::body::Body,
) -> Response {
    let entry = s.entries().into_iter().find(
        |e| matches!(&e.cfg.spec, crate::probe::ProbeSpec::Push(p) if p.token.expose() == token),
    );
    let Some(entry) = entry else {
        return error(StatusCode::NOT_FOUND, "unknown push token");
    };
    if let Some(rid) = &q.rid
        && !crate::probe::push::is_uuid(rid)
    {
        return error(StatusCode::BAD_REQUEST, "rid must be a UUID");
    }
    let Some(body) = body_tail(body).await else {
        return error(StatusCode::BAD_REQUEST, "the request body broke off");
    };
    // A job that echoes its own ping URL does not put the token into the output kept.
    let body = body.map(|b| b.replace(token, "***"));
    let ping = Ping {
        kind,
        exit_status: q.exit_status,
        rid: q.rid.map(|r| r.to_ascii_lowercase()),
        body,
    };
    // A ping's time is a timer: recorded on the timers' clock, with no clock-step shift
    // between the store and the board (see crate::clock).
    let _frame = crate::clock::gate().await;
    match s
        .runner
        .store
        .push_ping(entry.id, &ping, crate::clock::now_ms())
        .await
    {
        Ok(state) => {
            s.runner.env.push.set(token, state);
            tracing::debug!(
                probe = %entry.cfg.name,
                ping = kind.as_str(),
                exit_status = ping.exit_status,
                "push received"
            );
            (StatusCode::OK, "OK\n").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a push failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store write failed")
        }
    }
}

/// A public document: cached by readers for as long as the view is, readable cross-origin
/// (status widgets fetch it from other sites), never a secret in it by construction.
fn public_doc(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, PUBLIC_CACHE_CONTROL),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body.into(),
    )
        .into_response()
}

/// `Cache-Control` of every public document.
const PUBLIC_CACHE_CONTROL: &str = "public, max-age=10";

/// The public view, from the cache while fresh; else built from the daemon's state of this
/// moment (the status report's probes, the router's maintenance windows, the store ids).
async fn public_view(a: &ApiState) -> Result<Arc<crate::public::View>, Response> {
    let s = &*a.shared;
    let build = async {
        let config = s.config.read().unwrap().clone();
        let router = s.runner.router.read().unwrap().clone();
        let report = build_status(s);
        let ids = s
            .reported_entries()
            .iter()
            .map(|e| (e.cfg.name.clone(), e.id))
            .collect();
        crate::public::build(&crate::public::Sources {
            config: &config,
            muting: &router.maintenance,
            probes: &report.probes,
            ids: &ids,
            started_at: s.started_at,
            store: &s.runner.store,
        })
        .await
    };
    a.public.get(build).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot build the public view");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(serde_json::json!({"error": "status temporarily unavailable"})),
        )
            .into_response()
    })
}

async fn statuspage_json(
    s: ApiState,
    f: impl FnOnce(&crate::public::View) -> serde_json::Value,
) -> Response {
    match public_view(&s).await {
        Ok(v) => public_doc("application/json", f(&v).to_string()),
        Err(r) => r,
    }
}

async fn sp_summary(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, crate::public::statuspage::summary).await
}

async fn sp_status(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, crate::public::statuspage::status_doc).await
}

async fn sp_components(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, crate::public::statuspage::components_doc).await
}

async fn sp_incidents(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, |v| crate::public::statuspage::incidents_doc(v, false)).await
}

async fn sp_unresolved(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, |v| crate::public::statuspage::incidents_doc(v, true)).await
}

async fn sp_maintenances(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, |v| crate::public::statuspage::maintenances_doc(v, None)).await
}

async fn sp_maintenances_upcoming(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, |v| {
        crate::public::statuspage::maintenances_doc(v, Some(false))
    })
    .await
}

async fn sp_maintenances_active(AxState(s): AxState<ApiState>) -> Response {
    statuspage_json(s, |v| {
        crate::public::statuspage::maintenances_doc(v, Some(true))
    })
    .await
}

async fn feed_atom(AxState(s): AxState<ApiState>) -> Response {
    use crate::public::feed;
    match public_view(&s).await {
        Ok(v) => public_doc(feed::ATOM_CONTENT_TYPE, feed::atom(&v)),
        Err(r) => r,
    }
}

async fn feed_rss(AxState(s): AxState<ApiState>) -> Response {
    use crate::public::feed;
    match public_view(&s).await {
        Ok(v) => public_doc(feed::RSS_CONTENT_TYPE, feed::rss(&v)),
        Err(r) => r,
    }
}

/// A public probe's badge; any other probe (internal or unknown) is the plain 404, so
/// badges do not tell which internal probes exist.
async fn badge(
    AxState(s): AxState<ApiState>,
    Path((probe, file)): Path<(String, String)>,
) -> Response {
    use crate::public::badge;
    match public_view(&s).await {
        Ok(v) => match badge::for_probe(&v, &probe, &file) {
            Some(svg) => public_doc(badge::CONTENT_TYPE, svg),
            None => not_found().await,
        },
        Err(r) => r,
    }
}

/// `GET /status`: the public status page (HTML), with an `ETag` and 304 to a match.
async fn status_page(AxState(s): AxState<ApiState>, headers: HeaderMap) -> Response {
    match public_view(&s).await {
        // Rendering and gzipping hundreds of components takes milliseconds: off the workers
        // that run the probes' timers, as for /metrics.
        Ok(v) => tokio::task::spawn_blocking(move || {
            crate::public::page::response(&v, &headers, PUBLIC_CACHE_CONTROL)
        })
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(r) => r,
    }
}
