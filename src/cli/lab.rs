//! `probectl lab`: the fault lab ([`crate::lab`]) run by hand, faults switched with curl.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::lab::{Faults, Lab};

/// Flags of `probectl lab`; the control API does the rest.
#[derive(clap::Args)]
pub(crate) struct LabArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// More addresses with the same behaviour (edges of one site), e.g. 127.0.0.2:8080.
    /// Repeatable.
    #[arg(long, value_name = "ADDR")]
    also: Vec<SocketAddr>,
    /// Fixed latency, e.g. 120ms.
    #[arg(long, value_name = "DURATION")]
    latency: Option<String>,
    /// Error rate, e.g. 0.08% (answered 500).
    #[arg(long, value_name = "RATE")]
    error_rate: Option<String>,
    /// Initial faults as JSON, a merge patch as `POST /_lab/faults` takes, e.g.
    /// '{"stale":{"addrs":["127.0.0.2"]}}'.
    #[arg(long, value_name = "JSON")]
    faults: Option<String>,
}

/// The initial faults from the flags.
fn faults(a: &LabArgs) -> Result<Faults, String> {
    let mut f = Faults::default();
    if let Some(l) = &a.latency {
        f = f.patched(&serde_json::json!({ "latency": { "base": l } }))?;
    }
    if let Some(r) = &a.error_rate {
        f = f.patched(&serde_json::json!({ "errors": { "rate": r } }))?;
    }
    if let Some(j) = &a.faults {
        let patch: serde_json::Value =
            serde_json::from_str(j).map_err(|e| format!("--faults is not JSON: {e}"))?;
        f = f.patched(&patch)?;
    }
    Ok(f)
}

/// Runs the lab until SIGINT or SIGTERM. Exit 0 then, 3 for bad flags (a usage error, as
/// everywhere in probectl) or when it cannot listen.
pub(crate) async fn run(a: &LabArgs) -> ExitCode {
    let f = match faults(a) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("probectl lab: {e}");
            return ExitCode::from(3);
        }
    };
    let mut listen = vec![a.listen];
    listen.extend(&a.also);
    let lab = match Lab::start_with(&listen, f).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("probectl lab: {e}");
            return ExitCode::from(3);
        }
    };
    let urls: Vec<String> = lab.addrs().iter().map(|a| format!("http://{a}")).collect();
    println!("probectl lab: listening on {}", urls.join(", "));
    println!(
        "faults: {}",
        serde_json::to_string(&lab.faults()).unwrap_or_default()
    );
    print!("{}", crate::lab::usage(&urls[0]));
    println!("Ctrl-C stops.");
    wait_for_stop().await;
    let s = lab.stats();
    println!(
        "probectl lab: stopped after {} requests, {} errors, {} hung, {} websocket joins",
        s.requests, s.errors, s.hangs, s.websockets.joins
    );
    ExitCode::SUCCESS
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
