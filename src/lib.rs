//! ccci tests Co-op Cloud recipe changes on a real Docker Swarm: it deploys a recipe at a
//! commit, runs install, upgrade and backup-restore stages, always tears down, and reports a
//! verdict.
//!
//! This library does all the work; the `ccci` binary parses arguments and renders the
//! [`event::Event`]s the library reports. The library never prints.
//!
//! Layers, each using only those before it: the foundation in this folder (error, event,
//! stage, verdict, config, naming, labels, yaml, files, timestamp, exit codes); [`sys`] (cancel, signals,
//! children, locks); [`docker`] (the engine); [`recipe`] (what a recipe says); [`driver`]
//! (abra or docker stack deploy); [`run`] (one run, its steps and stages); [`janitor`].

pub mod config;
pub mod docker;
pub mod doctor;
pub mod driver;
pub mod error;
pub mod event;
pub mod exit_code;
pub mod files;
pub mod janitor;
pub mod labels;
pub mod naming;
pub mod recipe;
pub mod run;
pub mod serve;
pub mod stage;
pub mod sys;
pub mod timestamp;
pub mod verdict;
pub mod yaml;

pub use config::Config;
pub use error::{Error, Result};
