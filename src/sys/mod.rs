//! The operating system, as a run needs it: the cancel token, signal handling and lifetime
//! guards, child processes, and flock locks. Nothing here knows of docker or recipes.

pub mod cancel;
pub mod lock;
pub mod process;
pub mod signal;
