//! `ccci serve`: the service mode. A `!testme` comment on a pull request in an enrolled recipe
//! repository becomes a run of the very same `ccci test`, reported back on the pull request.
//!
//! This folder wraps [`crate::run`] and never the reverse. Its parts, each in its own module:
//! [`webhook`] (verifying a delivery and reading the command out of it) and [`dashboard`] (the
//! HTML pages: the run list, a run's page with its live log); the store, the forge client and
//! the workers follow.

pub mod dashboard;
pub mod webhook;
