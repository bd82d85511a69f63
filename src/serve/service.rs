//! The running service: the state every part of `ccci serve` shares (configuration, store,
//! forge client, metrics, the children of running runs) and its long-lived threads — HTTP
//! acceptors, triage, workers, the reporter, the poller — started and stopped together.
//!
//! The library never prints: what happens is reported as [`ServeEvent`]s to the sink the
//! binary gives (it writes them to stderr, which systemd keeps in the journal).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::config::ServeConfig;
use super::forge::ForgeClient;
use super::metrics::Metrics;
use super::report::Report;
use super::store::{RunRow, Store};
use crate::config::Config;
use crate::error::{Error, Result};

/// Something `ccci serve` wants its operator to know, one line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeEvent {
    Listening {
        addr: SocketAddr,
        public_url: String,
    },
    /// A delivery was refused before anything was recorded.
    Rejected {
        cause: String,
    },
    /// A `!testme` was recorded as run `run`.
    Recorded {
        run: i64,
        repo: String,
        pr: u64,
        by: String,
        trigger: String,
    },
    /// The commenter may not ask for runs, or the check failed.
    Refused {
        run: i64,
        reason: String,
    },
    Queued {
        run: i64,
        head: String,
    },
    Started {
        run: i64,
        pid: i32,
        run_dir: String,
    },
    Finished {
        run: i64,
        verdict: String,
        reason: Option<String>,
    },
    /// A run was asked to stop (superseded, or new commits pushed).
    Stopping {
        run: i64,
        why: String,
    },
    ForgeError {
        call: String,
        error: String,
    },
    /// The first poll of a repository: what exists was marked seen, never run.
    Watching {
        repo: String,
        existing: usize,
    },
    Polled {
        repo: String,
        new_commands: usize,
    },
    /// Something went wrong in serve itself; the service goes on.
    Trouble {
        what: String,
    },
    Recovered {
        interrupted: usize,
        queued: usize,
    },
    Pruned {
        runs: usize,
    },
}

impl std::fmt::Display for ServeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeEvent::Listening { addr, public_url } => {
                write!(f, "listening on {addr} (public URL {public_url})")
            }
            ServeEvent::Rejected { cause } => write!(f, "delivery rejected: {cause}"),
            ServeEvent::Recorded {
                run,
                repo,
                pr,
                by,
                trigger,
            } => {
                write!(
                    f,
                    "run {run}: !testme on {repo}#{pr} by {by} (via {trigger})"
                )
            }
            ServeEvent::Refused { run, reason } => write!(f, "run {run}: refused: {reason}"),
            ServeEvent::Queued { run, head } => write!(f, "run {run}: queued at {head}"),
            ServeEvent::Started { run, pid, run_dir } => {
                write!(f, "run {run}: started (pid {pid}, run dir {run_dir})")
            }
            ServeEvent::Finished {
                run,
                verdict,
                reason,
            } => match reason {
                Some(reason) => write!(f, "run {run}: {verdict}: {reason}"),
                None => write!(f, "run {run}: {verdict}"),
            },
            ServeEvent::Stopping { run, why } => write!(f, "run {run}: stopping: {why}"),
            ServeEvent::ForgeError { call, error } => write!(f, "forge {call}: {error}"),
            ServeEvent::Polled { repo, new_commands } => {
                write!(f, "polled {repo}: {new_commands} new command(s)")
            }
            ServeEvent::Watching { repo, existing } => write!(
                f,
                "watching {repo}: {existing} existing comment(s) marked seen, not run"
            ),
            ServeEvent::Trouble { what } => write!(f, "{what}"),
            ServeEvent::Recovered {
                interrupted,
                queued,
            } => write!(
                f,
                "recovered: {interrupted} run(s) interrupted by the last stop, {queued} waiting"
            ),
            ServeEvent::Pruned { runs } => write!(f, "retention: forgot {runs} old run(s)"),
        }
    }
}

pub type EventSink = Box<dyn Fn(ServeEvent) + Send + Sync>;

/// A wake-up call between threads: `notify` wakes every [`Waiter`] of it. A call made while
/// a waiter is busy is not lost (its next `wait` returns at once), and no waiter takes a call
/// from another: every worker waits on the same one, and a stop must wake them all.
#[derive(Default)]
pub struct Wake {
    calls: Mutex<u64>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_all();
    }

    /// A waiter that has seen every call made so far: make it before looking for work, so a
    /// call made while looking wakes its next `wait`.
    pub fn waiter(&self) -> Waiter<'_> {
        let seen = *self.calls.lock().unwrap_or_else(|p| p.into_inner());
        Waiter { wake: self, seen }
    }
}

/// One thread's place in a [`Wake`]'s calls.
pub struct Waiter<'a> {
    wake: &'a Wake,
    seen: u64,
}

impl Waiter<'_> {
    /// Returns when a call came since this waiter last returned (or was made), or after
    /// `timeout`.
    pub fn wait(&mut self, timeout: Duration) {
        let guard = self.wake.calls.lock().unwrap_or_else(|p| p.into_inner());
        let seen = self.seen;
        let (guard, _) = self
            .wake
            .cv
            .wait_timeout_while(guard, timeout, |calls| *calls == seen)
            .unwrap_or_else(|p| p.into_inner());
        self.seen = *guard;
    }
}

/// How serve starts runs: the `ccci` executable and the config file it passes on.
#[derive(Clone, Debug)]
pub struct Launcher {
    pub exe: PathBuf,
    pub config_file: Option<PathBuf>,
}

/// Everything the parts share.
pub struct Service {
    pub config: ServeConfig,
    pub core: Config,
    pub launcher: Launcher,
    pub store: Store,
    pub metrics: Metrics,
    pub dashboard: super::dashboard::Dashboard,
    pub forge: ForgeClient,
    /// The forge account serve speaks as; its own comments are never commands.
    pub bot_login: String,
    sink: EventSink,
    /// One per triage thread: a command wakes only the thread of its pull request.
    triage_wakes: Vec<Wake>,
    pub worker_wake: Wake,
    pub poll_wake: Wake,
    checkpoint_wake: Wake,
    /// One inbox per reporter thread.
    reports: Mutex<Vec<mpsc::Sender<(i64, Report)>>>,
    /// Run id → the pid of its `ccci test` child, while it runs.
    children: Mutex<HashMap<i64, i32>>,
    stopping: AtomicBool,
}

impl Service {
    pub fn emit(&self, event: ServeEvent) {
        (self.sink)(event);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Wakes the triage thread of pull request `pr` of `repo`: a command is waiting.
    pub fn wake_triage(&self, repo: &str, pr: u64) {
        self.triage_wakes[lane(repo, pr, self.triage_wakes.len())].notify();
    }

    /// What triage thread `n` waits on.
    pub fn triage_wake(&self, n: usize) -> &Wake {
        &self.triage_wakes[n]
    }

    /// Hands a report on `run` to a reporter thread; never blocks on the forge. Its pull
    /// request chooses the thread, so one pull request's reports keep their order.
    pub fn report(&self, run: &RunRow, report: Report) {
        let senders = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let lane = lane(&run.repo, run.pr, senders.len());
        // The reporters only stop with the service; a report sent then is moot.
        let _ = senders[lane].send((run.id, report));
    }

    /// Tells every reporter thread to say what it was asked to, then end.
    fn stop_reporting(&self) {
        let senders = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        for sender in senders.iter() {
            let _ = sender.send((0, Report::Stop));
        }
    }

    pub fn child_started(&self, run: i64, pid: i32) {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run, pid);
    }

    pub fn child_ended(&self, run: i64) {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run);
    }

    /// Asks running runs to stop: their `ccci test` children get SIGTERM and tear down.
    pub fn stop_runs(&self, runs: &[RunRow], why: &str) {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for run in runs {
            self.emit(ServeEvent::Stopping {
                run: run.id,
                why: why.to_string(),
            });
            if let Some(pid) = children.get(&run.id) {
                terminate(*pid);
            }
        }
    }

    /// A run closed without running (cancelled or superseded while it waited, a mistake in its
    /// command, a pull request that cannot be tested): its line in the log, and its report.
    pub fn closed(&self, run: &RunRow) {
        self.emit(ServeEvent::Finished {
            run: run.id,
            verdict: run
                .verdict
                .clone()
                .unwrap_or_else(|| super::store::verdicts::ERROR.to_string()),
            reason: run.reason.clone(),
        });
        self.report(run, Report::Final);
    }

    /// The dashboard page of run `id`, as the forge's users reach it.
    pub fn run_url(&self, id: i64) -> String {
        format!("{}/runs/{id}", self.config.public_url)
    }

    /// Where a run's `ccci test` child writes its stderr: the reason of last resort when it
    /// ends without a verdict.
    pub fn console_file(&self, run: &RunRow) -> PathBuf {
        self.config
            .state_dir
            .join("console")
            .join(format!("{}.log", run.run_dir_id()))
    }

    /// The run directory of a run.
    pub fn run_dir(&self, run: &RunRow) -> PathBuf {
        self.core.runs_dir.join(run.run_dir_id())
    }
}

fn terminate(pid: i32) {
    // The child may have just exited; then there is nothing to stop.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// How long a stop waits for the requests being answered.
const CONNECTION_GRACE: Duration = Duration::from_secs(3);

/// A started `ccci serve`: its address, and the handles to stop it.
pub struct Running {
    pub service: Arc<Service>,
    pub addr: SocketAddr,
    http: super::http::Server,
    /// The reporters, apart: they are stopped last, so the final reports of the runs a stop
    /// interrupts still reach the forge.
    reporters: Vec<JoinHandle<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, stops running runs (their children tear down), and waits for every
    /// thread. Runs stopped this way end `interrupted` and are reported before serve exits:
    /// the reporters are told to stop only once the workers have asked for those reports.
    pub fn stop(self) {
        self.service.stopping.store(true, Ordering::SeqCst);
        self.http.stop();
        let running: Vec<RunRow> = self
            .service
            .store
            .in_state(super::store::RunState::Running)
            .unwrap_or_default();
        self.service.stop_runs(&running, "ccci serve is stopping");
        for wake in &self.service.triage_wakes {
            wake.notify();
        }
        self.service.worker_wake.notify();
        self.service.poll_wake.notify();
        self.service.checkpoint_wake.notify();
        for thread in self.threads {
            let _ = thread.join();
        }
        self.service.stop_reporting();
        for reporter in self.reporters {
            let _ = reporter.join();
        }
        if !self.http.wait_for_connections(CONNECTION_GRACE) {
            self.service.emit(ServeEvent::Trouble {
                what: format!(
                    "stopped with connections still open after {}s; they are closed unanswered",
                    CONNECTION_GRACE.as_secs()
                ),
            });
        }
    }
}

/// Starts `ccci serve`: opens the store, recovers from the last stop, and starts every thread.
pub fn start(
    config: ServeConfig,
    core: Config,
    launcher: Launcher,
    sink: EventSink,
) -> Result<Running> {
    let store = Store::open(&config.database())?;
    let forge = ForgeClient::new(
        &config.forge_url,
        config.token.expose().to_string(),
        config.forge_timeout,
    );
    let bot_login = forge.whoami().map_err(|e| {
        Error::Infra(format!(
            "cannot ask the forge at {} who its token belongs to: {e}; check serve.forge",
            config.forge_url
        ))
    })?;
    std::fs::create_dir_all(&core.runs_dir)
        .map_err(|e| Error::io("create the runs dir", &core.runs_dir, e))?;
    let listener = super::http::listen(config.listen).map_err(|e| {
        Error::Infra(format!(
            "cannot listen on {}: {e}; choose another serve.listen",
            config.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Infra(format!("the HTTP server has no address: {e}")))?;
    let mut config = config;
    // Without a public URL the dashboard is reached where serve listens; with port 0 that is
    // only known now, and a link to port 0 (in a commit status) would lead nowhere.
    if config.listen.port() == 0 && config.public_url == format!("http://{}", config.listen) {
        config.public_url = format!("http://{addr}");
    }
    let (reports, inboxes): (Vec<_>, Vec<_>) = (0..super::report::REPORTERS)
        .map(|_| mpsc::channel())
        .unzip();
    let service = Arc::new(Service {
        config,
        core,
        launcher,
        store,
        metrics: Metrics::default(),
        dashboard: super::dashboard::Dashboard::new(),
        forge,
        bot_login,
        sink,
        triage_wakes: (0..super::triage::TRIAGERS)
            .map(|_| Wake::default())
            .collect(),
        worker_wake: Wake::default(),
        poll_wake: Wake::default(),
        checkpoint_wake: Wake::default(),
        reports: Mutex::new(reports),
        children: Mutex::new(HashMap::new()),
        stopping: AtomicBool::new(false),
    });
    let reporters = inboxes
        .into_iter()
        .enumerate()
        .map(|(n, inbox)| super::report::spawn(service.clone(), n, inbox))
        .collect::<Result<Vec<_>>>()?;
    let mut threads = Vec::new();
    super::triage::recover(&service)?;
    for lane in 0..super::triage::TRIAGERS {
        threads.push(super::triage::spawn(service.clone(), lane)?);
    }
    for n in 0..service.config.concurrency {
        threads.push(super::worker::spawn(service.clone(), n)?);
    }
    threads.push(super::poll::spawn(service.clone())?);
    threads.push(checkpoints(service.clone())?);
    let http = super::http::spawn(service.clone(), listener)?;
    service.emit(ServeEvent::Listening {
        addr,
        public_url: service.config.public_url.clone(),
    });
    Ok(Running {
        service,
        addr,
        http,
        reporters,
        threads,
    })
}

/// How often the store's write-ahead log is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the store every [`CHECKPOINT_EVERY`], and once more at stop.
fn checkpoints(service: Arc<Service>) -> Result<JoinHandle<()>> {
    let checkpointer = service.store.checkpointer()?;
    thread("checkpoint".into(), move || {
        let mut wake = service.checkpoint_wake.waiter();
        loop {
            wake.wait(CHECKPOINT_EVERY);
            if let Err(e) = checkpointer.run() {
                service.emit(ServeEvent::Trouble {
                    what: e.to_string(),
                });
            }
            if service.stopping() {
                return;
            }
        }
    })
}

/// Which of `lanes` threads handles pull request `pr` of `repo`: always the same one, so
/// the work on one pull request keeps its order while pull requests proceed side by side.
pub fn lane(repo: &str, pr: u64, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    repo.to_ascii_lowercase().hash(&mut hasher);
    pr.hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

/// The first of serve's threads to end in a panic, and its last words. serve is not whole
/// without it (a triage thread's pull requests would wait for ever), so it stops and says so:
/// whatever restarts it (systemd) gets a serve whose restart recovery picks up where it was.
static FAILURE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Which of serve's threads failed, and how; see [`FAILURE`].
pub fn failure() -> Option<&'static str> {
    FAILURE.get().map(String::as_str)
}

/// What a panic said.
pub fn panic_words(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Spawns a named thread; a name is how a stuck thread is found in a stack dump. A panic
/// in it is kept as serve's [`failure`].
pub fn thread(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    let named = name.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let words = panic_words(panic.as_ref());
                let _ = FAILURE.set(format!("its {named} thread failed: {words}"));
            }
        })
        .map_err(|e| Error::Infra(format!("cannot start the {name} thread: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_thread_that_panics_is_kept_as_the_failure() {
        thread("triage-9".into(), || panic!("out of threads"))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            failure(),
            Some("its triage-9 thread failed: out of threads")
        );
    }

    #[test]
    fn one_call_wakes_every_waiter_and_none_is_lost_while_busy() {
        let wake = Wake::default();
        let (mut a, mut b) = (wake.waiter(), wake.waiter());
        let long = Duration::from_secs(20);
        std::thread::scope(|s| {
            let a = s.spawn(move || {
                let started = Instant::now();
                a.wait(long);
                started.elapsed()
            });
            let b = s.spawn(move || {
                let started = Instant::now();
                b.wait(long);
                started.elapsed()
            });
            wake.notify();
            for waited in [a.join().unwrap(), b.join().unwrap()] {
                assert!(waited < long / 2, "a waiter slept through the call");
            }
        });
        // A call made before a wait (the waiter was busy) is answered at once, only once.
        let mut c = wake.waiter();
        wake.notify();
        let started = Instant::now();
        c.wait(long);
        assert!(
            started.elapsed() < long / 2,
            "the call made while busy was lost"
        );
        let pause = Duration::from_millis(30);
        let started = Instant::now();
        c.wait(pause);
        assert!(
            started.elapsed() >= pause,
            "one call woke the same waiter twice"
        );
    }

    #[test]
    fn every_lane_is_used_and_a_pull_request_keeps_its_lane() {
        let lanes: std::collections::HashSet<usize> =
            (1..=64).map(|pr| lane("coop-cloud/demo", pr, 4)).collect();
        assert_eq!(lanes.len(), 4, "some thread never gets work");
        assert!(lanes.iter().all(|l| *l < 4));
        assert_eq!(lane("coop-cloud/demo", 7, 4), lane("Coop-Cloud/Demo", 7, 4));
        assert_eq!(lane("coop-cloud/demo", 7, 1), 0);
    }
}
