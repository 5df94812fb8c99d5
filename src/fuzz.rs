//! Entry points of the fuzz harness (issue 12): `fuzz/` runs each under libFuzzer, and
//! `tests/fuzz_regressions.rs` runs each over the seeds and the crashers kept. Each takes
//! arbitrary bytes, hands them to one parser or reader the way the daemon does, and returns;
//! a panic (or an endless loop, or memory without bound) is the finding. Not an API.
//!
//! - [`config_loader`]: the bytes as a config file, through [`crate::config::load_str`]
//!   in a scratch folder: nothing is written, no file outside it is read. A config that
//!   loads is then built as the daemon would start it, short of I/O.
//! - [`units`]: [`crate::units::parse_duration`] and [`crate::units::parse_bytes`] (and the
//!   `format_*` of what they return, which must read back), and `expect.status` patterns.
//! - [`push_url`]: the bytes as the rest of a `/api/v1/push/` URL, sent to the API router.
//! - [`api_request`]: the bytes as a raw HTTP/1 request to the API (hyper's server, the
//!   axum router of [`crate::api::router`], a running daemon behind it); silence globs.
//! - [`http_reply`], [`redis_reply`]: the bytes as what a peer answers an HTTP or Redis
//!   probe, over a real loopback connection, read and judged by the probe's own `check`.
//!
//! The peers (the daemon, the loopback listener) live in one current-thread runtime per
//! process, started at the first call; their scratch folders are under the temporary folder
//! (`fuzz/run.sh` points `TMPDIR` at one it empties; the test removes them with
//! [`remove_scratch`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_yaml::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The variables the fuzzed configs see: these, `UNSET*` unset, and any other name set to
/// [`ENV_ANY`]. No value holds a `/` or a `.`, so an interpolated path stays a name in the
/// sandbox (see [`paths_stay_inside`]).
const ENV: &[(&str, &str)] = &[
    ("PORT", "9797"),
    ("TOKEN", "fuzz-token-0123456789"),
    ("EMPTY", ""),
    ("TOKEN_FILE", "token"),
    ("PROBES", "probes"),
];
const ENV_ANY: &str = "fuzz-value-0123456789";

fn fake_env(name: &str) -> Option<String> {
    match ENV.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => Some(v.to_string()),
        None if name.starts_with("UNSET") => None,
        None => Some(ENV_ANY.to_string()),
    }
}

/// What the sandbox holds: a secret file and a folder of one probe file, so `*_file` keys
/// and `probes: probes` have something to read.
const SANDBOX_FILES: &[(&str, &str)] = &[
    ("token", "s3cret-token-from-a-file\n"),
    (
        "probes/web.yaml",
        "probes:\n  - name: web\n    kind: http\n    every: 30s\n    request:\n      url: http://127.0.0.1:1/health\n",
    ),
];

/// The config loader on `data` (as UTF-8, invalid bytes replaced), as `probed.yaml` of an
/// otherwise fixed folder.
pub fn config_loader(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if !paths_stay_inside(&text) {
        return;
    }
    if let Ok(config) = crate::config::load_str(&text, &sandbox().join("probed.yaml"), &fake_env) {
        start_pure(&config);
    }
}

/// What the daemon does with a config that loaded, short of I/O: each probe built (regexes,
/// TLS settings) and its interval, the alert routes and notifiers built, each maintenance
/// window judged (cron schedules searched) at a fixed time. A config that loads and then
/// panics or hangs here would crash a daemon that `check-config` passed (issue 12, item 4).
fn start_pure(config: &crate::config::Config) {
    static BUILD_CX: OnceLock<crate::alert::BuildCx> = OnceLock::new();
    // 2026-01-01T00:00:00Z.
    const NOW_MS: i64 = 1_767_225_600_000;
    for p in &config.probes {
        let _ = p.schedule.interval();
        let _ = p.spec.build();
    }
    for m in &config.maintenance {
        let _ = m.current_or_next(NOW_MS, 86_400_000);
        for p in &config.probes {
            let _ = m.active(&p.name, NOW_MS);
        }
    }
    let _ = crate::alert::plan::Router::from_config(config);
    let cx = BUILD_CX.get_or_init(|| crate::alert::BuildCx::new().expect("notifier build context"));
    let _ = crate::alert::dispatch::Plan::build(config, cx);
}

/// Whether every file the loader could open for `text` is in the sandbox. The loader opens
/// what `probes:` names (a file, or a folder and its `*.yaml`) and each `*_file:` key's value,
/// joined to the config's folder; such a value without `/` and `..` (and without a `$` beside
/// a `.`, which an interpolation default could make into `..`) names an entry of the sandbox
/// itself. The text is parsed as the loader parses it, after the same depth check (text that
/// fails either is refused by the loader before any file is opened, so it may go in).
fn paths_stay_inside(text: &str) -> bool {
    if crate::config::nested_too_deep(text) {
        return true;
    }
    match serde_yaml::from_str::<Value>(text) {
        Ok(v) => names_stay_inside(&v),
        Err(_) => true,
    }
}

fn names_stay_inside(v: &Value) -> bool {
    match untag(v) {
        Value::Sequence(items) => items.iter().all(names_stay_inside),
        Value::Mapping(m) => m.iter().all(|(k, v)| {
            let names_a_file = k
                .as_str()
                .is_some_and(|k| k == "probes" || (k.len() > 5 && k.ends_with("_file")));
            let name_ok = match untag(v).as_str() {
                Some(p) if names_a_file => {
                    let dollar_dot = p.contains('$') && p.contains('.');
                    !(p.contains('/') || p.contains("..") || dollar_dot)
                }
                _ => true,
            };
            name_ok && names_stay_inside(k) && names_stay_inside(v)
        }),
        _ => true,
    }
}

/// `v` without its tags (`!x`), as `Value::as_str` sees it.
fn untag(mut v: &Value) -> &Value {
    while let Value::Tagged(t) = v {
        v = &t.value;
    }
    v
}

/// The folder the fuzzed configs are read from: [`SANDBOX_FILES`] and nothing else.
fn sandbox() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("config");
        for (name, body) in SANDBOX_FILES {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().expect("a file in a folder"))
                .expect("create the sandbox");
            std::fs::write(p, body).expect("write the sandbox");
        }
        dir
    })
}

/// Every scratch folder made so far, for [`remove_scratch`].
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A new empty folder under the temporary folder, kept until [`remove_scratch`].
fn scratch(what: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(&format!("probed-fuzz-{what}-"))
        .tempdir()
        .expect("create a scratch folder")
        .keep();
    lock(&SCRATCH).push(dir.clone());
    dir
}

/// Removes the scratch folders (the sandbox, the daemon's data folder). For the end of a
/// process: an entry point called after it may find its folder gone.
pub fn remove_scratch() {
    for dir in lock(&SCRATCH).drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A lock that a panic in an earlier call (a finding, caught by the regression test) does
/// not poison for the next.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Durations and sizes as config and the API read them; what they return, formatted, reads
/// back as (nearly) the same; the same for `expect.status` patterns. The first 8 bytes as a
/// number go through the formatters too.
pub fn units(data: &[u8]) {
    use crate::units::{format_bytes, format_duration, parse_bytes, parse_duration};
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = parse_duration(&text) {
        duration_reads_back(d, &text);
    }
    if let Ok(n) = parse_bytes(&text) {
        size_reads_back(n, &text);
    }
    if let Ok(p) = crate::probe::http::StatusPattern::parse(&text) {
        let shown = p.to_string();
        let back = crate::probe::http::StatusPattern::parse(&shown);
        assert_eq!(back.as_ref(), Ok(&p), "status {text:?} shown as {shown:?}");
    }
    if let Some(raw) = data.get(..8) {
        let n = u64::from_le_bytes(raw.try_into().expect("8 bytes"));
        size_reads_back(n, "");
        // Config durations are at most ten years (parse_duration's limit): about 2^58 ns.
        let d = Duration::from_nanos(n >> 6);
        if d <= Duration::from_secs(10 * 365 * 86400) {
            duration_reads_back(d, "");
        }
        let _ = format_duration(Duration::from_nanos(n));
        let _ = format_bytes(n);
    }
}

/// `format_duration` keeps milliseconds (microseconds below one): within 1 ms.
fn duration_reads_back(d: Duration, from: &str) {
    let shown = crate::units::format_duration(d);
    match crate::units::parse_duration(&shown) {
        Ok(back) => assert!(
            back.abs_diff(d) <= Duration::from_millis(1),
            "{d:?} (from {from:?}) shown as {shown:?} reads back as {back:?}"
        ),
        Err(e) => panic!("{d:?} (from {from:?}) shown as {shown:?} does not read back: {e}"),
    }
}

/// `format_bytes` keeps one decimal of its unit: within a twentieth of the unit.
fn size_reads_back(n: u64, from: &str) {
    let shown = crate::units::format_bytes(n);
    let unit = [1u64 << 30, 1 << 20, 1 << 10]
        .into_iter()
        .find(|u| n >= *u)
        .unwrap_or(1);
    match crate::units::parse_bytes(&shown) {
        Ok(back) => assert!(
            back.abs_diff(n) as f64 <= unit as f64 / 20.0 + 1.0 + n as f64 * 1e-12,
            "{n} (from {from:?}) shown as {shown:?} reads back as {back}"
        ),
        Err(e) => panic!("{n} (from {from:?}) shown as {shown:?} does not read back: {e}"),
    }
}

// ---- the API ---------------------------------------------------------------------------

/// The push probe's token in the daemon behind [`push_url`] and [`api_request`].
pub const PUSH_TOKEN: &str = "fuzz-push-token-0123456789";
/// Its admin token (`Authorization: Bearer fuzz-admin-token-0123`).
pub const ADMIN_TOKEN: &str = "fuzz-admin-token-0123";

/// A daemon with a push probe, its API router, and the runtime both run on.
struct Api {
    rt: Runtime,
    router: axum::Router,
    _daemon: crate::daemon::Daemon,
}

fn api() -> MutexGuard<'static, Api> {
    static API: OnceLock<Mutex<Api>> = OnceLock::new();
    lock(API.get_or_init(|| {
        let dir = scratch("api");
        let yaml = format!(
            "listen: 127.0.0.1:0\n\
             admin_token: {ADMIN_TOKEN}\n\
             status_page: {{ title: Fuzz }}\n\
             maintenance:\n  - {{ name: nightly, probes: [\"nightly-*\"], cron: \"0 3 * * *\", duration: 30m }}\n\
             probes:\n  - {{ name: nightly-backup, kind: push, token: {PUSH_TOKEN}, period: 1d, public: true }}\n"
        );
        let config = crate::config::load_str(&yaml, &dir.join("probed.yaml"), &|_| None)
            .unwrap_or_else(|e| panic!("the fuzz daemon's config: {e}"));
        let rt = current_thread();
        let daemon = rt
            .block_on(crate::daemon::Daemon::start(config))
            .unwrap_or_else(|e| panic!("the fuzz daemon: {e}"));
        let router = crate::api::router(daemon.shared.clone());
        Mutex::new(Api {
            rt,
            router,
            _daemon: daemon,
        })
    }))
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `data` as the rest of a push URL: `GET /api/v1/push/<data> HTTP/1.1`, as a job's `curl`
/// sends it (the token, then `/start` or `/fail`, `?exit_status=N`).
pub fn push_url(data: &[u8]) {
    push_answer(data);
}

fn push_answer(data: &[u8]) -> Vec<u8> {
    let mut request = b"GET /api/v1/push/".to_vec();
    request.extend_from_slice(data);
    request.extend_from_slice(b" HTTP/1.1\r\nhost: probed\r\n\r\n");
    let api = api();
    api.rt.block_on(exchange(api.router.clone(), &request))
}

/// `data` as the bytes a client sends the API: request line, headers, body (more than one
/// request, too). The daemon's token is [`ADMIN_TOKEN`]. Then, split at the first NUL, a
/// silence's probe pattern and a probe name (`glob_match`, which must stay linear).
pub fn api_request(data: &[u8]) {
    {
        let api = api();
        api.rt.block_on(exchange(api.router.clone(), data));
    }
    let text = String::from_utf8_lossy(data);
    let (pattern, name) = text.split_once('\0').unwrap_or((&text, "api-eu-1"));
    if crate::config::silence_pattern_error(pattern).is_none() {
        crate::config::glob_match(pattern, name);
    }
}

/// Serves `request` with `router` on one connection, as the daemon's HTTP server does, and
/// reads the whole answer.
async fn exchange(router: axum::Router, request: &[u8]) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 << 10);
    let serve = hyper::server::conn::http1::Builder::new()
        // The client below shuts its side once the request is written, and waits.
        .half_close(true)
        .serve_connection(
            hyper_util::rt::TokioIo::new(server),
            hyper_util::service::TowerToHyperService::new(router),
        );
    let talk = async move {
        let (mut rd, mut wr) = tokio::io::split(client);
        let write = async {
            let _ = wr.write_all(request).await;
            let _ = wr.shutdown().await;
        };
        let read = async {
            let mut answer = Vec::new();
            let _ = rd.read_to_end(&mut answer).await;
            answer
        };
        tokio::join!(write, read).1
    };
    tokio::join!(serve, talk).1
}

// ---- probe peers -----------------------------------------------------------------------

/// A loopback listener whose every connection gets the same answer, and the probes that
/// connect to it.
struct Peer {
    rt: Runtime,
    listener: tokio::net::TcpListener,
    env: crate::probe::Env,
    checks: Vec<crate::probe::Probe>,
}

/// How long a fuzzed probe run may take: far under libFuzzer's `-timeout=1`, so a probe that
/// waits for its deadline is slow to the fuzzer but not a timeout.
const PROBE_DEADLINE: Duration = Duration::from_millis(250);

/// The peer of `cell`, started at the first call, with a probe of `kind` for each of the
/// specs (kind-specific fields in YAML) that `specs` writes for the listener's address.
fn peer(
    cell: &'static OnceLock<Mutex<Peer>>,
    kind: &str,
    specs: fn(&str) -> Vec<String>,
) -> MutexGuard<'static, Peer> {
    lock(cell.get_or_init(|| {
        let rt = current_thread();
        let (listener, env) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            (l, crate::probe::Env::new(&[]).expect("a probe env"))
        });
        let addr = listener
            .local_addr()
            .expect("the listener's address")
            .to_string();
        let checks = specs(&addr)
            .iter()
            .map(|yaml| {
                let value = serde_yaml::from_str(yaml).expect("a YAML spec");
                let spec = crate::probe::ProbeSpec::from_value(kind, value)
                    .expect("a kind")
                    .unwrap_or_else(|e| panic!("fuzz probe {yaml}: {e}"));
                spec.build()
                    .unwrap_or_else(|e| panic!("fuzz probe {yaml}: {e}"))
            })
            .collect();
        Mutex::new(Peer {
            rt,
            listener,
            env,
            checks,
        })
    }))
}

/// One check of the probe `data[0]` picks, against a peer that answers `data[1..]` (paced
/// as it [`Speaks`]), then closes its side.
fn probe_against(peer: &Peer, data: &[u8], speaks: Speaks) -> Option<crate::probe::Observation> {
    let (&pick, answer) = data.split_first()?;
    let check = &peer.checks[pick as usize % peer.checks.len()];
    peer.rt.block_on(async {
        let cx = crate::probe::CheckCx {
            env: &peer.env,
            deadline: tokio::time::Instant::now() + PROBE_DEADLINE,
        };
        // Every connection is answered, one after the other, until the check is done (so a
        // connection left over from an earlier run cannot stand in the way of this one's).
        let serve = async {
            loop {
                if let Ok((conn, _)) = peer.listener.accept().await {
                    answer_once(conn, answer, speaks).await;
                }
            }
        };
        tokio::select! {
            obs = check.check(&cx) => Some(obs),
            _ = serve => None,
        }
    })
}

/// How the peer paces its answer.
#[derive(Clone, Copy)]
enum Speaks {
    /// All of it once the request head is in.
    Http,
    /// One reply of it (as RESP frames it) per command before `INFO`, the rest to `INFO`
    /// (a Redis client reads each reply to a request it sent, and takes early bytes for a
    /// closed connection). What does not frame as a reply goes out whole, so the client
    /// never waits on a peer that waits on it.
    Redis,
}

async fn answer_once(mut conn: tokio::net::TcpStream, mut answer: &[u8], speaks: Speaks) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.is_empty() {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        match speaks {
            Speaks::Http => {
                if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 64 << 10 {
                    let _ = conn.write_all(answer).await;
                    answer = &[];
                }
            }
            Speaks::Redis => {
                while let Some((used, info)) = resp_command(&seen) {
                    seen.drain(..used);
                    let end = match resp_reply_len(answer) {
                        Some(n) if !info => n,
                        _ => answer.len(),
                    };
                    let _ = conn.write_all(&answer[..end]).await;
                    answer = &answer[end..];
                }
            }
        }
    }
    let _ = conn.shutdown().await;
    // Read what else comes until the probe closes: closing with unread bytes would reset
    // the connection, and the probe might not read the answer at all.
    while let Ok(n) = conn.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// The length of the first whole RESP reply (RESP2 or RESP3) in `buf`; `None` when it is
/// not whole or not RESP.
fn resp_reply_len(buf: &[u8]) -> Option<usize> {
    let number = |l: &[u8]| std::str::from_utf8(l).ok()?.parse::<i64>().ok();
    let (mut at, mut pending) = (0usize, 1usize);
    while pending > 0 {
        let (head, next) = resp_line(buf, at)?;
        let (&kind, rest) = head.split_first()?;
        pending -= 1;
        at = next;
        let n = || number(rest).map(|n| usize::try_from(n).unwrap_or(0));
        match kind {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
            b'$' | b'!' | b'=' => {
                if number(rest)? >= 0 {
                    at = at.checked_add(n()?)?.checked_add(2)?;
                }
            }
            b'*' | b'~' | b'>' => pending = pending.checked_add(n()?)?,
            b'%' => pending = pending.checked_add(n()?.checked_mul(2)?)?,
            // Attributes, then the value they describe.
            b'|' => pending = pending.checked_add(n()?.checked_mul(2)?)?.checked_add(1)?,
            _ => return None,
        }
        // Each element takes 3 bytes at least: more than that cannot be whole.
        if at > buf.len() || pending > buf.len() {
            return None;
        }
    }
    Some(at)
}

/// The line of `buf` at `at` without its CRLF, and where the next one starts.
fn resp_line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..i], at + i + 2))
}

/// The length of the first whole RESP command (`*N` then N `$len` strings) in `buf`, and
/// whether it is `INFO`. `None` until one is whole.
fn resp_command(buf: &[u8]) -> Option<(usize, bool)> {
    let line = resp_line;
    let number = |l: &[u8]| std::str::from_utf8(l).ok()?.parse::<usize>().ok();
    let (head, mut at) = line(buf, 0)?;
    let n = number(head.strip_prefix(b"*")?)?;
    let mut info = false;
    for i in 0..n {
        let (len, next) = line(buf, at)?;
        let len = number(len.strip_prefix(b"$")?)?;
        let arg = buf.get(next..next.checked_add(len)?)?;
        info |= i == 0 && arg.eq_ignore_ascii_case(b"INFO");
        at = next + len + 2;
    }
    (at <= buf.len()).then_some((at, info))
}

/// What a web server answers an `http` probe: status line, headers, body. `data[0]` picks
/// the probe: every body and header expectation, a POST with a small `max_body`, a HEAD,
/// and edge checks by header and by body. Redirects are not followed: the fuzzer would
/// send the probe to any address it wrote.
pub fn http_reply(data: &[u8]) {
    http_observed(data);
}

fn http_observed(data: &[u8]) -> Option<crate::probe::Observation> {
    static PEER: OnceLock<Mutex<Peer>> = OnceLock::new();
    let peer = peer(&PEER, "http", |addr| {
        let url = format!("http://{addr}/health?full=1");
        vec![
            format!(
                r#"{{follow_redirects: false, request: {{url: "{url}"}}, expect: {{status: ["2xx", 304, "400-404"], body_contains: ok, body_not_contains: error, body_regex: '"status":\s*"(up|ok)"', json: {{"/status": ok, "/checks/0/up": true, "/n": 3}}, headers: {{content-type: json, x-version: '^v\d+'}}}}}}"#
            ),
            format!(
                r#"{{follow_redirects: false, request: {{url: "{url}", method: POST, body: '{{"ping":1}}', headers: {{content-type: application/json}}}}, expect: {{max_body: 64B, body_contains: pong}}}}"#
            ),
            format!(r#"{{follow_redirects: false, request: {{url: "{url}", method: HEAD}}}}"#),
            format!(
                r#"{{follow_redirects: false, request: {{url: "{url}"}}, edges: {{version_header: x-version}}}}"#
            ),
            format!(
                r#"{{follow_redirects: false, request: {{url: "{url}"}}, edges: {{version_regex: 'v(\d+\.\d+)'}}, expect: {{json: {{"/version": "v1.2"}}}}}}"#
            ),
        ]
    });
    probe_against(&peer, data, Speaks::Http)
}

/// What a Redis server answers a `redis` probe, from the first reply on (to the connection
/// setup, `AUTH`, `SELECT`, then `INFO`). `data[0]` picks the probe: every expectation, or a
/// password, a database and a size headroom.
pub fn redis_reply(data: &[u8]) {
    redis_observed(data);
}

fn redis_observed(data: &[u8]) -> Option<crate::probe::Observation> {
    static PEER: OnceLock<Mutex<Peer>> = OnceLock::new();
    let peer = peer(&PEER, "redis", |addr| {
        vec![
            format!(
                "{{url: \"redis://{addr}\", max_save_age: 1h, max_bgsave_duration: 1m, max_bgsave_in_progress: 5m, max_fork: 500ms, max_cow: 64MB, min_headroom: \"20%\", aof: true}}"
            ),
            format!("{{url: \"redis://probe:fuzz-password@{addr}/2\", min_headroom: 512MB}}"),
        ]
    });
    probe_against(&peer, data, Speaks::Redis)
}

#[cfg(test)]
mod tests {
    //! The harness itself: each entry point reaches what it is for on a seed.
    use super::*;

    fn seed(target: &str, name: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target)
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn seeds_reach_what_they_are_for() {
        let a = api();
        let healthz =
            a.rt.block_on(exchange(a.router.clone(), &seed("api_request", "healthz")));
        drop(a);
        let healthz = String::from_utf8_lossy(&healthz);
        assert!(healthz.starts_with("HTTP/1.1 200 OK\r\n"), "{healthz}");
        assert!(healthz.contains(r#""status":"ok""#), "{healthz}");
        let push = push_answer(&seed("push_url", "01"));
        assert!(
            push.ends_with(b"\r\n\r\nOK\n"),
            "{}",
            String::from_utf8_lossy(&push)
        );

        let http = |name| http_observed(&seed("http_reply", name)).expect("a check");
        for name in ["0-ok", "1-pong", "2-head", "3-edge", "4-edge-body"] {
            let obs = http(name);
            assert!(obs.ok, "http {name}: {obs:?}");
        }
        let obs = http("0-error");
        assert_eq!(
            obs.error.as_deref(),
            Some("status 503, expected 2xx, 304, 400-404")
        );

        let redis = |name| redis_observed(&seed("redis_reply", name)).expect("a check");
        for name in ["0-ok", "0-old-redis", "1-ok"] {
            let obs = redis(name);
            assert!(obs.ok, "redis {name}: {obs:?}");
        }
        let error = redis("1-wrongpass").error.unwrap_or_default();
        assert!(error.contains("authentication failed"), "{error}");

        assert!(config_loads(&seed("config_loader", "probed.yaml")));
        assert!(config_loads(&seed("config_loader", "interp.yaml")));
    }

    #[test]
    fn resp_replies_are_framed() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"+OK\r\n+OK\r\n", Some(5)),
            (b"-ERR x\r\n", Some(8)),
            (b"$3\r\nabc\r\n:1\r\n", Some(9)),
            (b"$-1\r\n", Some(5)),
            (b"*2\r\n$1\r\na\r\n:1\r\n", Some(15)),
            (b"%1\r\n+k\r\n+v\r\n", Some(12)),
            (b"|1\r\n+k\r\n+v\r\n:1\r\n", Some(16)),
            (b"*-1\r\n", Some(5)),
            (b"$5\r\nab", None),
            (b"*2147483647\r\n:1\r\n", None),
            (b"+OK", None),
            (b"x\r\n", None),
        ];
        for (buf, want) in cases {
            assert_eq!(
                resp_reply_len(buf),
                *want,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(resp_command(b"*1\r\n$4\r\ninfo\r\n"), Some((14, true)));
        assert_eq!(
            resp_command(b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"),
            Some((23, false))
        );
        assert_eq!(resp_command(b"*2\r\n$6\r\nSELECT\r\n"), None);
    }

    fn config_loads(data: &[u8]) -> bool {
        let text = String::from_utf8_lossy(data);
        paths_stay_inside(&text)
            && crate::config::load_str(&text, &sandbox().join("probed.yaml"), &fake_env)
                .map_err(|e| eprintln!("{e}"))
                .is_ok()
    }
}
