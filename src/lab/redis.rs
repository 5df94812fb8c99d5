//! Redis persistence and memory faults on a real `redis-server` of the lab's own (never the
//! shared one on 6379): dumps that slow down, dumps that fail, a dataset that grows, memory
//! headroom that shrinks (Wisembly 2020).
//!
//! [`RedisLab::start`] runs `redis-server` on a free loopback port with its data directory
//! in a temporary folder, no save schedule, no AOF, the `DEBUG` command and protected configs
//! (`dir`) enabled; it is killed and its folder removed when the lab is dropped. Each test
//! gets its own server, so tests run in parallel.
//!
//! | call | Redis knob | what INFO shows |
//! |---|---|---|
//! | [`RedisLab::slow_dumps`]`(per_key)` | `CONFIG SET rdb-key-save-delay` (µs per key) | `rdb_current_bgsave_time_sec` climbing, then `rdb_last_bgsave_time_sec` |
//! | [`RedisLab::fail_dumps`] / [`RedisLab::heal_dumps`] | the data directory removed / a new one set (`CONFIG SET dir`) | `rdb_last_bgsave_status:err` after the next save / `ok` |
//! | [`RedisLab::populate`]`(keys, bytes)` | `DEBUG POPULATE` | `used_memory`, `used_memory_rss`, longer forks and saves |
//! | [`RedisLab::set_maxmemory`]`(bytes)` | `CONFIG SET maxmemory` | `maxmemory`: the limit headroom is measured against |
//! | [`RedisLab::set_save`]`("2 1")` | `CONFIG SET save` | background saves on a schedule (every 2 s after 1 change) |
//! | [`RedisLab::bgsave`], [`RedisLab::bgsave_done`] | `BGSAVE`, then INFO polled | one save started, and its outcome |
//!
//! From an async test:
//!
//! ```no_run
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use probed::lab::redis::RedisLab;
//! let redis = RedisLab::start()?;              // blocking: returns once Redis is ready
//! let url = redis.url();                       // redis://127.0.0.1:<port>, for the probe
//! redis.populate(10_000, 100).await?;          // 10k keys of 100 bytes
//! redis.slow_dumps(Duration::from_micros(200)).await?;   // ~2 s per dump
//! redis.set_maxmemory(4 << 20).await?;         // headroom shrinks
//! redis.bgsave().await?;
//! let info = redis.bgsave_done(Duration::from_secs(20)).await?;
//! assert_eq!(info.get("rdb_last_bgsave_status"), Some("ok"));
//! redis.fail_dumps()?;                         // the next dump fails
//! redis.bgsave().await?;
//! assert!(!redis.bgsave_done(Duration::from_secs(20)).await?.last_bgsave_ok());
//! # let _ = url; Ok(()) }
//! ```
//!
//! From a blocking test (the `probed` daemon handle of `tests/support`), make a runtime and
//! `block_on` the calls: `let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(redis.slow_dumps(d))?;` (each call opens its own connection, so any runtime
//! will do).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A private `redis-server`. See the module docs.
pub struct RedisLab {
    child: Child,
    port: u16,
    /// The temporary folder holding the data directories.
    root: tempfile::TempDir,
    /// Redis's data directory now (`dir`), and how many have been made.
    data: Mutex<(PathBuf, u32)>,
}

/// `INFO`, field by field.
#[derive(Debug, Clone, Default)]
pub struct RedisInfo(pub HashMap<String, String>);

impl RedisInfo {
    /// Parses `INFO` text: `field:value` lines; sections and blanks are skipped.
    pub fn parse(text: &str) -> RedisInfo {
        RedisInfo(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// A numeric field; `None` when missing or not a number.
    pub fn num(&self, field: &str) -> Option<i64> {
        self.get(field)?.parse().ok()
    }

    /// `rdb_bgsave_in_progress:1`.
    pub fn bgsave_in_progress(&self) -> bool {
        self.get("rdb_bgsave_in_progress") == Some("1")
    }

    /// `rdb_last_bgsave_status:ok`.
    pub fn last_bgsave_ok(&self) -> bool {
        self.get("rdb_last_bgsave_status") == Some("ok")
    }

    /// The limit memory is measured against (`maxmemory`, else `total_system_memory`)
    /// minus `used_memory_rss` and the last save's copy-on-write, as the redis probe's
    /// `min_headroom` computes it; negative when over.
    pub fn headroom(&self) -> Option<i64> {
        let limit = match self.num("maxmemory") {
            Some(m) if m > 0 => m,
            _ => self.num("total_system_memory")?,
        };
        Some(limit - self.num("used_memory_rss")? - self.num("rdb_last_cow_size").unwrap_or(0))
    }
}

impl RedisLab {
    /// A healthy server (see the module docs). Blocks until Redis says it is ready.
    pub fn start() -> io::Result<RedisLab> {
        RedisLab::start_with(&[])
    }

    /// A server with extra command-line settings, e.g. `["--appendonly", "yes"]` or
    /// `["--requirepass", "pw"]`. Blocks until Redis says it is ready (at most 20 s).
    pub fn start_with(extra: &[&str]) -> io::Result<RedisLab> {
        let mut last = io::Error::other("redis-server did not start");
        // A port found free may be taken by the time redis binds it: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let root = tempfile::Builder::new()
                .prefix("probed-redis-lab")
                .tempdir()?;
            let data = root.path().join("data-0");
            std::fs::create_dir(&data)?;
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(&data)
                .args([
                    "--dbfilename",
                    "dump.rdb",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--enable-debug-command", "yes"])
                .args(["--enable-protected-configs", "yes"])
                .args(["--loglevel", "notice"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot run redis-server (apt-get install redis-server): {e}"),
                    )
                })?;
            // Redis logs to stdout; readiness is its own "Ready to accept connections" line.
            // The thread then keeps draining the pipe so Redis never blocks on it; it ends
            // when Redis does.
            let out = child.stdout.take().expect("stdout is piped");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("Ready to accept connections")
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(());
                    }
                }
            });
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(()) => {
                    return Ok(RedisLab {
                        child,
                        port,
                        root,
                        data: Mutex::new((data, 0)),
                    });
                }
                Err(e) => {
                    last =
                        io::Error::other(format!("redis-server on port {port} did not start: {e}"));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        Err(last)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Redis's data directory now.
    pub fn dir(&self) -> PathBuf {
        self.data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Where the dump is written (`<dir>/dump.rdb`).
    pub fn dump_file(&self) -> PathBuf {
        self.dir().join("dump.rdb")
    }

    /// Runs one command as this server's admin (no password).
    pub async fn cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        self.cmd_as(&self.url(), args).await
    }

    /// Runs one command over a new connection to `url` (e.g. with a password).
    pub async fn cmd_as(&self, url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let Some((name, rest)) = args.split_first() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "lab: an empty command",
            )));
        };
        let mut cmd = redis::cmd(name);
        for a in rest {
            cmd.arg(*a);
        }
        cmd.query_async(&mut c).await
    }

    async fn config_set(&self, key: &str, value: &str) -> redis::RedisResult<()> {
        self.cmd(&["CONFIG", "SET", key, value]).await.map(|_| ())
    }

    /// `INFO` (every section).
    pub async fn info(&self) -> redis::RedisResult<RedisInfo> {
        let client = redis::Client::open(self.url())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let text: String = redis::cmd("INFO")
            .arg("everything")
            .query_async(&mut c)
            .await?;
        Ok(RedisInfo::parse(&text))
    }

    /// Polls INFO every 20 ms until `done` holds (what the server reports is the
    /// synchronisation: a save finishing, its clock moving on); an error naming `what` after
    /// `limit`.
    pub async fn wait_info(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&RedisInfo) -> bool,
    ) -> io::Result<RedisInfo> {
        let give_up = Instant::now() + limit;
        loop {
            let info = self.info().await.map_err(io::Error::other)?;
            if done(&info) {
                return Ok(info);
            }
            if Instant::now() >= give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis never reached {what} within {limit:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a background save (`BGSAVE`). An error when one is already running.
    pub async fn bgsave(&self) -> redis::RedisResult<()> {
        self.cmd(&["BGSAVE"]).await.map(|_| ())
    }

    /// Waits (at most `limit`) until no background save runs; INFO then.
    pub async fn bgsave_done(&self, limit: Duration) -> io::Result<RedisInfo> {
        self.wait_info("the end of the bgsave", limit, |i| !i.bgsave_in_progress())
            .await
    }

    /// Each key takes `per_key` longer to dump (`rdb-key-save-delay`, Redis's own testing
    /// knob): a save of N keys lasts about N × `per_key`. Zero makes dumps fast again.
    pub async fn slow_dumps(&self, per_key: Duration) -> redis::RedisResult<()> {
        self.config_set("rdb-key-save-delay", &per_key.as_micros().to_string())
            .await
    }

    /// The next dumps fail: Redis's data directory is removed, so the save's child cannot
    /// create its temporary file (`rdb_last_bgsave_status:err`; root ignores permissions,
    /// so a read-only directory would not do). [`RedisLab::heal_dumps`] undoes it.
    pub fn fail_dumps(&self) -> io::Result<()> {
        let dir = self.dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Dumps work again: a fresh data directory, set as Redis's `dir`.
    pub async fn heal_dumps(&self) -> io::Result<()> {
        let next = {
            let mut d = self.data.lock().unwrap_or_else(|p| p.into_inner());
            d.1 += 1;
            self.root.path().join(format!("data-{}", d.1))
        };
        std::fs::create_dir_all(&next)?;
        let path = next
            .to_str()
            .ok_or_else(|| io::Error::other("non-UTF-8 path"))?;
        self.config_set("dir", path)
            .await
            .map_err(io::Error::other)?;
        self.data.lock().unwrap_or_else(|p| p.into_inner()).0 = next;
        Ok(())
    }

    /// Adds `keys` keys (`key:0`, `key:1`, ...; existing ones are kept) of `bytes` each
    /// (`DEBUG POPULATE`): more memory, longer forks and dumps.
    pub async fn populate(&self, keys: u64, bytes: u64) -> redis::RedisResult<()> {
        self.cmd(&[
            "DEBUG",
            "POPULATE",
            &keys.to_string(),
            "key",
            &bytes.max(1).to_string(),
        ])
        .await
        .map(|_| ())
    }

    /// The memory limit (`maxmemory`, bytes; 0: none, headroom is then measured against
    /// the machine's memory). Below `used_memory`, writes are refused (`noeviction`).
    pub async fn set_maxmemory(&self, bytes: u64) -> redis::RedisResult<()> {
        self.config_set("maxmemory", &bytes.to_string()).await
    }

    /// The save schedule, as Redis writes it: `"2 1"` saves every 2 s when at least one key
    /// changed; `""` saves only on demand.
    pub async fn set_save(&self, rule: &str) -> redis::RedisResult<()> {
        self.config_set("save", rule).await
    }

    /// The server's process id (to watch or signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The folder holding Redis's data directories (removed on drop).
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for RedisLab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every knob moves what INFO says it moves, on a server of the test's own.
    #[tokio::test]
    async fn knobs_show_in_info() {
        let redis = RedisLab::start().unwrap();
        let before = redis.info().await.unwrap();
        assert!(before.last_bgsave_ok());
        redis.populate(2000, 64).await.unwrap();
        assert!(
            redis
                .info()
                .await
                .unwrap()
                .get("db0")
                .unwrap()
                .starts_with("keys=2000,")
        );

        // Slow: 2000 keys × 500 µs is about a second.
        redis.slow_dumps(Duration::from_micros(500)).await.unwrap();
        redis.bgsave().await.unwrap();
        let running = redis
            .wait_info("a bgsave in progress", Duration::from_secs(5), |i| {
                i.bgsave_in_progress()
            })
            .await
            .unwrap();
        assert!(running.bgsave_in_progress());
        let done = redis.bgsave_done(Duration::from_secs(20)).await.unwrap();
        assert!(done.last_bgsave_ok());
        assert!(
            done.num("rdb_last_bgsave_time_sec").unwrap() >= 1,
            "{done:?}"
        );
        assert!(redis.dump_file().exists());

        // Failing, then healed.
        redis.slow_dumps(Duration::ZERO).await.unwrap();
        redis.fail_dumps().unwrap();
        redis.bgsave().await.unwrap();
        let failed = redis.bgsave_done(Duration::from_secs(20)).await.unwrap();
        assert_eq!(failed.get("rdb_last_bgsave_status"), Some("err"));
        redis.heal_dumps().await.unwrap();
        redis.bgsave().await.unwrap();
        assert!(
            redis
                .bgsave_done(Duration::from_secs(20))
                .await
                .unwrap()
                .last_bgsave_ok()
        );
        assert!(redis.dump_file().exists(), "{:?}", redis.dump_file());

        // Headroom shrinks with the limit.
        redis.set_maxmemory(1 << 30).await.unwrap();
        let roomy = redis.info().await.unwrap().headroom().unwrap();
        redis.set_maxmemory(1 << 20).await.unwrap();
        let info = redis.info().await.unwrap();
        assert_eq!(info.num("maxmemory"), Some(1 << 20));
        assert!(info.headroom().unwrap() < roomy);
        assert!(info.headroom().unwrap() < 0, "{info:?}");

        redis.set_save("1 1").await.unwrap();
        assert!(redis.cmd(&[]).await.is_err());
        let root = redis.root().to_owned();
        drop(redis);
        assert!(!root.exists(), "the folder goes with the lab");
    }
}
