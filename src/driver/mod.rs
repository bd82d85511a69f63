//! Deploy drivers: one trait, two implementations. `abra` drives the real abra CLI, the
//! deployer recipe users have; `stack` drives the docker CLI directly and does what abra would
//! (env file, secrets, `docker stack deploy`, backupbot-style backups). The lifecycle does not
//! know which one it has. Neither waits for convergence: ccci watches the swarm itself.

pub mod abra;
pub mod stack;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::event::EventSink;
use crate::sys::process::{Output, Runner};

/// Which driver the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    /// abra when it is on PATH, else stack (with a notice).
    Auto,
    Abra,
    Stack,
}

impl DriverChoice {
    pub fn parse(name: &str) -> Result<DriverChoice> {
        match name {
            "auto" => Ok(DriverChoice::Auto),
            "abra" => Ok(DriverChoice::Abra),
            "stack" => Ok(DriverChoice::Stack),
            other => Err(Error::Usage(format!(
                "unknown driver `{other}`: use auto, abra or stack"
            ))),
        }
    }
}

/// What a deploy puts on the swarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// A published release, by its tag.
    Release(String),
    /// Whatever is checked out in the run's recipe tree (the change).
    Chaos,
}

/// Everything a driver needs to know about the app it works on.
pub struct App<'a> {
    pub runner: &'a Runner,
    /// The run's abra home: `ABRA_DIR` of every abra call (A2).
    pub abra_dir: &'a Path,
    /// The run's clone of the recipe.
    pub recipe_dir: PathBuf,
    /// The app's env file.
    pub env_file: PathBuf,
    pub server: &'a str,
    pub recipe: &'a str,
    pub domain: &'a str,
    pub stack: &'a str,
    /// The run's labels, for what the driver creates itself (secrets).
    pub labels: Vec<(String, String)>,
    pub backups: &'a Path,
    pub sink: &'a dyn EventSink,
}

impl App<'_> {
    pub fn recipe_dir(&self) -> PathBuf {
        self.recipe_dir.clone()
    }

    pub fn env_file(&self) -> PathBuf {
        self.env_file.clone()
    }
}

pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Creates the app: its env file (from the recipe's `.env.sample`) and its secrets, for
    /// the version checked out in the run's recipe tree.
    fn new_app(&self, app: &App, version: &Version) -> Result<()>;
    /// Deploys the checked-out tree with the env file as it is now. Returns once the swarm
    /// accepted the stack, not when it converged.
    fn deploy(&self, app: &App, version: &Version) -> Result<()>;
    /// Backs the app's data up, following the recipe's backupbot labels.
    fn backup(&self, app: &App) -> Result<()>;
    /// Restores the latest backup.
    fn restore(&self, app: &App) -> Result<()>;
}

/// The error for a deployer (`what`, e.g. `docker stack deploy`) that ran and failed. Exiting
/// non-zero is the deployer refusing the recipe's files: [`Error::Rejected`], the recipe's
/// fault. Not reaching the engine, or being killed, is the host's: [`Error::Infra`].
pub(crate) fn deploy_failed(what: &str, out: &Output) -> Error {
    let said = format!("{}\n{}", out.stderr_str(), out.stdout_str());
    if let Some(hint) = crate::docker::cli::daemon_hint(&said) {
        return Error::Infra(hint);
    }
    let line = out.last_error_line();
    match out.code {
        Some(code) if code != 0 => Error::Rejected(format!("{what} refused the recipe: {line}")),
        _ => Error::Infra(format!(
            "{what} was killed before it finished: {}",
            if line.is_empty() { "no output" } else { &line }
        )),
    }
}

/// Picks the driver. `Auto` falls back to `stack` when abra is not on PATH and says so.
pub fn select(choice: DriverChoice) -> Result<(Box<dyn Driver>, Option<String>)> {
    let abra = crate::sys::process::find_program("abra");
    match (choice, abra) {
        (DriverChoice::Abra, Some(path)) | (DriverChoice::Auto, Some(path)) => {
            Ok((Box::new(abra::AbraDriver::new(path)), None))
        }
        (DriverChoice::Abra, None) => Err(Error::Infra(
            "--driver abra but abra is not on PATH: install abra or use --driver stack".into(),
        )),
        (DriverChoice::Auto, None) => Ok((
            Box::new(stack::StackDriver::new()),
            Some("abra is not on PATH: using the stack driver (docker stack deploy)".into()),
        )),
        (DriverChoice::Stack, _) => Ok((Box::new(stack::StackDriver::new()), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: Option<i32>, stderr: &str) -> Output {
        Output {
            code,
            signal: code.is_none().then_some(9),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_deployer_refusing_the_files_blames_the_recipe_and_an_unreachable_engine_does_not() {
        let refused = exited(
            Some(1),
            "Creating network s_default\nservice app: undefined volume \"data\"\n",
        );
        match deploy_failed("docker stack deploy", &refused) {
            Error::Rejected(m) => assert_eq!(
                m,
                "docker stack deploy refused the recipe: service app: undefined volume \"data\""
            ),
            other => panic!("{other:?}"),
        }
        for down in [
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            "Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
            "error during connect: Get \"http://docker.example/v1.41/info\": dial tcp: lookup docker.example: no such host",
            "Error response from daemon: This node is not a swarm manager.",
        ] {
            let err = deploy_failed("docker stack deploy", &exited(Some(1), down));
            assert!(matches!(err, Error::Infra(_)), "{down}: {err:?}");
        }
        let killed = deploy_failed("abra app deploy", &exited(None, ""));
        assert!(matches!(killed, Error::Infra(_)), "{killed:?}");
    }
}
