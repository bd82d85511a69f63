//! The library's error type.
//!
//! Messages are lowercase fragments that read after "error: ". Each variant is a category the
//! binary maps to an exit code (see [`crate::exit_code`]); the message carries the detail and,
//! for bad input, what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a name, domain, flag combination or file that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The configuration file or a per-recipe `ccci.yml` is invalid.
    #[error("{0}")]
    Config(String),
    /// Docker, the swarm, abra, git or the recipe source is missing or broken.
    #[error("{0}")]
    Infra(String),
    /// A check of the recipe found it wrong (data lost in an upgrade, a restore that brought
    /// nothing back, a release labelled as another): the recipe's fault.
    #[error("{0}")]
    Failed(String),
    /// The deployer (docker or abra) ran and refused what the recipe asks for: the recipe's
    /// fault, not the host's (see `run::failure` for what that means for a verdict).
    #[error("{0}")]
    Rejected(String),
    /// The run was interrupted by this signal (SIGINT, SIGTERM, SIGALRM for the deadline).
    #[error("interrupted by {}", signal_name(*.0))]
    Interrupted(i32),
    /// The parent process died before the lifetime guard was installed.
    #[error(
        "parent process {expected} died before the run started; refusing to start an unguarded run"
    )]
    Orphaned { expected: i32 },
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A child command failed (a `sys::process::CommandError`). A command stopped because
    /// the run was interrupted is never this but [`Error::Interrupted`] (see the `From` impl
    /// next to `CommandError`), so every caller's `?` reports the interruption, not a failure.
    #[error(transparent)]
    Command(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Adds the path and action to `std::io::Result`s, so no I/O error reaches a user without
/// saying which file it was about.
pub trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

/// "SIGINT", "SIGTERM", … for messages; the number when it is not a known signal.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(nix::sys::signal::Signal::SIGALRM) => "the run's deadline (SIGALRM)".to_string(),
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}
