//! How a run ended ([`Verdict`]) and how each of its stages went ([`StageStatus`]): the words
//! run.json, the console, the exit code and the commit status all use.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    /// A stage failed on the change.
    Fail,
    /// The upgrade's base version does not deploy: no verdict on the change.
    BaseFailed,
    /// The run could not be carried out (infrastructure, configuration).
    Error,
    /// Stopped by this signal before it finished.
    Interrupted(i32),
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::BaseFailed => "base-failed",
            Verdict::Error => "error",
            Verdict::Interrupted(_) => "interrupted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    Pending,
    Running,
    Passed,
    Failed,
    /// Not run, with a reason (e.g. no published version to upgrade from).
    Skipped,
}

impl StageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Running => "running",
            StageStatus::Passed => "passed",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
        }
    }
}
