//! Issue 3's SSH-layer benchmark: small commands on every host of an inventory through
//! pgrepl's transport (`pgrepl::ssh`), one russh connection per host as pgrepl opens them.
//!
//! ```text
//! cargo run --release --example ssh_bench -- INVENTORY COUNT [CONCURRENCY]
//! ```
//!
//! Connects to all hosts at once, then runs `COUNT` times `true` on each host, hosts in
//! parallel. With `CONCURRENCY` 1 (the default) the commands of one host run one after
//! the other, like a loop of `ssh HOST true`; with N > 1, N channels of one connection
//! are busy at a time. Prints one line on stdout, timed from before connecting:
//!
//! ```text
//! pgrepl-ssh hosts=3 commands=300 seconds=1.234
//! pgrepl-ssh hosts=3 commands=300 concurrency=8 seconds=0.567
//! ```
//!
//! The connection setup alone goes to stderr (`connect seconds=...`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pgrepl::ssh::{self, Command, ConnectOptions, Session};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 {
        bail!("usage: ssh_bench INVENTORY COUNT [CONCURRENCY]");
    }
    let path = PathBuf::from(&args[0]);
    let count: usize = args[1].parse().context("COUNT must be a number")?;
    let concurrency: usize = match args.get(2) {
        Some(c) => c.parse().context("CONCURRENCY must be a number")?,
        None => 1,
    };
    if concurrency == 0 {
        bail!("CONCURRENCY must be at least 1");
    }
    let inventory =
        pgrepl::inventory::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if inventory.hosts.is_empty() {
        bail!("{}: no hosts", path.display());
    }

    let opts = ConnectOptions::default();
    let config = Arc::new(ssh::load_ssh_config(&opts)?);

    let started = Instant::now();

    // One connection per host, all opened at once (as pgrepl's engine does).
    let mut connecting = Vec::new();
    for host in &inventory.hosts {
        let ep = ssh::endpoint(&host.name, &host.ssh, config.as_ref().as_ref());
        let opts = opts.clone();
        let config = config.clone();
        connecting.push(tokio::spawn(async move {
            ssh::connect(&ep, &opts, config.as_ref().as_ref()).await
        }));
    }
    let mut sessions = Vec::new();
    for task in connecting {
        sessions.push(Arc::new(task.await??));
    }
    eprintln!(
        "connect hosts={} seconds={:.3}",
        sessions.len(),
        started.elapsed().as_secs_f64()
    );

    // Per host: `count` commands, `concurrency` of them in flight at a time.
    let mut running = Vec::new();
    for session in &sessions {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..concurrency.min(count.max(1)) {
            let session = session.clone();
            let next = next.clone();
            running.push(tokio::spawn(worker(session, next, count)));
        }
    }
    for task in running {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();

    let total = sessions.len() * count;
    if concurrency == 1 {
        println!(
            "pgrepl-ssh hosts={} commands={total} seconds={seconds:.3}",
            sessions.len()
        );
    } else {
        println!(
            "pgrepl-ssh hosts={} commands={total} concurrency={concurrency} seconds={seconds:.3}",
            sessions.len()
        );
    }
    Ok(())
}

/// Runs `true` on the session until `count` commands have been taken from `next`.
async fn worker(session: Arc<Session>, next: Arc<AtomicUsize>, count: usize) -> Result<()> {
    let cmd = Command::new("true");
    while next.fetch_add(1, Ordering::Relaxed) < count {
        session
            .run(&cmd)
            .await
            .with_context(|| format!("{}: true", session.host))?;
    }
    Ok(())
}
