//! The running service: the state every part of `ccci serve` shares (configuration, store,
//! forge client, metrics, the children of running runs) and its long-lived threads — HTTP
//! acceptors, triage, workers, the reporter, the poller — started and stopped together.
//!
//! The library never prints: what happens is reported as [`ServeEvent`]s to the sink the
//! binary gives (it writes them to stderr, which systemd keeps in the journal).

use std::collections::HashMap;
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

/// A wake-up call between threads: `notify` sets it, `wait` returns when it is set (clearing
/// it) or after `timeout`.
#[derive(Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    pub fn wait(&self, timeout: Duration) {
        let guard = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |set| !*set)
            .unwrap_or_else(|p| p.into_inner());
        *guard = false;
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
    pub triage_wake: Wake,
    pub worker_wake: Wake,
    pub poll_wake: Wake,
    reports: Mutex<mpsc::Sender<Report>>,
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

    /// Hands a report to the reporter thread; never blocks on the forge.
    pub fn report(&self, report: Report) {
        let sender = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        // The reporter only stops with the service; a report sent then is moot.
        let _ = sender.send(report);
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
        self.report(Report::Final(run.id));
    }

    /// The dashboard page of run `id`, as the forge's users reach it.
    pub fn run_url(&self, id: i64) -> String {
        format!("{}/runs/{id}", self.config.public_url)
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

/// A started `ccci serve`: its address, and the handles to stop it.
pub struct Running {
    pub service: Arc<Service>,
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, stops running runs (their children tear down), and waits for every
    /// thread. Runs stopped this way end `interrupted` and are reported.
    pub fn stop(self) {
        self.service.stopping.store(true, Ordering::SeqCst);
        // Each call wakes one acceptor blocked in `recv`.
        for _ in 0..super::http::ACCEPTORS {
            self.server.unblock();
        }
        let running: Vec<RunRow> = self
            .service
            .store
            .in_state(super::store::RunState::Running)
            .unwrap_or_default();
        self.service.stop_runs(&running, "ccci serve is stopping");
        self.service.triage_wake.notify();
        self.service.worker_wake.notify();
        self.service.poll_wake.notify();
        self.service.report(Report::Stop);
        for thread in self.threads {
            let _ = thread.join();
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
    let server = tiny_http::Server::http(config.listen).map_err(|e| {
        Error::Infra(format!(
            "cannot listen on {}: {e}; choose another serve.listen",
            config.listen
        ))
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Infra("the HTTP server has no IP address".into()))?;
    let server = Arc::new(server);
    let (reports, inbox) = mpsc::channel();
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
        triage_wake: Wake::default(),
        worker_wake: Wake::default(),
        poll_wake: Wake::default(),
        reports: Mutex::new(reports),
        children: Mutex::new(HashMap::new()),
        stopping: AtomicBool::new(false),
    });
    let mut threads = Vec::new();
    threads.push(super::report::spawn(service.clone(), inbox)?);
    super::triage::recover(&service)?;
    threads.push(super::triage::spawn(service.clone())?);
    for n in 0..service.config.concurrency {
        threads.push(super::worker::spawn(service.clone(), n)?);
    }
    threads.push(super::poll::spawn(service.clone())?);
    for n in 0..super::http::ACCEPTORS {
        threads.push(super::http::spawn(service.clone(), server.clone(), n)?);
    }
    service.emit(ServeEvent::Listening {
        addr,
        public_url: service.config.public_url.clone(),
    });
    Ok(Running {
        service,
        addr,
        server,
        threads,
    })
}

/// Spawns a named thread; a name is how a stuck thread is found in a stack dump.
pub fn thread(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Error::Infra(format!("cannot start the {name} thread: {e}")))
}
