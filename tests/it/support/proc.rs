//! Processes the tests start or adopt: bounded waits, `/proc` look-ups, and the [`Reaper`] that
//! ends every process a test started or adopted, even when the test fails.

use std::process::{Child, Command};
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How long any wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a bounded wait looks again.
pub const POLL: Duration = Duration::from_millis(5);

/// Makes this test process the subreaper of everything it starts: a process whose parent dies
/// is re-parented here rather than to init, so a test can read its real exit status (G1) and
/// reap it.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    });
}

/// Waits until `cond` holds, failing the test with `what` after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_until_for(WAIT, what, &mut cond);
}

pub fn wait_until_for(limit: Duration, what: &str, cond: &mut dyn FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < until,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// True when `cond` becomes true within `limit`; for checks that something does NOT happen.
pub fn happens_within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Waits for a file something writes (atomically) and returns its text.
pub fn wait_file(path: &std::path::Path) -> String {
    wait_until(&format!("{}", path.display()), || path.exists());
    std::fs::read_to_string(path).expect("read state file")
}

pub fn read_pid(path: &std::path::Path) -> i32 {
    let text = wait_file(path);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} holds no pid: {text:?}", path.display()))
}

/// `(state, parent, start time)` of a process from `/proc/<pid>/stat`.
pub fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let parent = fields.get(1)?.parse().ok()?;
    // Field 22 of the whole line is the start time; `rest` begins at field 3.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, parent, start))
}

/// Running (not a zombie, not gone).
pub fn running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _, _)| state != 'Z' && state != 'X')
}

/// A child process of `parent`, from `/proc`; `None` while it has none.
pub fn child_of(parent: i32) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|&pid| proc_stat(pid).is_some_and(|(_, p, _)| p == parent))
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Reaps `pid` if it has ended; it must be this process's child (or re-parented here).
pub fn try_reap(pid: i32) -> Option<Ended> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(Ended {
            code: Some(code),
            signal: None,
        }),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(Ended {
            code: None,
            signal: Some(signal as i32),
        }),
        Ok(_) => None,
        Err(e) => panic!("cannot wait for process {pid}: {e}"),
    }
}

/// Reaps `pid` within a few seconds when it is this process's to reap; otherwise (its parent
/// lives and will reap it) does nothing. For cleanup, so it never fails.
pub fn reap_if_ours(pid: i32) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < until => std::thread::sleep(POLL),
            _ => break,
        }
    }
}

/// Every process a test started or adopted. Dropping it SIGKILLs what still runs (checking
/// the start time, so a recycled pid is never hit) and reaps it.
#[derive(Default)]
pub struct Reaper {
    direct: Vec<Child>,
    adopted: Vec<(i32, u64)>,
}

impl Reaper {
    pub fn new() -> Self {
        init();
        Self::default()
    }

    /// Starts `cmd` and keeps its child; returns its pid.
    pub fn spawn(&mut self, mut cmd: Command) -> i32 {
        let child = cmd.spawn().expect("spawn helper");
        let pid = child.id() as i32;
        self.direct.push(child);
        pid
    }

    /// Records a process this test did not start directly (a helper's child or grandchild).
    pub fn adopt(&mut self, pid: i32) {
        if let Some((_, _, start)) = proc_stat(pid) {
            self.adopted.push((pid, start));
        }
    }

    /// Waits for `pid` (a direct child, or an adopted one re-parented to this subreaper) to
    /// exit, and returns how it ended.
    pub fn wait_exit(&mut self, pid: i32, limit: Duration) -> Ended {
        let until = Instant::now() + limit;
        loop {
            if let Some(child) = self.direct.iter_mut().find(|c| c.id() as i32 == pid) {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    use std::os::unix::process::ExitStatusExt;
                    return Ended {
                        code: status.code(),
                        signal: status.signal(),
                    };
                }
            } else if let Some(ended) = try_reap(pid) {
                return ended;
            }
            assert!(
                Instant::now() < until,
                "process {pid} did not exit within {limit:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    pub fn signal(&self, pid: i32, signal: Signal) {
        kill(Pid::from_raw(pid), signal).expect("send signal");
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for &(pid, start) in &self.adopted {
            if proc_stat(pid).is_some_and(|(_, _, s)| s == start) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        for child in &mut self.direct {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Adopted processes that were re-parented here are zombies until reaped; the others
        // (still under a living parent) are that parent's to reap, and ECHILD says so.
        for &(pid, _) in &self.adopted {
            reap_if_ours(pid);
        }
    }
}

/// Unique enough names for tests that run in parallel with others on one machine.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}x{}x{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}
