//! Test support: a local HTTP target that can be turned off and on, and a handle on the real
//! `probed` binary running on a config written to a temp dir.
#![allow(dead_code)]

pub mod alertmanager;
pub mod netns;
pub mod pg;
pub mod prometheus;
pub mod receiver;
pub mod scenario;
pub mod smtp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A runtime for labs and receivers beside a [`Daemon`] (whose handle blocks the test thread).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fault lab on 127.0.0.1, served by `rt`.
pub fn lab(rt: &tokio::runtime::Runtime) -> probed::lab::LabHandle {
    rt.block_on(probed::lab::Lab::start(&[std::net::SocketAddr::from((
        [127, 0, 0, 1],
        0,
    ))]))
    .unwrap()
}

/// A tiny HTTP/1.1 server answering `200 ok` to everything, counting requests.
pub struct Target {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Target {
    pub async fn start() -> Target {
        Target::start_on("127.0.0.1").await
    }

    /// On another loopback address (`127.0.0.2`: another host, as far as probed can tell).
    pub async fn start_on(ip: &str) -> Target {
        let l = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut t = Target {
            addr,
            hits: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        t.serve(l);
        t
    }

    fn serve(&mut self, l: TcpListener) {
        let hits = self.hits.clone();
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let hits = hits.clone();
                tokio::spawn(async move {
                    if !read_head(&mut s).await {
                        return;
                    }
                    hits.fetch_add(1, Ordering::Relaxed);
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        }));
    }

    /// Stops listening: connections are refused from now on.
    pub fn off(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn on(&mut self) {
        self.off();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return;
                }
                // The aborted task's listener may take a moment to drop.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot re-bind {}: {e}", self.addr),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A free loopback port (bound, read back, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `probed` process on a config in its own temp dir.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    /// The network namespace it runs in (its API is reachable only from there).
    pub netns: Option<String>,
}

impl Daemon {
    /// Writes `probed.yaml` (listen and data_dir filled in) plus `probes.yaml`.
    pub fn new(probes_yaml: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("probed.yaml");
        std::fs::write(
            &config,
            format!("listen: 127.0.0.1:{port}\ndata_dir: ./data\nprobes: probes.yaml\n{extra}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("probes.yaml"), probes_yaml).unwrap();
        Daemon {
            dir,
            config,
            port,
            child: None,
            netns: None,
        }
    }

    /// Starts the binary inside network namespace `ns` and waits until its API answers
    /// there.
    pub fn start_in(&mut self, ns: &str) {
        self.netns = Some(ns.to_owned());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_probed")])
            .env("RUST_LOG", "info");
        self.spawn(cmd);
    }

    /// Appends to `probed.yaml` (e.g. a section naming another daemon's port).
    pub fn append_config(&self, yaml: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config)
            .unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
    }

    pub fn write_probes(&self, probes_yaml: &str) {
        std::fs::write(self.dir.path().join("probes.yaml"), probes_yaml).unwrap();
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data/probed.db")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the binary and waits until its API answers.
    pub fn start(&mut self) {
        self.start_env(&[]);
    }

    /// Starts the binary with extra environment variables.
    pub fn start_env(&mut self, env: &[(&str, &str)]) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_probed"));
        cmd.env("RUST_LOG", "info").envs(env.iter().copied());
        self.spawn(cmd);
    }

    /// Starts the binary with at most `n` open files (soft and hard limit), as a service
    /// with `LimitNOFILE=n` would run.
    #[allow(dead_code)] // not every test binary limits the daemon's files
    pub fn start_with_open_files(&mut self, n: u64) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_probed"))
            .env("RUST_LOG", "info");
        self.spawn(cmd);
    }

    /// Runs `cmd` (the binary, or a wrapper that execs it) on this daemon's config and waits
    /// until the API answers.
    fn spawn(&mut self, mut cmd: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("probed.log"))
            .unwrap();
        let child = cmd
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start probed");
        self.child = Some(child);
        wait_for(Duration::from_secs(20), "probed to answer", || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("probed exited early with {st}:\n{}", self.log());
            }
            match &self.netns {
                None => std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
                Some(_) => self
                    .probectl(&["status", "--json"])
                    .stdout
                    .starts_with(b"{\"daemon\":"),
            }
        });
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("probed.log")).unwrap_or_default()
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("probed did not exit within 20s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `probectl` with this daemon's config (in its namespace, if it runs in one).
    pub fn probectl(&self, args: &[&str]) -> Output {
        match &self.netns {
            None => probectl(&self.config, args),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_probectl"), "-c"])
                .arg(&self.config)
                .args(args)
                .env_remove("PROBED_URL")
                .output()
                .expect("run probectl"),
        }
    }

    /// `probectl status --json`, parsed, with its exit code.
    pub fn status(&self) -> (serde_json::Value, i32) {
        let out = self.probectl(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (v, out.status.code().unwrap_or(-1))
    }

    /// The `last_error` of probe `name` in the status API (`""` when it has none).
    pub fn last_error(&self, name: &str) -> String {
        let (v, _) = self.status();
        v["probes"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name))
            .and_then(|p| p["last_error"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn probe_state(&self, name: &str) -> String {
        let (v, _) = self.status();
        v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["state"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| "absent".into())
    }

    /// Polls until probe `name` reaches `state`; returns how long it took.
    pub fn wait_state(&self, name: &str, state: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        wait_for(limit, &format!("{name} to be {state}"), || {
            self.probe_state(name) == state
        });
        t0.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn probectl(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probectl"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("PROBED_URL")
        .output()
        .expect("run probectl")
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `limit`. A bounded
/// wait for a condition, not a sleep standing in for one.
pub fn wait_for(limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    if !poll_for(limit, cond) {
        panic!("timed out after {limit:?} waiting for {what}");
    }
}

/// Polls `cond` every 20 ms until it holds (true) or `limit` has passed (false): the
/// [`wait_for`] of a test that reports what did not happen itself.
pub fn poll_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// `GET path` from a Go server on 127.0.0.1:`port` (Prometheus, Alertmanager) as (status,
/// body); (0, "") when nothing answers. HTTP/1.0, so Go's server answers unchunked and
/// closes: the body is the rest of the stream.
pub fn go_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut raw = String::new();
    if s.read_to_string(&mut raw).is_err() {
        return (0, String::new());
    }
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// Polls a peer process's `/-/ready` on 127.0.0.1:`port` until it answers 200; an error
/// with its `log` if it exits first or is not ready within `limit`.
pub fn wait_ready(
    child: &mut Child,
    port: u16,
    limit: Duration,
    log: impl Fn() -> String,
) -> Result<(), String> {
    let t0 = Instant::now();
    while go_get(port, "/-/ready").0 != 200 {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("exited with {st}:\n{}", log()));
        }
        if t0.elapsed() > limit {
            return Err(format!("not ready within {limit:?}:\n{}", log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A plain GET over a fresh connection, for reading /metrics and friends in tests.
pub fn http_get_blocking(url: &str) -> String {
    http_get_with(url, "")
}

/// A GET over a fresh connection with extra header lines (each ending in `\r\n`); the raw
/// response.
pub fn http_get_with(url: &str, extra_headers: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

/// A raw response as (status code, head with lowercased header lines, body); a chunked
/// body (`/metrics` streams its families) is decoded, as any HTTP client would.
#[allow(dead_code)] // not every test binary reads responses this way
pub fn split_response(raw: &str) -> (u16, String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw}"));
    let head = head.to_ascii_lowercase();
    let body = if head.contains("\r\ntransfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (code, head, body)
}

/// The payload of a chunked body (RFC 9112 §7.1), chunk extensions and trailers ignored.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = rest[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after a chunk");
    }
}

/// A plain POST with an empty body over a fresh connection.
pub fn http_post_blocking(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

/// Reads a request's head (up to the blank line, at most 8 KiB) and drops it: true once it
/// is in, false when the peer closed or sent more than that first.
#[allow(dead_code)] // not every test binary serves HTTP by hand
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => n += k,
        }
        if n == buf.len() {
            return false;
        }
    }
    true
}
