//! `GET /probe?target=…&module=…`: blackbox_exporter's own endpoint, so a Prometheus
//! config written for blackbox (`metrics_path: /probe`, `__param_target` relabelling) works
//! by pointing it at probed.
//!
//! One check of `target` with the module's settings (`modules:`, `modules_file:`), answered
//! in blackbox's exposition: the families of `/metrics`' probe series without labels.
//! Nothing is stored, no state kept, nothing alerts. Off without `probe_endpoint:`; a target
//! must match one of its `allow` patterns, or it is never connected to. The check takes a
//! slot of the daemon's global limit (`defaults.max_concurrent`, the scheduler's semaphore)
//! and of its target's host (`max_per_host`), so `/probe` cannot overload the daemon or a
//! host. No admin token: it is a read.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;

use super::error;
use crate::config::modules::Module;
use crate::probe::Observation;
use crate::watchdog::Shared;

/// The module blackbox uses when the request names none.
const DEFAULT_MODULE: &str = "http_2xx";

/// What blackbox leaves of the scrape's timeout to answer in.
const SCRAPE_OFFSET: f64 = 0.5;

/// The longest check `/probe` runs, whatever the scrape timeout says.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Prometheus' header with the scrape's timeout, in seconds.
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

#[derive(Deserialize)]
pub(super) struct ProbeQuery {
    target: Option<String>,
    module: Option<String>,
}

pub(super) async fn probe(
    AxState(s): AxState<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ProbeQuery>,
) -> Response {
    let config = s.config.read().unwrap().clone();
    let Some(endpoint) = &config.probe_endpoint else {
        return error(
            StatusCode::NOT_FOUND,
            "/probe is off: set probe_endpoint: { allow: [...] } (the targets it may check) \
             and modules: or modules_file: in the config to turn it on",
        );
    };
    let Some(target) = q.target.filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "Target parameter is missing");
    };
    let name = q
        .module
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MODULE.into());
    let Some(module) = config.modules.get(&name) else {
        let names: Vec<&str> = config.modules.keys().map(String::as_str).collect();
        let hint = match crate::config::closest(&name, &names) {
            Some(c) => format!(", did you mean {c:?}?"),
            None => String::new(),
        };
        return error(
            StatusCode::BAD_REQUEST,
            format!("Unknown module {name:?}{hint}"),
        );
    };
    if !endpoint.allows(&target) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "target {target:?} is not allowed: it matches no pattern of probe_endpoint.allow"
            ),
        );
    }
    let scrape = match scrape_timeout(&headers) {
        Ok(t) => t,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let timeout = check_timeout(module.timeout, scrape, config.defaults.timeout);
    let deadline = Instant::now() + timeout;
    let obs = match run(&s, module, &target, deadline).await {
        Ok(o) => o,
        Err(busy) => return busy,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exposition(module.kind, &obs),
    )
        .into_response()
}

/// One check of `target` with `module` by `deadline`, in a slot of the daemon's limits.
/// `Err`: no global slot came free in time (503: the daemon's limit, not the target's fault).
async fn run(
    s: &Shared,
    module: &Module,
    target: &str,
    deadline: Instant,
) -> Result<Observation, Response> {
    let started = Instant::now();
    let spec = match module.spec(target) {
        Ok(spec) => spec,
        Err(e) => return Ok(Observation::default().fail(e)),
    };
    let probe = match spec.build() {
        Ok(p) => p,
        Err(e) => return Ok(Observation::default().fail(e)),
    };
    let runner = &s.runner;
    let Ok(Ok(_global)) =
        tokio::time::timeout_at(deadline, runner.global.clone().acquire_owned()).await
    else {
        tracing::warn!(
            max_concurrent = runner.max_concurrent,
            "/probe refused: every global check slot stayed busy until its deadline"
        );
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            axum::Json(serde_json::json!({
                "error": format!(
                    "no check slot came free within {} (defaults.max_concurrent is {}): the \
                     daemon is at its limit; try again",
                    crate::units::format_duration(timeout_ms(deadline - started)),
                    runner.max_concurrent
                )
            })),
        )
            .into_response());
    };
    let _host = match spec.target_host() {
        None => None,
        Some(host) => {
            let sem = runner.host_slot(&host);
            match tokio::time::timeout_at(deadline, sem.acquire_owned()).await {
                Ok(Ok(p)) => Some(p),
                _ => {
                    return Ok(Observation::default()
                        .fail(crate::schedule::host_busy(runner.max_per_host, &host)));
                }
            }
        }
    };
    let mut obs =
        crate::schedule::check_once(runner, &probe, deadline, timeout_ms(deadline - started)).await;
    let ssl = obs.http.is_some_and(|h| h.ssl);
    if obs.ok && module.fail_if_ssl && ssl {
        obs = obs.fail("the final response came over TLS (fail_if_ssl)");
    } else if obs.ok && module.fail_if_not_ssl && !ssl {
        obs = obs.fail("the final response did not come over TLS (fail_if_not_ssl)");
    }
    Ok(obs)
}

/// The answer's body: the observation's families, and for a failed check its reason as a
/// comment (which a scrape ignores, and a person with curl reads).
fn exposition(kind: &str, obs: &Observation) -> String {
    let mut out = crate::metrics::render_observation(kind, obs);
    if let Some(e) = obs.error.as_deref().filter(|_| !obs.ok) {
        out.push_str("# probe failed: ");
        out.push_str(e);
        out.push('\n');
    }
    out
}

fn timeout_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// The scrape's timeout from `X-Prometheus-Scrape-Timeout-Seconds`, if sent.
fn scrape_timeout(headers: &HeaderMap) -> Result<Option<f64>, String> {
    let Some(v) = headers.get(SCRAPE_TIMEOUT_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Some)
        .ok_or_else(|| {
            "X-Prometheus-Scrape-Timeout-Seconds is not a number of seconds above zero".into()
        })
}

/// How long one check may take, as blackbox decides it: the scrape's timeout less 0.5 s
/// (so the answer arrives in time), or the module's `timeout` when that is shorter; without
/// either, probed's `defaults.timeout`. At most [`MAX_TIMEOUT`].
fn check_timeout(module: Option<Duration>, scrape: Option<f64>, default: Duration) -> Duration {
    let budget = scrape
        .map(|s| s - SCRAPE_OFFSET)
        .filter(|b| *b > 0.0)
        .map(|b| Duration::from_secs_f64(b.min(MAX_TIMEOUT.as_secs_f64())));
    let t = match (module, budget) {
        (Some(m), Some(b)) => m.min(b),
        (Some(m), None) => m,
        (None, Some(b)) => b,
        (None, None) => default,
    };
    t.min(MAX_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_timeout_less_half_a_second_capped_by_the_module() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        for (module, scrape, want) in [
            (None, None, s(10)),
            (None, Some(5.0), ms(4500)),
            (Some(s(2)), Some(5.0), s(2)),
            (Some(s(9)), Some(5.0), ms(4500)),
            (Some(s(3)), None, s(3)),
            // Too short to leave the offset: the module's, else the default.
            (Some(s(3)), Some(0.4), s(3)),
            (None, Some(0.4), s(10)),
            (None, Some(1e9), MAX_TIMEOUT),
        ] {
            assert_eq!(
                check_timeout(module, scrape, s(10)),
                want,
                "{module:?} {scrape:?}"
            );
        }
    }

    #[test]
    fn scrape_timeout_header() {
        let mut h = HeaderMap::new();
        assert_eq!(scrape_timeout(&h), Ok(None));
        h.insert(SCRAPE_TIMEOUT_HEADER, "1.5".parse().unwrap());
        assert_eq!(scrape_timeout(&h), Ok(Some(1.5)));
        for bad in ["x", "-1", "0", "NaN", "inf"] {
            h.insert(SCRAPE_TIMEOUT_HEADER, bad.parse().unwrap());
            assert!(scrape_timeout(&h).is_err(), "{bad}");
        }
    }
}
