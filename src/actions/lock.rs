//! One run at a time per cluster: a lock file on the primary.
//!
//! The lock lives on the primary, not on the machine running pgrepl, so two operators on
//! two laptops cannot rebuild the same replicas at once. It names its holder (machine,
//! pid, user, command, start time). A lock left by a dead run on this same machine is
//! recovered by itself (its pid is gone); one from elsewhere needs `--break-lock`.

use crate::ssh::{Command, Session};

use crate::step::StepError;

/// Where the lock file lives on the primary.
pub const LOCK_FILE: &str = "/var/lib/pgrepl/run.lock";

/// This run's identity, as written in the lock file.
#[derive(Debug, Clone)]
pub struct Holder {
    pub machine: String,
    pub pid: u32,
    pub user: String,
    pub command: String,
    /// A random token of this process: two runs alike in all the rest (containers sharing
    /// a host name, each pgrepl their PID 1) are still two holders.
    pub run: String,
}

/// This process's [`Holder::run`] token, made once.
fn run_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        (0..8)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect()
    })
}

impl Holder {
    /// The current process.
    pub fn this_run(command: &str) -> Self {
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Holder {
            machine,
            pid: std::process::id(),
            user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            command: command.into(),
            run: run_token().to_string(),
        }
    }

    /// The line written in the lock file (before its start time).
    pub fn line(&self) -> String {
        format!(
            "machine={} pid={} user={} command={} run={}",
            self.machine, self.pid, self.user, self.command, self.run
        )
    }

    /// Parses a lock line; `None` for a line pgrepl did not write.
    fn parse(line: &str) -> Option<Holder> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        Some(Holder {
            machine: field("machine")?,
            pid: field("pid")?.parse().ok()?,
            user: field("user")?,
            command: field("command")?,
            // Lines from before the token have none.
            run: field("run").unwrap_or_default(),
        })
    }

    /// A holder on this machine whose process is gone left a stale lock.
    fn is_dead_local(&self) -> bool {
        let me = Holder::this_run("");
        self.machine == me.machine
            && self.pid != me.pid
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Takes the lock file `$lock_file` for holder line `$lock_line` (`$lock_mode` `break`
/// removes any first), printing `lock acquired` or `lock held LINE`. Shared with the
/// primary's facts script, which takes the lock in the same round trip.
pub const ACQUIRE_SH: &str = r#"mkdir -p "${lock_file%/*}"
if [ "$lock_mode" = break ]; then rm -f "$lock_file"; fi
if (set -C; printf '%s since=%s\n' "$lock_line" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$lock_file") 2>/dev/null; then echo "lock acquired"; else echo "lock held $(cat "$lock_file")"; fi"#;

/// The mode [`ACQUIRE_SH`] takes the lock in.
pub fn mode(break_lock: bool) -> &'static str {
    if break_lock { "break" } else { "take" }
}

/// Takes the lock on the primary, or says who holds it.
pub async fn acquire(
    primary: &Session,
    holder: &Holder,
    break_lock: bool,
) -> Result<Option<String>, StepError> {
    let out = primary
        .run(&acquire_command(holder, mode(break_lock)))
        .await?;
    judge(primary, holder, out.stdout.trim()).await
}

fn acquire_command(holder: &Holder, mode: &str) -> Command {
    let script = format!("lock_file=\"$1\"; lock_line=\"$2\"; lock_mode=\"$3\"\n{ACQUIRE_SH}");
    Command::script(&script, &[LOCK_FILE, &holder.line(), mode]).as_root()
}

/// What [`ACQUIRE_SH`] answered (`lock acquired` or `lock held LINE`), judged: taken (with
/// a notice when a stale lock was recovered), or held by another run.
pub async fn judge(
    primary: &Session,
    holder: &Holder,
    answer: &str,
) -> Result<Option<String>, StepError> {
    let Some(held) = answer.strip_prefix("lock held ") else {
        return Ok(None);
    };
    match Holder::parse(held) {
        // This very run took it (its first look did, and is being asked again).
        Some(h) if h.line() == holder.line() => return Ok(None),
        Some(h) if h.is_dead_local() => {
            primary.run(&acquire_command(holder, "break")).await?;
            return Ok(Some(format!(
                "recovered a stale lock left by a dead run ({held})"
            )));
        }
        _ => {}
    }
    Err(StepError::new(
        format!("another pgrepl run holds the cluster lock on the primary ({LOCK_FILE}): {held}"),
        "wait for that run to finish; if it is dead (its machine rebooted, it was killed), re-run with --break-lock",
    ))
}

/// Releases the lock if this run still holds it.
pub async fn release(primary: &Session, holder: &Holder) {
    let script = r#"if grep -qF -- "$2 " "$1" 2>/dev/null; then rm -f "$1"; fi"#;
    let _ = primary
        .run(&Command::script(script, &[LOCK_FILE, &holder.line()]).as_root())
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines_round_trip() {
        let h = Holder {
            machine: "ops-1".into(),
            pid: 42,
            user: "ana".into(),
            command: "bootstrap".into(),
            run: "00ff".into(),
        };
        let parsed = Holder::parse(&format!("{} since=2026-11-22T10:00:00Z", h.line())).unwrap();
        assert_eq!(
            (parsed.machine.as_str(), parsed.pid, parsed.command.as_str()),
            ("ops-1", 42, "bootstrap")
        );
        assert_eq!(parsed.line(), h.line());
        assert!(Holder::parse("garbage").is_none());
        // Two runs alike in all but their token are two holders; one process is one.
        let twin = Holder {
            run: "ff00".into(),
            ..h.clone()
        };
        assert_ne!(twin.line(), h.line());
        assert_eq!(
            Holder::this_run("bootstrap").line(),
            Holder::this_run("bootstrap").line()
        );
    }

    #[test]
    fn only_a_local_holder_with_no_process_is_stale() {
        let mut h = Holder::this_run("bootstrap");
        assert!(!h.is_dead_local(), "this very process is alive");
        h.pid = u32::MAX - 1;
        assert!(h.is_dead_local());
        h.machine = "elsewhere".into();
        assert!(!h.is_dead_local());
    }
}
