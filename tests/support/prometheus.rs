//! A real Prometheus (Debian's `prometheus` package) on a free loopback port, its TSDB in a
//! temp dir, scraping what a test tells it to; and `promtool`, the package's linter and rule
//! tester. Queries go through the HTTP API ([`Prometheus::query`]); a series that needs a
//! few scrapes to appear is waited for with [`Prometheus::wait_series`], never slept for.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binaries Debian's package installs.
const BINARY: &str = "prometheus";
const PROMTOOL: &str = "promtool";

/// A Prometheus config: scrape `targets` (`host:port`) every second as job `job`, keeping
/// the labels the targets expose (`honor_labels`, as probed's per-probe `instance` needs),
/// rules evaluated every second, reading each of `rule_files`.
pub fn scrape_config(job: &str, targets: &[String], rule_files: &[&Path]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: {job}\n    honor_labels: true\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    if !rule_files.is_empty() {
        cfg.push_str("rule_files:\n");
        for f in rule_files {
            cfg.push_str(&format!("  - \"{}\"\n", f.display()));
        }
    }
    cfg
}

pub struct Prometheus {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Prometheus on `config` (a whole `prometheus.yml`, e.g. from [`scrape_config`]),
    /// once it answers `/-/ready`.
    pub fn start(config: &str) -> Prometheus {
        let mut last = String::new();
        // A port picked by binding :0 and releasing it may be taken before Prometheus binds
        // it; Prometheus then exits, and we try other ports.
        for _ in 0..3 {
            match Prometheus::spawn(config, super::free_port()) {
                Ok(p) => return p,
                Err(e) => last = e,
            }
        }
        panic!("prometheus did not start: {last}");
    }

    fn spawn(config: &str, port: u16) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = match Command::new(BINARY)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{BINARY} is not installed: this test needs a real Prometheus \
                 (apt-get install prometheus; deploy/test.sh installs it)"
            ),
            Err(e) => panic!("cannot run {BINARY}: {e}"),
        };
        let mut p = Prometheus { port, child, dir };
        super::wait_ready(&mut p.child, p.port, Duration::from_secs(30), || {
            std::fs::read_to_string(p.dir.path().join("prometheus.log")).unwrap_or_default()
        })?;
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// `GET path` as (status, body); (0, "") when nothing answers.
    fn get(&self, path: &str) -> (u16, String) {
        super::go_get(self.port, path)
    }

    /// `GET path` (with its query string) from the HTTP API, parsed: the whole answer,
    /// `{"status": "success" | "error", "data": ..., "error": ...}`.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path} from {}: {code}, not JSON ({e}): {body}\nlog:\n{}",
                self.url(),
                self.log()
            )
        })
    }

    /// An instant query (`/api/v1/query`) now: Prometheus' whole answer, errors included.
    pub fn query(&self, expr: &str) -> serde_json::Value {
        let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        self.api(&format!("/api/v1/query?query={q}"))
    }

    /// The series an instant query returns now (its result vector); `Err` with
    /// Prometheus' message when the query is refused (a parse error, say) or its result is
    /// not a vector.
    pub fn series(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let v = self.query(expr);
        if v["status"] != "success" {
            return Err(format!(
                "{}: {}",
                v["errorType"].as_str().unwrap_or("error"),
                v["error"].as_str().unwrap_or("(no message)")
            ));
        }
        if v["data"]["resultType"] != "vector" {
            return Err(format!(
                "result is a {}, not a vector: {}",
                v["data"]["resultType"], v["data"]
            ));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `expr` until it returns at least one series, within `limit`; those series.
    /// Panics at once when Prometheus refuses the query, and after `limit` naming the
    /// query, the scrape targets' health and Prometheus' log.
    pub fn wait_series(&self, expr: &str, limit: Duration) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        let ok = super::poll_for(limit, || match self.series(expr) {
            Ok(s) => {
                found = s;
                !found.is_empty()
            }
            Err(e) => panic!("prometheus refused {expr}: {e}"),
        });
        if !ok {
            panic!(
                "no series for {expr} within {limit:?}; targets: {}\nlog:\n{}",
                self.targets(),
                self.log()
            );
        }
        found
    }

    /// The scrape targets and their health (`/api/v1/targets`), for failure messages.
    pub fn targets(&self) -> serde_json::Value {
        let v = self.api("/api/v1/targets");
        let active = v["data"]["activeTargets"].as_array().cloned();
        serde_json::Value::Array(
            active
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "scrapeUrl": t["scrapeUrl"],
                        "health": t["health"],
                        "lastError": t["lastError"],
                    })
                })
                .collect(),
        )
    }

    /// The rule groups loaded (`/api/v1/rules`): each rule with its `health` and
    /// `lastError`.
    pub fn rules(&self) -> Vec<serde_json::Value> {
        let v = self.api("/api/v1/rules");
        v["data"]["groups"].as_array().cloned().unwrap_or_default()
    }
}

/// Runs `promtool args...`, with `stdin` on its standard input; its output. Panics when
/// promtool is not installed.
pub fn promtool(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = match Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{PROMTOOL} is not installed: this test needs Debian's promtool \
             (apt-get install prometheus; deploy/test.sh installs it)"
        ),
        Err(e) => panic!("cannot run {PROMTOOL}: {e}"),
    };
    let mut input = child.stdin.take().unwrap();
    let body = stdin.to_vec();
    // Written from another thread: promtool may answer before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&body);
    });
    let out = child.wait_with_output().expect("promtool ran");
    let _ = writer.join();
    out
}
