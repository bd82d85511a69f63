//! [`Ccci`]: the one way these tests run the real `ccci` binary. `run()` waits for it to end
//! and returns its status and output; `spawn()` returns a [`Running`] run that a test can
//! follow line by line and signal. Every wait is bounded: when the deadline passes, the
//! process group is SIGKILLed and the test fails with what the run printed so far.
//!
//! ccci runs in a process group of its own (so a signal the test sends reaches only it, and a
//! deadline kill reaches it and anything left in its group), with stdin closed and `CI=true`
//! (plain, timestamped lines on stderr, the form the tests wait for).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{BufRead, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::proc;

/// How long a ccci command may take unless the test says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A `ccci` command line being built.
pub struct Ccci {
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    timeout: Duration,
    shell_parent: bool,
}

impl Default for Ccci {
    fn default() -> Self {
        Self::new()
    }
}

impl Ccci {
    pub fn new() -> Ccci {
        Ccci {
            args: Vec::new(),
            env: vec![("CI".into(), Some("true".into()))],
            dir: None,
            timeout: DEFAULT_TIMEOUT,
            shell_parent: false,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The longest the command may run before it is killed and the test fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs ccci as the child of a `bash` that is not ccci (it forks ccci and waits, as a CI
    /// wrapper does), so a test can kill the parent (G1); signals still go to ccci itself.
    pub fn under_shell_parent(mut self) -> Self {
        self.shell_parent = true;
        self
    }

    /// The command line as a [`Command`], for a test that must handle the process itself.
    pub fn command(&self) -> Command {
        let ccci = env!("CARGO_BIN_EXE_ccci");
        let mut cmd = if self.shell_parent {
            // More follows the command, so bash must fork it rather than exec it.
            let mut cmd = Command::new("bash");
            cmd.args(["-c", "\"$@\"; exit $?", "bash", ccci]);
            cmd
        } else {
            Command::new(ccci)
        };
        cmd.args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }

    /// Runs the command to its end and returns how it went.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// Starts the command; the test follows it through the returned [`Running`].
    pub fn spawn(self) -> Running {
        proc::init();
        let (timeout, shell_parent) = (self.timeout, self.shell_parent);
        let mut child = self.command().spawn().expect("start ccci");
        let until = Instant::now() + timeout;
        let stdout = child.stdout.take().expect("stdout pipe");
        let stderr = child.stderr.take().expect("stderr pipe");
        // stdout goes over in pieces as it is written, so a test can wait for output of a
        // command that is still running (`ccci logs --follow`); the channel closes at its end.
        let (out_tx, out_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut buf = vec![0; 8192];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if out_tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        });
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let parent = child.id() as i32;
        let mut running = Running {
            child,
            pid: parent,
            shell_parent: shell_parent.then_some(parent),
            parent_killed: false,
            until,
            timeout,
            stdout: out_rx,
            stdout_seen: Vec::new(),
            lines: line_rx,
            seen: Vec::new(),
            ended: None,
        };
        if shell_parent {
            running.pid = running.bounded("bash to start ccci", |_| proc::child_of(parent));
        }
        running
    }
}

/// How a ccci command ended, and what it printed.
#[derive(Clone, Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code; `None` when a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The lines of stderr that start with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {:?} signal {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status.code(),
            self.status.signal(),
            self.stdout,
            self.stderr
        )
    }
}

/// A ccci process that runs while the test watches it.
pub struct Running {
    /// The process the test started: ccci itself, or its `bash` parent.
    child: Child,
    /// ccci's pid.
    pid: i32,
    /// The `bash` parent's pid, under [`Ccci::under_shell_parent`].
    shell_parent: Option<i32>,
    /// The `bash` parent was killed: ccci is now this process's to reap.
    parent_killed: bool,
    until: Instant,
    timeout: Duration,
    stdout: mpsc::Receiver<Vec<u8>>,
    /// Every stdout byte read so far.
    stdout_seen: Vec<u8>,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    seen: Vec<String>,
    ended: Option<ExitStatus>,
}

impl Running {
    /// The `bash` parent's pid (see [`Ccci::under_shell_parent`]).
    pub fn parent(&self) -> i32 {
        self.shell_parent.expect("started with under_shell_parent")
    }

    /// Waits for the `nth` (from 1) stderr line containing `text`, and returns it.
    pub fn wait_for_line(&mut self, text: &str, nth: usize) -> String {
        let mut count = self.seen.iter().filter(|l| l.contains(text)).count();
        loop {
            if count >= nth {
                return self
                    .seen
                    .iter()
                    .filter(|l| l.contains(text))
                    .nth(nth - 1)
                    .cloned()
                    .unwrap_or_default();
            }
            let left = self.until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if line.contains(text) {
                        count += 1;
                    }
                    self.seen.push(line);
                }
                Err(e) => {
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => format!("{:?} passed", self.timeout),
                        mpsc::RecvTimeoutError::Disconnected => "its stderr closed".into(),
                    };
                    self.kill_group();
                    panic!(
                        "ccci never printed `{text}` #{nth} ({why}):\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits until ccci's stdout so far contains `text`.
    pub fn wait_for_stdout(&mut self, text: &str) {
        loop {
            if String::from_utf8_lossy(&self.stdout_seen).contains(text) {
                return;
            }
            let left = self.until.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(piece) => self.stdout_seen.extend_from_slice(&piece),
                Err(e) => {
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => format!("{:?} passed", self.timeout),
                        mpsc::RecvTimeoutError::Disconnected => "its stdout closed".into(),
                    };
                    self.kill_group();
                    while let Ok(line) = self.lines.try_recv() {
                        self.seen.push(line);
                    }
                    panic!(
                        "ccci never printed `{text}` on stdout ({why}):\n{}\nstderr:\n{}",
                        String::from_utf8_lossy(&self.stdout_seen),
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits until `cond` holds (say, a line in the run's log), bounded by the run's deadline;
    /// fails when ccci ends first.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        self.bounded(what, |r| {
            if cond() {
                return Some(());
            }
            if let Some(status) = r.child.try_wait().expect("try_wait") {
                r.ended = Some(status);
                while let Ok(line) = r.lines.try_recv() {
                    r.seen.push(line);
                }
                panic!(
                    "ccci ended ({status}) before {what}:\n{}",
                    r.seen.join("\n")
                );
            }
            None
        });
    }

    /// Sends `signal` to ccci.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal).expect("signal ccci");
    }

    /// SIGKILLs the `bash` parent and reaps it; ccci lives on, re-parented to this test
    /// process (a subreaper), and [`Running::wait`] then reads its own exit status.
    pub fn kill_parent(&mut self) {
        kill(Pid::from_raw(self.parent()), Signal::SIGKILL).expect("kill the parent");
        let _ = self.child.wait();
        self.parent_killed = true;
    }

    /// Waits for ccci to end (bounded) and returns how it ended and what it printed.
    pub fn wait(mut self) -> Output {
        let status = self.wait_status();
        self.collect(status)
    }

    fn wait_status(&mut self) -> ExitStatus {
        if let Some(status) = self.ended {
            return status;
        }
        // Under a living `bash` parent, its exit status is ccci's (`exit $?`).
        let status = if self.parent_killed {
            let pid = self.pid;
            match self.bounded("ccci to end", |_| proc::try_reap(pid)) {
                proc::Ended {
                    code: Some(code), ..
                } => ExitStatus::from_raw(code << 8),
                proc::Ended { signal, .. } => ExitStatus::from_raw(signal.unwrap_or(0)),
            }
        } else {
            self.bounded("ccci to end", |r| r.child.try_wait().expect("try_wait"))
        };
        self.ended = Some(status);
        status
    }

    /// Polls `probe` until it gives a value; on the deadline kills the group and fails.
    fn bounded<T>(&mut self, what: &str, mut probe: impl FnMut(&mut Self) -> Option<T>) -> T {
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            // Keep the stderr lines, so a failure can show them.
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if Instant::now() >= self.until {
                self.kill_group();
                panic!(
                    "timed out after {:?} waiting for {what}:\n{}",
                    self.timeout,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(proc::POLL);
        }
    }

    /// The rest of the output. Bounded too: a grandchild in another process group may still
    /// hold the pipes open after ccci ended.
    fn collect(&mut self, status: ExitStatus) -> Output {
        let grace = Duration::from_secs(10);
        let until = Instant::now() + grace;
        while let Ok(line) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        let until = Instant::now() + grace;
        while let Ok(piece) = self
            .stdout
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.stdout_seen.extend_from_slice(&piece);
        }
        let stdout = std::mem::take(&mut self.stdout_seen);
        let mut stderr = self.seen.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        }
    }

    fn kill_group(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        if self.pid != self.child.id() as i32 {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            proc::reap_if_ours(self.pid);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    /// A run the test did not wait for (it failed first) is killed, never left behind.
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.kill_group();
        }
    }
}
