//! What the test modules share: the harness and its registration macro, the `ccci` builder,
//! sandboxes for runs of the binary, processes and bounded waits, the lock-holder helper, the
//! swarm check, a headless Chromium for the dashboard, and the forges of the service-mode tests
//! (a throwaway Gitea, and a recording stand-in for failures a real one cannot be made to give).

pub mod ccci;
pub mod chromium;
pub mod forge;
pub mod harness;
pub mod helper;
pub mod proc;
pub mod recording_forge;
pub mod sandbox;
pub mod serve;
pub mod stack;
pub mod swarm;
