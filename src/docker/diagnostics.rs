//! Diagnostics for a stack that did not become ready: per service, its tasks, the tail of its
//! logs and its containers' last healthcheck outputs, written to `<dir>/<service>.txt`, plus a
//! one-line top reason naming the service and the swarm's own words.
//!
//! Collecting never fails as a whole: a piece that cannot be had (logs that hang, a directory
//! that cannot be written) is noted in place of the piece.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::inspect::{self, Containers, ServiceState, Snapshot, one_line};
use super::{Swarm, cli};

/// How many log lines each service file keeps.
const LOG_LINES: usize = 50;
/// `docker service logs` can hang (a task on a node that went away); never wait long for it.
const LOGS_TIMEOUT: Duration = Duration::from_secs(20);
/// Containers whose logs are read when the service's log stream has nothing: the newest few.
const CONTAINERS_LOGGED: usize = 3;

/// What [`Swarm::diagnose`] found.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub services: Vec<ServiceDiagnosis>,
    /// One line, e.g. `app: task: non-zero exit (137): dockerexec: unhealthy container (last
    /// healthcheck: exit 1: nope)`. `None` when no service shows a problem.
    pub top_reason: Option<String>,
    /// What could not be collected for the stack as a whole.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ServiceDiagnosis {
    /// The short service name (without `<stack>_`).
    pub service: String,
    /// Where its diagnostics were written, if they could be.
    pub file: Option<PathBuf>,
    /// Why the service is not ready, if it is not.
    pub reason: Option<String>,
    /// True when the reason is the swarm's own failure (a failed or rejected task, a paused
    /// update, an unhealthy container) rather than "still waiting".
    pub failed: bool,
    /// One line per task, newest first.
    pub tasks: Vec<String>,
    /// The last log lines, oldest first.
    pub logs: Vec<String>,
    /// The last healthcheck runs of its containers.
    pub healthchecks: Vec<String>,
    /// What could not be collected.
    pub notes: Vec<String>,
}

impl Swarm {
    pub(super) fn collect_diagnosis(&self, stack: &str, dir: &Path) -> Diagnosis {
        let mut diagnosis = Diagnosis::default();
        let snap = match inspect::snapshot(self.runner(), stack, Containers::All) {
            Ok(snap) => snap,
            Err(e) => {
                diagnosis
                    .notes
                    .push(format!("could not inspect stack {stack}: {e}"));
                Snapshot::default()
            }
        };
        if snap.services.is_empty() && diagnosis.notes.is_empty() {
            diagnosis
                .notes
                .push(format!("stack {stack} has no services"));
        }
        let dir_ok = match std::fs::create_dir_all(dir) {
            Ok(()) => true,
            Err(e) => {
                diagnosis
                    .notes
                    .push(format!("could not create {}: {e}", dir.display()));
                false
            }
        };
        for service in &snap.services {
            let mut found = describe(&snap, service);
            match self.service_logs(&service.id) {
                Ok(logs) => found.logs = logs,
                Err(e) => found.notes.push(format!("no service logs: {e}")),
            }
            if found.logs.is_empty() {
                // The swarm's log stream leaves out tasks that never reached `running` (a
                // container stuck unhealthy in `starting`): read their containers instead.
                let containers: Vec<(String, String)> = snap
                    .tasks_of(service)
                    .iter()
                    .filter_map(|t| t.container_id.clone().map(|c| (t.id.clone(), c)))
                    .take(CONTAINERS_LOGGED)
                    .collect();
                for (task, container) in containers {
                    match self.container_logs(&container) {
                        Ok(lines) => found.logs.extend(
                            lines
                                .into_iter()
                                .map(|l| format!("{} {l}", short_id(&task))),
                        ),
                        Err(e) => found
                            .notes
                            .push(format!("no logs of task {}: {e}", short_id(&task))),
                    }
                }
                found.logs.sort_by_cached_key(|l| log_time(l, 1));
                let skip = found.logs.len().saturating_sub(LOG_LINES);
                found.logs = found.logs.split_off(skip);
            }
            if dir_ok {
                let file = dir.join(format!("{}.txt", file_name(&service.short_name)));
                match std::fs::write(&file, render(service, &found)) {
                    Ok(()) => found.file = Some(file),
                    Err(e) => found
                        .notes
                        .push(format!("could not write {}: {e}", file.display())),
                }
            }
            diagnosis.services.push(found);
        }
        // A service the swarm failed explains more than one that is merely still starting.
        diagnosis.top_reason = diagnosis
            .services
            .iter()
            .find(|s| s.failed)
            .or_else(|| diagnosis.services.iter().find(|s| s.reason.is_some()))
            .and_then(|s| s.reason.as_ref().map(|r| format!("{}: {r}", s.service)));
        diagnosis
    }

    /// The last [`LOG_LINES`] lines of a service's logs, all tasks merged by time.
    fn service_logs(&self, service_id: &str) -> crate::Result<Vec<String>> {
        let tail = LOG_LINES.to_string();
        let cmd = cli::cmd([
            "service",
            "logs",
            "--no-trunc",
            "--timestamps",
            "--tail",
            &tail,
            service_id,
        ])?
        .timeout(LOGS_TIMEOUT);
        timestamped_lines(self.runner(), &cmd, "read the service's logs")
    }

    /// The last [`LOG_LINES`] lines of one container's logs.
    fn container_logs(&self, container: &str) -> crate::Result<Vec<String>> {
        let tail = LOG_LINES.to_string();
        let cmd =
            cli::cmd(["logs", "--timestamps", "--tail", &tail, container])?.timeout(LOGS_TIMEOUT);
        timestamped_lines(self.runner(), &cmd, "read the container's logs")
    }
}

/// Runs a `docker … logs --timestamps` and returns its last [`LOG_LINES`] lines in time order.
fn timestamped_lines(
    runner: &crate::sys::process::Runner,
    cmd: &crate::sys::process::Cmd,
    what: &str,
) -> crate::Result<Vec<String>> {
    let out = cli::output(runner, cmd)?;
    if !out.success() {
        return Err(cli::failed(what, &out));
    }
    // The output is on stdout and stderr alike; the engine merges tasks in no particular
    // order, and every line starts with its RFC 3339 timestamp.
    let mut lines: Vec<String> = out
        .stdout_str()
        .lines()
        .chain(out.stderr_str().lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines.sort_by_cached_key(|l| log_time(l, 0));
    let skip = lines.len().saturating_sub(LOG_LINES);
    Ok(lines.split_off(skip))
}

/// Everything the snapshot says about `service`: tasks, healthchecks and why it is not ready.
fn describe(snap: &Snapshot, service: &ServiceState) -> ServiceDiagnosis {
    let tasks = snap.tasks_of(service);
    let task_lines = tasks
        .iter()
        .map(|t| {
            let mut line = format!(
                "{} slot {} created {} desired {} state {}",
                short_id(&t.id),
                t.slot.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                t.created_at,
                t.desired_state,
                t.state,
            );
            if let Some(code) = t.exit_code {
                let _ = write!(line, " exit {code}");
            }
            if !t.error.is_empty() {
                let _ = write!(line, " error: {}", t.error);
            } else if !t.message.is_empty() {
                let _ = write!(line, " ({})", t.message);
            }
            line
        })
        .collect();
    let mut healthchecks = Vec::new();
    let mut last_probe = None;
    for task in &tasks {
        let Some(health) = snap.container_of(task).and_then(|c| c.health.as_ref()) else {
            continue;
        };
        if last_probe.is_none() {
            last_probe = health.last_probe();
        }
        for probe in &health.log {
            healthchecks.push(format!(
                "{} {} {}",
                short_id(&task.id),
                probe.start,
                probe.summary()
            ));
        }
    }
    let with_probe = |text: String| match &last_probe {
        Some(p) if text.contains("unhealthy") => format!("{text} (last healthcheck: {p})"),
        _ => text,
    };
    let newest_failure = tasks.iter().find(|t| t.is_failure());
    let paused = service
        .update_state
        .as_deref()
        .filter(|s| matches!(*s, "paused" | "rollback_paused"));
    let unhealthy = tasks
        .iter()
        .filter(|t| t.is_current())
        .filter_map(|t| snap.container_of(t))
        .any(|c| c.health.as_ref().is_some_and(|h| h.status == "unhealthy"));
    let ready = super::readiness::assess(
        &Snapshot {
            services: vec![service.clone()],
            tasks: tasks.iter().map(|t| (*t).clone()).collect(),
            containers: snap.containers.clone(),
        },
        std::time::SystemTime::now(),
    ) == super::readiness::Assessment::Ready { total: 1 };
    let (reason, failed) = if let Some(state) = paused {
        let message = service.update_message.clone().unwrap_or_default();
        (
            Some(format!("update {}: {message}", state.replace('_', " "))),
            true,
        )
    } else if ready {
        (None, false)
    } else if let Some(task) = newest_failure {
        let error = if task.error.is_empty() {
            format!("task {}", task.state)
        } else {
            task.error.clone()
        };
        (Some(with_probe(error)), true)
    } else if unhealthy {
        (Some(with_probe("unhealthy container".to_string())), true)
    } else {
        let state = tasks
            .iter()
            .find(|t| t.is_current())
            .map(|t| format!("task {}", t.state))
            .unwrap_or_else(|| "no task".to_string());
        (
            Some(format!(
                "{}/{} running ({state})",
                service.running, service.desired
            )),
            false,
        )
    };
    ServiceDiagnosis {
        service: service.short_name.clone(),
        reason,
        failed,
        tasks: task_lines,
        healthchecks,
        ..ServiceDiagnosis::default()
    }
}

/// The text of `<service>.txt`.
fn render(service: &ServiceState, found: &ServiceDiagnosis) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "service {} ({}) image {} replicas {}/{} update {}",
        found.service,
        service.name,
        service.image,
        service.running,
        service.desired,
        service.update_state.as_deref().unwrap_or("none"),
    );
    if let Some(message) = &service.update_message {
        let _ = writeln!(text, "update message: {}", one_line(message));
    }
    let _ = writeln!(
        text,
        "reason: {}",
        found
            .reason
            .as_deref()
            .unwrap_or("none: the service looks ready")
    );
    let section = |text: &mut String, title: &str, lines: &[String]| {
        let _ = writeln!(text, "\n{title}:");
        if lines.is_empty() {
            let _ = writeln!(text, "  (none)");
        }
        for line in lines {
            let _ = writeln!(text, "  {line}");
        }
    };
    section(&mut text, "tasks (newest first)", &found.tasks);
    section(&mut text, "last healthchecks", &found.healthchecks);
    section(
        &mut text,
        &format!("last {LOG_LINES} log lines"),
        &found.logs,
    );
    if !found.notes.is_empty() {
        section(&mut text, "not collected", &found.notes);
    }
    text
}

/// The timestamp a log line carries as its word number `word` (after a task prefix, if any).
/// Parsed, because the engine trims trailing zeros of the nanoseconds and the text does not
/// sort; lines without one keep their place (the sort is stable).
fn log_time(line: &str, word: usize) -> Option<std::time::SystemTime> {
    line.split_whitespace()
        .nth(word)
        .and_then(inspect::parse_time)
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Service names are safe file names already; this only guards against a path separator.
fn file_name(service: &str) -> String {
    service.replace(['/', '\0'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::inspect::tests::captured;

    fn service<'a>(snap: &'a Snapshot, name: &str) -> &'a ServiceState {
        snap.services.iter().find(|s| s.short_name == name).unwrap()
    }

    #[test]
    fn an_unhealthy_kill_is_explained_with_the_last_healthcheck() {
        let snap = captured();
        let found = describe(&snap, service(&snap, "bad"));
        assert!(found.failed);
        assert_eq!(
            found.reason.as_deref(),
            Some(
                "task: non-zero exit (137): dockerexec: unhealthy container (last healthcheck: exit 1: nope)"
            )
        );
        assert!(
            found
                .healthchecks
                .iter()
                .any(|h| h.ends_with("exit 1: nope"))
        );
        assert!(found.tasks[0].contains("state ready"), "{:?}", found.tasks);
    }

    #[test]
    fn log_lines_sort_by_their_time() {
        let mut lines = vec![
            "2026-11-22T00:13:17.61Z capt_bad.1.b@vm | second".to_string(),
            "2026-11-22T00:13:17.6001Z capt_bad.1.a@vm | first".to_string(),
        ];
        lines.sort_by_cached_key(|l| log_time(l, 0));
        assert!(lines[0].ends_with("first"), "{lines:?}");
    }

    #[test]
    fn a_ready_service_has_no_reason_and_a_missing_image_has_one() {
        let snap = captured();
        let app = describe(&snap, service(&snap, "app"));
        assert_eq!(app.reason, None);
        let noimg = describe(&snap, service(&snap, "noimg"));
        assert_eq!(
            noimg.reason.as_deref(),
            Some("No such image: ccci-nonexistent:9")
        );
        let text = render(service(&snap, "noimg"), &noimg);
        assert!(text.contains("reason: No such image"), "{text}");
        assert!(text.contains("error: No such image"), "{text}");
    }
}
