//! `probed`'s command line. Kept beside probectl's so `probectl man` writes probed(1) from
//! the same definition the daemon parses.

use std::path::PathBuf;

/// A synthetic health-monitoring daemon: scheduled probes, results in SQLite, /metrics, and
/// a status API for `probectl`. SIGHUP reloads the config (a bad one is logged and the last
/// good one keeps running); SIGTERM or Ctrl-C stops it cleanly.
#[derive(clap::Parser)]
#[command(name = "probed", version)]
pub struct DaemonArgs {
    /// Config file (or the environment's PROBED_CONFIG).
    #[arg(short, long, env = "PROBED_CONFIG", default_value = "probed.yaml")]
    pub config: PathBuf,
    /// Log format (or PROBED_LOG_FORMAT).
    #[arg(long, value_enum, default_value = "human", env = "PROBED_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `probed=debug,sqlx=warn` (or PROBED_LOG; RUST_LOG
    /// wins over both).
    #[arg(long, env = "PROBED_LOG", default_value = "info")]
    pub log: String,
}

/// How `probed` writes its log lines (to stderr).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event; coloured on a terminal unless NO_COLOR is set.
    Human,
    /// One JSON object per event, its fields flattened.
    Json,
}
