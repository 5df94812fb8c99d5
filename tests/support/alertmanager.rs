//! A real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port, gossip
//! off, storage in a temp dir.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Alertmanager {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    pub fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("am.yml");
        std::fs::write(
            &cfg,
            "route: { receiver: none, group_wait: 1s }\nreceivers: [ { name: none } ]\n",
        )
        .unwrap();
        let port = super::free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager (deploy/test.sh installs it)");
        let am = Alertmanager {
            port,
            child,
            _dir: dir,
        };
        let t0 = Instant::now();
        while !am.get("/-/ready").starts_with("HTTP/1.1 200") {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "alertmanager not ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        am
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> String {
        match std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            Ok(_) => super::http_get_blocking(&format!("{}{path}", self.url())),
            Err(_) => String::new(),
        }
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`), parsed.
    pub fn alerts(&self, query: &str) -> Vec<serde_json::Value> {
        let resp = self.get(&format!("/api/v2/alerts{query}"));
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("[]");
        // Chunked bodies: take the JSON array between the first '[' and the last ']'.
        let (a, b) = (body.find('['), body.rfind(']'));
        match (a, b) {
            (Some(a), Some(b)) if a < b => serde_json::from_str(&body[a..=b]).unwrap_or_default(),
            _ => vec![],
        }
    }
}
