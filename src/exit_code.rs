//! Every exit code `ccci` can return, in one place.
//!
//! Scripts and CI systems branch on these, so they are part of the public interface: never
//! renumber one, only add. The binary maps results to codes through [`for_outcome`] and
//! [`for_error`]; nothing else in the program chooses a code.

/// The run passed every selected stage.
pub const PASS: i32 = 0;
/// A stage failed: the change does not install, upgrade or back up cleanly.
pub const TEST_FAILED: i32 = 1;
/// The command line or the configuration is wrong; nothing was changed.
pub const USAGE: i32 = 2;
/// The infrastructure is missing or broken: no docker, swarm inactive, abra missing, a source
/// that cannot be reached. Not a verdict on the recipe.
pub const INFRA: i32 = 3;
/// The base version of the upgrade test does not deploy, so the change could not be judged.
pub const BASE_FAILED: i32 = 4;
/// The run's parent died before the run started (lifetime guard G2); the run refused to start.
pub const ORPHANED: i32 = 5;
/// `ccci janitor` finished but found runs it could not reap, or leaked-looking runs to check.
pub const JANITOR_ATTENTION: i32 = 6;
/// Base of the codes for runs ended by a signal: the code is 128 + the signal number.
pub const SIGNAL_BASE: i32 = 128;
/// Interrupted by SIGINT (Ctrl-C), after teardown.
pub const SIGINT: i32 = SIGNAL_BASE + 2;
/// The run's deadline passed (SIGALRM), after teardown.
pub const DEADLINE: i32 = SIGNAL_BASE + 14;
/// Terminated by SIGTERM (including the parent-death signal), after teardown.
pub const SIGTERM: i32 = SIGNAL_BASE + 15;

use crate::verdict::Verdict;

/// The exit code of a run that reached a verdict.
pub fn for_verdict(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Pass => PASS,
        Verdict::Fail => TEST_FAILED,
        Verdict::BaseFailed => BASE_FAILED,
        Verdict::Error => INFRA,
        Verdict::Interrupted(signal) => SIGNAL_BASE + signal,
    }
}

/// Exit code for an interruption by the given signal number.
pub fn for_signal(signal: i32) -> i32 {
    SIGNAL_BASE + signal
}

/// The exit code of a library error that ended a command before any verdict.
pub fn for_error(error: &crate::Error) -> i32 {
    use crate::Error;
    match error {
        Error::Usage(_) | Error::Config(_) => USAGE,
        Error::Interrupted(signal) => for_signal(*signal),
        Error::Orphaned { .. } => ORPHANED,
        Error::Infra(_) | Error::Io { .. } | Error::Command(_) => INFRA,
        Error::Rejected(_) | Error::Failed(_) => TEST_FAILED,
    }
}
