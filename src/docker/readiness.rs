//! Readiness: deciding from a [`Snapshot`] whether a stack is ready, still on its way, or
//! failed, and the wait loop that takes snapshots until one of those is final.
//!
//! ccci owns readiness (abra's converge check gives false failures inside start periods), so
//! this is where "ready" is defined: every service has all its replicas running, no update in
//! flight, and every running container healthy if it has a healthcheck. Failing fast matters as
//! much: a task the swarm rejected or killed since the deploy began ends the wait at once, and
//! so does a container the engine reports unhealthy (the swarm will kill it, but only after
//! the stop grace period, which can be many seconds).

use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::event::{Event, EventSink};
use crate::sys::process::LineStream;

use super::inspect::{self, Containers, ServiceState, Snapshot, TaskState};
use super::{NotReady, ReadyOptions, Swarm, cli};

/// How often the stack is looked at when no engine event arrives.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// After an event about the stack, the swarm's own view follows the container's with a lag
/// (a task turns `running` some tens of milliseconds after its container's `health_status`,
/// and no event says so): the stack is looked at this often for [`FOLLOW_UP`] after one.
const FOLLOW_UP_EVERY: Duration = Duration::from_millis(50);
const FOLLOW_UP: Duration = Duration::from_secs(2);
/// How often cancellation is noticed while waiting between looks.
const SLICE: Duration = Duration::from_millis(100);
/// Engine events come in bursts (create, start, health…): gather a burst into one look.
const COALESCE: Duration = Duration::from_millis(10);
/// Waiting events at most this often, and only when what is awaited changed.
const WAITING_EVERY: Duration = Duration::from_secs(2);
/// A stack with no services at all after this long was not deployed (or is gone).
const NO_SERVICES_GRACE: Duration = Duration::from_secs(15);
/// Consecutive failed looks tolerated before the wait gives up with an infra error: one
/// docker hiccup must not fail a run.
const MAX_POLL_ERRORS: u32 = 3;

/// What one look at a stack says.
#[derive(Clone, Debug, PartialEq)]
pub enum Assessment {
    Ready {
        total: usize,
    },
    Failed(NotReady),
    Waiting {
        ready: usize,
        total: usize,
        /// What is awaited, e.g. `app 0/1 (task starting), db 1/1 (health starting)`.
        summary: String,
    },
}

/// Classifies a snapshot. Tasks created before `since` (old tasks of an earlier deploy) are
/// history, not failures of this deploy.
pub fn assess(snap: &Snapshot, since: SystemTime) -> Assessment {
    assess_deploy(snap, since, true)
}

/// [`assess`], saying whether a deploy at `since` must have begun each changed service's
/// rolling update (see [`super::ReadyOptions::deployed`]).
pub fn assess_deploy(snap: &Snapshot, since: SystemTime, deployed: bool) -> Assessment {
    let total = snap.services.len();
    if total == 0 {
        return Assessment::Waiting {
            ready: 0,
            total: 0,
            summary: "no services of the stack yet".to_string(),
        };
    }
    let is_new = |t: &TaskState| t.created.is_none_or(|c| c >= since);
    // Failures first, across all services: a failure is final, waiting is not.
    for service in &snap.services {
        let tasks = snap.tasks_of(service);
        if let Some(task) = tasks.iter().find(|t| is_new(t) && t.is_failure()) {
            let mut error = if task.error.is_empty() {
                format!("task {}", task.state)
            } else {
                task.error.clone()
            };
            if let Some(probe) = snap
                .container_of(task)
                .and_then(|c| c.health.as_ref())
                .filter(|h| h.status == "unhealthy")
                .and_then(|h| h.last_probe())
            {
                error = format!("{error} (last healthcheck: {probe})");
            }
            return Assessment::Failed(NotReady::TaskFailed {
                service: service.short_name.clone(),
                error,
                exit_code: task.exit_code,
            });
        }
        if let Some(health) = tasks
            .iter()
            .filter(|t| is_new(t) && t.is_current())
            .filter_map(|t| snap.container_of(t))
            .filter(|c| c.status == "running")
            .find_map(|c| c.health.as_ref().filter(|h| h.status == "unhealthy"))
        {
            let probe = health
                .last_probe()
                .map(|p| format!(" (last healthcheck: {p})"))
                .unwrap_or_default();
            // The swarm answers an unhealthy container by stopping it: SIGTERM, then SIGKILL
            // (exit 137) once the stop grace period ends, and only then does the task fail
            // with "non-zero exit (…): dockerexec: unhealthy container". That can be many
            // seconds away, so the failure is reported now. The exit code is not known yet
            // (a process that honours SIGTERM exits otherwise), so none is claimed.
            return Assessment::Failed(NotReady::TaskFailed {
                service: service.short_name.clone(),
                error: format!(
                    "unhealthy container: the swarm is stopping it (SIGTERM, then SIGKILL with exit 137 after the stop grace period){probe}"
                ),
                exit_code: None,
            });
        }
    }
    for service in &snap.services {
        if let Some(state @ ("paused" | "rollback_paused")) = service.update_state.as_deref() {
            let message = service
                .update_message
                .clone()
                .unwrap_or_else(|| state.replace('_', " "));
            return Assessment::Failed(NotReady::Paused {
                service: service.short_name.clone(),
                message,
            });
        }
    }
    let waiting: Vec<String> = snap
        .services
        .iter()
        .filter_map(|s| service_waiting_for(snap, s, deployed.then_some(since)))
        .collect();
    if waiting.is_empty() {
        Assessment::Ready { total }
    } else {
        Assessment::Waiting {
            ready: total - waiting.len(),
            total,
            summary: waiting.join(", "),
        }
    }
}

/// `None` when `service` is ready, else what it waits for.
fn service_waiting_for(
    snap: &Snapshot,
    service: &ServiceState,
    deployed_at: Option<SystemTime>,
) -> Option<String> {
    let name = &service.short_name;
    if service.mode.contains("job") {
        return match service.completed {
            Some((done, of)) if done >= of => None,
            Some((done, of)) => Some(format!("{name} job {done}/{of} completed")),
            None => Some(format!("{name} job not started")),
        };
    }
    let counts = format!("{}/{}", service.running, service.desired);
    // Right after a deploy that changed what a service runs, its old tasks still run and look
    // ready: the swarm begins the rolling update a moment later.
    if let Some(deployed_at) = deployed_at
        && service.template_changed
        && service
            .update_started
            .is_none_or(|started| started < deployed_at)
    {
        return Some(format!("{name} {counts} (update not started yet)"));
    }
    if let Some(state @ ("updating" | "rollback_started")) = service.update_state.as_deref() {
        return Some(format!(
            "{name} {counts} (update {})",
            state.replace('_', " ")
        ));
    }
    let tasks = snap.tasks_of(service);
    let ready_tasks = tasks
        .iter()
        .filter(|t| t.is_running())
        .filter(|t| snap.container_of(t).is_some_and(|c| c.is_ready()))
        .count() as u64;
    if service.running == service.desired && ready_tasks >= service.desired {
        return None;
    }
    if service.running < service.desired {
        // The newest task the swarm still wants says what the slot is doing.
        let doing = tasks
            .iter()
            .find(|t| t.is_current() && !t.is_running())
            .map(|t| format!("task {}", t.state))
            .unwrap_or_else(|| "no task yet".to_string());
        return Some(format!("{name} {counts} ({doing})"));
    }
    let health = tasks
        .iter()
        .filter(|t| t.is_running())
        .filter_map(|t| snap.container_of(t))
        .find_map(|c| c.health.as_ref().filter(|h| h.status != "healthy"))
        .map(|h| format!("health {}", h.status))
        .unwrap_or_else(|| "containers not inspected yet".to_string());
    Some(format!("{name} {counts} ({health})"))
}

/// True when an engine event line concerns `stack` and may change its readiness. Healthcheck
/// runs (`exec_*`) fire every interval and change nothing until a `health_status` follows.
pub fn event_concerns(line: &str, stack: &str) -> bool {
    let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
        return false;
    };
    let kind = event.get("Type").and_then(|v| v.as_str()).unwrap_or("");
    let action = event.get("Action").and_then(|v| v.as_str()).unwrap_or("");
    let attr = |key: &str| {
        event
            .get("Actor")
            .and_then(|a| a.get("Attributes"))
            .and_then(|a| a.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or("")
    };
    match kind {
        "container" => attr(inspect::NAMESPACE_LABEL) == stack && !action.starts_with("exec_"),
        "service" => inspect::short_name(attr("name"), stack) != attr("name"),
        _ => false,
    }
}

impl Swarm {
    pub(super) fn wait_ready_loop(
        &self,
        stack: &str,
        opts: &ReadyOptions,
        sink: &dyn EventSink,
    ) -> Result<(), NotReady> {
        let runner = self.runner();
        let started = Instant::now();
        let deadline = started + opts.timeout;
        // Started before the first look, so nothing that happens after it is missed. Without
        // it (docker too old, or it died) the loop still polls every second.
        let mut events = cli::cmd([
            "events",
            "--format",
            "{{json .}}",
            "--filter",
            "type=container",
            "--filter",
            "type=service",
        ])
        .ok()
        .and_then(|cmd| runner.stream_lines(&cmd).ok());
        let mut summary: String;
        let mut emitted: Option<(String, Instant)> = None;
        let mut poll_errors = 0;
        let mut follow_up_until: Option<Instant> = None;
        loop {
            if let Err(e) = runner.check() {
                return Err(not_ready(e));
            }
            match inspect::snapshot(runner, stack, Containers::Current) {
                Err(Error::Interrupted(signal)) => return Err(NotReady::Interrupted(signal)),
                Err(e) => {
                    poll_errors += 1;
                    if poll_errors >= MAX_POLL_ERRORS {
                        return Err(NotReady::Infra(e.to_string()));
                    }
                    summary = format!("the engine to answer ({e})");
                }
                Ok(snap) => {
                    poll_errors = 0;
                    match assess_deploy(&snap, opts.since, opts.deployed) {
                        Assessment::Ready { total } => {
                            sink.event(&Event::Waiting {
                                ready: total,
                                total,
                                detail: "all services ready".to_string(),
                            });
                            return Ok(());
                        }
                        Assessment::Failed(failure) => {
                            if let NotReady::TaskFailed {
                                service,
                                error,
                                exit_code,
                            } = &failure
                            {
                                sink.event(&Event::TaskFailed {
                                    service: service.clone(),
                                    error: error.clone(),
                                    exit_code: *exit_code,
                                });
                            }
                            return Err(failure);
                        }
                        Assessment::Waiting {
                            ready,
                            total,
                            summary: now,
                        } => {
                            if total == 0 && started.elapsed() >= NO_SERVICES_GRACE {
                                return Err(NotReady::Infra(format!(
                                    "stack {stack} has no services: was it deployed?"
                                )));
                            }
                            let due = emitted.as_ref().is_none_or(|(last, at)| {
                                *last != now && at.elapsed() >= WAITING_EVERY
                            });
                            if due {
                                sink.event(&Event::Waiting {
                                    ready,
                                    total,
                                    detail: now.clone(),
                                });
                                emitted = Some((now.clone(), Instant::now()));
                            }
                            summary = now;
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Timeout {
                    waited: started.elapsed(),
                    waiting_for: summary,
                });
            }
            let every = if follow_up_until.is_some_and(|until| Instant::now() < until) {
                FOLLOW_UP_EVERY
            } else {
                POLL_EVERY
            };
            if wait_for_change(
                &mut events,
                stack,
                deadline.min(Instant::now() + every),
                runner,
            ) {
                follow_up_until = Some(Instant::now() + FOLLOW_UP);
            }
        }
    }
}

/// Returns when an event about `stack` arrives (then `true`), at `until`, or as soon as the
/// run is cancelled.
fn wait_for_change(
    events: &mut Option<LineStream>,
    stack: &str,
    until: Instant,
    runner: &crate::sys::process::Runner,
) -> bool {
    loop {
        let now = Instant::now();
        if now >= until || runner.check().is_err() {
            return false;
        }
        let slice = SLICE.min(until - now);
        match events.as_ref().map(|s| s.next_line(slice)) {
            Some(Ok(Some(line))) => {
                if event_concerns(&line, stack) {
                    drain(events, stack);
                    return true;
                }
            }
            Some(Ok(None)) => {}
            Some(Err(crate::sys::process::StreamClosed)) => {
                // The stream ended: fall back to polling.
                *events = None;
            }
            None => std::thread::sleep(slice),
        }
    }
}

/// Lets the rest of a burst of events arrive, so one look covers all of it.
fn drain(events: &Option<LineStream>, _stack: &str) {
    let Some(stream) = events else { return };
    let until = Instant::now() + COALESCE;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match stream.next_line(left) {
            Ok(Some(_)) => {}
            _ => return,
        }
    }
}

fn not_ready(e: Error) -> NotReady {
    match e {
        Error::Interrupted(signal) => NotReady::Interrupted(signal),
        other => NotReady::Infra(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::inspect::tests::{CONTAINER_UNHEALTHY, TASK_UNHEALTHY, captured};
    use crate::docker::inspect::{parse_containers, parse_tasks};

    fn epoch() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    fn far_future() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)
    }

    fn only(snap: &Snapshot, name: &str) -> Snapshot {
        let services: Vec<ServiceState> = snap
            .services
            .iter()
            .filter(|s| s.short_name == name)
            .cloned()
            .collect();
        let tasks = snap
            .tasks
            .iter()
            .filter(|t| services.iter().any(|s| t.service_id.starts_with(&s.id)))
            .cloned()
            .collect();
        Snapshot {
            services,
            tasks,
            containers: snap.containers.clone(),
        }
    }

    #[test]
    fn a_healthy_service_is_ready() {
        let snap = only(&captured(), "app");
        assert_eq!(assess(&snap, epoch()), Assessment::Ready { total: 1 });
    }

    #[test]
    fn a_killed_unhealthy_task_fails_with_the_swarm_error_and_last_healthcheck() {
        let snap = only(&captured(), "bad");
        let Assessment::Failed(NotReady::TaskFailed {
            service,
            error,
            exit_code,
        }) = assess(&snap, epoch())
        else {
            panic!("not a task failure");
        };
        assert_eq!(service, "bad");
        assert!(
            error.starts_with("task: non-zero exit (137): dockerexec: unhealthy container"),
            "{error}"
        );
        assert!(error.contains("last healthcheck: exit 1: nope"), "{error}");
        assert_eq!(exit_code, Some(137));
    }

    #[test]
    fn a_rejected_task_fails_with_no_such_image() {
        let snap = only(&captured(), "noimg");
        let failure = assess(&snap, epoch());
        let Assessment::Failed(NotReady::TaskFailed {
            error, exit_code, ..
        }) = &failure
        else {
            panic!("{failure:?}");
        };
        assert_eq!(error, "No such image: ccci-nonexistent:9");
        assert_eq!(*exit_code, None);
    }

    #[test]
    fn failures_older_than_the_deploy_are_history() {
        let snap = only(&captured(), "bad");
        match assess(&snap, far_future()) {
            Assessment::Waiting {
                ready,
                total,
                summary,
            } => {
                assert_eq!((ready, total), (0, 1));
                assert_eq!(summary, "bad 0/1 (task ready)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_running_unhealthy_container_fails_before_the_swarm_kills_it() {
        let mut snap = only(&captured(), "bad");
        snap.tasks = parse_tasks(TASK_UNHEALTHY).unwrap();
        snap.services[0].id = snap.tasks[0].service_id.clone();
        snap.containers = parse_containers(CONTAINER_UNHEALTHY)
            .unwrap()
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let failure = assess(&snap, epoch());
        let Assessment::Failed(NotReady::TaskFailed { service, error, .. }) = &failure else {
            panic!("{failure:?}");
        };
        assert_eq!(service, "bad");
        assert!(error.contains("unhealthy"), "{error}");
        assert!(error.contains("exit 1: nope"), "{error}");
        // The same container before the deploy being waited for is not this deploy's failure.
        assert!(matches!(
            assess(&snap, far_future()),
            Assessment::Waiting { .. }
        ));
    }

    #[test]
    fn regression_an_upgrade_deploy_was_ready_before_its_rolling_update_began() {
        let mut snap = only(&captured(), "app");
        let deployed_at = epoch() + std::time::Duration::from_secs(100);
        assert!(matches!(
            assess_deploy(&snap, deployed_at, true),
            Assessment::Ready { .. }
        ));
        snap.services[0].template_changed = true;
        // The last update began before this deploy: the new one has not begun.
        snap.services[0].update_started = Some(epoch() + std::time::Duration::from_secs(50));
        match assess_deploy(&snap, deployed_at, true) {
            Assessment::Waiting { summary, .. } => {
                assert!(summary.ends_with("(update not started yet)"), "{summary}")
            }
            other => panic!("{other:?}"),
        }
        // A replayed wait deployed nothing: it does not wait for an update.
        assert!(matches!(
            assess_deploy(&snap, deployed_at, false),
            Assessment::Ready { .. }
        ));
        // Begun after the deploy: ready once it is done.
        snap.services[0].update_started = Some(deployed_at + std::time::Duration::from_secs(1));
        assert!(matches!(
            assess_deploy(&snap, deployed_at, true),
            Assessment::Ready { .. }
        ));
    }

    #[test]
    fn updates_in_flight_wait_and_paused_updates_fail() {
        let mut snap = only(&captured(), "app");
        snap.services[0].update_state = Some("updating".into());
        match assess(&snap, epoch()) {
            Assessment::Waiting { summary, .. } => assert_eq!(summary, "app 1/1 (update updating)"),
            other => panic!("{other:?}"),
        }
        for settled in ["completed", "rollback_completed"] {
            snap.services[0].update_state = Some(settled.into());
            assert_eq!(assess(&snap, epoch()), Assessment::Ready { total: 1 });
        }
        snap.services[0].update_state = Some("paused".into());
        snap.services[0].update_message =
            Some("update paused due to failure or early termination of task x".into());
        match assess(&snap, epoch()) {
            Assessment::Failed(NotReady::Paused { service, message }) => {
                assert_eq!(service, "app");
                assert!(message.contains("update paused"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_starting_healthcheck_is_waited_for() {
        let mut snap = only(&captured(), "app");
        for c in snap.containers.values_mut() {
            if let Some(h) = c.health.as_mut() {
                h.status = "starting".into();
            }
        }
        match assess(&snap, epoch()) {
            Assessment::Waiting { summary, .. } => {
                assert_eq!(summary, "app 1/1 (health starting)")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_services_is_waiting_not_ready() {
        assert!(matches!(
            assess(&Snapshot::default(), epoch()),
            Assessment::Waiting { total: 0, .. }
        ));
    }

    #[test]
    fn only_relevant_engine_events_wake_the_wait() {
        let health_run = r#"{"Type":"container","Action":"exec_start: sh -c true","Actor":{"ID":"x","Attributes":{"com.docker.stack.namespace":"capt"}}}"#;
        let health_change = r#"{"Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"x","Attributes":{"com.docker.stack.namespace":"capt"}}}"#;
        let other_stack = r#"{"Type":"container","Action":"die","Actor":{"ID":"x","Attributes":{"com.docker.stack.namespace":"capt2"}}}"#;
        let service = r#"{"Type":"service","Action":"update","Actor":{"ID":"ryc","Attributes":{"name":"capt_app","updatestate.new":"updating"}}}"#;
        assert!(!event_concerns(health_run, "capt"));
        assert!(event_concerns(health_change, "capt"));
        assert!(!event_concerns(other_stack, "capt"));
        assert!(event_concerns(service, "capt"));
        assert!(!event_concerns(service, "cap"));
        assert!(!event_concerns("garbage", "capt"));
    }
}
