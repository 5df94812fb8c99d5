//! `probed`: the daemon. `probed -c probed.yaml`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use probed::cli::daemon_args::{DaemonArgs as Args, LogFormat};

fn main() -> ExitCode {
    probed::daemon::tune_allocator();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour on a terminal only, and never with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        );
    match args.log_format {
        LogFormat::Human => sub.init(),
        LogFormat::Json => sub.json().flatten_event(true).init(),
    }
    let config = match probed::config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "probed: {} has {} error(s); not starting",
                args.config.display(),
                errors.0.len()
            );
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    // As many open files as the system allows: probes and API clients share them.
    probed::api::server::raise_descriptor_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("probed: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args.config, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("probed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf, config: probed::config::Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let daemon = probed::daemon::Daemon::start(config).await?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading config");
                match probed::config::load(&path) {
                    Ok(c) => match daemon.reload(c).await {
                        Ok(()) => tracing::info!("config reloaded"),
                        Err(e) => {
                            tracing::error!(error = %e, "reload failed; the last good config keeps running");
                            daemon.reload_failed(e.to_string());
                        }
                    },
                    Err(errors) => {
                        for e in &errors.0 {
                            tracing::error!("{e}");
                        }
                        tracing::error!(errors = errors.0.len(), "config has errors; the last good config keeps running");
                        daemon.reload_failed(format!("{} error(s), first: {}", errors.0.len(), errors.0.first().map(|e| e.to_string()).unwrap_or_default()));
                    }
                }
            }
            _ = daemon.rewatch_due() => {
                if let Err(e) = daemon.rewatch().await {
                    tracing::error!(error = %e, "cannot start watching the new locations");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    daemon.shutdown().await;
    Ok(())
}
