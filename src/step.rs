//! The words the engine and the actions share: what a step did ([`Outcome`], [`Status`]) and
//! why it failed ([`StepError`]).
//!
//! This module imports nothing from the rest of the crate, so the engine (which runs steps)
//! and the actions (which are steps) can both use it without importing each other.

use serde::Serialize;

/// What an action did on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Changed,
    Skipped,
    Failed,
}

impl Status {
    /// The word used in progress lines and the recap.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// The outcome of one action on one host that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// What was found or done, for people (may be empty).
    pub detail: String,
}

impl Outcome {
    /// Nothing needed to change.
    pub fn ok(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Ok,
            detail: detail.into(),
        }
    }
    /// Something was changed (or would be, in check mode).
    pub fn changed(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Changed,
            detail: detail.into(),
        }
    }
    /// The action did not apply to this host.
    pub fn skipped(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Skipped,
            detail: detail.into(),
        }
    }
}

/// Why an action failed on a host: what happened and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A failure the action diagnosed itself.
    #[error("{message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Failed {
        message: String,
        hint: Option<String>,
    },
    /// The run was interrupted while the action was in flight or before it started.
    #[error("interrupted\nhint: re-run the command to finish the job")]
    Interrupted,
    /// A failure of the transport to the host (its message names the host and a hint).
    #[error(transparent)]
    Remote(Box<dyn std::error::Error + Send + Sync>),
}

impl StepError {
    /// A failure with a hint saying what to do.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        StepError::Failed {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A failure whose message says it all.
    pub fn msg(message: impl Into<String>) -> Self {
        StepError::Failed {
            message: message.into(),
            hint: None,
        }
    }

    /// The hint, if any (a remote error carries its hint in its message).
    pub fn hint(&self) -> Option<&str> {
        match self {
            StepError::Failed { hint, .. } => hint.as_deref(),
            StepError::Interrupted => Some("re-run the command to finish the job"),
            StepError::Remote(_) => None,
        }
    }
}
