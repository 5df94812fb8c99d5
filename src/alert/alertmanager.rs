//! `kind: alertmanager`: posts each alert to every Alertmanager of a cluster
//! (`POST {url}/api/v2/alerts`), as Prometheus does, and lets Alertmanager group, silence,
//! inhibit and route it.
//!
//! Alertmanager knows an alert by its label set, so the labels are the same on every send
//! of one incident in one state (names only: no event, no time); what changes goes in
//! annotations and in `endsAt`. The labels are made for Alertmanager's usual `group_by` and
//! inhibit rules, which work per `instance`: `instance` is the probe's *target* (as
//! Prometheus and blackbox_exporter name it), not the daemon, which is `probed_instance`
//! and `location` ([`Sender::labels_of`] lists them all).
//!
//! While an incident fires, the dispatcher resends it every `resend_every`
//! ([`Sender::refresh_every`]) with `endsAt` three resends ahead and annotations built
//! afresh from the probe's current reason: if the daemon dies, Alertmanager resolves the
//! alert by itself after that, and until then it keeps firing. A resolve sends `endsAt` =
//! the time the probe recovered.
//!
//! Down and degraded are one incident, but two alerts here (`ProbeDown`, `ProbeDegraded`:
//! the `alertname` and `state` labels differ). When the probe moves from one to the other,
//! the incident's [`Alert::fired_as`] keeps the state it left, and every send from then on
//! ends that alert (`endsAt` = now) beside the one firing; a resolve ends them all.
//!
//! An HA cluster dedups among its members, so every member gets every alert; the send
//! succeeds when at least one member accepted it.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use std::sync::Arc;

use super::http::{Scrub, deliver, no_answer, parse_base_url, url_secrets};
use super::{Alert, BuildCx, Delivered, Event, SendError};
pub use crate::config::notify::alertmanager::{RESERVED_LABELS, Spec};

/// Default of `resend_every`.
pub const DEFAULT_RESEND_EVERY: Duration = Duration::from_secs(60);

/// A firing alert's `endsAt` is this many `resend_every` ahead of the send.
const ENDS_AFTER_RESENDS: u32 = 3;

/// `alertname` of an incident while its probe is down; [`DEGRADED_ALERTNAME`] while it is
/// degraded (outside its objectives); a `probectl test-alert` uses [`TEST_ALERTNAME`].
pub const ALERTNAME: &str = "ProbeDown";
pub const DEGRADED_ALERTNAME: &str = "ProbeDegraded";
pub const TEST_ALERTNAME: &str = "ProbedTest";
/// `job` of every probe's alert, as a Prometheus scrape job would name the daemon.
pub const JOB: &str = "probed";
/// `alertname` of the always-firing alert of `watchdog.alertmanager`.
pub const WATCHDOG_ALERTNAME: &str = "Watchdog";

impl Spec {
    /// A sender on the shared HTTP client.
    pub fn build(&self, cx: &BuildCx) -> Result<Sender, String> {
        let mut targets = Vec::new();
        let mut secrets = Vec::new();
        for (i, u) in self.urls.iter().enumerate() {
            let base = parse_base_url(u).map_err(|e| format!("urls[{i}]: {e}"))?;
            secrets.extend(url_secrets(&base));
            let mut api = base.clone();
            let path = format!("{}/api/v2/alerts", base.path().trim_end_matches('/'));
            api.set_path(&path);
            targets.push(Target {
                shown: crate::probe::http::redact_url(base.as_str())
                    .trim_end_matches('/')
                    .to_string(),
                api,
            });
        }
        if targets.is_empty() {
            return Err("urls: at least one alertmanager url is needed".into());
        }
        Ok(Sender {
            http: cx.http.clone(),
            targets,
            resend_every: self.resend_every.map_or(DEFAULT_RESEND_EVERY, |d| d.0),
            labels: self.labels.clone(),
            generator_url: self.generator_url.clone(),
            timeout: self.timeout.map_or(super::DEFAULT_SEND_TIMEOUT, |t| t.0),
            scrub: Arc::new(Scrub::new(secrets)),
        })
    }
}

/// One Alertmanager.
struct Target {
    /// `POST` here.
    api: Url,
    /// The base URL as messages show it (no userinfo).
    shown: String,
}

/// A ready `alertmanager` notifier.
pub struct Sender {
    http: reqwest::Client,
    targets: Vec<Target>,
    resend_every: Duration,
    labels: BTreeMap<String, String>,
    generator_url: Option<String>,
    timeout: Duration,
    scrub: Arc<Scrub>,
}

impl Sender {
    /// Posts the alert to every URL at once, each within `timeout`. Delivered when at least
    /// one accepted it (`detail` names the others' failures); otherwise a retry, unless
    /// every URL refused it for good (a 4xx other than 408 and 429).
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        self.post(&self.payload(alert, crate::time::now_ms())).await
    }

    /// Sends the always-firing `Watchdog` alert (`watchdog.alertmanager`), ending `ends_in`
    /// from now: a dead man's switch routed behind Alertmanager pages when the sends stop.
    pub async fn send_watchdog(
        &self,
        instance: &str,
        started_at: i64,
        ends_in: Duration,
    ) -> Result<Delivered, SendError> {
        self.post(&self.watchdog_payload(instance, started_at, crate::time::now_ms(), ends_in))
            .await
    }

    fn watchdog_payload(
        &self,
        instance: &str,
        started_at: i64,
        now: i64,
        ends_in: Duration,
    ) -> serde_json::Value {
        let mut labels = self.labels.clone();
        labels.insert("alertname".into(), WATCHDOG_ALERTNAME.into());
        labels.insert("severity".into(), "none".into());
        labels.insert("instance".into(), instance.into());
        let mut a = json!({
            "labels": labels,
            "annotations": {
                "summary": format!("probed on {instance} is running and healthy"),
                "description": "Always firing while this probed is healthy. Route it to a dead man's \
                    switch: when it stops, probed is dead, cut off, or unhealthy.",
            },
            "startsAt": crate::time::rfc3339(started_at),
            "endsAt": crate::time::rfc3339(now.saturating_add(ends_in.as_millis() as i64)),
        });
        if let Some(g) = &self.generator_url {
            a["generatorURL"] = g.clone().into();
        }
        json!([a])
    }

    async fn post(&self, payload: &serde_json::Value) -> Result<Delivered, SendError> {
        let body = match serde_json::to_vec(payload) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                return Err(SendError::permanent(format!(
                    "cannot encode the alert: {e}"
                )));
            }
        };
        let deadline = Instant::now() + self.timeout;
        let mut tasks = JoinSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let req = self
                .http
                .post(t.api.clone())
                .timeout(self.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let (shown, timeout, scrub) = (t.shown.clone(), self.timeout, self.scrub.clone());
            tasks.spawn(async move {
                let sent = deliver(&shown, req, timeout, &scrub);
                let r = tokio::time::timeout_at(deadline, sent)
                    .await
                    .unwrap_or_else(|_| Err(no_answer(&shown, timeout)));
                (i, r)
            });
        }
        // Every task ends by `deadline`; the margin only guards against a stuck runtime.
        let mut results: Vec<Option<Result<Delivered, SendError>>> =
            self.targets.iter().map(|_| None).collect();
        let collect = async {
            while let Some(joined) = tasks.join_next().await {
                if let Ok((i, r)) = joined {
                    results[i] = Some(r);
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline + Duration::from_millis(200), collect).await;
        let results = results
            .into_iter()
            .zip(&self.targets)
            .map(|(r, t)| {
                r.unwrap_or_else(|| {
                    Err(SendError::retry(format!(
                        "{}: send did not finish",
                        t.shown
                    )))
                })
            })
            .map(|r| r.map_err(|e| self.scrub.error(e)))
            .collect();
        combine(results)
    }

    /// The JSON array `POST /api/v2/alerts` takes for one message: the incident's alert in
    /// its current state (firing, or ended by a resolve) first, then the alerts of the
    /// states it has left ([`Alert::fired_as`]), ended now. `now` is unix ms.
    fn payload(&self, alert: &Alert, now: i64) -> serde_json::Value {
        let firing = alert.event.firing();
        // Alertmanager refuses an end before the start.
        let ended_at = if firing {
            now.max(alert.opened_at)
        } else {
            alert.resolved_at.unwrap_or(now).max(alert.opened_at)
        };
        let ends_at = if firing {
            let ahead = self.resend_every * ENDS_AFTER_RESENDS;
            now.saturating_add(ahead.as_millis() as i64)
                .max(alert.opened_at + 1000)
        } else {
            ended_at
        };
        let mut annotations = serde_json::Map::new();
        annotations.insert("summary".into(), alert.summary().into());
        annotations.insert(
            "description".into(),
            alert
                .reason
                .clone()
                .unwrap_or_else(|| alert.summary())
                .into(),
        );
        annotations.insert("dedup_key".into(), alert.dedup_key.clone().into());
        if let Some(who) = &alert.acknowledged_by {
            annotations.insert("acknowledged_by".into(), who.clone().into());
        }
        let mut alerts = Vec::new();
        for state in alert.fired_states() {
            let live = firing && state == alert.state;
            let mut a = json!({
                "labels": self.labels_of(alert, state),
                "annotations": annotations,
                "startsAt": crate::time::rfc3339(alert.opened_at),
                "endsAt": crate::time::rfc3339(if live { ends_at } else { ended_at }),
            });
            if let Some(link) = alert.link.as_ref().or(self.generator_url.as_ref()) {
                a["generatorURL"] = link.clone().into();
            }
            if live {
                alerts.insert(0, a);
            } else {
                alerts.push(a);
            }
        }
        serde_json::Value::Array(alerts)
    }

    /// The alert's identity in Alertmanager, for the incident in `state` (`down`,
    /// `degraded`): the same for every send of it. In order, each step overriding the one
    /// before:
    ///
    /// 1. the probe's own `labels:` (names made valid); one named as a label of step 3 is
    ///    kept as `exported_<name>`, as Prometheus keeps a target's clashing labels;
    /// 2. the notifier's static `labels:` (the config refuses the names of step 3);
    /// 3. probed's own ([`RESERVED_LABELS`]): `alertname` (`ProbeDown`, `ProbeDegraded`),
    ///    `instance` (the probe's target: its URL without userinfo, query or fragment, or
    ///    `host:port`; the probe's name for kinds without one, push and location),
    ///    `probed_instance` and `location` (the daemon that opened the incident), `job`
    ///    (`probed`), `probe`, `state`, `severity`, `kind` and `group` (when it has one).
    fn labels_of(&self, alert: &Alert, state: &str) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        for (k, v) in &alert.labels {
            let mut name = label_name(k);
            if RESERVED_LABELS.contains(&name.as_str()) {
                name = format!("exported_{name}");
            }
            if !v.is_empty() && !name.starts_with("__") {
                l.insert(name, v.clone());
            }
        }
        l.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let alertname = match (alert.event, state) {
            (Event::Test, _) => TEST_ALERTNAME,
            (_, "degraded") => DEGRADED_ALERTNAME,
            _ => ALERTNAME,
        };
        let target = alert.target.as_ref().filter(|t| !t.is_empty());
        let location = Some(&alert.source_location).filter(|l| !l.is_empty());
        l.insert("alertname".into(), alertname.into());
        l.insert("instance".into(), target.unwrap_or(&alert.probe).to_owned());
        l.insert("probed_instance".into(), alert.source.clone());
        l.insert(
            "location".into(),
            location.unwrap_or(&alert.source).to_owned(),
        );
        l.insert("job".into(), JOB.into());
        l.insert("probe".into(), alert.probe.clone());
        l.insert("state".into(), state.into());
        l.insert("severity".into(), alert.severity.clone());
        l.insert("kind".into(), alert.kind.clone());
        match &alert.group {
            Some(g) if !g.is_empty() => {
                l.insert("group".into(), g.clone());
            }
            _ => {
                l.remove("group");
            }
        }
        l.retain(|_, v| !v.is_empty());
        l
    }

    pub fn refresh_every(&self) -> Option<Duration> {
        Some(self.resend_every)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What this notifier's texts are scrubbed of.
    pub(crate) fn scrub(&self) -> &super::http::Scrub {
        &self.scrub
    }
}

/// One result from the results of every URL, in the order of `urls`.
fn combine(results: Vec<Result<Delivered, SendError>>) -> Result<Delivered, SendError> {
    let accepted: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|d| d.detail.clone())
        .collect();
    let failed: Vec<&SendError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let failures = failed
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if !accepted.is_empty() {
        let mut detail = format!(
            "accepted by {} of {} ({})",
            accepted.len(),
            results.len(),
            accepted.join(", ")
        );
        if !failed.is_empty() {
            detail.push_str("; failed: ");
            detail.push_str(&failures);
        }
        return Ok(Delivered { detail });
    }
    if failed
        .iter()
        .all(|e| matches!(e, SendError::Permanent { .. }))
    {
        return Err(SendError::permanent(failures));
    }
    let retry_after = failed
        .iter()
        .filter_map(|e| match e {
            SendError::Retry { retry_after, .. } => *retry_after,
            SendError::Permanent { .. } => None,
        })
        .max();
    Err(SendError::Retry {
        reason: failures,
        retry_after,
    })
}

/// A probe label's name made valid: other characters become `_`, a leading digit gets a
/// `_` before it (`app.kubernetes.io/name` becomes `app_kubernetes_io_name`).
fn label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Stdio;

    use serde_json::Value;
    use tokio::process::{Child, Command};

    use super::*;
    use crate::alert::http::fake::{assert_field_errors, dead_addr};
    use crate::alert::testing;

    // ---- a real Alertmanager -------------------------------------------------------------

    /// Debian's package puts it here; `ALERTMANAGER` overrides.
    fn binary() -> PathBuf {
        std::env::var_os("ALERTMANAGER")
            .map(PathBuf::from)
            .unwrap_or_else(|| "prometheus-alertmanager".into())
    }

    /// A `prometheus-alertmanager` on 127.0.0.1 with gossip off and its own storage, killed
    /// when dropped.
    struct Am {
        url: String,
        http: reqwest::Client,
        _child: Child,
        _dir: tempfile::TempDir,
    }

    impl Am {
        async fn start() -> Am {
            // The port is picked by binding :0 and releasing it; if another process takes it
            // before Alertmanager binds, Alertmanager exits and we try another.
            let mut last = String::new();
            for _ in 0..3 {
                match Am::try_start().await {
                    Ok(am) => return am,
                    Err(e) => last = e,
                }
            }
            panic!("alertmanager did not start: {last}");
        }

        async fn try_start() -> Result<Am, String> {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("am.yml");
            std::fs::write(
                &config,
                "route: { receiver: none, group_wait: 1s }\nreceivers: [ { name: none } ]\n",
            )
            .unwrap();
            let port = free_port().await;
            let log = std::fs::File::create(dir.path().join("am.log")).unwrap();
            let mut child = Command::new(binary())
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
            let url = format!("http://127.0.0.1:{port}");
            let http = BuildCx::new().unwrap().http;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(dir.path().join("am.log")).unwrap();
                    return Err(format!("exited with {status}: {log}"));
                }
                let ready = http
                    .get(format!("{url}/-/ready"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return Ok(Am {
                        url,
                        http,
                        _child: child,
                        _dir: dir,
                    });
                }
                if Instant::now() > deadline {
                    return Err("not ready within 20s".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// The alerts it holds (`GET /api/v2/alerts`), with a query such as `active=true`.
        async fn alerts(&self, query: &str) -> Vec<Value> {
            let v: Value = self
                .http
                .get(format!("{}/api/v2/alerts?{query}", self.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v.as_array().cloned().unwrap_or_default()
        }

        /// The alerts of probe `probe`, once `pred` holds for them (within 5s).
        async fn wait_for(&self, probe: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let mine: Vec<Value> = self
                    .alerts("")
                    .await
                    .into_iter()
                    .filter(|a| a["labels"]["probe"] == probe)
                    .collect();
                if pred(&mine) {
                    return mine;
                }
                assert!(Instant::now() < deadline, "condition not met: {mine:#?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn free_port() -> u16 {
        dead_addr().await.port()
    }

    /// A URL where nothing listens.
    async fn dead_url() -> String {
        format!("http://{}", dead_addr().await)
    }

    fn spec(yaml: &str) -> Spec {
        crate::alert::http::fake::spec(yaml)
    }

    fn sender(urls: &[&str], extra: &str) -> Sender {
        let list = urls
            .iter()
            .map(|u| format!("'{u}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let s = spec(&format!("{{ urls: [{list}] {extra} }}"));
        assert_eq!(s.validate(), Vec::new());
        s.build(&BuildCx::new().unwrap()).expect("build")
    }

    /// The sample alert, for probe `probe`, opened a minute ago.
    fn alert(event: Event, probe: &str) -> Alert {
        let mut a = testing::alert(event);
        let now = crate::time::now_ms();
        a.probe = probe.into();
        a.opened_at = now - 60_000;
        a.at = now;
        if event == Event::Resolve {
            a.resolved_at = Some(now - 1_000);
        }
        a
    }

    // ---- tests ---------------------------------------------------------------------------

    #[tokio::test]
    async fn a_trigger_becomes_an_active_alert_and_a_reminder_the_same_one() {
        let am = Am::start().await;
        let n = sender(
            &[&am.url],
            ", labels: { env: test }, resend_every: 30s, generator_url: 'http://probed.example/'",
        );
        assert_eq!(n.refresh_every(), Some(Duration::from_secs(30)));
        let d = n
            .send(&alert(Event::Trigger, "am-one"))
            .await
            .expect("delivered");
        assert!(d.detail.contains("accepted by 1 of 1"), "{}", d.detail);

        let got = am
            .wait_for("am-one", |a| {
                a.len() == 1 && a[0]["status"]["state"] == "active"
            })
            .await;
        let a = &got[0];
        let labels = &a["labels"];
        assert_eq!(labels["alertname"], "ProbeDown");
        assert_eq!(labels["probe"], "am-one");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["kind"], "http");
        assert_eq!(labels["instance"], "https://api.example.com/v1/canary");
        assert_eq!(labels["probed_instance"], "probed-test");
        assert_eq!(labels["location"], "eu-west");
        assert_eq!(labels["job"], "probed");
        assert_eq!(labels["state"], "down");
        assert_eq!(labels["group"], "API");
        assert_eq!(labels["team"], "core");
        assert_eq!(labels["env"], "test");
        assert_eq!(labels.as_object().unwrap().len(), 12, "{labels}");
        let ann = &a["annotations"];
        assert_eq!(
            ann["summary"],
            "[probed] DOWN am-one: status 503, expected 200, 201"
        );
        assert_eq!(ann["description"], "status 503, expected 200, 201");
        assert_eq!(ann["dedup_key"], "probed-test-42");
        // The alert's own link wins over generator_url.
        assert_eq!(a["generatorURL"], "http://probed.example/status#api-write");
        let ends = chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap()).unwrap();
        let ahead = ends.timestamp_millis() - crate::time::now_ms();
        assert!((80_000..=91_000).contains(&ahead), "endsAt {ahead}ms ahead");

        // A reminder refreshes the same alert.
        let mut r = alert(Event::Reminder, "am-one");
        r.reason = Some("status 500".into());
        n.send(&r).await.expect("delivered");
        let got = am
            .wait_for("am-one", |a| {
                a.iter()
                    .any(|x| x["annotations"]["description"] == "status 500")
            })
            .await;
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0]["status"]["state"], "active");
        assert_eq!(got[0]["fingerprint"], a["fingerprint"]);
    }

    #[tokio::test]
    async fn a_resolve_ends_the_alert() {
        let am = Am::start().await;
        let n = sender(&[&am.url], "");
        n.send(&alert(Event::Trigger, "am-resolve"))
            .await
            .expect("delivered");
        am.wait_for("am-resolve", |a| a.len() == 1).await;
        n.send(&alert(Event::Resolve, "am-resolve"))
            .await
            .expect("delivered");
        am.wait_for("am-resolve", |a| a.is_empty()).await;
        let active = am.alerts("active=true").await;
        assert!(
            !active.iter().any(|a| a["labels"]["probe"] == "am-resolve"),
            "{active:#?}"
        );
    }

    /// Degraded, then down, then resolved, at a real Alertmanager: one active alert at each
    /// step, `ProbeDegraded` then `ProbeDown`, and none after the resolve.
    #[tokio::test]
    async fn a_change_of_state_ends_the_old_alert_at_alertmanager() {
        let am = Am::start().await;
        let n = sender(&[&am.url], "");
        let active = |alerts: &[Value]| -> Vec<String> {
            alerts
                .iter()
                .filter(|a| a["status"]["state"] == "active")
                .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
                .collect()
        };
        let mut a = alert(Event::Trigger, "am-flip");
        a.state = "degraded".into();
        a.fired_as = vec!["degraded".into()];
        n.send(&a).await.expect("delivered");
        am.wait_for("am-flip", |x| active(x) == ["ProbeDegraded"])
            .await;

        a.event = Event::Reminder;
        a.fire_as("down");
        n.send(&a).await.expect("delivered");
        // Resolved alerts are not listed: ProbeDegraded ended, not merely replaced.
        let got = am.wait_for("am-flip", |x| x.len() == 1).await;
        assert_eq!(active(&got), ["ProbeDown"], "{got:#?}");
        assert_eq!(got[0]["labels"]["state"], "down");

        a.event = Event::Resolve;
        a.state = "up".into();
        a.resolved_at = Some(crate::time::now_ms() - 1_000);
        n.send(&a).await.expect("delivered");
        am.wait_for("am-flip", |x| x.is_empty()).await;
    }

    /// The always-firing Watchdog alert is active while sent, and ends by itself when the
    /// sends stop (its `endsAt` passes).
    #[tokio::test]
    async fn the_watchdog_alert_fires_while_sent_and_ends_when_not() {
        let am = Am::start().await;
        let n = sender(&[&am.url], ", labels: { env: test }");
        let started = crate::time::now_ms();
        n.send_watchdog("probed-a", started, Duration::from_secs(2))
            .await
            .expect("delivered");
        let watchdog = |alerts: Vec<Value>| -> Vec<Value> {
            alerts
                .into_iter()
                .filter(|a| a["labels"]["alertname"] == WATCHDOG_ALERTNAME)
                .collect()
        };
        let active = watchdog(am.alerts("active=true").await);
        assert_eq!(active.len(), 1, "{active:#?}");
        let l = &active[0]["labels"];
        assert_eq!(
            (&l["severity"], &l["instance"], &l["env"]),
            (&json!("none"), &json!("probed-a"), &json!("test"))
        );
        assert!(l.get("probe").is_none(), "not a probe's alert: {l}");
        // No more sends: Alertmanager ends it at endsAt.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watchdog(am.alerts("active=true").await).is_empty() {
            assert!(Instant::now() < deadline, "the Watchdog alert never ended");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn every_member_of_the_cluster_gets_it() {
        let (a, b) = tokio::join!(Am::start(), Am::start());
        let n = sender(&[&a.url, &b.url], "");
        let d = n
            .send(&alert(Event::Trigger, "am-ha"))
            .await
            .expect("delivered");
        assert!(d.detail.starts_with("accepted by 2 of 2"), "{}", d.detail);
        assert!(!d.detail.contains("failed"), "{}", d.detail);
        a.wait_for("am-ha", |x| x.len() == 1).await;
        b.wait_for("am-ha", |x| x.len() == 1).await;
    }

    #[tokio::test]
    async fn one_dead_member_is_named_in_the_detail() {
        let am = Am::start().await;
        let dead = dead_url().await;
        let with_password = dead.replace("http://", "http://am:s3cr3t-pw@");
        let n = sender(&[&with_password, &am.url], "");
        let d = n
            .send(&alert(Event::Trigger, "am-half"))
            .await
            .expect("delivered");
        assert!(d.detail.starts_with("accepted by 1 of 2"), "{}", d.detail);
        assert!(
            d.detail
                .contains(&format!("failed: {dead}: connection failed: ")),
            "{}",
            d.detail
        );
        assert!(!d.detail.contains("s3cr3t-pw"), "{}", d.detail);
        am.wait_for("am-half", |x| x.len() == 1).await;
    }

    #[tokio::test]
    async fn all_dead_is_a_retry() {
        let (x, y) = (dead_url().await, dead_url().await);
        let n = sender(&[&x, &y], ", timeout: 2s");
        let start = Instant::now();
        let e = n.send(&alert(Event::Trigger, "am-dead")).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3));
        let SendError::Retry { reason, .. } = &e else {
            panic!("expected retry, got {e:?}");
        };
        assert!(reason.contains(&x) && reason.contains(&y), "{reason}");
    }

    #[tokio::test]
    async fn a_refusal_from_every_member_is_permanent() {
        let am = Am::start().await;
        // A path where Alertmanager answers 404 to every POST.
        let n = sender(&[&format!("{}/nowhere", am.url)], "");
        let e = n.send(&alert(Event::Trigger, "am-404")).await.unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert!(e.to_string().contains("http 404"), "{e}");
    }

    /// The labels of each alert in a payload, in order.
    fn labels_in(payload: &Value) -> Vec<BTreeMap<String, String>> {
        payload
            .as_array()
            .unwrap()
            .iter()
            .map(|a| serde_json::from_value(a["labels"].clone()).unwrap())
            .collect()
    }

    #[test]
    fn labels_are_the_same_for_every_event() {
        let n = sender(&["http://am.example:9093"], ", labels: { env: prod }");
        let mut first = alert(Event::Trigger, "p");
        first
            .labels
            .insert("app.kubernetes.io/name".into(), "api".into());
        // Probe labels named as probed's own do not clobber them: kept as exported_<name>.
        first.labels.insert("severity".into(), "page-me".into());
        first.labels.insert("instance".into(), "web-1".into());
        first.labels.insert("job".into(), "blackbox".into());
        let now = crate::time::now_ms();
        let labels = labels_in(&n.payload(&first, now));
        assert_eq!(labels.len(), 1, "{labels:?}");
        let labels = labels.into_iter().next().unwrap();
        let want: BTreeMap<String, String> = [
            ("alertname", "ProbeDown"),
            ("instance", "https://api.example.com/v1/canary"),
            ("probed_instance", "probed-test"),
            ("location", "eu-west"),
            ("job", "probed"),
            ("probe", "p"),
            ("state", "down"),
            ("severity", "critical"),
            ("kind", "http"),
            ("group", "API"),
            ("team", "core"),
            ("env", "prod"),
            ("app_kubernetes_io_name", "api"),
            ("exported_severity", "page-me"),
            ("exported_instance", "web-1"),
            ("exported_job", "blackbox"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, want);
        for event in [
            Event::Reminder,
            Event::Escalation,
            Event::Acknowledge,
            Event::Resolve,
        ] {
            let mut a = first.clone();
            a.event = event;
            a.at += 3_600_000;
            a.reason = Some("other".into());
            if event == Event::Resolve {
                // As the store resolves it.
                a.state = "up".into();
                a.resolved_at = Some(now - 1_000);
            }
            assert_eq!(
                labels_in(&n.payload(&a, now)),
                std::slice::from_ref(&labels),
                "{event:?}"
            );
        }
        let resolved = n.payload(&alert(Event::Resolve, "p"), now);
        let ends = resolved[0]["endsAt"].as_str().unwrap();
        let want = crate::time::rfc3339(alert(Event::Resolve, "p").resolved_at.unwrap());
        assert_eq!(&ends[..19], &want[..19]);
    }

    /// Without a target of its own (push, location) the probe's name is the instance; an
    /// alert stored before the target and location were carried falls back the same way.
    #[test]
    fn instance_falls_back_to_the_probe_and_location_to_the_daemon() {
        let n = sender(&["http://am.example:9093"], "");
        let mut a = alert(Event::Trigger, "nightly-backup");
        a.target = None;
        a.source_location = String::new();
        let l = &labels_in(&n.payload(&a, crate::time::now_ms()))[0];
        assert_eq!(
            (l["instance"].as_str(), l["location"].as_str()),
            ("nightly-backup", "probed-test")
        );
        let stored = r#"{"event":"reminder","incident":7,"dedup_key":"k","probe":"old",
            "kind":"http","severity":"critical","state":"down","reason":null,"opened_at":1,
            "at":2,"resolved_at":null,"acknowledged_by":null,"labels":{},"group":null,
            "link":null,"source":"probed-a"}"#;
        let old: Alert = serde_json::from_str(stored).expect("an alert stored before");
        let l = &labels_in(&n.payload(&old, crate::time::now_ms()))[0];
        assert_eq!(
            (
                l["instance"].as_str(),
                l["location"].as_str(),
                l["state"].as_str()
            ),
            ("old", "probed-a", "down")
        );
    }

    /// Degraded, then down: `ProbeDegraded` fires, then `ProbeDown` fires and
    /// `ProbeDegraded` ends in the same send; a resolve ends both.
    #[test]
    fn a_change_of_state_ends_the_alert_of_the_state_left() {
        let n = sender(&["http://am.example:9093"], "");
        let now = crate::time::now_ms();
        let mut a = alert(Event::Trigger, "p");
        a.state = "degraded".into();
        a.fired_as = vec!["degraded".into()];
        let p = n.payload(&a, now);
        assert_eq!(p.as_array().unwrap().len(), 1, "{p:#}");
        assert_eq!(p[0]["labels"]["alertname"], "ProbeDegraded");
        assert_eq!(p[0]["labels"]["state"], "degraded");
        assert_eq!(
            a.summary(),
            "[probed] DEGRADED p: status 503, expected 200, 201"
        );

        a.event = Event::Reminder;
        assert!(a.fire_as("down"));
        assert!(!a.fire_as("down"));
        assert_eq!(a.fired_as, ["degraded", "down"]);
        let p = n.payload(&a, now);
        let ends = |x: &Value| {
            chrono::DateTime::parse_from_rfc3339(x["endsAt"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(p.as_array().unwrap().len(), 2, "{p:#}");
        assert_eq!(
            (&p[0]["labels"]["alertname"], &p[0]["labels"]["state"]),
            (&json!("ProbeDown"), &json!("down"))
        );
        assert!(ends(&p[0]) > now + 60_000, "{p:#}");
        assert_eq!(
            (&p[1]["labels"]["alertname"], &p[1]["labels"]["state"]),
            (&json!("ProbeDegraded"), &json!("degraded"))
        );
        assert_eq!(ends(&p[1]) / 1000, now / 1000, "ended now: {p:#}");

        a.event = Event::Resolve;
        a.state = "up".into();
        a.resolved_at = Some(now - 5_000);
        let p = n.payload(&a, now);
        let names: Vec<&Value> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|x| &x["labels"]["alertname"])
            .collect();
        assert_eq!(names, [&json!("ProbeDegraded"), &json!("ProbeDown")]);
        for x in p.as_array().unwrap() {
            assert_eq!(ends(x) / 1000, (now - 5_000) / 1000, "{p:#}");
        }
    }

    #[test]
    fn validate_reports_every_problem() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("{ urls: ['http://am:9093'] }", &[]),
            ("{ urls: [] }", &[("urls", "at least one")]),
            (
                "{ urls: ['http://am:9093', 'am:9093', 'http://u:hunter2@/', 'http://am:9093'],
                   resend_every: 5m, labels: { probe: x, 1bad: y, ok: '', job: z, location: w },
                   generator_url: 'nope', timeout: 0s }",
                &[
                    ("urls[1]", "unsupported url scheme"),
                    ("urls[2]", "invalid url"),
                    ("urls[3]", "listed twice"),
                    ("resend_every", "must be under 5m"),
                    ("labels.1bad", "invalid label name"),
                    ("labels.job", "set by probed"),
                    ("labels.location", "set by probed"),
                    ("labels.ok", "must not be empty"),
                    ("labels.probe", "set by probed"),
                    ("generator_url", "invalid url"),
                    ("timeout", "more than 0s"),
                ],
            ),
            (
                "{ urls: ['http://am:9093/?x=1'], resend_every: 100ms }",
                &[
                    ("urls[0]", "must not have a query"),
                    ("resend_every", "at least 1s"),
                ],
            ),
        ];
        for (yaml, want) in cases {
            let got = spec(yaml).validate();
            assert_field_errors(yaml, &got, want);
            for e in &got {
                assert!(!e.message.contains("hunter2"));
            }
        }
    }
}
