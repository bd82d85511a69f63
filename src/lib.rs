//! ccci tests Co-op Cloud recipe changes on a real Docker Swarm: it deploys a recipe at a
//! commit, runs install, upgrade and backup-restore stages, always tears down, and reports a
//! verdict.
//!
//! This library does all the work; the `ccci` binary parses arguments and renders the
//! [`event::Event`]s the library reports. The library never prints.

pub mod config;
pub mod error;
pub mod event;
pub mod exit_code;
pub mod naming;
pub mod process;
pub mod report;
pub mod signal;
pub mod stage;
pub mod yaml;

pub use config::Config;
pub use error::{Error, Result};
