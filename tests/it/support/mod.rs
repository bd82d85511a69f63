//! What the test modules share: the harness and its registration macro, the `ccci` builder,
//! sandboxes for runs of the binary, processes and bounded waits, the lock-holder helper, the
//! swarm check, and a headless Chromium for the dashboard.

pub mod ccci;
pub mod chromium;
pub mod harness;
pub mod helper;
pub mod proc;
pub mod sandbox;
pub mod stack;
pub mod swarm;
