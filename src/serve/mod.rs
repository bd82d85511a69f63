//! `ccci serve`: the service mode. A `!testme` comment on a pull request in an enrolled recipe
//! repository becomes a run of the very same `ccci test`, reported back on the pull request.
//!
//! This folder wraps [`crate::run`] and never the reverse. Its parts, each in its own module:
//! [`webhook`] (verifying a delivery and reading the command out of it), [`forge`] (the
//! forge's REST API: pull request heads, commit statuses, reactions, the summary comment, the
//! polled comment listing, and who may start a run); the store, the workers and the dashboard
//! follow.

pub mod config;
pub mod forge;
pub mod store;
pub mod webhook;
