//! Deploy drivers: one trait, two implementations. `abra` drives the real abra CLI, the
//! deployer recipe users have; `stack` drives the docker CLI directly and does what abra would
//! (env file, secrets, `docker stack deploy`, backupbot-style backups). The lifecycle does not
//! know which one it has. Neither waits for convergence: ccci watches the swarm itself.

pub mod abra;
pub mod stack;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::event::EventSink;
use crate::sys::process::Runner;

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
