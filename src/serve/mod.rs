//! `ccci serve`: the service mode. A `!testme` comment on a pull request in an enrolled recipe
//! repository becomes a run of the very same `ccci test`, reported back on the pull request.
//!
//! This folder wraps [`crate::run`] and never the reverse. Its parts, each in its own module:
//! [`webhook`] (verifying a delivery and reading the command out of it); [`livelog`] (a run's
//! log streamed while it grows, as Server-Sent Events or plain text, and the SSE client);
//! [`logs`] (`ccci logs`: a run's log from its directory or from a serve URL, followed to the
//! end); the store, the forge client, the workers and the dashboard follow.

pub mod livelog;
pub mod logs;
pub mod webhook;
