//! A real SMTP server for end-to-end tests: aiosmtpd (tests/peers/smtpd.py) storing each
//! message in a Maildir.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Smtp {
    pub port: u16,
    pub maildir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    pub fn start() -> Smtp {
        Smtp::start_with(Command::new("python3"), "127.0.0.1")
    }

    /// In network namespace `ns`, on `host` there (the Maildir is on this machine's disk).
    pub fn start_in(ns: &str, host: &str) -> Smtp {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "python3"]);
        Smtp::start_with(cmd, host)
    }

    fn start_with(mut cmd: Command, host: &str) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtpd.py");
        let mut child = cmd
            .arg(script)
            .args(["--host", host, "--port", "0", "--maildir"])
            .arg(&maildir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "start tests/peers/smtpd.py (is aiosmtpd installed? deploy/test.sh installs it)",
            );
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtpd.py did not say ready: {line:?}"));
        Smtp {
            port,
            maildir,
            child,
            _dir: dir,
        }
    }

    /// Stops the server (the relay goes down): connections to its port are refused from
    /// now on; the messages delivered so far stay readable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message delivered so far, as text.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.maildir.join("new")) {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Polls until `pred` holds for the messages; returns them and the time waited.
    pub fn wait(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[String]) -> bool,
    ) -> (Vec<String>, Duration) {
        let t0 = Instant::now();
        loop {
            let m = self.messages();
            if pred(&m) {
                return (m, t0.elapsed());
            }
            if t0.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}; got {m:#?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
