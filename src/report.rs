//! What people and machines see: progress on stderr, results on stdout.
//!
//! On a terminal, one line per host shows its current step and a bar per base backup
//! (bytes, rate, ETA, from pg_basebackup's own `-P` output). Without a terminal, or with
//! `NO_COLOR`, plain `[host] step: status` lines with no escape codes. Results (recap,
//! verify table, diffs) go to stdout, as text or as one JSON document.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Events, Outcome, RunReport, StepError};
use crate::verify::{Health, VerifyReport};

/// Output format of results on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    /// Prometheus text exposition (`status` only), for node_exporter's textfile collector.
    Prometheus,
}

/// A transfer's bar, with where and when it was first seen.
struct Transfer {
    bar: ProgressBar,
    since: std::time::Instant,
    from: u64,
}

impl Transfer {
    /// The rate and ETA until they can be measured.
    const UNMEASURED: &str = "-- B/s ETA --";

    fn new(bar: ProgressBar, done: u64) -> Self {
        Transfer {
            bar,
            since: std::time::Instant::now(),
            from: done,
        }
    }

    /// `12.5 MiB/s ETA 3s`: the average since the bar appeared, once it has run long
    /// enough to mean something. (pg_basebackup's lines can arrive together, and a rate
    /// measured between two of them in no time at all read as GiB/s.)
    fn rate_and_eta(&self, done: u64, total: u64) -> String {
        let seconds = self.since.elapsed().as_secs_f64();
        let moved = done.saturating_sub(self.from);
        if seconds < 0.5 || moved == 0 {
            return Self::UNMEASURED.into();
        }
        let rate = moved as f64 / seconds;
        let eta =
            std::time::Duration::from_secs_f64((total.saturating_sub(done) as f64 / rate).ceil());
        format!(
            "{}/s ETA {:#}",
            HumanBytes(rate as u64),
            indicatif::HumanDuration(eta)
        )
    }
}

/// Progress and log output for one run.
pub struct Reporter {
    bars: Option<MultiProgress>,
    lines: Mutex<HashMap<String, ProgressBar>>,
    backups: Mutex<HashMap<String, Transfer>>,
    verbose: u8,
    log: Option<Mutex<std::fs::File>>,
    /// Diffs are printed to stdout in human format, kept out of JSON.
    pub format: Format,
    /// Strings never shown: each becomes `<redacted>` in every line, result and log entry.
    secrets: Mutex<Vec<String>>,
}

impl Reporter {
    /// `interactive`: stderr is a terminal and colour/escapes are welcome.
    pub fn new(format: Format, verbose: u8, interactive: bool, log: Option<std::fs::File>) -> Self {
        let bars = interactive
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Reporter {
            bars,
            lines: Mutex::default(),
            backups: Mutex::default(),
            verbose,
            log: log.map(Mutex::new),
            format,
            secrets: Mutex::default(),
        }
    }

    /// Whether stderr is a terminal that welcomes bars and escapes.
    pub fn stderr_is_interactive() -> bool {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none()
            && std::env::var("TERM").map_or(true, |t| t != "dumb")
    }

    /// Adds a secret to redact from everything shown from now on.
    pub fn add_secret(&self, secret: &str) {
        if !secret.is_empty()
            && let Ok(mut s) = self.secrets.lock()
        {
            s.push(secret.to_string());
        }
    }

    /// Also writes every line to this file from now on.
    pub fn set_log(&mut self, log: std::fs::File) {
        self.log = Some(Mutex::new(log));
    }

    /// A result for stdout (recap, tables, JSON), secrets redacted, also in the log file.
    pub fn output(&self, text: &str) {
        let text = self.redact(text);
        self.log_line(&text);
        match &self.bars {
            Some(bars) => bars.suspend(|| print!("{text}")),
            None => print!("{text}"),
        }
        let _ = std::io::stdout().flush();
    }

    /// An error that ends the command, with its hint, on stderr.
    pub fn error(&self, error: &dyn std::fmt::Display) {
        self.finish();
        self.line(&format!("pgrepl: {error}"));
    }

    fn log_line(&self, text: &str) {
        if let Some(log) = &self.log
            && let Ok(mut f) = log.lock()
        {
            let _ = writeln!(f, "{}", text.trim_end_matches('\n'));
        }
    }

    /// Prints a log line (to stderr above the bars, and to the log file), secrets redacted.
    pub fn line(&self, text: &str) {
        let text = self.redact(text);
        self.log_line(&text);
        match &self.bars {
            Some(bars) => bars.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(secrets) = self.secrets.lock() {
            for s in secrets.iter() {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out
    }

    fn host_line(&self, host: &str) -> Option<ProgressBar> {
        let bars = self.bars.as_ref()?;
        let mut lines = self.lines.lock().ok()?;
        Some(
            lines
                .entry(host.to_string())
                .or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed:>4}] {prefix:<14} {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(host.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                })
                .clone(),
        )
    }

    /// Ends every progress line (before printing results).
    pub fn finish(&self) {
        if let Ok(lines) = self.lines.lock() {
            for bar in lines.values() {
                bar.finish();
            }
        }
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}

/// The recap, in the manner of Ansible.
pub fn render_recap(report: &RunReport) -> String {
    let title = if report.check {
        format!(
            "RECAP pgrepl {} --check (nothing was changed)",
            report.command
        )
    } else {
        format!("RECAP pgrepl {}", report.command)
    };
    let mut out = format!("\n{title}\n");
    let width = report.hosts.iter().map(|h| h.name.len()).max().unwrap_or(4);
    for h in &report.hosts {
        out.push_str(&format!(
            "{:<width$} : ok={:<3} changed={:<3} skipped={:<3} failed={:<3} {}\n",
            h.name,
            h.ok,
            h.changed,
            h.skipped,
            h.failed,
            if h.unreachable { "UNREACHABLE" } else { "" }
        ));
    }
    for h in report
        .hosts
        .iter()
        .filter(|h| h.error.is_some() || h.left_in.is_some())
    {
        if let Some(e) = &h.error {
            out.push_str(&format!("\n{}: {e}\n", h.name));
        }
        if let Some(l) = &h.left_in {
            out.push_str(&format!("{}: left as: {l}\n", h.name));
        }
    }
    if let Some(s) = &report.stopped {
        out.push_str(&format!("\nstopped early: {s}\n"));
    }
    out.push_str(&format!(
        "\n{} in {:.1}s\n",
        if report.failed() { "FAILED" } else { "OK" },
        report.elapsed_ms as f64 / 1000.0
    ));
    out
}

/// The verify table: each host's checks with `ok`, `warn` or `fail` and the reason.
pub fn render_verify(report: &VerifyReport) -> String {
    let mut out = String::new();
    for h in &report.hosts {
        out.push_str(
            &format!("{} ({:?}): {}\n", h.name, h.role, label(h.status))
                .to_lowercase()
                .replacen(&h.name.to_lowercase(), &h.name, 1),
        );
        for c in &h.checks {
            out.push_str(&format!(
                "  {:<4}  {:<20} {}\n",
                label(c.status),
                c.name,
                c.detail
            ));
        }
    }
    let delays: Vec<String> = report
        .probe
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.host,
                p.delay_ms
                    .map(|d| format!("{d:.1} ms"))
                    .unwrap_or_else(|| "not seen".into())
            )
        })
        .collect();
    if !delays.is_empty() {
        out.push_str(&format!("probe replication delay: {}\n", delays.join(", ")));
    }
    out.push_str(&format!("verify: {}\n", label(report.status)));
    out
}

fn label(h: Health) -> &'static str {
    match h {
        Health::Ok => "ok",
        Health::Warn => "warn",
        Health::Fail => "fail",
    }
}

impl Events for Reporter {
    fn step_started(&self, host: &str, step: &str) {
        if let Some(bar) = self.host_line(host) {
            bar.set_message(format!("{step} ..."));
        }
        if self.verbose > 0 {
            self.line(&format!("[{host}] {step}: started"));
        }
    }

    fn step_done(&self, host: &str, step: &str, outcome: &Outcome) {
        let status = outcome.status.label();
        if let Some(bar) = self.host_line(host) {
            bar.set_message(format!("{step}: {status}"));
        }
        self.line(&format!(
            "[{host}] {step}: {status}{}",
            if outcome.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", outcome.detail)
            }
        ));
    }

    fn step_failed(&self, host: &str, step: &str, error: &StepError) {
        if let Some(bar) = self.host_line(host) {
            bar.set_message(format!("{step}: FAILED"));
        }
        self.line(&format!("[{host}] {step}: failed: {error}"));
    }

    fn note(&self, line: &str) {
        self.line(line);
    }

    fn trace(&self, host: &str, command: &str) {
        if self.verbose > 0 {
            self.line(&format!("[{host}] $ {command}"));
        }
    }

    fn debug(&self, host: &str, line: &str) {
        if self.verbose > 1 {
            self.line(&format!("[{host}] {line}"));
        }
    }

    /// Progress of a transfer: a bar on a terminal, a line at each tenth otherwise.
    fn progress(&self, host: &str, what: &str, done: u64, total: u64) {
        let Ok(mut transfers) = self.backups.lock() else {
            return;
        };
        match &self.bars {
            Some(bars) => {
                let transfer = transfers.entry(host.to_string()).or_insert_with(|| {
                    // Its message is set before it is first drawn: every draw shows a rate.
                    let bar = bars.add(ProgressBar::new(total).with_message(Transfer::UNMEASURED));
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "  {{prefix:<14}} {what} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{msg}}"
                        ))
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(host.to_string());
                    Transfer::new(bar, done)
                });
                transfer.bar.set_message(transfer.rate_and_eta(done, total));
                transfer.bar.set_length(total.max(done));
                transfer.bar.set_position(done);
            }
            None => {
                let transfer = transfers
                    .entry(host.to_string())
                    .or_insert_with(|| Transfer::new(ProgressBar::hidden(), 0));
                let bar = &transfer.bar;
                let step = (total / 10).max(1);
                let due = done / step > bar.position() / step || bar.position() == 0;
                bar.set_position(done.max(1));
                drop(transfers);
                if due {
                    self.line(&format!(
                        "[{host}] {what}: {} of {} ({}%)",
                        HumanBytes(done),
                        HumanBytes(total),
                        done * 100 / total.max(1)
                    ));
                }
            }
        }
    }

    fn progress_done(&self, host: &str) {
        if let Ok(mut transfers) = self.backups.lock()
            && let Some(transfer) = transfers.remove(host)
        {
            transfer.bar.finish();
        }
    }

    /// A unified diff of a config file that changes (or would).
    fn diff(&self, host: &str, path: &str, old: &str, new: &str) {
        let diff = similar::TextDiff::from_lines(old, new);
        let text = diff
            .unified_diff()
            .context_radius(2)
            .header(
                &format!("{host}:{path} (before)"),
                &format!("{host}:{path} (after)"),
            )
            .to_string();
        // JSON keeps stdout for the one document: diffs go to stderr there.
        match self.format {
            Format::Human => self.output(&text),
            _ => self.line(&text),
        }
    }
}
