//! The lock-holder helper of the lock and janitor tests: this very test binary, re-executed with
//! `CCCI_IT_HELPER=hold`, takes an app-domain lock through the real library call
//! ([`AppLock::acquire`]) and holds it, as a live run would (L1–L5, J1–J6). `main` turns into
//! the helper before the harness starts (see [`from_env`]).
//!
//! Steps of the helper, each one a file in its state directory: `<name>.waiting` before it asks
//! for the lock, optionally starts a child that outlives it (L4) and records `<name>.child`,
//! `<name>.ready` once it holds the lock, then it holds until `<name>.release` appears. Every wait
//! is bounded, so a helper outlives a failed test by seconds at most.
//!
//! [`Scratch`] is a test's own directory for the helpers: `state/` and the lock dir `locks/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccci::config::{Config, process_env};
use ccci::exit_code;
use ccci::sys::cancel::Cancel;
use ccci::sys::lock::{AppLock, Holder};

/// The environment variable that turns this binary into a helper.
const HELPER_ENV: &str = "CCCI_IT_HELPER";
/// The helper's state directory: where it writes pids and readiness.
const STATE_ENV: &str = "CCCI_IT_STATE";
/// The longest a helper lives; a test that needs longer has failed anyway.
const LIFETIME: Duration = Duration::from_secs(90);

/// When this process was started as a helper, acts it out and returns its exit code.
pub fn from_env() -> Option<i32> {
    let mode = std::env::var(HELPER_ENV).ok()?;
    Some(match mode.as_str() {
        "hold" => hold(),
        other => {
            eprintln!("unknown helper mode {other}");
            99
        }
    })
}

/// A per-test directory: `state/` for the helpers' files, `locks/` for the lock dir.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub locks: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        super::proc::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        let locks = dir.path().join("locks");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&locks).unwrap();
        Scratch { dir, state, locks }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// A helper that holds `domain`'s lock as run `run_id`; its files are `<name>.*`.
    pub fn holder(&self, name: &str, domain: &str, run_id: &str) -> Command {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = Command::new(exe);
        cmd.env(HELPER_ENV, "hold")
            .env(STATE_ENV, &self.state)
            .env("CCCI_APP_LOCK_DIR", &self.locks)
            .env("CCCI_IT_NAME", name)
            .env("CCCI_IT_DOMAIN", domain)
            .env("CCCI_IT_RUN_ID", run_id)
            .stdin(Stdio::null())
            .stdout(log_file(&self.state, name))
            .stderr(log_file(&self.state, name));
        cmd
    }
}

fn log_file(state: &Path, name: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn state(what: &str) -> PathBuf {
    let dir = PathBuf::from(var(STATE_ENV).expect("state dir"));
    let name = var("CCCI_IT_NAME").unwrap_or_else(|| "helper".into());
    dir.join(format!("{name}.{what}"))
}

/// Written atomically, so a test polling for the file never reads half of it.
fn put(what: &str, text: &str) {
    ccci::run::record::write_atomic(&state(what), text.as_bytes()).expect("write state file");
}

fn wait_for(path: &Path) -> bool {
    let until = Instant::now() + LIFETIME;
    while !path.exists() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn hold() -> i32 {
    // The lock dir comes from CCCI_APP_LOCK_DIR, exactly as a run resolves it.
    let config = match Config::from_yaml("", &process_env()) {
        Ok((config, _)) => config,
        Err(e) => {
            eprintln!("hold: {e}");
            return exit_code::for_error(&e);
        }
    };
    let domain = var("CCCI_IT_DOMAIN").expect("domain");
    let mut holder = Holder::this_process(var("CCCI_IT_RUN_ID").unwrap_or_else(|| "helper".into()));
    if let Some(started_at) = var("CCCI_IT_STARTED_AT") {
        holder.started_at = started_at;
    }
    put("waiting", &std::process::id().to_string());
    let lock = match AppLock::acquire(&config.lock_dir, &domain, &holder, &Cancel::new()) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("hold: {e}");
            return exit_code::for_error(&e);
        }
    };
    if var("CCCI_IT_CHILD").is_some() {
        // A child that may outlive us, like an abra or docker call still running when the
        // holder is killed (L4). Its own group, so nothing aimed at us reaches it.
        let mut cmd = Command::new("sleep");
        cmd.arg("600").stdin(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // Never waited for on purpose: it must outlive this process; the test reaps it.
        #[expect(clippy::zombie_processes, reason = "the child must outlive its holder")]
        let child = cmd.spawn().expect("spawn child");
        put("child", &child.id().to_string());
    }
    put("ready", &std::process::id().to_string());
    wait_for(&state("release"));
    drop(lock);
    0
}
