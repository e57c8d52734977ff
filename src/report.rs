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

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Outcome, RunReport, Status};
use crate::verify::{Health, VerifyReport};

/// Output format of results on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// Progress and log output for one run.
pub struct Reporter {
    bars: Option<MultiProgress>,
    lines: Mutex<HashMap<String, ProgressBar>>,
    backups: Mutex<HashMap<String, ProgressBar>>,
    verbose: u8,
    log: Option<Mutex<std::fs::File>>,
    /// Diffs are printed to stdout in human format, kept out of JSON.
    pub format: Format,
    secrets: Vec<String>,
}

impl Reporter {
    /// `interactive`: stderr is a terminal and colour/escapes are welcome.
    pub fn new(
        format: Format,
        verbose: u8,
        interactive: bool,
        log: Option<std::fs::File>,
        secrets: Vec<String>,
    ) -> Self {
        let bars = interactive
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Reporter {
            bars,
            lines: Mutex::default(),
            backups: Mutex::default(),
            verbose,
            log: log.map(Mutex::new),
            format,
            secrets,
        }
    }

    /// Prints a log line (to stderr above the bars, and to the log file), secrets redacted.
    pub fn line(&self, text: &str) {
        let text = self.redact(text);
        if let Some(log) = &self.log
            && let Ok(mut f) = log.lock()
        {
            let _ = writeln!(f, "{text}");
        }
        match &self.bars {
            Some(bars) => bars.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(s.as_str(), "<redacted>");
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

    pub fn step_started(&self, host: &str, step: &str) {
        if let Some(bar) = self.host_line(host) {
            bar.set_message(format!("{step} ..."));
        }
        if self.verbose > 0 {
            self.line(&format!("[{host}] {step}: started"));
        }
    }

    pub fn step_done(&self, host: &str, step: &str, outcome: &Outcome) {
        let status = match outcome.status {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        };
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

    pub fn step_failed(&self, host: &str, step: &str, message: &str) {
        if let Some(bar) = self.host_line(host) {
            bar.set_message(format!("{step}: FAILED"));
        }
        self.line(&format!("[{host}] {step}: failed: {message}"));
    }

    /// A remote command about to run (`-v`).
    pub fn trace(&self, host: &str, command: &str) {
        if self.verbose > 0 {
            self.line(&format!("[{host}] $ {command}"));
        }
    }

    /// One line of pg_basebackup's `-P` output: `DONE/TOTAL kB (P%), ...`.
    pub fn backup_progress(&self, host: &str, line: &str) {
        let Some((done, total)) = parse_progress(line) else {
            if self.verbose > 1 {
                self.line(&format!("[{host}] pg_basebackup: {line}"));
            }
            return;
        };
        match &self.bars {
            Some(bars) => {
                let Ok(mut backups) = self.backups.lock() else {
                    return;
                };
                let bar = backups.entry(host.to_string()).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(total));
                    bar.set_style(
                        ProgressStyle::with_template("  {prefix:<14} base backup [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(host.to_string());
                    // The copy ran before its first progress line: start the rate from
                    // here, not from a jump to `done` in no time (it showed GiB/s).
                    bar.set_position(done);
                    bar.reset_eta();
                    bar
                });
                bar.set_length(total.max(done));
                bar.set_position(done);
            }
            None => {
                // Plain output: a line at each tenth of the way.
                let Ok(mut backups) = self.backups.lock() else {
                    return;
                };
                let bar = backups
                    .entry(host.to_string())
                    .or_insert_with(ProgressBar::hidden);
                let step = (total / 10).max(1);
                if done / step > bar.position() / step || bar.position() == 0 {
                    self.line(&format!(
                        "[{host}] base backup: {} of {} ({}%)",
                        crate::actions::human(done),
                        crate::actions::human(total),
                        done * 100 / total.max(1)
                    ));
                }
                bar.set_position(done.max(1));
            }
        }
    }

    pub fn backup_finished(&self, host: &str) {
        if let Ok(mut backups) = self.backups.lock()
            && let Some(bar) = backups.remove(host)
        {
            bar.finish();
        }
    }

    /// A unified diff of a config file that changes (or would).
    pub fn diff(&self, host: &str, path: &str, old: &str, new: &str) {
        let diff = similar::TextDiff::from_lines(old, new);
        let text = diff
            .unified_diff()
            .context_radius(2)
            .header(
                &format!("{host}:{path} (before)"),
                &format!("{host}:{path} (after)"),
            )
            .to_string();
        let text = self.redact(&text);
        match (&self.bars, self.format) {
            (_, Format::Json) => self.line(&text),
            (Some(bars), Format::Human) => bars.suspend(|| print!("{text}")),
            (None, Format::Human) => print!("{text}"),
        }
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

/// Parses pg_basebackup's progress: `12345/67890 kB (18%), 0/1 tablespace ...` → bytes.
pub fn parse_progress(line: &str) -> Option<(u64, u64)> {
    let (done, rest) = line.trim().split_once('/')?;
    let total = rest.split_whitespace().next()?;
    let unit = rest.split_whitespace().nth(1)?;
    if unit != "kB" {
        return None;
    }
    Some((
        done.trim().parse::<u64>().ok()? * 1024,
        total.parse::<u64>().ok()? * 1024,
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg_basebackup_progress() {
        assert_eq!(
            parse_progress("  1234/5678 kB (21%), 0/1 tablespace"),
            Some((1234 * 1024, 5678 * 1024))
        );
        assert_eq!(parse_progress("waiting for checkpoint"), None);
    }
}
