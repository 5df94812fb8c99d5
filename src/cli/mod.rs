//! `probectl` subcommands: `check-config`, `status`, `check`, `health`, `run`, `history`, ...,
//! `completions`, `man`.
//!
//! Exit statuses follow the Nagios plugin convention where a verdict is printed: 0 all up,
//! 1 degraded, 2 something down, 3 unknown (daemon unreachable, stale data, or no verdict
//! yet). `check-config` exits 0 when valid and 1 otherwise. A usage error (an unknown
//! command or flag, a missing or bad argument) exits 3, never clap's 2, so a plugin
//! mistyped in a Nagios command definition reads UNKNOWN, not CRITICAL; `--help` and
//! `--version` exit 0.
//!
//! probectl never colours its own output; clap colours `--help` and usage errors only on a
//! terminal and never with `NO_COLOR` set.

mod check;
mod client;
pub mod daemon_args;
mod lab;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use crate::evaluate::State;
use crate::report::{DaemonStatus, StatusReport};

/// The command line for probed: check a config, read the daemon's status and history,
/// check probes as a Nagios / Icinga plugin, run a probe once by hand.
#[derive(Parser)]
#[command(name = "probectl", version, after_long_help = EXIT_STATUS)]
pub struct Cli {
    /// Config file (the daemon's). Used for the API address and by `run` and `check-config`.
    #[arg(
        short,
        long,
        global = true,
        env = "PROBED_CONFIG",
        default_value = "probed.yaml"
    )]
    config: PathBuf,
    /// Daemon API base URL, instead of the config's `listen` (e.g. http://127.0.0.1:9797).
    #[arg(long, global = true, env = "PROBED_URL")]
    url: Option<String>,
    /// Admin token for writes (ack, silence); default: the config's `admin_token`.
    #[arg(long, global = true, env = "PROBED_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// The exit statuses, at the end of `--help` and in the man page.
const EXIT_STATUS: &str = "\
Exit status (Nagios plugin convention where a verdict is printed):
  0  OK: all up (check-config: valid; health: healthy; history, incidents, completions, man: done)
  1  WARNING: degraded, or the daemon unhealthy (check-config: errors; ack, silence: refused)
  2  CRITICAL: something down (run, test-alert: down, refused; ack, silence: no or wrong token)
  3  UNKNOWN: daemon unreachable, stale or pending, no such probe, cannot run; usage errors";

/// A duration flag (`500ms`, `2s`), checked while the arguments are parsed.
fn duration_arg(s: &str) -> Result<Duration, String> {
    crate::units::parse_duration(s)
}

/// A duration passed on as written (`silence --for`), checked while the arguments are
/// parsed so a bad one is a usage error.
fn duration_text(s: &str) -> Result<String, String> {
    crate::units::parse_duration(s).map(|_| s.to_owned())
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config: every error as file:line:col: message (exit 1), or a one-line
    /// summary (exit 0).
    CheckConfig {
        /// Print {"ok", "probes", ...} or {"ok": false, "errors": [{"file", "line", "col",
        /// "message"}]} instead.
        #[arg(long)]
        json: bool,
    },
    /// One row per probe: state, last latency, 24h uptime, last error. Exit 0 all up,
    /// 1 degraded, 2 something down, 3 unknown (daemon unreachable, stale, or pending).
    Status {
        /// Print the JSON of /api/v1/status instead of a table.
        #[arg(long)]
        json: bool,
        /// Under each probe, a row per location with its own verdict (several daemons
        /// sharing a store; the probe's state is their quorum).
        #[arg(long)]
        locations: bool,
    },
    /// A Nagios / Icinga plugin: one probe, or every probe and the daemon's health.
    ///
    /// Prints `PROBED OK - api up, 12ms | latency=0.012s;;;0 uptime=99.9%;;;0;100`. With a
    /// probe, that probe: down is CRITICAL, degraded WARNING, pending or stale UNKNOWN.
    /// Without, every probe and the daemon's health, ranked as `status` does, and a line
    /// per probe that is not OK. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (daemon
    /// unreachable, no such probe, usage error).
    Check {
        /// Probe name; omit it to check every probe.
        probe: Option<String>,
        /// Last latency at or above which an up probe is WARNING, e.g. 500ms.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        warning: Option<Duration>,
        /// Last latency at or above which an up probe is CRITICAL, e.g. 2s.
        // No -w/-c as Nagios plugins have: -c is the config, as everywhere in probectl.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        critical: Option<Duration>,
        /// Print the verdict as JSON (service, state, exit, summary, perfdata, details).
        #[arg(long)]
        json: bool,
    },
    /// The daemon's own health (`GET /healthz`): `healthy`, or `unhealthy` with every
    /// failing self-check. For a container's HEALTHCHECK or a liveness check. Exit 0
    /// healthy, 1 unhealthy, 3 unreachable.
    Health {
        /// Print /healthz's JSON ({"status", "problems", "checks"}), or {"status":
        /// "unreachable", "error"} when the daemon cannot be reached.
        #[arg(long)]
        json: bool,
        /// How long to wait for the answer, e.g. 2s.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "5s")]
        timeout: Duration,
    },
    /// Run one probe now, without the daemon, and print its phases and verdict.
    /// Exit 0 when up, 2 when down, 3 when it cannot run.
    Run {
        /// Probe name, as in the config.
        probe: String,
        /// Print the observation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Incidents, newest first, with their deliveries.
    Incidents {
        /// Every incident, not only the open ones.
        #[arg(long)]
        all: bool,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident: escalation and reminders stop. Needs the admin token.
    Ack {
        incident: i64,
        /// Who acknowledges (shown in pages). Default: $USER.
        #[arg(long)]
        by: Option<String>,
    },
    /// Mute pages for a probe (or glob) for a while; results are still recorded. Needs the
    /// admin token.
    Silence {
        /// Probe name or glob (`api-*`).
        probe: String,
        /// How long, e.g. 30m, 1h, 2d.
        #[arg(long = "for", value_name = "DURATION", value_parser = duration_text)]
        for_: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a real test message through a notifier, without the daemon, and say whether the
    /// channel accepted it. Exit 0 accepted, 2 refused, 3 cannot try.
    TestAlert {
        /// Notifier name, as in the config.
        notifier: String,
    },
    /// The probe's latest stored results, newest first.
    History {
        probe: String,
        /// How many results.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the fault lab: a target on loopback that misbehaves on demand (latency, errors,
    /// hangs, growing bodies, a stale build on some addresses, websocket faults), switched
    /// at runtime through its control API (printed on start). Runs until Ctrl-C.
    Lab(lab::LabArgs),
    /// Print a shell completion script: `probectl completions bash >
    /// /etc/bash_completion.d/probectl` (also zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the config's JSON Schema, for editors to complete and check probed.yaml with
    ///
    /// JSON Schema draft 2020-12, made from the types the daemon reads the config with, so it
    /// matches this version of probed.
    ///
    /// With yaml-language-server (VS Code's YAML extension, Neovim, Helix...), save it and
    /// put a modeline at the top of probed.yaml:
    ///
    ///   probectl schema --out probed.schema.json
    ///   # yaml-language-server: $schema=./probed.schema.json
    ///
    /// A probe file (named by `probes:` in probed.yaml) has a schema of its own:
    /// `probectl schema --probes-file --out probes.schema.json`. The schema checks shapes,
    /// names and types; `probectl check-config` still has the last word (environment
    /// variables, files, cron syntax, rules between keys).
    #[command(verbatim_doc_comment)]
    Schema {
        /// The schema of a probe file (a mapping with a `probes` list) instead.
        #[arg(long)]
        probes_file: bool,
        /// Write the schema to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the man page probectl(1); with --out DIR, write probectl.1, one page per
    /// command (probectl-status.1, ...) and the daemon's probed.1 there.
    Man {
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Entry point of the `probectl` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("probectl: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    rt.block_on(async {
        match &cli.command {
            Command::CheckConfig { json } => check_config(&cli.config, *json),
            Command::Check {
                probe,
                warning,
                critical,
                json,
            } => {
                let t = check::Thresholds {
                    warning: *warning,
                    critical: *critical,
                };
                nagios(&api_base(&cli), probe.as_deref(), &t, *json).await
            }
            Command::Status { json, locations } => status(&api_base(&cli), *json, *locations).await,
            Command::Health { json, timeout } => health(&api_base(&cli), *json, *timeout).await,
            Command::Run { probe, json } => run(&cli.config, probe, *json).await,
            Command::History { probe, limit, json } => {
                history(&api_base(&cli), probe, *limit, *json).await
            }
            Command::Incidents { all, limit, json } => incidents(&cli, !*all, *limit, *json).await,
            Command::Ack { incident, by } => {
                let by = by
                    .clone()
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "probectl".into());
                write(
                    &cli,
                    &format!("/api/v1/incidents/{incident}/ack"),
                    serde_json::json!({ "by": by }),
                    &format!("incident {incident} acknowledged by {by}"),
                )
                .await
            }
            Command::Silence {
                probe,
                for_,
                reason,
            } => {
                let by = std::env::var("USER").unwrap_or_else(|_| "probectl".into());
                write(
                    &cli,
                    "/api/v1/silences",
                    serde_json::json!({ "probe": probe, "for": for_, "reason": reason, "by": by }),
                    &format!("{probe} silenced for {for_}"),
                )
                .await
            }
            Command::TestAlert { notifier } => test_alert(&cli.config, notifier).await,
            Command::Lab(args) => lab::run(args).await,
            Command::Completions { shell } => {
                clap_complete::generate(
                    *shell,
                    &mut Cli::command(),
                    "probectl",
                    &mut std::io::stdout(),
                );
                ExitCode::SUCCESS
            }
            Command::Man { out } => man(out.as_deref()),
            Command::Schema { probes_file, out } => schema(*probes_file, out.as_deref()),
        }
    })
}

/// clap could not parse the arguments. `--help` and `--version` are not errors (exit 0);
/// anything else is a usage error, exit 3 (UNKNOWN), not clap's 2, which a monitoring
/// system would read as CRITICAL.
fn usage_error(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    // A Nagios plugin's output is its stdout: say it there too, on the plugin's line.
    if std::env::args().skip(1).any(|a| a == "check") {
        let text = e.render().to_string();
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("usage error")
            .trim_start_matches("error: ");
        println!(
            "PROBED UNKNOWN - usage error: {}",
            one_line(first, 200).replace('|', "/")
        );
    }
    ExitCode::from(3)
}

/// `probectl schema`: the config's JSON Schema (or a probe file's) on stdout, or in `out`.
fn schema(probes_file: bool, out: Option<&Path>) -> ExitCode {
    let schema = match probes_file {
        true => crate::config::probes_file_schema(),
        false => crate::config::config_schema(),
    };
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    let res = match out {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| format!("cannot write the schema: {e}"))
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probectl: {e}");
            ExitCode::from(3)
        }
    }
}

/// `probectl man`: probectl(1) on stdout, or every page written under `dir`.
fn man(dir: Option<&Path>) -> ExitCode {
    let res = match dir {
        Some(d) => std::fs::create_dir_all(d)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), d))
            // probed(1) beside probectl's pages, from the daemon's own definition.
            .and_then(|()| {
                let mut buf = Vec::new();
                clap_mangen::Man::new(daemon_args::DaemonArgs::command()).render(&mut buf)?;
                std::fs::write(d.join("probed.1"), buf)
            })
            .map(|()| {
                println!("man pages written to {}", d.display());
            }),
        None => {
            use std::io::Write;
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .and_then(|()| std::io::stdout().write_all(&buf))
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probectl: cannot write the man pages: {e}");
            ExitCode::from(3)
        }
    }
}

/// `probectl check`: the status report judged as a Nagios plugin.
async fn nagios(base: &str, probe: Option<&str>, t: &check::Thresholds, json: bool) -> ExitCode {
    let plugin = match client::get(base, "/api/v1/status", Duration::from_secs(5)).await {
        Err(e) => check::unreachable(&e.to_string()),
        Ok(body) => match serde_json::from_slice::<StatusReport>(&body) {
            Err(e) => check::unreachable(&format!("unreadable answer from {base}: {e}")),
            Ok(r) => match probe {
                Some(name) => check::probe(&r, name, t),
                None => check::all(&r, t),
            },
        },
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plugin).unwrap_or_default()
        );
    } else {
        print!("{}", plugin.render());
    }
    ExitCode::from(plugin.exit)
}

/// `probectl health`: `/healthz` in a line (or its JSON), and its verdict as the exit status.
async fn health(base: &str, json: bool, timeout: Duration) -> ExitCode {
    let answer = client::get_any(base, "/healthz", timeout).await;
    let parsed = match &answer {
        Err(e) => Err(e.to_string()),
        Ok((code, body)) => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) if v["status"].is_string() => Ok((*code, v)),
            _ => Err(format!(
                "probed at {base} answered {code} without a health report: {}",
                one_line(&String::from_utf8_lossy(body), 200)
            )),
        },
    };
    match parsed {
        Err(error) => {
            if json {
                let v = serde_json::json!({ "status": "unreachable", "error": error });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("probed at {base}: unreachable: {error}");
            }
            ExitCode::from(3)
        }
        Ok((code, v)) => {
            let healthy = code == 200 && v["status"] == "ok";
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else if healthy {
                println!("probed at {base}: healthy");
            } else {
                let problems: Vec<&str> = v["problems"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "probed at {base}: unhealthy: {}",
                    if problems.is_empty() {
                        format!("answered {code}")
                    } else {
                        problems.join("; ")
                    }
                );
            }
            ExitCode::from(if healthy { 0 } else { 1 })
        }
    }
}

/// The API base: `--url`, else the config's `listen` (read leniently, so a config with
/// unrelated errors still names the daemon), else the default.
fn api_base(cli: &Cli) -> String {
    if let Some(u) = &cli.url {
        return u.clone();
    }
    let listen = std::fs::read_to_string(&cli.config)
        .ok()
        .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
        .and_then(|v| v.get("listen").and_then(|l| l.as_str()).map(str::to_owned))
        .and_then(|l| l.parse::<std::net::SocketAddr>().ok());
    match listen {
        Some(mut a) => {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{a}")
        }
        None => "http://127.0.0.1:9797".into(),
    }
}

fn check_config(path: &Path, json: bool) -> ExitCode {
    match crate::config::load(path) {
        Ok(c) => {
            let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
            for p in &c.probes {
                *kinds.entry(p.spec.kind()).or_default() += 1;
            }
            if json {
                let v = serde_json::json!({
                    "config": path.display().to_string(),
                    "ok": true,
                    "probes": c.probes.len(),
                    "kinds": kinds,
                    "notifiers": c.notifiers.len(),
                    "routes": c.routes.len(),
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!(
                "{}: ok: {} probes ({}), {} notifiers, {} routes",
                path.display(),
                c.probes.len(),
                if kinds.is_empty() {
                    "none".into()
                } else {
                    kinds.join(", ")
                },
                c.notifiers.len(),
                c.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            if json {
                let list: Vec<serde_json::Value> = errors
                    .0
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "file": e.file.display().to_string(),
                            "line": e.line,
                            "col": e.col,
                            "message": e.message,
                        })
                    })
                    .collect();
                let v = serde_json::json!({
                    "config": path.display().to_string(),
                    "ok": false,
                    "errors": list,
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::from(1);
            }
            for e in &errors.0 {
                println!("{e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::from(1)
        }
    }
}

/// The Nagios-convention exit status of a status report.
pub fn status_exit(r: &StatusReport) -> u8 {
    exit_for(
        r.daemon.alive,
        r.daemon.healthy,
        r.probes.iter().map(|p| p.state),
    )
}

fn exit_for(alive: bool, healthy: bool, states: impl Iterator<Item = State>) -> u8 {
    if !alive {
        return 3;
    }
    let (mut down, mut unknown, mut degraded) = (false, false, false);
    for s in states {
        match s {
            State::Down => down = true,
            State::Unknown | State::Pending => unknown = true,
            State::Degraded => degraded = true,
            State::Up | State::Paused => {}
        }
    }
    if down {
        2
    } else if unknown {
        3
    } else if degraded || !healthy {
        1
    } else {
        0
    }
}

async fn status(base: &str, json: bool, locations: bool) -> ExitCode {
    let body = match client::get(base, "/api/v1/status", Duration::from_secs(5)).await {
        Ok(body) => body,
        Err(e) => return print_unreachable(e.to_string(), json),
    };
    if json {
        // Print the daemon's JSON as it is; read only what the exit status needs.
        return match serde_json::from_slice::<Verdict>(&body) {
            Ok(v) => {
                println!("{}", String::from_utf8_lossy(&body));
                ExitCode::from(v.exit())
            }
            Err(e) => print_unreachable(format!("unreadable answer from {base}: {e}"), true),
        };
    }
    match serde_json::from_slice::<StatusReport>(&body) {
        Ok(report) => {
            print!(
                "{}",
                render_status(&report, crate::time::now_ms(), locations)
            );
            ExitCode::from(status_exit(&report))
        }
        Err(e) => print_unreachable(format!("unreadable answer from {base}: {e}"), false),
    }
}

fn print_unreachable(error: String, json: bool) -> ExitCode {
    let report = unreachable_report(error);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        eprintln!("probectl: {}", report.daemon.error.as_deref().unwrap_or(""));
        println!("UNKNOWN: probed is not answering");
    }
    ExitCode::from(status_exit(&report))
}

/// The part of a status report the exit status depends on.
#[derive(serde::Deserialize)]
struct Verdict {
    daemon: VerdictDaemon,
    probes: Vec<VerdictProbe>,
}

#[derive(serde::Deserialize)]
struct VerdictDaemon {
    alive: bool,
    healthy: bool,
}

#[derive(serde::Deserialize)]
struct VerdictProbe {
    state: State,
}

impl Verdict {
    fn exit(&self) -> u8 {
        exit_for(
            self.daemon.alive,
            self.daemon.healthy,
            self.probes.iter().map(|p| p.state),
        )
    }
}

fn unreachable_report(error: String) -> StatusReport {
    StatusReport {
        daemon: DaemonStatus {
            alive: false,
            healthy: false,
            problems: vec![],
            checks: vec![],
            version: String::new(),
            started_at: None,
            uptime_seconds: None,
            probes: 0,
            store_queue_depth: 0,
            store_dropped: 0,
            store_write_errors: 0,
            runs_skipped: 0,
            error: Some(error),
        },
        probes: vec![],
    }
}

/// `5 up, 1 down, 2 pending`: how many probes are up, and in each other state that has any.
pub(crate) fn state_counts(r: &StatusReport) -> String {
    let count = |s: State| r.probes.iter().filter(|p| p.state == s).count();
    let mut parts = vec![format!("{} up", count(State::Up))];
    for s in [
        State::Down,
        State::Degraded,
        State::Pending,
        State::Unknown,
        State::Paused,
    ] {
        let n = count(s);
        if n > 0 {
            parts.push(format!("{n} {s}"));
        }
    }
    parts.join(", ")
}

/// The status table; with `locations`, a row per location under each probe.
pub fn render_status(r: &StatusReport, now: i64, locations: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let d = &r.daemon;
    let summary = state_counts(r);
    let _ = writeln!(
        out,
        "probed {} {} for {}, {} probes: {}",
        d.version,
        if d.healthy { "healthy" } else { "UNHEALTHY" },
        crate::units::format_duration(Duration::from_secs(d.uptime_seconds.unwrap_or(0))),
        d.probes,
        summary
    );
    for p in &d.problems {
        let _ = writeln!(out, "  ! {p}");
    }
    // The passing checks' figures, on one line.
    let figures: Vec<String> = d
        .checks
        .iter()
        .filter(|c| c.ok && matches!(c.name.as_str(), "scheduler lag" | "alert delivery"))
        .map(|c| c.detail.clone())
        .collect();
    if !figures.is_empty() {
        let _ = writeln!(out, "  {}", figures.join("; "));
    }
    if d.store_dropped > 0 {
        let _ = writeln!(
            out,
            "  ! {} results dropped (store queue full, or memory buffer overflowed while the store could not be written)",
            d.store_dropped
        );
    }
    let _ = writeln!(out);
    let latency = |ms: f64| {
        if ms < 10.0 {
            format!("{ms:.1}ms")
        } else {
            format!("{ms:.0}ms")
        }
    };
    let checked = |t: Option<&str>| {
        t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| crate::time::ago(t.timestamp_millis(), now))
            .unwrap_or_else(|| "never".into())
    };
    let mut rows: Vec<[String; 6]> = Vec::with_capacity(r.probes.len());
    for p in &r.probes {
        rows.push([
            p.name.clone(),
            p.state.to_string().to_uppercase(),
            p.last_latency_ms.map(latency).unwrap_or_else(|| "-".into()),
            p.uptime_24h
                .map(|u| format!("{u:.2}%"))
                .unwrap_or_else(|| "-".into()),
            checked(p.last_checked_at.as_deref()),
            // A degraded probe's runs pass: say which objective it is outside.
            p.last_error
                .as_deref()
                .or(p.slo.as_ref().and_then(|s| s.alert.as_deref()))
                .map(|e| one_line(e, 80))
                .unwrap_or_default(),
        ]);
        if locations {
            for l in &p.locations {
                rows.push([
                    format!("  @{}", l.location),
                    match (l.stale, l.blind) {
                        (true, _) => format!("{} (stale)", l.state),
                        (_, true) => format!("{} (blind)", l.state),
                        _ => l.state.to_string(),
                    },
                    String::new(),
                    String::new(),
                    checked(l.last_checked_at.as_deref()),
                    l.last_error
                        .as_deref()
                        .map(|e| one_line(e, 80))
                        .unwrap_or_default(),
                ]);
            }
        }
    }
    let head = [
        "PROBE",
        "STATE",
        "LATENCY",
        "UPTIME 24H",
        "CHECKED",
        "LAST ERROR",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == cells.len() - 1 {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<width$}  ", width = w[i]);
            }
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(&head.map(String::from)));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    out
}

fn one_line(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    } else {
        s
    }
}

async fn run(config: &Path, name: &str, json: bool) -> ExitCode {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "probectl: {} has {} error(s)",
                config.display(),
                errors.0.len()
            );
            return ExitCode::from(3);
        }
    };
    let Some(pc) = cfg.probes.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = cfg.probes.iter().map(|p| p.name.as_str()).collect();
        let hint = crate::config::closest(name, &names)
            .map(|n| format!("; did you mean {n:?}?"))
            .unwrap_or_default();
        eprintln!(
            "probectl: no probe named {name:?} in {}{hint}",
            config.display()
        );
        return ExitCode::from(3);
    };
    let env = match crate::probe::Env::new(&cfg.defaults.nameservers) {
        Ok(e) => e.with_origin(&cfg.instance, &cfg.location),
        Err(e) => {
            eprintln!("probectl: {e}");
            return ExitCode::from(3);
        }
    };
    let probe = match pc.spec.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("probectl: cannot build probe {name:?}: {e}");
            return ExitCode::from(3);
        }
    };
    let deadline = tokio::time::Instant::now() + pc.timeout;
    let cx = crate::probe::CheckCx {
        env: &env,
        deadline,
    };
    let obs = match tokio::time::timeout_at(deadline + Duration::from_millis(250), probe.check(&cx))
        .await
    {
        Ok(o) => o,
        Err(_) => crate::probe::Observation::default().fail(format!(
            "timed out after {} (hard deadline)",
            crate::units::format_duration(pc.timeout)
        )),
    };
    if json {
        let mut v = serde_json::to_value(&obs).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("probe".into(), name.into());
            m.insert("kind".into(), pc.spec.kind().into());
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", render_run(name, pc.spec.kind(), &obs));
    }
    ExitCode::from(if obs.ok { 0 } else { 2 })
}

/// `probectl run` output: phases, then the verdict.
pub fn render_run(name: &str, kind: &str, o: &crate::probe::Observation) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{name} ({kind}): {}", if o.ok { "UP" } else { "DOWN" });
    let ms = |d: Duration| format!("{:>9.3} ms", d.as_secs_f64() * 1000.0);
    for (p, d) in &o.phases {
        let _ = writeln!(s, "  {p:<12}{}", ms(*d));
    }
    let _ = writeln!(s, "  {:<12}{}", "total", ms(o.duration));
    let mut facts = Vec::new();
    if let Some(c) = o.status_code {
        facts.push(format!("status {c}"));
    }
    if let Some(ip) = o.ip {
        facts.push(format!("ip {ip}"));
    }
    if let Some(n) = o.size {
        facts.push(format!("body {}", crate::units::format_bytes(n)));
    }
    if o.redirects > 0 {
        facts.push(format!("{} redirects", o.redirects));
    }
    if let Some(exp) = o.cert_expiry {
        let days = (exp * 1000 - crate::time::now_ms()) / 86_400_000;
        facts.push(format!(
            "certificate expires {} ({days} days)",
            crate::time::rfc3339(exp * 1000)
        ));
    }
    if !facts.is_empty() {
        let _ = writeln!(s, "  {}", facts.join(", "));
    }
    if let Some(e) = &o.error {
        let _ = writeln!(s, "  reason: {e}");
    }
    s
}

async fn history(base: &str, name: &str, limit: u32, json: bool) -> ExitCode {
    let path = format!(
        "/api/v1/probes/{}/results?limit={limit}",
        encode_segment(name)
    );
    let body = match client::get(base, &path, Duration::from_secs(10)).await {
        Ok(b) => b,
        Err(client::ClientError::Status { status: 404, .. }) => {
            eprintln!("probectl: the daemon has no probe named {name:?}");
            return ExitCode::from(3);
        }
        Err(e) => {
            eprintln!("probectl: {e}");
            return ExitCode::from(3);
        }
    };
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("probectl: unreadable answer: {e}");
            return ExitCode::from(3);
        }
    };
    let empty = vec![];
    let rows = v["results"].as_array().unwrap_or(&empty);
    println!(
        "{:<24}  {:<4}  {:>10}  {:>6}  ERROR",
        "TIME", "OK", "LATENCY", "STATUS"
    );
    for r in rows {
        println!(
            "{:<24}  {:<4}  {:>10}  {:>6}  {}",
            r["at"].as_str().unwrap_or(""),
            if r["ok"].as_bool() == Some(true) {
                "up"
            } else {
                "down"
            },
            format!("{:.1}ms", r["latency_ms"].as_f64().unwrap_or(0.0)),
            r["status_code"]
                .as_i64()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            one_line(r["error"].as_str().unwrap_or(""), 100)
        );
    }
    if rows.is_empty() {
        println!("(no results yet)");
    }
    ExitCode::SUCCESS
}

/// Percent-encodes a path segment (probe names are restricted, but be safe).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The admin token: `--token`, else the config's `admin_token`.
fn admin_token(cli: &Cli) -> Option<String> {
    if let Some(t) = &cli.token {
        return Some(t.clone());
    }
    crate::config::load(&cli.config)
        .ok()
        .and_then(|c| c.admin_token.map(|t| t.expose().to_owned()))
}

async fn write(cli: &Cli, path: &str, body: serde_json::Value, done: &str) -> ExitCode {
    let Some(token) = admin_token(cli) else {
        eprintln!(
            "probectl: this needs the admin token: pass --token (or PROBED_TOKEN), or set admin_token in {}",
            cli.config.display()
        );
        return ExitCode::from(2);
    };
    match client::request(
        http::Method::POST,
        &api_base(cli),
        path,
        Some(&token),
        Some(body),
        Duration::from_secs(10),
    )
    .await
    {
        Ok(_) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(client::ClientError::Status { status, body, .. }) => {
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            eprintln!("probectl: refused ({status}): {msg}");
            ExitCode::from(if status == 401 { 2 } else { 1 })
        }
        Err(e) => {
            eprintln!("probectl: {e}");
            ExitCode::from(3)
        }
    }
}

/// With the admin token when there is one: the daemon then tells each delivery's error in
/// full (secrets removed), not only its status.
async fn incidents(cli: &Cli, open_only: bool, limit: u32, json: bool) -> ExitCode {
    let path = format!("/api/v1/incidents?open={open_only}&limit={limit}");
    let token = admin_token(cli);
    let body = match client::request(
        http::Method::GET,
        &api_base(cli),
        &path,
        token.as_deref(),
        None,
        Duration::from_secs(10),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("probectl: {e}");
            return ExitCode::from(3);
        }
    };
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    #[derive(serde::Deserialize)]
    struct List {
        incidents: Vec<crate::alert::outbox::IncidentRow>,
    }
    let list: List = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("probectl: unreadable answer: {e}");
            return ExitCode::from(3);
        }
    };
    if list.incidents.is_empty() {
        println!(
            "{}",
            if open_only {
                "no open incidents"
            } else {
                "no incidents"
            }
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<6}  {:<24}  {:<12}  {:<24}  REASON / DELIVERIES",
        "ID", "PROBE", "STATE", "OPENED"
    );
    for i in &list.incidents {
        println!(
            "{:<6}  {:<24}  {:<12}  {:<24}  {}",
            i.id,
            i.probe,
            i.state,
            i.opened_at,
            one_line(i.reason.as_deref().unwrap_or(""), 80)
        );
        if let Some(m) = &i.muted {
            println!("{:>8}muted: {m}", "");
        }
        for d in &i.deliveries {
            println!(
                "{:>8}{} {} {}{}",
                "",
                d.event,
                d.notifier,
                d.status,
                d.last_error
                    .as_deref()
                    .map(|e| format!(
                        " ({} attempts, last error: {})",
                        d.attempts,
                        one_line(e, 80)
                    ))
                    .unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}

async fn test_alert(config: &Path, name: &str) -> ExitCode {
    let cfg = match crate::config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "probectl: {} has {} error(s)",
                config.display(),
                errors.0.len()
            );
            return ExitCode::from(3);
        }
    };
    let Some(n) = cfg.notifiers.get(name) else {
        let names: Vec<&str> = cfg.notifiers.keys().map(String::as_str).collect();
        let hint = crate::config::closest(name, &names)
            .map(|n| format!("; did you mean {n:?}?"))
            .unwrap_or_default();
        eprintln!(
            "probectl: no notifier named {name:?} in {}{hint}",
            config.display()
        );
        return ExitCode::from(3);
    };
    let cx = match crate::alert::BuildCx::new() {
        Ok(cx) => cx,
        Err(e) => {
            eprintln!("probectl: {e}");
            return ExitCode::from(3);
        }
    };
    let notifier = match n.spec.build(&cx) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("probectl: cannot build notifier {name:?}: {e}");
            return ExitCode::from(3);
        }
    };
    let now = crate::time::now_ms();
    let alert = crate::alert::Alert {
        event: crate::alert::Event::Test,
        incident: 0,
        dedup_key: format!("probed-{}-test-{now}", cfg.instance),
        probe: "probectl-test-alert".into(),
        kind: "test".into(),
        severity: "info".into(),
        state: "down".into(),
        reason: Some(format!("test message from probectl test-alert {name}")),
        opened_at: now,
        at: now,
        resolved_at: None,
        acknowledged_by: None,
        labels: Default::default(),
        group: None,
        link: None,
        source: cfg.instance.clone(),
        locations: None,
        target: None,
        source_location: cfg.location.clone(),
        fired_as: vec!["down".into()],
        recovered_at: None,
    };
    let deadline = notifier.timeout() + Duration::from_secs(2);
    match tokio::time::timeout(deadline, notifier.send(&alert)).await {
        Ok(Ok(d)) => {
            println!("{name} ({}): accepted: {}", n.kind, d.detail);
            // Receivers that open incidents (a pager, Alertmanager) get the test closed too.
            if matches!(n.kind.as_str(), "pagerduty" | "alertmanager") {
                let mut resolve = alert.clone();
                resolve.event = crate::alert::Event::Resolve;
                resolve.state = "up".into();
                resolve.resolved_at = Some(crate::time::now_ms());
                match tokio::time::timeout(deadline, notifier.send(&resolve)).await {
                    Ok(Ok(_)) => println!("{name} ({}): test incident resolved", n.kind),
                    _ => println!(
                        "{name} ({}): could not resolve the test incident; close it by hand",
                        n.kind
                    ),
                }
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("{name} ({}): refused: {e}", n.kind);
            ExitCode::from(2)
        }
        Err(_) => {
            println!(
                "{name} ({}): no answer within {}",
                n.kind,
                crate::units::format_duration(deadline)
            );
            ExitCode::from(2)
        }
    }
}
