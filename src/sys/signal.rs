//! Signal handling and lifetime guards: the one module that touches signal dispositions,
//! `prctl(PR_SET_PDEATHSIG)` and `alarm(2)`.
//!
//! Signals never interrupt work directly. The handler only writes the signal number to a
//! self-pipe; a named thread reads it and trips the run's [`Cancel`] token. Every wait in the
//! library checks that token, so an interrupted run stops what it is doing, terminates its
//! children (see [`crate::sys::process`]) and then tears down under its own budget. Tests that need
//! no signal handling use a plain [`Cancel::new`], the no-op kind.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::error::{Error, Result};

use super::cancel::Cancel;

/// Write end of the self-pipe; -1 until [`install`] ran.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // The interrupted code may be about to read errno; write(2) can change it.
        let saved = nix::errno::Errno::last_raw();
        // SAFETY: write(2) is async-signal-safe; the fd stays open for the life of the process,
        // is non-blocking (a full pipe drops the byte: the first signal already won), and the
        // buffer is a local byte.
        unsafe {
            nix::libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        nix::errno::Errno::set_raw(saved);
    }
}

/// The signals that interrupt a run: Ctrl-C, termination (also the parent-death signal), a
/// closed terminal, and the deadline alarm.
pub const INTERRUPTING: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGALRM,
];

/// Routes [`INTERRUPTING`] signals to `cancel`. Call once, early in `main`, before any thread
/// or child starts. Children get default dispositions back on exec, and live in their own
/// process groups, so a Ctrl-C on the terminal reaches ccci alone and ccci decides how its
/// children end.
pub fn install(cancel: &Cancel) -> Result<()> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Infra(format!("failed to create the signal pipe: {e}")))?;
    nix::fcntl::fcntl(
        &write,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| Error::Infra(format!("failed to make the signal pipe non-blocking: {e}")))?;
    use std::os::fd::IntoRawFd;
    PIPE_WRITE.store(write.into_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in INTERRUPTING {
        // SAFETY: the handler only performs an async-signal-safe write(2) to a pipe.
        unsafe { sigaction(signal, &action) }
            .map_err(|e| Error::Infra(format!("failed to install the {signal} handler: {e}")))?;
    }
    let cancel = cancel.clone();
    std::thread::Builder::new()
        .name("ccci-signals".into())
        .spawn(move || {
            let mut pipe = std::fs::File::from(read);
            let mut byte = [0u8; 1];
            use std::io::Read;
            while let Ok(1) = pipe.read(&mut byte) {
                // SIGHUP (a closed terminal) ends the run like SIGTERM would.
                let signal = match i32::from(byte[0]) {
                    s if s == Signal::SIGHUP as i32 => Signal::SIGTERM as i32,
                    s => s,
                };
                cancel.trip(signal);
            }
        })
        .map_err(|e| Error::Infra(format!("failed to start the signal thread: {e}")))?;
    Ok(())
}

/// Lifetime guard G1/G2: ask the kernel for SIGTERM when our parent dies, then make sure the
/// parent recorded before is still the parent. If it is not, it died in the gap before the
/// request took effect and nobody would ever stop this run: refuse to start.
pub fn guard_parent_death(expected_parent: i32) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .map_err(|e| Error::Infra(format!("failed to set the parent-death signal: {e}")))?;
    let parent = nix::unistd::getppid().as_raw();
    if parent != expected_parent {
        return Err(Error::Orphaned {
            expected: expected_parent,
        });
    }
    Ok(())
}

/// Lifetime guard G3: deliver SIGALRM after `deadline`, which trips the run's token with
/// signal 14 (exit 142 after teardown). Whole seconds, rounded up; at least one.
pub fn set_deadline(deadline: Duration) {
    let secs = deadline.as_secs() + u64::from(deadline.subsec_nanos() > 0);
    let secs = u32::try_from(secs.max(1)).unwrap_or(u32::MAX);
    nix::unistd::alarm::set(secs);
}

/// Cancels a pending deadline, e.g. before teardown starts its own budget.
pub fn clear_deadline() {
    nix::unistd::alarm::cancel();
}

pub use crate::error::signal_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_signal_wins() {
        let cancel = Cancel::new();
        assert!(cancel.check().is_ok());
        cancel.trip(2);
        cancel.trip(15);
        assert_eq!(cancel.signal(), Some(2));
        assert!(matches!(cancel.check(), Err(Error::Interrupted(2))));
    }

    #[test]
    fn names_the_deadline() {
        assert!(signal_name(14).contains("deadline"));
        assert_eq!(signal_name(15), "SIGTERM");
    }
}
