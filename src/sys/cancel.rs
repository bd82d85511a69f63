//! The cancellation token every wait of a run checks: tripped by a signal (see
//! [`super::signal`]), by the deadline alarm, or by a test. Knows nothing of what it cancels.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

/// A cancellation token shared by everything a run does. Tripped by a signal (or by a test);
/// remembers the first signal that tripped it.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    signal: Arc<AtomicI32>,
}

impl Cancel {
    /// A token nothing trips unless [`Cancel::trip`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trips the token with `signal`. The first signal wins: a SIGTERM that follows a SIGINT
    /// does not change the exit code.
    pub fn trip(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal that tripped the token, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// `Err(Interrupted)` once tripped: the `?`-able check every wait loop makes.
    pub fn check(&self) -> Result<()> {
        match self.signal() {
            None => Ok(()),
            Some(s) => Err(Error::Interrupted(s)),
        }
    }
}
