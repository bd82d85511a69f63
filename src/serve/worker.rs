//! Workers: long-lived threads that each take the next queued run and carry it out as a child
//! `ccci test` — the very run the CLI makes, with its own run directory, lock, deadline and
//! teardown. The child is spawned from this long-lived thread on purpose: its parent-death
//! signal follows the thread that spawned it, and a pool thread could exit under it.
//!
//! The verdict is the child's own (its run.json); a run stopped on purpose (superseded,
//! cancelled) ends with the reason it was stopped for.

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::report::Report;
use super::service::{ServeEvent, Service, thread};
use super::store::{RunRow, verdicts};
use crate::error::Result;
use crate::run::record::RunRecord;

pub fn spawn(service: Arc<Service>, n: usize) -> Result<JoinHandle<()>> {
    thread(format!("worker-{n}"), move || {
        let mut wake = service.worker_wake.waiter();
        while !service.stopping() {
            match service.store.claim_next(service.config.concurrency) {
                Ok(Some(run)) => {
                    execute(&service, &run);
                    // A slot is free: another worker may take the next run.
                    service.worker_wake.notify();
                }
                Ok(None) => wake.wait(Duration::from_secs(5)),
                Err(e) => {
                    service.emit(ServeEvent::Trouble {
                        what: format!("cannot take the next run: {e}"),
                    });
                    wake.wait(Duration::from_secs(5));
                }
            }
        }
    })
}

/// The `ccci test` command line of a run.
pub fn command(service: &Service, run: &RunRow) -> Command {
    let mut cmd = Command::new(&service.launcher.exe);
    if let Some(file) = &service.launcher.config_file {
        cmd.arg("--config").arg(file);
    }
    cmd.arg("test")
        .arg(&run.recipe)
        .arg("--source")
        .arg(format!("{}/{}.git", service.config.forge_url, run.repo))
        .arg("--ref")
        .arg(run.head_sha.as_deref().unwrap_or("HEAD"))
        .arg("--run-id")
        .arg(run.run_dir_id())
        .arg("--driver")
        .arg(&service.config.driver);
    for stage in &run.stages {
        cmd.arg("--stage").arg(stage.as_str());
    }
    if let Some(deadline) = service.config.run_deadline {
        cmd.arg("--deadline")
            .arg(format!("{}s", deadline.as_secs().max(1)));
    }
    // A run executes the recipe's hooks and tests: it must not be able to read serve's secrets
    // (systemd credentials, or the variables the config names).
    cmd.env_remove("CREDENTIALS_DIRECTORY");
    for name in &service.config.secret_envs {
        cmd.env_remove(name);
    }
    cmd.env("CCCI_PARENT_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

fn execute(service: &Service, run: &RunRow) {
    let (verdict, reason) = match spawn_and_wait(service, run) {
        Ok(status) => judge(&service.run_dir(run), status, &service.console_file(run)),
        Err(e) => (verdicts::ERROR.to_string(), Some(e)),
    };
    match service.store.finish(run.id, &verdict, reason.as_deref()) {
        Ok(done) => service.emit(ServeEvent::Finished {
            run: done.id,
            verdict: done.verdict.unwrap_or(verdict),
            reason: done.reason,
        }),
        Err(e) => service.emit(ServeEvent::Trouble {
            what: format!("run {}: cannot record its verdict: {e}", run.id),
        }),
    }
    service.report(run, Report::Final);
}

fn spawn_and_wait(service: &Service, run: &RunRow) -> std::result::Result<ExitStatus, String> {
    let console = service.console_file(run);
    if let Some(dir) = console.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let stderr =
        File::create(&console).map_err(|e| format!("cannot create {}: {e}", console.display()))?;
    let mut child = command(service, run)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start `ccci test`: {e}"))?;
    let pid = child.id() as i32;
    service.child_started(run.id, pid);
    if let Err(e) = service.store.set_pid(run.id, pid) {
        service.emit(ServeEvent::Trouble {
            what: format!("run {}: {e}", run.id),
        });
    }
    service.emit(ServeEvent::Started {
        run: run.id,
        pid,
        run_dir: run.run_dir_id(),
    });
    // A stop asked for between the claim and the spawn must not be lost.
    if let Ok(Some(row)) = service.store.get(run.id)
        && row.cancel_verdict.is_some()
    {
        service.stop_runs(&[row], "stopped before it started");
    }
    let status = child.wait();
    service.child_ended(run.id);
    status.map_err(|e| format!("cannot wait for `ccci test`: {e}"))
}

/// The verdict and one-line reason of a finished child: its run.json when it wrote one,
/// else what its exit and last words say.
pub fn judge(run_dir: &Path, status: ExitStatus, console: &Path) -> (String, Option<String>) {
    if let Ok(record) = RunRecord::read(&run_dir.join("run.json"))
        && let Some(verdict) = record.verdict
    {
        return (verdict.as_str().to_string(), record.reason);
    }
    let last_words = std::fs::read_to_string(console)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .map(|l| l.chars().take(300).collect::<String>());
    // Stopped by a signal before it wrote a verdict (while fetching, say): interrupted, as a
    // run stopped later is, not an error of the run.
    let signal = status
        .code()
        .filter(|code| *code > crate::exit_code::SIGNAL_BASE)
        .map(|code| code - crate::exit_code::SIGNAL_BASE)
        .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status));
    if let Some(signal) = signal {
        return (
            "interrupted".to_string(),
            Some(format!(
                "interrupted by {} before the run reached a verdict",
                crate::error::signal_name(signal)
            )),
        );
    }
    let how = match status.code() {
        Some(code) => format!("`ccci test` exited {code} without a verdict"),
        None => "`ccci test` was killed without a verdict".to_string(),
    };
    let reason = match last_words {
        Some(words) => format!("{how}: {words}"),
        None => how,
    };
    (verdicts::ERROR.to_string(), Some(reason))
}
