//! `kind: redis`: connects (`connect`), reads `INFO` (`info`) and judges Redis persistence
//! and memory: the last background save succeeded, is recent, was quick, the fork was cheap,
//! copy-on-write stayed small and there is memory headroom for the next one; optionally
//! the AOF is healthy and the dump file is on disk.
//!
//! Why (Wisembly 2020): dumps every two minutes ate the RAM of the machine, first slowing
//! everything beside Redis, then crashing it. The figures that show it coming are all in
//! `INFO`: `rdb_last_bgsave_time_sec` growing, `latest_fork_usec` and `rdb_last_cow_size`
//! climbing, `used_memory_rss` plus the copy-on-write of the next fork nearing the limit.
//!
//! `INFO` is parsed as text, field by field: an unknown field is ignored, a missing or
//! unreadable one that an expectation needs fails the probe with a reason that names it.
//! The URL's password never appears in a reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use reqwest::Url;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::net::{password_secrets, unix_now};
use super::{CheckCx, Observation, until};
use crate::redact::{scrub, secret_list};
use crate::text::FieldError;
use crate::text::{io_text, lower_first};
use crate::units::{ByteSize, Dur, Secret, format_bytes, format_duration, parse_bytes};

/// A Redis persistence and memory probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `redis://[user:password@]host[:port][/db]`. The password is never shown.
    /// (`rediss://` needs the redis crate's TLS support, which this build lacks.)
    pub url: Secret,
    /// Fail when the last successful save (`rdb_last_save_time`) is older than this while
    /// there are changes not yet saved (`rdb_changes_since_last_save` > 0).
    pub max_save_age: Option<Dur>,
    /// Fail when the last background save took longer than this
    /// (`rdb_last_bgsave_time_sec`).
    pub max_bgsave_duration: Option<Dur>,
    /// Fail when a background save has been running for longer than this
    /// (`rdb_current_bgsave_time_sec` while `rdb_bgsave_in_progress:1`).
    pub max_bgsave_in_progress: Option<Dur>,
    /// Fail when the latest fork took longer than this (`latest_fork_usec`).
    pub max_fork: Option<Dur>,
    /// Fail when the last background save copied more than this on write
    /// (`rdb_last_cow_size`).
    pub max_cow: Option<ByteSize>,
    /// Least memory headroom: the limit (`maxmemory`, or `total_system_memory` when
    /// `maxmemory` is 0) minus `used_memory_rss` and the last save's copy-on-write. A size
    /// (`512MB`) or a share of the limit (`"20%"`).
    pub min_headroom: Option<Headroom>,
    /// When the AOF is on (`aof_enabled:1`), require `aof_last_write_status:ok` and
    /// `aof_last_bgrewrite_status:ok`. Default: false.
    #[serde(default)]
    pub aof: bool,
    /// The RDB file on disk (relative to the probe file): its size is reported, and the
    /// probe fails when it is missing. Only meaningful where probed sees Redis's disk.
    pub dump_file: Option<PathBuf>,
    /// The most the server may send on one connection (the handshake and `INFO`'s reply),
    /// default 1 MiB: a real `INFO` is a few KiB. A larger reply stops reading at once and
    /// fails the check, so a hostile or broken peer never decides the daemon's memory.
    pub max_reply: Option<ByteSize>,
}

/// Default `max_reply`.
pub const DEFAULT_MAX_REPLY: u64 = 1 << 20;
/// Largest `max_reply` accepted.
pub const MAX_REPLY_LIMIT: u64 = 64 << 20;

/// `min_headroom`: bytes, or a percentage of the memory limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Headroom {
    Bytes(u64),
    Percent(f64),
}

impl std::fmt::Display for Headroom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Headroom::Bytes(b) => f.write_str(&format_bytes(*b)),
            Headroom::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Headroom {
    fn parse(s: &str) -> Result<Headroom, String> {
        let t = s.trim();
        match t.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| {
                    format!("invalid headroom {t:?} (write a size such as 512MB or a share such as \"20%\")")
                })?;
                if !(p > 0.0 && p < 100.0) {
                    return Err(format!("headroom {t:?} must be between 0% and 100%"));
                }
                Ok(Headroom::Percent(p))
            }
            None => parse_bytes(t).map(Headroom::Bytes),
        }
    }
}

impl schemars::JsonSchema for Headroom {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RedisHeadroom".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes (a number or a size such as 512MB), or a share of the memory limit (\"20%\").",
            "type": ["integer", "string"],
            "minimum": 0,
            "pattern": format!(r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*(%|[kKmMgGtT][iI]?[bB]?|[bB])?\s*${}", crate::units::INTERP_ALT),
            "examples": ["512MB", "20%"],
            "patternErrorMessage": "not a headroom: write a size such as 512MB or a share such as \"20%\"",
        })
    }
}

impl<'de> Deserialize<'de> for Headroom {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Headroom::Bytes(n)),
            Raw::S(s) => Headroom::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Spec {
    /// Every problem, without I/O. Messages never repeat the URL (it may hold a password).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Err(e) = parse_url(self.url.expose()) {
            errs.push(FieldError::new("url", e));
        }
        for (name, d) in [
            ("max_save_age", self.max_save_age),
            ("max_bgsave_duration", self.max_bgsave_duration),
            ("max_bgsave_in_progress", self.max_bgsave_in_progress),
            ("max_fork", self.max_fork),
        ] {
            if d.is_some_and(|d| d.0.is_zero()) {
                errs.push(FieldError::new(name, "must be more than 0"));
            }
        }
        if let Some(Headroom::Bytes(0)) = self.min_headroom {
            errs.push(FieldError::new("min_headroom", "must be more than 0 bytes"));
        }
        match self.max_reply {
            Some(ByteSize(0)) => {
                errs.push(FieldError::new("max_reply", "must be more than 0 bytes"))
            }
            Some(ByteSize(n)) if n > MAX_REPLY_LIMIT => errs.push(FieldError::new(
                "max_reply",
                format!(
                    "{} is too large (at most {})",
                    format_bytes(n),
                    format_bytes(MAX_REPLY_LIMIT)
                ),
            )),
            _ => {}
        }
        if let Some(p) = &self.dump_file
            && p.as_os_str().is_empty()
        {
            errs.push(FieldError::new("dump_file", "empty path"));
        }
        errs
    }

    /// Makes `dump_file` relative to `base` (the directory of the probe's file).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(f) = &mut self.dump_file
            && f.is_relative()
        {
            *f = base.join(&*f);
        }
    }

    /// The URL's host (lower-case), for the per-host concurrency cap.
    pub fn target_host(&self) -> Option<String> {
        parse_url(self.url.expose()).ok().map(|t| t.host)
    }

    /// `host:port` of the server (never the URL: its userinfo is the password).
    pub fn instance(&self) -> Option<String> {
        let url = Url::parse(self.url.expose().trim()).ok()?;
        Some(crate::probe::net::host_port_instance(
            url.host_str()?,
            url.port().unwrap_or(6379),
        ))
    }

    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let target = parse_url(self.url.expose()).map_err(|e| format!("url: {e}"))?;
        let client = redis::Client::open(self.url.expose().trim())
            .map_err(|e| scrub(&format!("url: {}", redis_text(&e)), &target.secrets))?;
        Ok(Check {
            spec: self.clone(),
            client,
            host: target.host,
            port: target.port,
            max_reply: self.max_reply.map_or(DEFAULT_MAX_REPLY, |b| b.0),
            display: target.display,
            secrets: target.secrets,
        })
    }
}

/// A parsed Redis URL, for messages. No `Debug`: it holds the password.
struct Target {
    host: String,
    port: u16,
    /// `redis://user@host:port/db`: no password.
    display: String,
    /// The password as written and percent-decoded, for scrubbing (4 characters or more).
    secrets: Vec<String>,
}

fn parse_url(raw: &str) -> Result<Target, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("invalid url: {e}"))?;
    match url.scheme() {
        "redis" => {}
        "rediss" => {
            return Err(
                "rediss:// (TLS) is not supported by this build: the redis crate's TLS \
                 feature is off"
                    .into(),
            );
        }
        other => {
            return Err(format!("unsupported url scheme {other:?} (use redis://)"));
        }
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("url has no host")?
        .to_ascii_lowercase();
    let mut secrets = Vec::new();
    if let Some(pw) = url.password() {
        password_secrets(pw, &mut secrets);
    }
    let secrets = secret_list(secrets);
    // The redis crate's own parser: what connects later must accept it too.
    if let Err(e) = redis::Client::open(raw.trim()) {
        return Err(scrub(&format!("invalid url: {}", redis_text(&e)), &secrets));
    }
    let mut display = format!("{}://", url.scheme());
    if !url.username().is_empty() {
        display.push_str(url.username());
        display.push('@');
    }
    display.push_str(&host);
    display.push_str(&format!(":{}", url.port().unwrap_or(6379)));
    if url.path() != "/" {
        display.push_str(url.path());
    }
    Ok(Target {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: url.port().unwrap_or(6379),
        display,
        secrets,
    })
}

/// A redis error in one line: the server's error (`WRONGPASS ...`), or what went wrong on
/// the way (`connection refused`).
fn redis_text(e: &redis::RedisError) -> String {
    // The crate keeps an I/O error behind an `Arc`, which is what `source()` hands out.
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let io = std::error::Error::source(e).and_then(|s| {
        s.downcast_ref::<std::io::Error>().or_else(|| {
            s.downcast_ref::<Shared>()
                .and_then(|a| a.downcast_ref::<std::io::Error>())
        })
    });
    if let Some(io) = io {
        return io_text(io);
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return "authentication failed (wrong user or password)".into();
    }
    // The crate's parser names the bytes it choked on, one per line: say what it means.
    if e.kind() == redis::ErrorKind::Parse || e.to_string().contains("Parse error") {
        return "the reply is not the Redis protocol (is this a Redis server?)".into();
    }
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {}", detail.trim_end_matches('.')),
        _ => lower_first(&e.to_string()),
    }
}

/// `INFO`'s `field:value` lines. Section headers, blank lines and lines without a colon
/// are skipped; a later duplicate wins.
struct Info(HashMap<String, String>);

impl Info {
    fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// A numeric field an expectation needs. `what` names the expectation for the reason.
    fn number(&self, field: &str, what: &str) -> Result<i64, String> {
        let v = self
            .text(field)
            .ok_or_else(|| format!("cannot check {what}: INFO has no {field}"))?;
        v.parse::<i64>()
            .or_else(|_| v.parse::<f64>().map(|f| f as i64))
            .map_err(|_| format!("cannot check {what}: INFO {field} is {v:?}, not a number"))
    }

    /// A numeric field that may be absent (treated as `default`).
    fn number_or(&self, field: &str, what: &str, default: i64) -> Result<i64, String> {
        if self.text(field).is_none() {
            Ok(default)
        } else {
            self.number(field, what)
        }
    }
}

/// A TCP connection that reads at most `cap` bytes in all: the next read past the cap is an
/// error (and `over` is set), so a reply declared as 2 GB, or a valid 200 MB one, costs at
/// most `cap` bytes of reading before the check fails.
struct Capped {
    read: tokio::io::Take<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
    over: Arc<AtomicBool>,
}

impl Capped {
    fn new(tcp: tokio::net::TcpStream, cap: u64, over: Arc<AtomicBool>) -> Capped {
        let (read, write) = tcp.into_split();
        Capped {
            read: read.take(cap),
            write,
            over,
        }
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.read).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && buf.filled().len() == before
            && buf.remaining() > 0
            && self.read.limit() == 0
        {
            self.over.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(std::io::Error::other("reply over max_reply")));
        }
        r
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}

/// A runnable `redis` probe.
pub struct Check {
    spec: Spec,
    client: redis::Client,
    host: String,
    port: u16,
    max_reply: u64,
    display: String,
    /// The URL's password, longest form first: blanked out of any reason.
    secrets: Vec<String>,
}

impl Check {
    /// One check: connect, `INFO`, judge; then the dump file. Never fails other than with an
    /// `Observation` that says why.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let ran = self.run(cx, started, &mut obs).await;
        obs.duration = started.elapsed();
        match ran {
            Ok(()) => {
                obs.ok = true;
                obs
            }
            Err(reason) => obs.fail(scrub(&reason, &self.secrets)),
        }
    }

    async fn run(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
    ) -> Result<(), String> {
        // The check's deadline is the only timeout: the crate's own defaults (1 s to
        // connect, 500 ms per reply) would cut a slow but healthy answer short.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let over = Arc::new(AtomicBool::new(false));
        let t = Instant::now();
        let connected = until(cx, started, "connecting", async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| io_text(&e))?;
            let _ = tcp.set_nodelay(true);
            let stream = Capped::new(tcp, self.max_reply, over.clone());
            redis::aio::MultiplexedConnection::new_with_config(
                self.client.get_connection_info().redis_settings(),
                stream,
                config,
            )
            .await
            .map_err(|e| self.reply_text(&e, &over))
        })
        .await;
        obs.phase("connect", t.elapsed());
        let (mut conn, driver) = match connected {
            Err(timeout) => return Err(format!("{timeout} to {}", self.display)),
            Ok(Err(e)) => return Err(format!("cannot connect to {}: {e}", self.display)),
            Ok(Ok(c)) => c,
        };
        // The connection's reader and writer; ends with the check, whatever happens.
        let _driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(driver));

        let t = Instant::now();
        let info = until(
            cx,
            started,
            "reading INFO",
            redis::cmd("INFO").query_async::<String>(&mut conn),
        )
        .await;
        obs.phase("info", t.elapsed());
        drop(conn);
        let info = match info {
            Err(timeout) => return Err(format!("{timeout} from {}", self.display)),
            Ok(Err(e)) => {
                return Err(format!(
                    "INFO on {} failed: {}",
                    self.display,
                    self.reply_text(&e, &over)
                ));
            }
            Ok(Ok(text)) => Info::parse(&text),
        };

        let mut problems = self.judge(&info, unix_now());

        if let Some(path) = &self.spec.dump_file {
            let meta = until(
                cx,
                started,
                "reading the dump file",
                tokio::fs::metadata(path),
            )
            .await?;
            match meta {
                Ok(m) => obs.size = Some(m.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    problems.push(format!("dump file {} is missing", path.display()));
                }
                Err(e) => problems.push(format!(
                    "cannot read dump file {}: {}",
                    path.display(),
                    io_text(&e)
                )),
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// A failed command in words: "reply over max_reply" when the cap ended it.
    fn reply_text(&self, e: &redis::RedisError, over: &AtomicBool) -> String {
        if over.load(Ordering::Relaxed) {
            format!(
                "the server sent more than max_reply ({}); reading stopped there",
                format_bytes(self.max_reply)
            )
        } else {
            redis_text(e)
        }
    }

    /// Every expectation that `INFO` breaks, in words. `local_now` (unix seconds) stands in
    /// for the server's clock (`server_time_usec`) when INFO lacks it.
    fn judge(&self, info: &Info, local_now: i64) -> Vec<String> {
        let s = &self.spec;
        let mut out = Vec::new();
        let mut check = |r: Result<Option<String>, String>| match r {
            Ok(Some(p)) | Err(p) => out.push(p),
            Ok(None) => {}
        };

        check(match info.text("rdb_last_bgsave_status") {
            None => Err("INFO has no rdb_last_bgsave_status (is this a Redis server?)".into()),
            Some("ok") => Ok(None),
            Some(other) => Ok(Some(format!(
                "last bgsave failed (rdb_last_bgsave_status:{other})"
            ))),
        });

        if let Some(max) = s.max_bgsave_in_progress {
            check((|| {
                let what = "max_bgsave_in_progress";
                if info.number("rdb_bgsave_in_progress", what)? != 1 {
                    return Ok(None);
                }
                let secs = info.number("rdb_current_bgsave_time_sec", what)?;
                let running = secs_dur(secs);
                Ok((running > max.0).then(|| {
                    format!(
                        "bgsave running for {} ({what} {max})",
                        format_duration(running)
                    )
                }))
            })());
        }

        if let Some(max) = s.max_save_age {
            check((|| {
                let what = "max_save_age";
                let last = info.number("rdb_last_save_time", what)?;
                let changes = info.number_or("rdb_changes_since_last_save", what, 1)?;
                // The server's own clock when it tells it: no skew between the two hosts.
                let now = match info.text("server_time_usec") {
                    Some(_) => info.number("server_time_usec", what)? / 1_000_000,
                    None => local_now,
                };
                let age = secs_dur(now - last);
                Ok((changes > 0 && age > max.0).then(|| {
                    format!(
                        "last successful save {} ago, {changes} change{} since \
                         ({what} {max})",
                        format_duration(age),
                        if changes == 1 { "" } else { "s" }
                    )
                }))
            })());
        }

        if let Some(max) = s.max_bgsave_duration {
            check((|| {
                let what = "max_bgsave_duration";
                let secs = info.number("rdb_last_bgsave_time_sec", what)?;
                // -1: no bgsave since the server started.
                let took = secs_dur(secs);
                Ok((secs >= 0 && took > max.0)
                    .then(|| format!("last bgsave took {} ({what} {max})", format_duration(took))))
            })());
        }

        if let Some(max) = s.max_fork {
            check((|| {
                let what = "max_fork";
                let usec = info.number("latest_fork_usec", what)?;
                let took = Duration::from_micros(usec.max(0) as u64);
                Ok((took > max.0)
                    .then(|| format!("last fork took {} ({what} {max})", format_duration(took))))
            })());
        }

        if let Some(max) = s.max_cow {
            check((|| {
                let what = "max_cow";
                let cow = info.number("rdb_last_cow_size", what)?.max(0) as u64;
                Ok((cow > max.0).then(|| {
                    format!(
                        "last bgsave copied {} on write ({what} {max})",
                        format_bytes(cow)
                    )
                }))
            })());
        }

        if let Some(min) = s.min_headroom {
            check(headroom(info, min));
        }

        if s.aof {
            check((|| {
                let what = "aof";
                if info.number("aof_enabled", what)? != 1 {
                    return Ok(None);
                }
                let mut bad = Vec::new();
                match info.text("aof_last_write_status") {
                    Some("ok") => {}
                    Some(v) => bad.push(format!("AOF writes failing (aof_last_write_status:{v})")),
                    None => {
                        return Err("cannot check aof: INFO has no aof_last_write_status".into());
                    }
                }
                match info.text("aof_last_bgrewrite_status") {
                    Some("ok") => {}
                    Some(v) => bad.push(format!(
                        "last AOF rewrite failed (aof_last_bgrewrite_status:{v})"
                    )),
                    None => {
                        return Err(
                            "cannot check aof: INFO has no aof_last_bgrewrite_status".into()
                        );
                    }
                }
                Ok((!bad.is_empty()).then(|| bad.join("; ")))
            })());
        }

        out
    }
}

/// `min_headroom`: the limit (maxmemory, else the machine's memory) minus RSS and the last
/// save's copy-on-write, which the next fork will likely need again.
fn headroom(info: &Info, min: Headroom) -> Result<Option<String>, String> {
    let what = "min_headroom";
    let maxmemory = info.number_or("maxmemory", what, 0)?;
    let (limit, limit_name) = if maxmemory > 0 {
        (maxmemory, "maxmemory")
    } else {
        let total = info.number_or("total_system_memory", what, 0)?;
        if total <= 0 {
            return Err(format!(
                "cannot check {what}: INFO has neither maxmemory nor total_system_memory"
            ));
        }
        (total, "total_system_memory")
    };
    let rss = info.number("used_memory_rss", what)?.max(0);
    let cow = info.number_or("rdb_last_cow_size", what, 0)?.max(0);
    let room = limit - rss - cow;
    let share = room as f64 * 100.0 / limit as f64;
    let short = match min {
        Headroom::Bytes(b) => room < b as i64,
        Headroom::Percent(p) => share < p,
    };
    let (limit, rss, cow) = (
        format_bytes(limit as u64),
        format_bytes(rss as u64),
        format_bytes(cow as u64),
    );
    Ok(short.then(|| {
        if room < 0 {
            format!(
                "no memory headroom: rss {rss} + last bgsave copy-on-write {cow} exceed \
                 {limit_name} {limit} by {} ({what} {min})",
                format_bytes(room.unsigned_abs())
            )
        } else {
            format!(
                "memory headroom {} ({share:.0}% of {limit_name} {limit}): rss {rss} + \
                 last bgsave copy-on-write {cow} ({what} {min})",
                format_bytes(room as u64)
            )
        }
    }))
}

fn secs_dur(secs: i64) -> Duration {
    Duration::from_secs(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::redis::{RedisInfo, RedisLab};
    use crate::probe::testkit::{
        assert_by_deadline, assert_down, assert_up, env, hold, phases, reason, run_in, tcp_server,
    };

    // ---- helpers -------------------------------------------------------------------------

    /// A `redis-server` of the test's own (never the shared one on 6379), from the lab.
    fn server(extra: &[&str]) -> RedisLab {
        RedisLab::start_with(extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs one command as the test server's admin.
    async fn cmd(server: &RedisLab, args: &[&str]) -> redis::Value {
        server
            .cmd(args)
            .await
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Polls INFO until `done` holds, for at most 20 s.
    async fn wait_for(
        server: &RedisLab,
        what: &str,
        done: impl Fn(&RedisInfo) -> bool,
    ) -> RedisInfo {
        server
            .wait_info(what, Duration::from_secs(20), done)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn bgsave_done(server: &RedisLab) -> RedisInfo {
        server
            .bgsave_done(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn num(info: &RedisInfo, field: &str) -> i64 {
        info.num(field)
            .unwrap_or_else(|| panic!("INFO {field}: {:?}", info.get(field)))
    }

    /// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
    fn spec(yaml: &str) -> Spec {
        crate::probe::testkit::spec(yaml)
    }

    async fn run(spec: &Spec) -> Observation {
        run_in(spec, &env(), Duration::from_secs(10)).await
    }

    // ---- against real servers ------------------------------------------------------------

    #[tokio::test]
    async fn healthy_redis_is_up_with_phases_and_dump_size() {
        let server = server(&["--appendonly", "yes"]);
        cmd(&server, &["SET", "k", "v"]).await;
        cmd(&server, &["BGSAVE"]).await;
        bgsave_done(&server).await;
        let s = spec(&format!(
            "{{url: '{}', max_save_age: 1h, max_bgsave_duration: 1m, max_bgsave_in_progress: 1m, \
             max_fork: 10s, max_cow: 1GB, min_headroom: '1%', aof: true, dump_file: '{}'}}",
            server.url(),
            server.dump_file().display()
        ));
        let obs = run(&s).await;
        assert_up(&obs);
        assert_eq!(phases(&obs), ["connect", "info"]);
        let on_disk = std::fs::metadata(server.dump_file()).unwrap().len();
        assert!(on_disk > 0);
        assert_eq!(obs.size, Some(on_disk));
    }

    #[tokio::test]
    async fn failing_bgsave_is_down_and_a_missing_dump_file_too() {
        let server = server(&[]);
        cmd(&server, &["SET", "k", "v"]).await;
        // The dump directory goes away: the child cannot create its temporary file and the
        // save fails.
        server.fail_dumps().unwrap();
        cmd(&server, &["BGSAVE"]).await;
        let info = bgsave_done(&server).await;
        assert_eq!(info.get("rdb_last_bgsave_status"), Some("err"));

        let obs = run(&spec(&format!("{{url: '{}'}}", server.url()))).await;
        assert_down(&obs, "last bgsave failed (rdb_last_bgsave_status:err)");
        assert_eq!(phases(&obs), ["connect", "info"]);

        let obs = run(&spec(&format!(
            "{{url: '{}', dump_file: '{}'}}",
            server.url(),
            server.dump_file().display()
        )))
        .await;
        assert_down(
            &obs,
            "last bgsave failed (rdb_last_bgsave_status:err); dump file ",
        );
        assert_down(&obs, "dump.rdb is missing");
    }

    #[tokio::test]
    async fn big_dataset_fork_cow_and_headroom_are_judged() {
        let server = server(&["--maxmemory", "1mb"]);
        server.populate(200_000, 12).await.unwrap();
        cmd(&server, &["BGSAVE"]).await;
        let info = bgsave_done(&server).await;
        assert_eq!(info.get("rdb_last_bgsave_status"), Some("ok"));
        assert!(num(&info, "latest_fork_usec") > 0);
        assert!(
            num(&info, "rdb_last_cow_size") > 0,
            "no copy-on-write measured"
        );

        let obs = run(&spec(&format!(
            "{{url: '{}', max_fork: 1us, max_cow: 1, min_headroom: '20%'}}",
            server.url()
        )))
        .await;
        assert_down(&obs, "last fork took ");
        assert_down(&obs, " (max_fork 1µs)");
        assert_down(&obs, "last bgsave copied ");
        assert_down(&obs, " on write (max_cow 1 B)");
        assert_down(&obs, "no memory headroom: rss ");
        assert_down(&obs, " exceed maxmemory 1 MiB by ");
        assert_down(&obs, "(min_headroom 20%)");

        // In bytes, against the same tiny limit.
        let obs = run(&spec(&format!(
            "{{url: '{}', min_headroom: 64KB}}",
            server.url()
        )))
        .await;
        assert_down(&obs, "(min_headroom 62.5 KiB)");

        // Generous limits pass on the same figures.
        let obs = run(&spec(&format!(
            "{{url: '{}', max_fork: 10s, max_cow: 10GB}}",
            server.url()
        )))
        .await;
        assert_up(&obs);
    }

    #[tokio::test]
    async fn old_save_with_unsaved_changes_is_down() {
        let server = server(&[]);
        let s = spec(&format!("{{url: '{}', max_save_age: 500ms}}", server.url()));
        // At start Redis counts its data as saved; wait (on the server's own clock) until
        // that is a second old.
        wait_for(&server, "a second since the last save", |i| {
            num(i, "server_time_usec") / 1_000_000 - num(i, "rdb_last_save_time") >= 1
        })
        .await;
        // Nothing unsaved: an old save is no risk.
        assert_up(&run(&s).await);

        cmd(&server, &["SET", "k", "v"]).await;
        let obs = run(&s).await;
        assert_down(&obs, "last successful save ");
        assert_down(&obs, " ago, 1 change since (max_save_age 500ms)");
    }

    #[tokio::test]
    async fn slow_bgsave_is_down_while_running_and_after() {
        let server = server(&[]);
        server.populate(1000, 1).await.unwrap();
        // Redis's own testing knob: 1.5 ms per key makes the save last about 1.5 s.
        server
            .slow_dumps(Duration::from_micros(1500))
            .await
            .unwrap();
        server.bgsave().await.unwrap();
        wait_for(&server, "a bgsave running for a second", |i| {
            num(i, "rdb_current_bgsave_time_sec") >= 1
        })
        .await;
        let obs = run(&spec(&format!(
            "{{url: '{}', max_bgsave_in_progress: 500ms}}",
            server.url()
        )))
        .await;
        assert_down(&obs, "bgsave running for ");
        assert_down(&obs, "s (max_bgsave_in_progress 500ms)");

        let info = bgsave_done(&server).await;
        assert!(num(&info, "rdb_last_bgsave_time_sec") >= 1);
        let obs = run(&spec(&format!(
            "{{url: '{}', max_bgsave_duration: 500ms}}",
            server.url()
        )))
        .await;
        assert_down(&obs, "last bgsave took ");
        assert_down(&obs, "s (max_bgsave_duration 500ms)");
    }

    #[tokio::test]
    async fn failing_aof_rewrite_is_down_when_aof_is_required() {
        let server = server(&["--appendonly", "yes"]);
        let s = spec(&format!("{{url: '{}', aof: true}}", server.url()));
        assert_up(&run(&s).await);
        server.fail_dumps().unwrap();
        // Fails at once (the AOF directory is gone); the reply is an error.
        let client = redis::Client::open(server.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let r: redis::RedisResult<redis::Value> =
            redis::cmd("BGREWRITEAOF").query_async(&mut c).await;
        assert!(r.is_err());
        let obs = run(&s).await;
        assert_down(
            &obs,
            "last AOF rewrite failed (aof_last_bgrewrite_status:err)",
        );
    }

    #[tokio::test]
    async fn wrong_password_is_down_without_the_password() {
        let server = server(&["--requirepass", "right-pass-2468"]);
        let obs = run(&spec(&format!(
            "{{url: 'redis://:wrong-pass-1357@127.0.0.1:{}'}}",
            server.port()
        )))
        .await;
        assert_down(&obs, &format!("127.0.0.1:{}", server.port()));
        assert_down(&obs, "authentication failed (wrong user or password)");
        assert!(
            !reason(&obs).contains("wrong-pass-1357"),
            "{}",
            reason(&obs)
        );

        // No password at all: INFO is refused.
        let obs = run(&spec(&format!("{{url: '{}'}}", server.url()))).await;
        assert_down(&obs, "NOAUTH");

        let good = format!("redis://:right-pass-2468@127.0.0.1:{}", server.port());
        server.cmd_as(&good, &["PING"]).await.unwrap();
        assert_up(&run(&spec(&format!("{{url: '{good}'}}"))).await);
    }

    #[tokio::test]
    async fn refused_port_is_down() {
        let obs = run(&spec("{url: 'redis://:some-pass-1111@127.0.0.1:1/2'}")).await;
        assert_down(
            &obs,
            "cannot connect to redis://127.0.0.1:1/2: connection refused",
        );
        assert!(!reason(&obs).contains("some-pass-1111"));
    }

    #[tokio::test]
    async fn server_that_never_answers_is_down_at_the_deadline() {
        // Accepts connections and keeps them open without a word.
        let port = tcp_server(hold).await.port();
        let deadline = Duration::from_millis(500);
        let t = Instant::now();
        let obs = run_in(
            &spec(&format!("{{url: 'redis://127.0.0.1:{port}'}}")),
            &env(),
            deadline,
        )
        .await;
        let took = t.elapsed();
        assert_down(&obs, "timed out after ");
        assert_down(&obs, &format!("redis://127.0.0.1:{port}"));
        assert_by_deadline(took, deadline);
    }

    // ---- hostile peers ---------------------------------------------------------------------

    /// What a fake server answers to `INFO`.
    #[derive(Clone, Copy)]
    enum Answer {
        /// A valid bulk reply of this many bytes of `INFO` text.
        Valid(usize),
        /// A bulk reply declared as 2 GB, then bytes for as long as the client reads.
        Endless,
        /// Not RESP at all: what an HTTP server says to a stranger.
        Http,
    }

    /// The next command of `buf` (a RESP array of bulk strings), if it is all there: its
    /// name, upper-case, and how many bytes it took.
    fn next_command(buf: &[u8]) -> Option<(String, usize)> {
        let text = std::str::from_utf8(buf).ok()?;
        let mut at = 0;
        let line = |at: &mut usize| -> Option<&str> {
            let end = text[*at..].find("\r\n")? + *at;
            let l = &text[*at..end];
            *at = end + 2;
            Some(l)
        };
        let n: usize = line(&mut at)?.strip_prefix('*')?.parse().ok()?;
        let mut name = String::new();
        for i in 0..n {
            let len: usize = line(&mut at)?.strip_prefix('$')?.parse().ok()?;
            let arg = text.get(at..at + len)?;
            at += len + 2;
            if at > text.len() {
                return None;
            }
            if i == 0 {
                name = arg.to_ascii_uppercase();
            }
        }
        Some((name, at))
    }

    /// A server on 127.0.0.1:0 that says `+OK` to everything but `INFO`; the number of bytes
    /// it wrote for `INFO` goes to `sent`.
    async fn fake_redis(answer: Answer, sent: Arc<std::sync::atomic::AtomicU64>) -> u16 {
        use tokio::io::AsyncWriteExt;
        tcp_server(move |mut s| {
            let sent = sent.clone();
            async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some((name, used)) = next_command(&buf) else {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    buf.drain(..used);
                    if name != "INFO" {
                        if s.write_all(b"+OK\r\n").await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let line =
                        b"rdb_last_bgsave_status:ok\r\nfiller:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
                    let block = line.repeat(1024);
                    let send = |bytes: &[u8]| {
                        sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        bytes.to_vec()
                    };
                    match answer {
                        Answer::Http => {
                            let _ = s
                                .write_all(&send(
                                    b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n",
                                ))
                                .await;
                            return;
                        }
                        Answer::Valid(len) => {
                            let mut body = block.repeat(len / block.len() + 1);
                            body.truncate(len);
                            let mut reply = format!("${len}\r\n").into_bytes();
                            reply.extend_from_slice(&body);
                            reply.extend_from_slice(b"\r\n");
                            if s.write_all(&send(&reply)).await.is_err() {
                                return;
                            }
                        }
                        Answer::Endless => {
                            if s.write_all(&send(b"$2000000000\r\n")).await.is_err() {
                                return;
                            }
                            while s.write_all(&send(&block)).await.is_ok() {}
                            return;
                        }
                    }
                }
            }
        })
        .await
        .port()
    }

    #[tokio::test]
    async fn a_valid_but_giant_info_reply_is_down_and_read_only_to_max_reply() {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let port = fake_redis(Answer::Valid(8 << 20), sent.clone()).await;
        let obs = run(&spec(&format!("{{url: 'redis://127.0.0.1:{port}'}}"))).await;
        assert_down(
            &obs,
            &format!(
                "INFO on redis://127.0.0.1:{port} failed: the server sent more than max_reply (1 MiB)"
            ),
        );
        assert_eq!(phases(&obs), ["connect", "info"]);

        // Under the cap the same server is read in full and judged.
        let port = fake_redis(Answer::Valid(100_000), sent.clone()).await;
        let obs = run(&spec(&format!("{{url: 'redis://127.0.0.1:{port}'}}"))).await;
        assert_up(&obs);
        let obs = run(&spec(&format!(
            "{{url: 'redis://127.0.0.1:{port}', max_reply: 64KiB}}"
        )))
        .await;
        assert_down(&obs, "the server sent more than max_reply (64 KiB)");
    }

    #[tokio::test]
    async fn a_reply_declared_as_2gb_stops_at_max_reply_long_before_the_deadline() {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let port = fake_redis(Answer::Endless, sent.clone()).await;
        let obs = run_in(
            &spec(&format!(
                "{{url: 'redis://127.0.0.1:{port}', max_reply: 256KiB}}"
            )),
            &env(),
            Duration::from_secs(30),
        )
        .await;
        // Down for the cap, not for the deadline: reading stopped at 256 KiB.
        assert_down(&obs, "the server sent more than max_reply (256 KiB)");
        assert!(!reason(&obs).contains("timed out"), "{}", reason(&obs));
        // The peer got rid of at most the cap plus what the kernel's socket buffers hold,
        // not the 2 GB it declared.
        let wrote = sent.load(Ordering::Relaxed);
        assert!(wrote < 64 << 20, "the server wrote {wrote} bytes");
    }

    #[tokio::test]
    async fn a_peer_that_is_not_redis_gets_a_one_line_reason() {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let port = fake_redis(Answer::Http, sent).await;
        let obs = run(&spec(&format!("{{url: 'redis://127.0.0.1:{port}'}}"))).await;
        assert!(!obs.ok);
        let r = reason(&obs);
        assert!(
            r.starts_with(&format!("INFO on redis://127.0.0.1:{port} failed: ")),
            "{r}"
        );
        assert!(!r.contains(['\r', '\n']), "{r:?}");
        assert!(
            r.ends_with("the reply is not the Redis protocol (is this a Redis server?)"),
            "{r}"
        );
    }

    // ---- INFO parsing and judging, without a server --------------------------------------

    fn judge(yaml: &str, info: &str) -> Vec<String> {
        let s = spec(yaml);
        let check = s.build().unwrap();
        check.judge(&Info::parse(info), 1_700_000_000)
    }

    #[test]
    fn info_is_judged_robustly() {
        const OK: &str = "# Persistence\r\nrdb_last_bgsave_status:ok\r\n";
        let url = "url: 'redis://h'";
        let cases: &[(&str, &str, &[&str])] = &[
            ("", OK, &[]),
            // Garbage, blank lines, unknown fields: ignored.
            (
                "",
                "junk\r\n\r\n#x\r\nweird_field:1:2\r\nrdb_last_bgsave_status:ok\r\n",
                &[],
            ),
            (
                "",
                "",
                &["INFO has no rdb_last_bgsave_status (is this a Redis server?)"],
            ),
            (
                "",
                "rdb_last_bgsave_status:err",
                &["last bgsave failed (rdb_last_bgsave_status:err)"],
            ),
            (
                "max_fork: 100ms",
                OK,
                &["cannot check max_fork: INFO has no latest_fork_usec"],
            ),
            (
                "max_fork: 100ms",
                "rdb_last_bgsave_status:ok\nlatest_fork_usec:lots",
                &["cannot check max_fork: INFO latest_fork_usec is \"lots\", not a number"],
            ),
            (
                "max_fork: 100ms",
                "rdb_last_bgsave_status:ok\nlatest_fork_usec:520000",
                &["last fork took 520ms (max_fork 100ms)"],
            ),
            (
                "max_save_age: 15m",
                // No server_time_usec: the local clock (1_700_000_000 here) stands in.
                "rdb_last_bgsave_status:ok\nrdb_last_save_time:1699997180\nrdb_changes_since_last_save:12",
                &["last successful save 47m ago, 12 changes since (max_save_age 15m)"],
            ),
            (
                "max_save_age: 15m",
                "rdb_last_bgsave_status:ok\nrdb_last_save_time:1699997180\nrdb_changes_since_last_save:0",
                &[],
            ),
            (
                "max_bgsave_duration: 1m",
                "rdb_last_bgsave_status:ok\nrdb_last_bgsave_time_sec:-1",
                &[],
            ),
            (
                "max_bgsave_in_progress: 1m",
                "rdb_last_bgsave_status:ok\nrdb_bgsave_in_progress:1\nrdb_current_bgsave_time_sec:95",
                &["bgsave running for 1m35s (max_bgsave_in_progress 1m)"],
            ),
            (
                "max_bgsave_in_progress: 1m",
                "rdb_last_bgsave_status:ok\nrdb_bgsave_in_progress:0\nrdb_current_bgsave_time_sec:-1",
                &[],
            ),
            (
                "max_cow: 10MiB",
                "rdb_last_bgsave_status:ok\nrdb_last_cow_size:12582912",
                &["last bgsave copied 12 MiB on write (max_cow 10 MiB)"],
            ),
            (
                "min_headroom: '25%'",
                "rdb_last_bgsave_status:ok\nmaxmemory:0\ntotal_system_memory:1073741824\n\
                 used_memory_rss:805306368\nrdb_last_cow_size:134217728",
                &[
                    "memory headroom 128 MiB (12% of total_system_memory 1 GiB): rss 768 MiB + \
                   last bgsave copy-on-write 128 MiB (min_headroom 25%)",
                ],
            ),
            (
                "min_headroom: 1GB",
                "rdb_last_bgsave_status:ok\nused_memory_rss:1",
                &["cannot check min_headroom: INFO has neither maxmemory nor total_system_memory"],
            ),
            ("aof: true", "rdb_last_bgsave_status:ok\naof_enabled:0", &[]),
            (
                "aof: true",
                "rdb_last_bgsave_status:ok\naof_enabled:1\naof_last_write_status:err\naof_last_bgrewrite_status:ok",
                &["AOF writes failing (aof_last_write_status:err)"],
            ),
        ];
        for (extra, info, want) in cases {
            let yaml = if extra.is_empty() {
                format!("{{{url}}}")
            } else {
                format!("{{{url}, {extra}}}")
            };
            assert_eq!(judge(&yaml, info), *want, "{yaml} with {info:?}");
        }
    }

    #[test]
    fn validation_and_display_never_show_the_password() {
        let errs = |yaml: &str| -> Vec<String> {
            spec(yaml)
                .validate()
                .into_iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect()
        };
        assert!(errs("{url: 'redis://:pw-1234@cache:6380/1'}").is_empty());
        let cases = [
            (
                "{url: 'http://:pw-1234@cache'}",
                "url: unsupported url scheme \"http\"",
            ),
            (
                "{url: 'rediss://:pw-1234@cache'}",
                "url: rediss:// (TLS) is not supported",
            ),
            ("{url: 'not a url pw-1234'}", "url: invalid url"),
            (
                "{url: 'redis://cache', max_fork: 0s}",
                "max_fork: must be more than 0",
            ),
            (
                "{url: 'redis://cache', max_reply: 0}",
                "max_reply: must be more than 0 bytes",
            ),
            (
                "{url: 'redis://cache', max_reply: 1GiB}",
                "max_reply: 1 GiB is too large (at most 64 MiB)",
            ),
        ];
        for (yaml, want) in cases {
            let got = errs(yaml);
            assert_eq!(got.len(), 1, "{yaml}: {got:?}");
            assert!(got[0].starts_with(want), "{yaml}: {got:?}");
            assert!(!got[0].contains("pw-1234"), "{got:?}");
        }
        for bad in ["'120%'", "'0%'", "'lots'", "'-5%'"] {
            assert!(
                serde_yaml::from_str::<Spec>(&format!("{{url: 'redis://h', min_headroom: {bad}}}"))
                    .is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            spec("{url: 'redis://h', min_headroom: '12.5%'}").min_headroom,
            Some(Headroom::Percent(12.5))
        );
        assert_eq!(
            spec("{url: 'redis://h', min_headroom: 512MB}").min_headroom,
            Some(Headroom::Bytes(512_000_000))
        );
        let t = parse_url("redis://probe:pw-1234@Cache.Example.com/3").unwrap();
        assert_eq!(t.display, "redis://probe@cache.example.com:6379/3");
        assert_eq!(
            spec("{url: 'redis://:pw-1234@Cache.Example.com'}")
                .target_host()
                .as_deref(),
            Some("cache.example.com")
        );
        assert!(!format!("{:?}", spec("{url: 'redis://:pw-1234@h'}")).contains("pw-1234"));

        let mut s = spec("{url: 'redis://h', dump_file: data/dump.rdb}");
        s.resolve_paths(Path::new("/srv/probes"));
        assert_eq!(
            s.dump_file.as_deref(),
            Some(Path::new("/srv/probes/data/dump.rdb"))
        );
    }
}
