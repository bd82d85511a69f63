//! Lifetime guards (G1–G6), app-domain locks (L1–L5) and the janitor (J1–J9), tested with the
//! real kernel facilities and the real swarm: helper processes that hold real `flock`s and
//! install the real signal handlers, parent-death signal and alarm; stacks deployed onto this
//! machine's single-node swarm.
//!
//! Helpers are this very test binary, re-executed to run only `helper::helper_process` with an
//! environment variable saying what to act out (see `safety/helper.rs`). Every test works in its
//! own temporary directory (lock dir through `CCCI_APP_LOCK_DIR`), waits only for conditions
//! with deadlines, and reaps every helper and every grandchild it recorded, even on failure.
//!
//! Tests that need docker fail with a message saying so, unless `CCCI_SKIP_SWARM_TESTS=1`.

#[path = "safety/guards.rs"]
mod guards;
#[path = "safety/helper.rs"]
mod helper;
#[path = "safety/janitor.rs"]
mod janitor;
#[path = "safety/locks.rs"]
mod locks;
#[path = "safety/support.rs"]
mod support;
