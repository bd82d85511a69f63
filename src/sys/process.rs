//! Child processes: the one structure that starts, watches and ends every program ccci runs
//! (docker, abra, git, recipe hooks and tests).
//!
//! Every child runs in its own process group, so ending it ends its whole tree: SIGTERM to the
//! group, a grace period, then SIGKILL. A child is ended when the run is cancelled (a signal or
//! the deadline) or when its own timeout passes. stdout and stderr are read on their own
//! threads so a chatty child never blocks on a full pipe.
//!
//! Nothing here ever waits on a child's output without a bound. Once the child has exited (or
//! been ended), its pipes get a short drain; a pipe still open after it is held by something
//! the child left behind (a hook's `sleep 600 &`), so the group is ended and the rest of the
//! output abandoned. The exited child is reaped only after that, so its pid keeps naming its
//! group until the group has been signalled.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::sys::cancel::Cancel;

/// How often a wait re-checks the cancel token and the timeout. Waits wake on the child's exit
/// at once; this only bounds how late they notice a cancellation.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// How long the readers may go on collecting a child's output after it exited. What the child
/// wrote is in the pipe by then and is read in well under a millisecond; the drain only runs
/// out when something the child left behind still holds a pipe open. A second leaves a loaded
/// machine ample time to schedule the readers (and to copy a full pipe to the log) and is
/// small next to what any hook or test does; a misbehaving one costs that second once.
const DRAIN: Duration = Duration::from_secs(1);

/// Receives each line a child prints when its command asked for its output to be logged.
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A program to run, built like `std::process::Command` but inspectable (for logs, errors and
/// the abra contract tests) and runnable more than once.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    stdin_file: Option<PathBuf>,
    stdout_file: Option<PathBuf>,
    timeout: Option<Duration>,
    log_output: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            cwd: None,
            stdin: None,
            stdin_file: None,
            stdout_file: None,
            timeout: None,
            log_output: false,
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
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Feeds the child's stdin from a file (streams; for backups that can be large).
    pub fn stdin_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.stdin_file = Some(path.into());
        self
    }

    /// Sends the child's stdout to a file instead of capturing it.
    pub fn stdout_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.stdout_file = Some(path.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Copies the child's output, line by line, to the runner's log sink as it arrives.
    pub fn log_output(mut self) -> Self {
        self.log_output = true;
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// Whether the child's output goes to the runner's log sink ([`Cmd::log_output`]).
    pub fn logs_output(&self) -> bool {
        self.log_output
    }

    pub fn get_env(&self, key: &str) -> Option<&OsStr> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }

    /// The command as a shell-like line, for logs and error messages.
    pub fn display(&self) -> String {
        let mut line = self.program.to_string_lossy().into_owned();
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            line.push(' ');
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
                line.push('\'');
                line.push_str(&arg.replace('\'', r"'\''"));
                line.push('\'');
            } else {
                line.push_str(&arg);
            }
        }
        line
    }

    fn to_command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for key in &self.env_remove {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        // Own process group: a terminal's Ctrl-C reaches ccci only, and ending the group ends
        // everything the child started.
        command.process_group(0);
        command
    }
}

/// What a finished child left behind.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit code, `None` when a signal ended the child.
    pub code: Option<i32>,
    /// The signal that ended the child, if one did.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The last non-empty line of stderr (or stdout when stderr is empty): what a one-line
    /// error should quote.
    pub fn last_error_line(&self) -> String {
        let pick = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        };
        pick(&self.stderr)
            .or_else(|| pick(&self.stdout))
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` is not installed or not on PATH")]
    NotFound { program: String },
    #[error("failed to start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` {}: {}", describe_status(.output), .output.last_error_line())]
    Failed { command: String, output: Output },
    #[error("`{command}` did not finish within {}", humantime::format_duration(*.timeout))]
    TimedOut { command: String, timeout: Duration },
    #[error("`{command}` was stopped: the run was interrupted")]
    Cancelled { command: String, signal: i32 },
    #[error("failed to wait for `{command}`: {source}")]
    Wait {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

fn describe_status(output: &Output) -> String {
    match (output.code, output.signal) {
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(sig)) => format!("was killed by {}", crate::sys::signal::signal_name(sig)),
        (None, None) => "ended".to_string(),
    }
}

impl From<CommandError> for crate::Error {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Cancelled { signal, .. } => crate::Error::Interrupted(signal),
            e => crate::Error::Command(Box::new(e)),
        }
    }
}

impl CommandError {
    /// The output of a command that ran and failed.
    pub fn output(&self) -> Option<&Output> {
        match self {
            CommandError::Failed { output, .. } => Some(output),
            _ => None,
        }
    }
}

/// Starts children and sees them to their end. Cheap to clone; clones share the cancel token.
#[derive(Clone)]
pub struct Runner {
    cancel: Option<Cancel>,
    grace: Duration,
    /// How long a child's output is collected after the child exited ([`DRAIN`]).
    drain: Duration,
    sink: Option<LineSink>,
    /// A hard stop for every child this runner starts (teardown's budget).
    until: Option<Instant>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("cancel", &self.cancel)
            .field("grace", &self.grace)
            .field("drain", &self.drain)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner whose children are ended when `cancel` trips.
    pub fn new(cancel: Cancel) -> Self {
        Runner {
            cancel: Some(cancel),
            grace: Duration::from_secs(5),
            drain: DRAIN,
            sink: None,
            until: None,
        }
    }

    /// A runner no signal interrupts, bounded by `budget` instead: what teardown uses, so a
    /// cancelled run can still clean up, but cannot hang doing it.
    pub fn with_budget(&self, budget: Duration) -> Self {
        Runner {
            cancel: None,
            until: Some(Instant::now() + budget),
            ..self.clone()
        }
    }

    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn with_sink(mut self, sink: LineSink) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn cancel(&self) -> Option<&Cancel> {
        self.cancel.as_ref()
    }

    /// Time left before the runner's hard stop, if it has one.
    pub fn remaining(&self) -> Option<Duration> {
        self.until
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// `Err` when the run was cancelled or the budget is spent: for wait loops that run no child.
    pub fn check(&self) -> crate::Result<()> {
        if let Some(cancel) = &self.cancel {
            cancel.check()?;
        }
        if self.remaining() == Some(Duration::ZERO) {
            return Err(crate::Error::Infra(
                "the teardown budget ran out".to_string(),
            ));
        }
        Ok(())
    }

    /// Sends a line to the log sink, if there is one.
    pub fn log(&self, line: &str) {
        if let Some(sink) = &self.sink {
            sink(line);
        }
    }

    /// Runs `cmd` to its end and returns its output, whatever its exit code.
    pub fn output(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        let started = Instant::now();
        let display = cmd.display();
        // A cancelled run or a spent budget starts nothing new; the wait below would notice
        // only after the first look, and a child that ended by then would pass.
        if let Some(signal) = self.cancel.as_ref().and_then(Cancel::signal) {
            return Err(CommandError::Cancelled {
                command: display,
                signal,
            });
        }
        if self.remaining() == Some(Duration::ZERO) {
            return Err(CommandError::TimedOut {
                command: display,
                timeout: Duration::ZERO,
            });
        }
        let mut command = cmd.to_command();
        command.stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else if let Some(path) = &cmd.stdin_file {
            match std::fs::File::open(path) {
                Ok(f) => Stdio::from(f),
                Err(source) => {
                    return Err(CommandError::Spawn {
                        command: display,
                        source,
                    });
                }
            }
        } else {
            Stdio::null()
        });
        command.stdout(match &cmd.stdout_file {
            Some(path) => match std::fs::File::create(path) {
                Ok(f) => Stdio::from(f),
                Err(source) => {
                    return Err(CommandError::Spawn {
                        command: display,
                        source,
                    });
                }
            },
            None => Stdio::piped(),
        });
        command.stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CommandError::NotFound {
                    program: cmd.program.to_string_lossy().into_owned(),
                }
            } else {
                CommandError::Spawn {
                    command: display.clone(),
                    source,
                }
            }
        })?;
        if let Some(bytes) = &cmd.stdin {
            let mut stdin = child.stdin.take().expect("stdin was piped");
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let sink = cmd.log_output.then(|| self.sink.clone()).flatten();
        let capture = Capture::start(child.stdout.take(), child.stderr.take(), sink);
        if let Err(e) = self.wait(&mut child, cmd.timeout, &display, started) {
            // The group has been ended, so the pipes close at once unless a process escaped
            // the group; either way the last lines get their chance to reach the log.
            capture.finished_within(self.drain);
            return Err(e);
        }
        let cancelled = self.settle(&child, &capture);
        let status = child.wait().map_err(|source| CommandError::Wait {
            command: display.clone(),
            source,
        })?;
        if let Some(signal) = cancelled {
            return Err(CommandError::Cancelled {
                command: display,
                signal,
            });
        }
        let (stdout, stderr) = capture.take();
        Ok(Output {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            elapsed: started.elapsed(),
        })
    }

    /// After the child exited: lets the readers collect what is left in the pipes for at most
    /// the drain period. When a pipe is still held open after it (by something the child left
    /// in its group), or the run is cancelled meanwhile, ends the group (TERM, up to the grace
    /// period for the pipes to close, KILL) and leaves the rest of the output unread. Returns
    /// the signal that cancelled the run, if one did.
    fn settle(&self, child: &Child, capture: &Capture) -> Option<i32> {
        let until = Instant::now() + self.drain;
        let cancelled = loop {
            let left = until.saturating_duration_since(Instant::now());
            if capture.finished_within(left.min(CHECK_EVERY)) {
                return None;
            }
            if let Some(signal) = self.cancel.as_ref().and_then(Cancel::signal) {
                break Some(signal);
            }
            if left.is_zero() {
                break None;
            }
        };
        // The child is exited but not reaped: its pid still names its group, no other.
        let group = Pid::from_raw(child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if !capture.finished_within(self.grace) {
            let _ = killpg(group, Signal::SIGKILL);
        }
        cancelled
    }

    /// Runs `cmd` and fails unless it exits 0.
    pub fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        let output = self.output(cmd)?;
        if output.success() {
            Ok(output)
        } else {
            Err(CommandError::Failed {
                command: cmd.display(),
                output,
            })
        }
    }

    /// Runs `cmd`, fails unless it exits 0, and returns its stdout as text.
    pub fn stdout(&self, cmd: &Cmd) -> Result<String, CommandError> {
        self.run(cmd).map(|o| o.stdout_str())
    }

    /// Waits for `child` to exit, without reaping it; ends (and reaps) its group when the run
    /// is cancelled or time runs out.
    fn wait(
        &self,
        child: &mut Child,
        timeout: Option<Duration>,
        display: &str,
        started: Instant,
    ) -> Result<(), CommandError> {
        let deadline = [timeout.map(|t| started + t), self.until]
            .into_iter()
            .flatten()
            .min();
        loop {
            if has_exited(child) {
                return Ok(());
            }
            if let Some(signal) = self.cancel.as_ref().and_then(Cancel::signal) {
                self.end_group(child);
                return Err(CommandError::Cancelled {
                    command: display.to_string(),
                    signal,
                });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.end_group(child);
                return Err(CommandError::TimedOut {
                    command: display.to_string(),
                    timeout: started.elapsed(),
                });
            }
            wait_briefly(child, CHECK_EVERY);
        }
    }

    /// SIGTERM to the child's group, the grace period, then SIGKILL; reaps the child.
    fn end_group(&self, child: &mut Child) {
        terminate_group(child, self.grace);
    }

    /// Starts `cmd` and hands its stdout lines over a channel as they come, for streams such
    /// as `docker events`. Dropping the stream ends the child's group.
    pub fn stream_lines(&self, cmd: &Cmd) -> Result<LineStream, CommandError> {
        let mut command = cmd.to_command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().map_err(|source| CommandError::Spawn {
            command: cmd.display(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(LineStream { child, lines: rx })
    }
}

/// True once `child` has exited, without reaping it: until it is reaped its pid names its
/// process group and nothing else, so signalling the group cannot reach a stranger. Uses
/// waitid(WNOWAIT).
fn has_exited(child: &Child) -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    match waitid(
        Id::Pid(Pid::from_raw(child.id() as i32)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG,
    ) {
        Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => false,
        // Anything else, ECHILD included, leaves nothing to wait for.
        _ => true,
    }
}

/// Blocks until `child` exits or `period` passes, without reaping it, so the exit is noticed
/// within milliseconds rather than at the next check.
fn wait_briefly(child: &Child, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until && !has_exited(child) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ends `child` and everything in its process group: SIGTERM, up to `grace`, then SIGKILL;
/// reaps the child.
pub fn terminate_group(child: &mut Child, grace: Duration) {
    let group = Pid::from_raw(child.id() as i32);
    if !has_exited(child) {
        let _ = killpg(group, Signal::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until && !has_exited(child) {
            wait_briefly(child, CHECK_EVERY);
        }
    }
    // The leader may be gone while its group lives on: make sure of it. Not yet reaped, the
    // leader still holds the group's number.
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

/// A child's stdout and stderr, each read on its own thread into a buffer that can be taken at
/// any moment, so the output can be abandoned without joining a reader that something the
/// child left behind keeps blocked on an open pipe.
struct Capture {
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Nothing is ever sent on it: it disconnects once every reader has reached the end of its
    /// pipe.
    open: Receiver<()>,
}

impl Capture {
    fn start(
        stdout: Option<std::process::ChildStdout>,
        stderr: Option<std::process::ChildStderr>,
        sink: Option<LineSink>,
    ) -> Capture {
        let (reading, open) = mpsc::channel();
        let capture = Capture {
            stdout: Arc::default(),
            stderr: Arc::default(),
            open,
        };
        if let Some(pipe) = stdout {
            read_into(pipe, &capture.stdout, sink.clone(), reading.clone());
        }
        if let Some(pipe) = stderr {
            read_into(pipe, &capture.stderr, sink, reading);
        }
        capture
    }

    /// Waits at most `limit` for every reader to reach the end of its pipe; true if they did.
    fn finished_within(&self, limit: Duration) -> bool {
        matches!(
            self.open.recv_timeout(limit),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// What has been read so far: (stdout, stderr).
    fn take(&self) -> (Vec<u8>, Vec<u8>) {
        let take = |buf: &Mutex<Vec<u8>>| {
            std::mem::take(&mut *buf.lock().unwrap_or_else(PoisonError::into_inner))
        };
        (take(&self.stdout), take(&self.stderr))
    }
}

/// Reads `pipe` to its end on a thread into `buf`, copying lines to `sink` as they arrive (a
/// last line without a newline at the end). Drops `reading` when done.
fn read_into(
    mut pipe: impl Read + Send + 'static,
    buf: &Arc<Mutex<Vec<u8>>>,
    sink: Option<LineSink>,
    reading: Sender<()>,
) {
    let buf = Arc::clone(buf);
    std::thread::spawn(move || {
        let _reading = reading;
        let mut chunk = [0u8; 8192];
        let mut line = Vec::new();
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            buf.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&chunk[..n]);
            let Some(sink) = &sink else { continue };
            line.extend_from_slice(&chunk[..n]);
            while let Some(end) = line.iter().position(|&b| b == b'\n') {
                sink(String::from_utf8_lossy(&line[..end]).trim_end());
                line.drain(..=end);
            }
        }
        if let Some(sink) = &sink {
            if !line.is_empty() {
                sink(String::from_utf8_lossy(&line).trim_end());
            }
        }
    });
}

/// The child behind a [`LineStream`] closed its output (it exited).
#[derive(Debug, PartialEq, Eq)]
pub struct StreamClosed;

/// Lines from a long-running child. Ends the child's process group when dropped.
pub struct LineStream {
    child: Child,
    lines: Receiver<String>,
}

impl LineStream {
    /// The next line, waiting at most `timeout`. `Ok(None)` on timeout; `Err` once the child
    /// has closed its output.
    pub fn next_line(&self, timeout: Duration) -> Result<Option<String>, StreamClosed> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(Some(line)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(StreamClosed),
        }
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        terminate_group(&mut self.child, Duration::from_millis(200));
    }
}

/// Finds `program` on PATH, as the `which` crate resolves it.
pub fn find_program(program: &str) -> Option<PathBuf> {
    which::which(program).ok()
}

/// True when `path` is an executable regular file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_exit_code() {
        let runner = Runner::new(Cancel::new());
        let out = runner
            .output(&Cmd::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.last_error_line(), "err");
    }

    #[test]
    fn failed_command_names_itself_and_its_error() {
        let runner = Runner::new(Cancel::new());
        let err = runner
            .run(&Cmd::new("sh").args(["-c", "echo 'no such stack' >&2; exit 1"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exited with 1"), "{msg}");
        assert!(msg.contains("no such stack"), "{msg}");
    }

    #[test]
    fn missing_program_is_not_found() {
        let runner = Runner::new(Cancel::new());
        let err = runner.run(&Cmd::new("ccci-no-such-program")).unwrap_err();
        assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
    }

    #[test]
    fn timeout_ends_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let runner = Runner::new(Cancel::new()).with_grace(Duration::from_millis(500));
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let err = runner
            .run(
                &Cmd::new("sh")
                    .args(["-c", &script])
                    .timeout(Duration::from_millis(300)),
            )
            .unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the group and got the signal; wait (bounded) for it to go.
        let gone = (0..200).any(|_| {
            let alive = nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true);
            if alive {
                std::thread::sleep(Duration::from_millis(10));
            }
            !alive
        });
        assert!(gone, "grandchild {pid} survived the group kill");
    }

    #[test]
    fn cancel_stops_a_running_child() {
        // Tripped before the child starts: the child is started and ended at once, so the
        // test finishes in milliseconds instead of the child's 30 s.
        let cancel = Cancel::new();
        cancel.trip(15);
        let runner = Runner::new(cancel);
        let err = runner.run(&Cmd::new("sleep").arg("30")).unwrap_err();
        assert!(
            matches!(err, CommandError::Cancelled { signal: 15, .. }),
            "{err}"
        );
    }

    /// Runs `f` on its own thread; the test then waits for its result with a bound, so a
    /// liveness check fails instead of hanging the test run.
    fn in_background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx
    }

    const BOUND: Duration = Duration::from_secs(10);

    /// The pid a script wrote to `path`, waiting (bounded) for the write to land.
    fn pid_in(path: &Path) -> i32 {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let pid = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(pid) = pid {
                return pid;
            }
            assert!(
                Instant::now() < until,
                "{} was never written",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// True when `pid` has exited: gone, or a zombie nobody has reaped yet.
    fn exited(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    /// Waits (bounded) for `pid` to exit.
    fn exits_soon(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while !exited(pid) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Ends a process a failed test left behind, so a failure costs no stray `sleep 600`.
    fn end(pid: i32) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }

    /// `sh -c` a script that prints "hi", leaves `sleep 600` in the background holding
    /// stdout, writes that sleep's pid to `pidfile`, and exits 0.
    fn leaves_a_holder(pidfile: &Path) -> Cmd {
        let script = format!("echo hi; sleep 600 & echo $! > '{}'", pidfile.display());
        Cmd::new("sh").args(["-c", &script])
    }

    #[test]
    fn regression_a_background_grandchild_holding_stdout_hung_the_runner() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let cmd = leaves_a_holder(&pidfile);
        let runner = Runner::new(Cancel::new());
        let out = in_background(move || runner.output(&cmd))
            .recv_timeout(BOUND)
            .ok();
        let grandchild = pid_in(&pidfile);
        let Some(out) = out else {
            end(grandchild);
            panic!("output() still waited 10 s after the child exited");
        };
        let out = out.unwrap();
        assert_eq!(out.stdout_str(), "hi\n");
        assert_eq!(out.code, Some(0));
        assert!(
            exits_soon(grandchild),
            "grandchild {grandchild} outlived the run"
        );
    }

    #[test]
    fn regression_a_background_grandchild_held_a_timed_command_past_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let cmd = leaves_a_holder(&pidfile).timeout(Duration::from_secs(2));
        let runner = Runner::new(Cancel::new());
        let started = Instant::now();
        let out = in_background(move || runner.output(&cmd))
            .recv_timeout(BOUND)
            .ok();
        let grandchild = pid_in(&pidfile);
        let Some(out) = out else {
            end(grandchild);
            panic!("output() still waited 10 s after the child exited, despite a 2 s timeout");
        };
        let out = out.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2) + DRAIN + Duration::from_secs(2));
        assert_eq!(out.stdout_str(), "hi\n");
        assert_eq!(out.code, Some(0));
        assert!(
            exits_soon(grandchild),
            "grandchild {grandchild} outlived the run"
        );
    }

    #[test]
    fn regression_a_cancel_went_unnoticed_while_a_grandchild_held_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let childfile = dir.path().join("child.pid");
        let script = format!(
            "echo $$ > '{}'; echo hi; sleep 600 & echo $! > '{}'",
            childfile.display(),
            pidfile.display()
        );
        let cancel = Cancel::new();
        // A drain far longer than the test's bound: the cancel, not the drain's end, must be
        // what ends the wait.
        let runner = Runner {
            drain: Duration::from_secs(600),
            ..Runner::new(cancel.clone())
        };
        let out = in_background(move || runner.output(&Cmd::new("sh").args(["-c", &script])));
        // Cancel once the child has exited, while its grandchild still holds stdout.
        let child = pid_in(&childfile);
        assert!(exits_soon(child), "the child {child} did not exit");
        cancel.trip(15);
        let grandchild = pid_in(&pidfile);
        let Ok(out) = out.recv_timeout(BOUND) else {
            end(grandchild);
            panic!("output() did not return within 10 s of the cancel");
        };
        assert!(
            matches!(out, Err(CommandError::Cancelled { signal: 15, .. })),
            "{out:?}"
        );
        assert!(
            exits_soon(grandchild),
            "grandchild {grandchild} outlived the run"
        );
    }

    #[test]
    fn a_last_line_without_a_newline_is_kept_and_logged() {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        let runner = Runner::new(Cancel::new()).with_sink(Arc::new(move |l: &str| {
            seen.lock().unwrap().push(l.to_string())
        }));
        let out = runner
            .run(&Cmd::new("printf").arg("a\\nb").log_output())
            .unwrap();
        assert_eq!(out.stdout_str(), "a\nb");
        assert_eq!(*lines.lock().unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn a_holder_outside_the_group_costs_a_bounded_wait_and_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("escaped.pid");
        // `setsid` puts the sleep in a session (and group) of its own: ending the group cannot
        // reach it, so its end of stdout stays open and what is left is abandoned.
        let script = format!(
            "echo hi; setsid sleep 600 & echo $! > '{}'",
            pidfile.display()
        );
        let runner = Runner::new(Cancel::new()).with_grace(Duration::from_millis(200));
        let out = in_background(move || runner.output(&Cmd::new("sh").args(["-c", &script])))
            .recv_timeout(BOUND);
        let escaped = pid_in(&pidfile);
        end(escaped);
        let out = out.expect("output() returned within 10 s").unwrap();
        assert_eq!(out.stdout_str(), "hi\n");
        assert_eq!(out.code, Some(0));
    }

    #[test]
    fn logged_output_reaches_the_sink_line_by_line() {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        let runner = Runner::new(Cancel::new()).with_sink(Arc::new(move |l: &str| {
            seen.lock().unwrap().push(l.to_string())
        }));
        runner
            .run(&Cmd::new("sh").args(["-c", "echo a; echo b"]).log_output())
            .unwrap();
        assert_eq!(*lines.lock().unwrap(), vec!["a", "b"]);
    }
}
