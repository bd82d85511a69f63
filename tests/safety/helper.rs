//! The helper processes of the safety tests. `helper_process` is an ordinary test that does
//! nothing, unless `CCCI_SAFETY_HELPER` names a mode: then this process is a helper that acts
//! out a lock holder, a guarded run, or a run's parent, through the real library calls, and
//! ends with `std::process::exit` so the test harness never reports on it.
//!
//! Modes:
//! - `hold`: take the domain's lock (blocking), optionally start a child that outlives us,
//!   say `ready`, hold until `<name>.release` appears.
//! - `run`: a guarded run: signal handlers, optional parent-death guard (after waiting for a
//!   go-ahead file, for G2), optional deadline, lock, optional grandchild through the Runner;
//!   on interruption: teardown under a budget (a marker file written by a child process while
//!   the lock is still held), release, exit 128 + signal.
//! - `parent`: start a `run` helper as its child, record its pid, then wait to be killed.
//! - `parent-exit`: the same, but exit at once: the child is orphaned before its guard.
//!
//! Every wait in a helper is bounded, so a helper outlives a failed test by seconds at most.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccci::config::{Config, process_env};
use ccci::exit_code;
use ccci::sys::cancel::Cancel;
use ccci::sys::lock::{AppLock, Holder};
use ccci::sys::process::{Cmd, Runner};
use ccci::sys::signal;

use super::support;

/// The longest a helper lives; a test that needs longer has failed anyway.
const LIFETIME: Duration = Duration::from_secs(90);

#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(support::HELPER_ENV) else {
        return;
    };
    let code = match mode.as_str() {
        "hold" => hold(),
        "run" => run(),
        "parent" => parent(false),
        "parent-exit" => parent(true),
        other => {
            eprintln!("unknown helper mode {other}");
            99
        }
    };
    std::process::exit(code);
}

fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn state(what: &str) -> PathBuf {
    let dir = PathBuf::from(var(support::STATE_ENV).expect("state dir"));
    let name = var("CCCI_SAFETY_NAME").unwrap_or_else(|| "helper".into());
    dir.join(format!("{name}.{what}"))
}

/// Written atomically, so a test polling for the file never reads half of it.
fn put(what: &str, text: &str) {
    ccci::run::record::write_atomic(&state(what), text.as_bytes()).expect("write state file");
}

fn config() -> Config {
    // The lock dir comes from CCCI_APP_LOCK_DIR, exactly as a run resolves it.
    Config::from_yaml("", &process_env()).expect("config").0
}

fn holder() -> Holder {
    let mut holder =
        Holder::this_process(var("CCCI_SAFETY_RUN_ID").unwrap_or_else(|| "helper".into()));
    if let Some(started_at) = var("CCCI_SAFETY_STARTED_AT") {
        holder.started_at = started_at;
    }
    holder
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
    let config = config();
    let domain = var("CCCI_SAFETY_DOMAIN").expect("domain");
    put("waiting", &std::process::id().to_string());
    let lock = match AppLock::acquire(&config.lock_dir, &domain, &holder(), &Cancel::new()) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("hold: {e}");
            return exit_code::for_error(&e);
        }
    };
    if var("CCCI_SAFETY_CHILD").is_some() {
        // A child that may outlive us, like an abra or docker call still running when the
        // holder is killed (L4). Its own group, so nothing aimed at us reaches it.
        let mut cmd = Command::new("sleep");
        cmd.arg("600").stdin(Stdio::null());
        support::own_group(&mut cmd);
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

fn run() -> i32 {
    let cancel = Cancel::new();
    if let Err(e) = signal::install(&cancel) {
        eprintln!("run: {e}");
        return exit_code::for_error(&e);
    }
    if let Some(parent) = var("CCCI_SAFETY_PARENT") {
        // G2: the test says when our parent is dead, so the gap is there for sure.
        if let Some(go) = var("CCCI_SAFETY_GO_FILE") {
            wait_for(Path::new(&go));
        }
        let parent: i32 = parent.parse().expect("parent pid");
        if let Err(e) = signal::guard_parent_death(parent) {
            put("refused", &e.to_string());
            return exit_code::for_error(&e);
        }
    }
    if let Some(ms) = var("CCCI_SAFETY_DEADLINE_MS") {
        signal::set_deadline(Duration::from_millis(ms.parse().expect("deadline")));
    }
    let config = config();
    let domain = var("CCCI_SAFETY_DOMAIN").expect("domain");
    let lock = match AppLock::acquire(&config.lock_dir, &domain, &holder(), &cancel) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("run: {e}");
            return exit_code::for_error(&e);
        }
    };
    let grace = Duration::from_millis(
        var("CCCI_SAFETY_GRACE_MS")
            .map(|ms| ms.parse().expect("grace"))
            .unwrap_or(300),
    );
    let runner = Runner::new(cancel.clone()).with_grace(grace);
    put("ready", &std::process::id().to_string());
    if var("CCCI_SAFETY_GRANDCHILD").is_some() {
        // A child that ignores SIGTERM (it only logs it) and keeps starting sleeps in its
        // group: only the SIGKILL after the grace ends them (G5). Every pid is recorded.
        let log = state("grandchild-log");
        let pids = state("grandchild-pids");
        let script = format!(
            "trap 'echo TERM >> {log}' TERM; echo $$ >> {pids}; \
             while :; do sleep 600 & echo $! >> {pids}; wait $!; done",
            log = log.display(),
            pids = pids.display()
        );
        let result = runner.output(&Cmd::new("sh").args(["-c", &script]));
        put("grandchild-result", &format!("{result:?}"));
    } else {
        let until = Instant::now() + LIFETIME;
        while cancel.signal().is_none() {
            if Instant::now() >= until {
                return 99;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let Some(sig) = cancel.signal() else {
        return 98;
    };
    // Teardown: the deadline no longer applies, the cancelled runner would refuse to start
    // anything, so a budget runner does the work while the lock is still held.
    signal::clear_deadline();
    let budget = runner.with_budget(Duration::from_secs(10));
    let held_by_us = AppLock::try_acquire_unrecorded(&config.lock_dir, &domain, false)
        .map(|probe| probe.is_none())
        .unwrap_or(false);
    let marker = state("teardown");
    let script = format!(
        "printf 'signal=%s\\nlock-held=%s\\n' {sig} {held} > {m}.tmp && mv {m}.tmp {m}",
        held = if held_by_us { "yes" } else { "no" },
        m = marker.display()
    );
    if let Err(e) = budget.run(&Cmd::new("sh").args(["-c", &script])) {
        eprintln!("run: teardown: {e}");
    }
    drop(lock);
    exit_code::for_signal(sig)
}

fn parent(exit_at_once: bool) -> i32 {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(support::helper_args())
        .env(support::HELPER_ENV, "run")
        .env("CCCI_SAFETY_PARENT", std::process::id().to_string())
        .env("CCCI_SAFETY_NAME", "child")
        .stdin(Stdio::null());
    if let Ok(log) = std::fs::File::create(state("child-log")) {
        cmd.stdout(
            log.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
        cmd.stderr(Stdio::from(log));
    }
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("parent: {e}");
            return 97;
        }
    };
    put("child-pid", &child.id().to_string());
    if exit_at_once {
        // The child is left behind, unguarded yet: G2's gap.
        std::mem::forget(child);
        return 0;
    }
    // Stay alive (this very thread: the parent-death signal follows the thread that forked
    // the child) until the test kills us.
    std::thread::sleep(LIFETIME);
    0
}
