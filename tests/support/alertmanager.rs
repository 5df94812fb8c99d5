//! A real Alertmanager (Debian's prometheus-alertmanager) on free loopback ports, storage in
//! a temp dir: alone with gossip off ([`Alertmanager::start`]), or as a gossip cluster
//! ([`Alertmanager::start_cluster`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary Debian's package installs.
const BINARY: &str = "prometheus-alertmanager";

/// The config of [`Alertmanager::start`]: everything to a receiver that sends nothing.
const SILENT_CONFIG: &str =
    "route: { receiver: none, group_wait: 1s }\nreceivers: [ { name: none } ]\n";

pub struct Alertmanager {
    pub port: u16,
    /// The gossip port (TCP and UDP), when clustered.
    pub cluster_port: Option<u16>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gossip settings of a cluster's members (`--cluster.*`); Alertmanager's defaults are
/// made for real networks (15s peer timeout, 200ms gossip, 1m push/pull).
#[derive(Debug, Clone)]
pub struct Gossip {
    /// `--cluster.peer-timeout`: the member at position N of the cluster waits N times this
    /// before it checks the notification log and sends what no one sent.
    pub peer_timeout: Duration,
    /// `--cluster.gossip-interval`; the gossip "settles" (the member starts notifying) after
    /// about four polls ten of these apart in which the member count held.
    pub gossip_interval: Duration,
    /// `--cluster.pushpull-interval`: full state exchange.
    pub pushpull_interval: Duration,
}

/// One member to start: its ports and whom it joins.
struct Member<'a> {
    listen: u16,
    peers: Vec<u16>,
    gossip: &'a Gossip,
}

impl Alertmanager {
    /// One Alertmanager, gossip off, routing everything to a receiver that sends nothing.
    pub fn start() -> Alertmanager {
        Alertmanager::start_with(SILENT_CONFIG)
    }

    /// One Alertmanager, gossip off, on `config` (its `route`, `inhibit_rules`, ...).
    pub fn start_with(config: &str) -> Alertmanager {
        let mut last = String::new();
        // A port picked by binding :0 and releasing it may be taken before Alertmanager
        // binds it; Alertmanager then exits, and we try other ports.
        for _ in 0..3 {
            match Alertmanager::spawn(config, super::free_port(), None) {
                Ok(am) => return am,
                Err(e) => last = e,
            }
        }
        panic!("alertmanager did not start: {last}");
    }

    /// `n` Alertmanagers on `config`, gossiping with each other on 127.0.0.1: each has a
    /// `--cluster.listen-address` and a `--cluster.peer` for every other member. Returns once
    /// every member answers `/-/ready` and reports, in `GET /api/v2/status`, a cluster that
    /// has settled (`cluster.status` is `ready`) with all `n` members in it.
    pub fn start_cluster(n: usize, config: &str, gossip: &Gossip) -> Vec<Alertmanager> {
        let mut last = String::new();
        for _ in 0..3 {
            match Alertmanager::try_cluster(n, config, gossip) {
                Ok(members) => return members,
                Err(e) => last = e,
            }
        }
        panic!("alertmanager cluster of {n} did not form: {last}");
    }

    fn try_cluster(n: usize, config: &str, gossip: &Gossip) -> Result<Vec<Alertmanager>, String> {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_cluster_port()).collect();
        let mut members = Vec::with_capacity(n);
        // One after the other: a member's initial join succeeds when the one it joins already
        // listens (its cluster port is bound before its web port answers). A failed initial
        // join is only retried every --cluster.refresh-interval (15s).
        for (i, &listen) in cluster_ports.iter().enumerate() {
            let peers = cluster_ports
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &p)| p)
                .collect();
            let member = Member {
                listen,
                peers,
                gossip,
            };
            let am = Alertmanager::spawn(config, super::free_port(), Some(member))
                .map_err(|e| format!("member {i}: {e}"))?;
            members.push(am);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let statuses: Vec<serde_json::Value> = members.iter().map(|m| m.status()).collect();
            let formed = statuses.iter().all(|s| {
                s["cluster"]["status"] == "ready"
                    && s["cluster"]["peers"].as_array().map(Vec::len) == Some(n)
            });
            if formed {
                return Ok(members);
            }
            for (i, m) in members.iter_mut().enumerate() {
                if let Ok(Some(st)) = m.child.try_wait() {
                    return Err(format!("member {i} exited with {st}:\n{}", m.log()));
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = members.iter().map(|m| m.log()).collect();
                return Err(format!(
                    "not formed within 30s; cluster status of each: {:#?}\nlogs:\n{}",
                    statuses.iter().map(|s| &s["cluster"]).collect::<Vec<_>>(),
                    logs.join("\n----\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts one Alertmanager on `port` and waits for `/-/ready`; an error if it exits
    /// first (a port taken meanwhile) or is not ready within 20s.
    fn spawn(config: &str, port: u16, cluster: Option<Member>) -> Result<Alertmanager, String> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("am.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("am.log")).unwrap();
        let mut cmd = Command::new(BINARY);
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debug: the log then shows each aggregation group's flushes, for failures.
            .arg("--log.level=debug");
        let cluster_port = match &cluster {
            // The empty cluster address turns gossip off.
            None => {
                cmd.arg("--cluster.listen-address=");
                None
            }
            Some(m) => {
                cmd.arg(format!("--cluster.listen-address=127.0.0.1:{}", m.listen))
                    .arg(format!(
                        "--cluster.peer-timeout={}",
                        go(m.gossip.peer_timeout)
                    ))
                    .arg(format!(
                        "--cluster.gossip-interval={}",
                        go(m.gossip.gossip_interval)
                    ))
                    .arg(format!(
                        "--cluster.pushpull-interval={}",
                        go(m.gossip.pushpull_interval)
                    ));
                for p in &m.peers {
                    cmd.arg(format!("--cluster.peer=127.0.0.1:{p}"));
                }
                Some(m.listen)
            }
        };
        let child = match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{BINARY} is not installed: this test needs a real Alertmanager \
                 (apt-get install prometheus-alertmanager; deploy/test.sh installs it)"
            ),
            Err(e) => panic!("cannot run {BINARY}: {e}"),
        };
        let mut am = Alertmanager {
            port,
            cluster_port,
            child,
            dir,
        };
        super::wait_ready(&mut am.child, am.port, Duration::from_secs(20), || {
            std::fs::read_to_string(am.dir.path().join("am.log")).unwrap_or_default()
        })?;
        Ok(am)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("am.log")
    }

    /// `GET path` as (status, body); (0, "") when nothing answers.
    fn get(&self, path: &str) -> (u16, String) {
        super::go_get(self.port, path)
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path} from {}: {body}", self.url());
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path} from {}: not JSON ({e}): {body}", self.url()))
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts{query}`), parsed.
    pub fn alerts(&self, query: &str) -> Vec<serde_json::Value> {
        match self.get(&format!("/api/v2/alerts{query}")) {
            (200, body) => serde_json::from_str(&body).unwrap_or_default(),
            _ => vec![],
        }
    }

    /// Its aggregation groups (`GET /api/v2/alerts/groups`): each with the `labels` it is
    /// grouped by and its `alerts`, parsed. Empty when it does not answer.
    pub fn groups(&self) -> Vec<serde_json::Value> {
        match self.get("/api/v2/alerts/groups") {
            (200, body) => serde_json::from_str(&body).unwrap_or_default(),
            _ => vec![],
        }
    }

    /// `GET /api/v2/status`: its version, config and `cluster` (`name`, `status`, `peers`).
    pub fn status(&self) -> serde_json::Value {
        self.get_json("/api/v2/status")
    }

    /// The value of one series of its `/metrics`, named as exposed (labels in their
    /// order), e.g. `alertmanager_notifications_total{integration="webhook"}`.
    pub fn metric(&self, series: &str) -> f64 {
        self.try_metric(series)
            .unwrap_or_else(|| panic!("no series {series} in the /metrics of {}", self.url()))
    }

    /// [`Alertmanager::metric`], `None` when it does not answer or has no such series.
    pub fn try_metric(&self, series: &str) -> Option<f64> {
        match self.get("/metrics") {
            (200, body) => body
                .lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok()),
            _ => None,
        }
    }
}

/// A duration as Go's flags read it.
fn go(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// A loopback port free for both TCP and UDP (memberlist gossips on both), bound, read
/// back and released.
fn free_cluster_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
