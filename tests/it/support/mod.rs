//! What the test modules share: the harness and its registration macro, the `ccci` builder,
//! sandboxes for runs of the binary, processes and bounded waits, the lock-holder helper, and
//! the swarm check.

pub mod ccci;
pub mod harness;
pub mod helper;
pub mod proc;
pub mod sandbox;
pub mod stack;
pub mod swarm;
