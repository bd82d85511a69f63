//! `ccci serve`: the service mode. A `!testme` comment on a pull request in an enrolled recipe
//! repository becomes a run of the very same `ccci test`, reported back on the pull request.
//!
//! This folder wraps [`crate::run`] and never the reverse. Its parts, each in its own module:
//! - [`config`]: the `serve:` section of the config file, secrets read from files or env;
//! - [`webhook`]: is a delivery authentic, and is it a `!testme` on a pull request;
//! - [`intake`]: a delivery or polled comment recorded once, answered at once;
//! - [`store`]: the SQLite state (queue, runs, seen comments, watermarks, summaries);
//! - [`forge`]: the forge's REST API, and who may start a run;
//! - [`triage`]: authorization and the pull request's head, then the queue; restart recovery;
//! - [`worker`]: runs as child `ccci test` processes;
//! - [`report`]: reaction, commit statuses and the summary comment;
//! - [`poll`]: polling enrolled repositories, and log retention;
//! - [`http`], [`pages`], [`dashboard`]: the routes and the server-rendered pages;
//! - [`livelog`]: a run's log streamed while it grows (SSE or plain text), and the SSE client;
//! - [`logs`]: `ccci logs`, printing or following a run's log from a run dir or a serve URL;
//! - [`metrics`]: `/metrics`; [`service`]: the shared state and the threads.

pub mod config;
pub mod dashboard;
pub mod forge;
pub mod http;
pub mod intake;
pub mod livelog;
pub mod logs;
pub mod metrics;
pub mod pages;
pub mod poll;
pub mod report;
pub mod service;
pub mod store;
pub mod triage;
pub mod webhook;
pub mod worker;
