//! ccci tests Co-op Cloud recipe changes on a real Docker Swarm: it deploys a recipe at a
//! commit, runs install, upgrade and backup-restore stages, always tears down, and reports a
//! verdict.
//!
//! This library does all the work; the `ccci` binary parses arguments and renders the
//! [`event::Event`]s the library reports. The library never prints.

pub mod abra_home;
pub mod compose;
pub mod config;
pub mod driver;
pub mod engine;
pub mod envfile;
pub mod error;
pub mod event;
pub mod exit_code;
pub mod janitor;
pub mod lifecycle;
pub mod lock;
pub mod naming;
pub mod overlay;
pub mod probe;
pub mod process;
pub mod recipe;
pub mod replay;
pub mod report;
pub mod rundir;
pub mod signal;
pub mod stage;
pub mod steps;
pub mod suite;
pub mod swarm;
pub mod teardown;
pub mod yaml;

pub use config::Config;
pub use error::{Error, Result};
