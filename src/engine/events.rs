//! What the engine and the actions tell the user, as events: the reporter turns them into
//! lines, bars and log entries (with secrets redacted); a test can record them instead.

use crate::step::{Outcome, StepError};

/// Everything a run reports while it works. Implemented by the reporter; every line a user
/// sees during a run goes through here, so redaction and `--log-file` apply to all of it.
pub trait Events: Send + Sync {
    /// A step begins on a host.
    fn step_started(&self, host: &str, step: &str);
    /// A step ended on a host without failing.
    fn step_done(&self, host: &str, step: &str, outcome: &Outcome);
    /// A step failed on a host.
    fn step_failed(&self, host: &str, step: &str, error: &StepError);
    /// A line for people, not tied to a step (a warning, a notice).
    fn note(&self, line: &str);
    /// Progress of a long transfer on a host (`what`: e.g. "base backup").
    fn progress(&self, _host: &str, _what: &str, _done: u64, _total: u64) {}
    /// The transfer on a host ended.
    fn progress_done(&self, _host: &str) {}
    /// A remote command about to run (shown with `-v`).
    fn trace(&self, _host: &str, _command: &str) {}
    /// A tool's own output line (shown with `-vv`).
    fn debug(&self, _host: &str, _line: &str) {}
    /// A config file that changes (or would, in check mode), before and after.
    fn diff(&self, _host: &str, _path: &str, _old: &str, _new: &str) {}
}

/// Events nobody listens to.
pub struct NoEvents;

impl Events for NoEvents {
    fn step_started(&self, _: &str, _: &str) {}
    fn step_done(&self, _: &str, _: &str, _: &Outcome) {}
    fn step_failed(&self, _: &str, _: &str, _: &StepError) {}
    fn note(&self, _: &str) {}
}
