//! The container image for real: `deploy/build-image.sh` builds `deploy/Containerfile` with
//! Debian's podman from the binaries cargo built for these tests, and the image runs with
//! its default config (the README's demo) on a named volume at /data. The host's `probectl`
//! reads the daemon through a published port; the daemon runs as the non-root user, keeps
//! its results on the volume across containers, passes its own HEALTHCHECK, and resolves
//! host names inside the image.
//!
//! podman must be installed (deploy/test.sh installs podman and runc): without it this test
//! fails, saying so, rather than skipping.
//!
//! Flags every podman call here passes, for this sandbox and machines like it (no system
//! config file is edited):
//! - `--runtime runc`: podman's default, crun, fails here ("cgroups in hybrid mode not
//!   supported");
//! - `--ulimit nofile=1024:1024 --ulimit nproc=1000:1000`: a rootful run otherwise fails
//!   setting the host's limits in the container (`setrlimit RLIMIT_NOFILE/NPROC: Operation
//!   not permitted`);
//! - `--health-interval disable`: no systemd timer for the HEALTHCHECK (there is no systemd
//!   to run it); the test runs the check itself with `podman healthcheck run`.
//!
//! The API is published on a free loopback port (`-p 127.0.0.1:PORT:9797`, podman's
//! netavark), not through `--network host`: publishing works here.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{free_port, wait_for};

/// The uid and gid the image runs as (deploy/Containerfile's `USER`).
const UID: u32 = 65532;

/// The runtime, as a global flag of every podman command (see the file's docs).
const RUNTIME: [&str; 2] = ["--runtime", "runc"];

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(RUNTIME)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

/// podman's stdout, trimmed, after asserting it succeeded.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What one run made (image, volume, containers), removed on drop, pass or fail.
struct Podman {
    image: String,
    volume: String,
    containers: Vec<String>,
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "0", c]);
        }
        let _ = podman(&["volume", "rm", "-f", &self.volume]);
        let _ = podman(&["rmi", "-f", &self.image]);
    }
}

impl Podman {
    /// Starts a container of the image on the volume, its API published on `port`.
    fn run(&mut self, name: &str, port: u16) {
        self.containers.push(name.to_owned());
        let publish = format!("127.0.0.1:{port}:9797");
        let volume = format!("{}:/data", self.volume);
        podman_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1000:1000",
            "--health-interval",
            "disable",
            "-p",
            &publish,
            "-v",
            &volume,
            &self.image,
        ]);
    }

    fn logs(&self, name: &str) -> String {
        let out = podman(&["logs", name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn running(&self, name: &str) -> bool {
        podman_ok(&["inspect", "--format", "{{.State.Running}}", name]) == "true"
    }
}

/// The host's probectl (the binary cargo built) against the container's published API.
fn probectl(port: u16, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probectl"))
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(args)
        .env_remove("PROBED_CONFIG")
        .env_remove("PROBED_URL")
        .output()
        .expect("run probectl")
}

fn status_json(port: u16) -> Option<serde_json::Value> {
    serde_json::from_slice(&probectl(port, &["status", "--json"]).stdout).ok()
}

/// The state of every probe, by name, from `probectl status --json`.
fn states(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = v["probes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_owned(),
                        p["state"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    s.sort();
    s
}

/// Waits until the container's daemon answers through the published port, failing at once
/// with its log if the container stops.
fn wait_answering(p: &Podman, name: &str, port: u16) {
    wait_for(Duration::from_secs(60), "the container's API", || {
        assert!(
            p.running(name),
            "container {name} stopped:\n{}",
            p.logs(name)
        );
        status_json(port).is_some_and(|v| v["daemon"]["alive"] == true)
    });
}

/// The `at` of every stored result of `probe`, newest first.
fn history(port: u16, probe: &str) -> Vec<String> {
    let out = probectl(port, &["history", probe, "-n", "1000", "--json"]);
    assert_eq!(out.status.code(), Some(0), "history {probe}: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["at"].as_str().expect("at").to_owned())
        .collect()
}

#[test]
fn image_runs_the_demo_as_non_root_with_its_data_on_the_volume() {
    let t0 = Instant::now();
    let version = Command::new("podman").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "podman is not installed (deploy/test.sh installs it: apt-get install podman runc): \
         {version:?}"
    );
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut p = Podman {
        image: format!("localhost/probed-test:{run_id}"),
        volume: format!("probed-test-{run_id}"),
        containers: Vec::new(),
    };

    // The image, from the binaries cargo built for this test.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = Command::new(root.join("deploy/build-image.sh"))
        .arg(&p.image)
        .current_dir(root)
        .env("PROBED_BIN", env!("CARGO_BIN_EXE_probed"))
        .env("PROBECTL_BIN", env!("CARGO_BIN_EXE_probectl"))
        .env("PODMAN_BUILD_ARGS", RUNTIME.join(" "))
        .output()
        .expect("run deploy/build-image.sh");
    assert!(
        build.status.success(),
        "deploy/build-image.sh failed: {}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let built = t0.elapsed();

    // What the image says about itself: the user, the volume, the HEALTHCHECK (kept because
    // the image is in docker format).
    let inspect: serde_json::Value =
        serde_json::from_str(&podman_ok(&["image", "inspect", &p.image])).unwrap();
    let image = &inspect[0];
    assert_eq!(image["Config"]["User"], "65532:65532", "{image:#}");
    assert!(
        image["Config"]["Volumes"].get("/data").is_some(),
        "{image:#}"
    );
    let health = image["Healthcheck"]["Test"].to_string();
    assert!(
        health.contains("/usr/local/bin/probectl") && health.contains("health"),
        "HEALTHCHECK: {image:#}"
    );

    podman_ok(&["volume", "create", &p.volume]);
    let first = format!("probed-test-{run_id}-a");
    let port = free_port();
    p.run(&first, port);
    wait_answering(&p, &first, port);

    // Distroless: no shell, nothing but the binaries, their libraries and a few files.
    let export = Command::new("sh")
        .arg("-c")
        .arg(r#"podman --runtime runc export "$0" | tar -tf -"#)
        .arg(&first)
        .output()
        .unwrap();
    assert!(export.status.success(), "podman export: {export:?}");
    let files = String::from_utf8_lossy(&export.stdout).into_owned();
    for must in [
        "usr/local/bin/probed",
        "usr/local/bin/probectl",
        "lib64/ld-linux-x86-64.so.2",
        "etc/passwd",
        "etc/nsswitch.conf",
        "etc/probed/probed.yaml",
        "etc/probed/probes/demo.yaml",
    ] {
        assert!(files.lines().any(|l| l == must), "{must} missing: {files}");
    }
    for never in ["bin/sh", "usr/bin/sh", "bin/busybox"] {
        assert!(!files.lines().any(|l| l == never), "{never} in the image");
    }

    // The demo's four probes reach their verdicts: three up, the discard port down (on
    // purpose), as the host's probectl reads them through the published port.
    let want = [
        ("nothing-listens", "down"),
        ("self-health", "up"),
        ("self-metrics", "up"),
        ("self-status", "up"),
    ]
    .map(|(n, s)| (n.to_owned(), s.to_owned()))
    .to_vec();
    wait_for(Duration::from_secs(60), "the demo's verdicts", || {
        assert!(p.running(&first), "stopped:\n{}", p.logs(&first));
        status_json(port).is_some_and(|v| states(&v) == want)
    });
    let table = probectl(port, &["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(2), "something down: {text}");
    assert!(
        text.starts_with(concat!("probed ", env!("CARGO_PKG_VERSION"), " healthy")),
        "{text}"
    );
    for (name, state) in &want {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name.as_str()) && l.contains(&state.to_uppercase())),
            "{name} {state}: {text}"
        );
    }

    // Non-root: the daemon is PID 1 of the container, as probed (65532) on the host too (a
    // rootful container without a user namespace).
    let top = podman_ok(&["top", &first, "pid", "user", "huser", "comm"]);
    let pid1 = top
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1: {top}"));
    assert_eq!(
        pid1.split_whitespace().collect::<Vec<_>>(),
        ["1", "probed", "65532", "probed"],
        "{top}"
    );

    // The image's own HEALTHCHECK (probectl health inside the container).
    let check = podman(&["healthcheck", "run", &first]);
    assert!(check.status.success(), "healthcheck: {check:?}");
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.State.Health.Status}}", &first]),
        "healthy"
    );

    // Host names resolve inside the image through glibc's getaddrinfo and the image's NSS
    // (/etc/nsswitch.conf, hosts: files dns), as sqlx and tokio resolve a PostgreSQL
    // server's name: probectl in the container, by the name localhost.
    let by_name = podman(&[
        "exec",
        &first,
        "/usr/local/bin/probectl",
        "--url",
        "http://localhost:9797",
        "health",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&by_name.stdout),
        "probed at http://localhost:9797: healthy\n",
        "{by_name:?}"
    );

    // The results are on the volume, in files the daemon's user owns.
    let mountpoint = PathBuf::from(podman_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &p.volume,
    ]));
    {
        use std::os::unix::fs::MetadataExt;
        let db = std::fs::metadata(mountpoint.join("probed.db")).expect("probed.db on the volume");
        assert_eq!((db.uid(), db.gid()), (UID, UID));
    }
    let before = history(port, "self-health");
    assert!(!before.is_empty());

    // SIGTERM drains and exits 0; a new container on the same volume has the old results.
    podman_ok(&["stop", "-t", "30", &first]);
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &first]),
        "0",
        "{}",
        p.logs(&first)
    );
    podman_ok(&["rm", &first]);
    let second = format!("probed-test-{run_id}-b");
    let port = free_port();
    p.run(&second, port);
    wait_answering(&p, &second, port);
    wait_for(
        Duration::from_secs(30),
        "a result of the second container",
        || history(port, "self-health").len() > before.len(),
    );
    let after = history(port, "self-health");
    for at in &before {
        assert!(after.contains(at), "{at} lost across containers: {after:?}");
    }

    eprintln!(
        "container test: image built in {built:.1?}, whole test {:.1?}",
        t0.elapsed()
    );
}
