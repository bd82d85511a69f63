//! What the engine says about a stack, as typed values: the JSON of `docker service ls`,
//! `docker service inspect`, `docker inspect --type task` and `docker inspect --type container`
//! parsed with serde, and [`Snapshot`], one consistent-enough look at a stack's services, tasks
//! and containers taken with a handful of docker calls.
//!
//! Parsing is lenient (every field defaults) because the engine omits fields freely: a task
//! that is still being prepared has no `ContainerStatus`, a service that was never updated has
//! no `UpdateStatus`. The pure parsing functions are unit-tested on JSON captured from a real
//! engine (see `testdata/`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::sys::process::Runner;

use super::cli;

/// The label `docker stack deploy` puts on everything it creates.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// How long one inspecting docker call may take; the engine can hang under load.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A service of a stack, as the swarm sees it now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceState {
    pub id: String,
    /// The swarm's name: `<stack>_<name>`.
    pub name: String,
    /// The name in the compose file, without `<stack>_`: what reasons and events show.
    pub short_name: String,
    pub image: String,
    /// `replicated`, `global`, `replicated job` or `global job`, as `docker service ls` says.
    pub mode: String,
    pub desired: u64,
    pub running: u64,
    /// For jobs: how many tasks completed, out of how many (`(1/1 completed)`).
    pub completed: Option<(u64, u64)>,
    /// `UpdateStatus.State`: absent before any update, then `updating`, `paused`, `completed`,
    /// `rollback_started`, `rollback_paused` or `rollback_completed`.
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    /// `Spec.Labels`.
    pub labels: BTreeMap<String, String>,
    /// True when the service's container spec has a healthcheck (other than `NONE`).
    pub has_healthcheck: bool,
}

/// One task of a service: a slot's attempt to run a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskState {
    pub id: String,
    pub service_id: String,
    pub slot: Option<u64>,
    /// `CreatedAt` as the engine wrote it.
    pub created_at: String,
    /// `CreatedAt` parsed; `None` if the engine wrote something unparseable.
    pub created: Option<SystemTime>,
    /// `DesiredState`: `running`, `ready` (waiting out a restart delay), `shutdown`, …
    pub desired_state: String,
    /// `Status.State`: `new` … `starting`, `running`, `complete`, `shutdown`, `failed`,
    /// `rejected`, `remove`, `orphaned`.
    pub state: String,
    pub message: String,
    /// `Status.Err`, empty when there is none.
    pub error: String,
    pub container_id: Option<String>,
    pub exit_code: Option<i64>,
}

impl TaskState {
    /// The task failed or was rejected: what fail-fast and diagnostics look for. A task that
    /// was shut down normally (an old task replaced by an update, or removed with the stack)
    /// has no error and is not a failure.
    pub fn is_failure(&self) -> bool {
        matches!(self.state.as_str(), "failed" | "rejected")
            || (!self.error.is_empty() && self.desired_state == "shutdown")
    }

    /// The task is meant to run and runs.
    pub fn is_running(&self) -> bool {
        self.desired_state == "running" && self.state == "running"
    }

    /// The task is current: the swarm still wants it (not an old task being shut down).
    pub fn is_current(&self) -> bool {
        matches!(
            self.desired_state.as_str(),
            "running" | "ready" | "accepted"
        )
    }
}

/// A container: its state, health and mounts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// `State.Status`: `created`, `running`, `exited`, …
    pub status: String,
    pub exit_code: Option<i64>,
    /// `None` when the container has no healthcheck.
    pub health: Option<Health>,
    pub mounts: Vec<Mount>,
    pub labels: BTreeMap<String, String>,
}

impl ContainerInfo {
    /// Running, and healthy if it has a healthcheck.
    pub fn is_ready(&self) -> bool {
        self.status == "running" && self.health.as_ref().is_none_or(|h| h.status == "healthy")
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u64,
    /// The last few healthcheck runs, oldest first (the engine keeps five).
    pub log: Vec<HealthProbe>,
}

impl Health {
    /// The last healthcheck run as one line: `exit 1: <output>`.
    pub fn last_probe(&self) -> Option<String> {
        self.log.last().map(HealthProbe::summary)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthProbe {
    pub start: String,
    pub exit_code: i64,
    pub output: String,
}

impl HealthProbe {
    pub fn summary(&self) -> String {
        let output = one_line(&self.output);
        if output.is_empty() {
            format!("exit {}", self.exit_code)
        } else {
            format!("exit {}: {output}", self.exit_code)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`, …
    pub kind: String,
    /// The volume's name (empty for binds).
    pub name: String,
    pub source: String,
    pub destination: String,
}

/// One look at a stack: its services, all their tasks (with the swarm's short history), and
/// the containers asked for.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<ServiceState>,
    pub tasks: Vec<TaskState>,
    pub containers: HashMap<String, ContainerInfo>,
}

impl Snapshot {
    /// The tasks of `service`, newest first.
    pub fn tasks_of<'a>(&'a self, service: &ServiceState) -> Vec<&'a TaskState> {
        let mut tasks: Vec<&TaskState> = self
            .tasks
            .iter()
            .filter(|t| !service.id.is_empty() && t.service_id.starts_with(&service.id))
            .collect();
        // By parsed time: the engine trims trailing zeros of the nanoseconds, so the text
        // does not sort.
        tasks.sort_by(|a, b| (b.created, &b.created_at).cmp(&(a.created, &a.created_at)));
        tasks
    }

    pub fn container_of(&self, task: &TaskState) -> Option<&ContainerInfo> {
        task.container_id
            .as_deref()
            .and_then(|id| self.containers.get(id))
    }
}

/// Which containers a snapshot inspects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containers {
    /// None: `services()` needs no container.
    None,
    /// Those of tasks the swarm still wants: readiness needs their health.
    Current,
    /// Every task's container still on the engine: diagnostics want old health logs too.
    All,
}

/// Takes a [`Snapshot`] of `stack` with at most four docker calls: `service ls`, then
/// `service inspect` and `service ps` for all services at once, `inspect --type task` for all
/// tasks at once, and `inspect --type container` for the containers asked for.
pub fn snapshot(runner: &Runner, stack: &str, containers: Containers) -> Result<Snapshot> {
    let mut services = list_services(runner, stack)?;
    if services.is_empty() {
        return Ok(Snapshot::default());
    }
    let ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
    let inspected = cli::json_array::<ServiceJson>(
        runner,
        &with(&["service", "inspect"], &ids),
        "inspect the services",
    )?;
    merge_inspected(&mut services, inspected);
    if containers == Containers::None {
        return Ok(Snapshot {
            services,
            ..Snapshot::default()
        });
    }
    let task_ids = cli::lines(
        runner,
        &with(&["service", "ps", "-q", "--no-trunc"], &ids),
        "list the stack's tasks",
    )?;
    let tasks: Vec<TaskState> = if task_ids.is_empty() {
        Vec::new()
    } else {
        cli::json_array::<TaskJson>(
            runner,
            &with(&["inspect", "--type", "task"], &task_ids),
            "inspect the stack's tasks",
        )?
        .into_iter()
        .map(TaskState::from)
        .collect()
    };
    let container_ids: Vec<String> = tasks
        .iter()
        .filter(|t| containers == Containers::All || t.is_current())
        .filter_map(|t| t.container_id.clone())
        .collect();
    let containers = inspect_containers(runner, &container_ids)?;
    Ok(Snapshot {
        services,
        tasks,
        containers,
    })
}

/// `docker inspect --type container` for many ids; containers that vanished meanwhile are
/// simply absent from the answer.
pub fn inspect_containers(
    runner: &Runner,
    ids: &[String],
) -> Result<HashMap<String, ContainerInfo>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let found = cli::json_array::<ContainerJson>(
        runner,
        &with(&["inspect", "--type", "container"], ids),
        "inspect the stack's containers",
    )?;
    Ok(found
        .into_iter()
        .map(ContainerInfo::from)
        .map(|c| (c.id.clone(), c))
        .collect())
}

/// The services of `stack` from `docker service ls` (name, image, replicas), not yet merged
/// with their inspection.
fn list_services(runner: &Runner, stack: &str) -> Result<Vec<ServiceState>> {
    let lines = cli::lines(
        runner,
        &[
            "service".to_string(),
            "ls".to_string(),
            "--filter".to_string(),
            format!("label={NAMESPACE_LABEL}={stack}"),
            "--format".to_string(),
            "{{json .}}".to_string(),
        ],
        "list the stack's services",
    )?;
    lines
        .iter()
        .map(|line| parse_service_ls_line(line, stack))
        .collect()
}

fn with(base: &[&str], ids: &[String]) -> Vec<String> {
    base.iter()
        .map(|s| s.to_string())
        .chain(ids.iter().cloned())
        .collect()
}

/// One line of `docker service ls --format '{{json .}}'`.
pub fn parse_service_ls_line(line: &str, stack: &str) -> Result<ServiceState> {
    let raw: ServiceLsJson = serde_json::from_str(line).map_err(|e| {
        Error::Infra(format!(
            "unexpected output from `docker service ls`: {e}: {}",
            one_line(line)
        ))
    })?;
    let (running, desired, completed) = parse_replicas(&raw.replicas);
    let short_name = short_name(&raw.name, stack).to_string();
    Ok(ServiceState {
        id: raw.id,
        short_name,
        name: raw.name,
        image: raw.image,
        mode: raw.mode,
        desired,
        running,
        completed,
        ..ServiceState::default()
    })
}

/// `<stack>_<name>` → `<name>`.
pub fn short_name<'a>(name: &'a str, stack: &str) -> &'a str {
    name.strip_prefix(stack)
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
}

/// `"1/1"`, `"0/1 (max 1 per node)"`, `"0/1 (1/1 completed)"` → (running, desired, completed).
pub fn parse_replicas(text: &str) -> (u64, u64, Option<(u64, u64)>) {
    let pair = |s: &str| -> Option<(u64, u64)> {
        let (a, b) = s.trim().split_once('/')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    };
    let head = text.split_whitespace().next().unwrap_or("");
    let (running, desired) = pair(head).unwrap_or((0, 0));
    let completed = text
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|inner| inner.strip_suffix("completed"))
        .and_then(pair);
    (running, desired, completed)
}

/// Adds what only `docker service inspect` knows (update status, labels, healthcheck) to the
/// services `docker service ls` listed. A service that vanished in between keeps its defaults.
pub fn merge_inspected(services: &mut [ServiceState], inspected: Vec<ServiceJson>) {
    for json in inspected {
        let Some(service) = services
            .iter_mut()
            .find(|s| json.id == s.id || json.id.starts_with(&s.id))
        else {
            continue;
        };
        service.id = json.id;
        service.labels = json.spec.labels;
        if let Some(status) = json.update_status {
            service.update_state = Some(status.state).filter(|s| !s.is_empty());
            service.update_message = Some(status.message).filter(|s| !s.is_empty());
        }
        let spec = &json.spec.task_template.container_spec;
        service.has_healthcheck = spec
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"));
        if service.desired == 0
            && let Some(replicas) = json.spec.mode.replicated.and_then(|r| r.replicas)
            && service.running == 0
        {
            // `service ls` said nothing usable; the spec still knows what was asked for.
            service.desired = replicas;
        }
    }
}

/// Parses a JSON array as `docker inspect` prints it.
pub fn parse_array<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>> {
    serde_json::from_str(text.trim()).map_err(|e| {
        Error::Infra(format!(
            "unexpected output from docker inspect: {e}: {}",
            one_line(&text.chars().take(200).collect::<String>())
        ))
    })
}

/// The first line of `text`, trimmed: for quoting outputs in one-line reasons.
pub fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("").to_string();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

/// RFC 3339 with nanoseconds, as the engine writes it; `None` for the zero time
/// (`0001-01-01T00:00:00Z`) and anything unparseable.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

// The engine's JSON. Only what ccci reads is declared; serde ignores the rest.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServiceLsJson {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "Mode")]
    mode: String,
    #[serde(rename = "Replicas")]
    replicas: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceJson {
    #[serde(rename = "ID")]
    id: String,
    spec: ServiceSpecJson,
    update_status: Option<UpdateStatusJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ServiceSpecJson {
    labels: BTreeMap<String, String>,
    task_template: TaskTemplateJson,
    mode: ModeJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TaskTemplateJson {
    container_spec: ContainerSpecJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ContainerSpecJson {
    healthcheck: Option<HealthcheckJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct HealthcheckJson {
    test: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ModeJson {
    replicated: Option<ReplicatedJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ReplicatedJson {
    replicas: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct UpdateStatusJson {
    state: String,
    message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskJson {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    slot: Option<u64>,
    created_at: String,
    desired_state: String,
    status: TaskStatusJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TaskStatusJson {
    state: String,
    message: String,
    err: String,
    container_status: Option<ContainerStatusJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ContainerStatusJson {
    #[serde(rename = "ContainerID")]
    container_id: String,
    exit_code: Option<i64>,
}

impl From<TaskJson> for TaskState {
    fn from(json: TaskJson) -> Self {
        let container = json.status.container_status;
        let container_id = container
            .as_ref()
            .map(|c| c.container_id.clone())
            .filter(|id| !id.is_empty());
        // Exit code 0 is what the engine reports for containers that never ran (a rejected
        // task) as much as for a clean exit; only a non-zero code says something.
        let exit_code = container.and_then(|c| c.exit_code).filter(|&c| c != 0);
        TaskState {
            created: parse_time(&json.created_at),
            id: json.id,
            service_id: json.service_id,
            slot: json.slot,
            created_at: json.created_at,
            desired_state: json.desired_state,
            state: json.status.state,
            message: json.status.message,
            error: json.status.err,
            container_id,
            exit_code,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerJson {
    id: String,
    name: String,
    state: ContainerStateJson,
    mounts: Vec<MountJson>,
    config: ContainerConfigJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ContainerStateJson {
    status: String,
    exit_code: Option<i64>,
    health: Option<HealthJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct HealthJson {
    status: String,
    failing_streak: u64,
    log: Option<Vec<HealthLogJson>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct HealthLogJson {
    start: String,
    exit_code: i64,
    output: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct MountJson {
    #[serde(rename = "Type")]
    kind: String,
    name: String,
    source: String,
    destination: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ContainerConfigJson {
    labels: Option<BTreeMap<String, String>>,
}

impl From<ContainerJson> for ContainerInfo {
    fn from(json: ContainerJson) -> Self {
        ContainerInfo {
            id: json.id,
            name: json.name.trim_start_matches('/').to_string(),
            status: json.state.status,
            exit_code: json.state.exit_code,
            health: json.state.health.map(|h| Health {
                status: h.status,
                failing_streak: h.failing_streak,
                log: h
                    .log
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| HealthProbe {
                        start: l.start,
                        exit_code: l.exit_code,
                        output: l.output,
                    })
                    .collect(),
            }),
            mounts: json
                .mounts
                .into_iter()
                .map(|m| Mount {
                    kind: m.kind,
                    name: m.name,
                    source: m.source,
                    destination: m.destination,
                })
                .collect(),
            labels: json.config.labels.unwrap_or_default(),
        }
    }
}

/// Parses `docker inspect --type task` output.
pub fn parse_tasks(text: &str) -> Result<Vec<TaskState>> {
    Ok(parse_array::<TaskJson>(text)?
        .into_iter()
        .map(TaskState::from)
        .collect())
}

/// Parses `docker inspect --type container` output.
pub fn parse_containers(text: &str) -> Result<Vec<ContainerInfo>> {
    Ok(parse_array::<ContainerJson>(text)?
        .into_iter()
        .map(ContainerInfo::from)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const SERVICE_LS: &str = include_str!("testdata/service_ls.jsonl");
    pub const SERVICES: &str = include_str!("testdata/services.json");
    pub const SERVICE_UPDATING: &str = include_str!("testdata/service_updating.json");
    pub const TASKS: &str = include_str!("testdata/tasks.json");
    pub const CONTAINERS: &str = include_str!("testdata/containers.json");
    pub const TASK_UNHEALTHY: &str = include_str!("testdata/task_unhealthy.json");
    pub const CONTAINER_UNHEALTHY: &str = include_str!("testdata/container_unhealthy.json");

    /// The captured stack `capt`: `app` healthy, `bad` killed for being unhealthy, `noimg`
    /// rejected for a missing image.
    pub fn captured() -> Snapshot {
        let mut services: Vec<ServiceState> = SERVICE_LS
            .lines()
            .map(|l| parse_service_ls_line(l, "capt").unwrap())
            .collect();
        merge_inspected(&mut services, parse_array(SERVICES).unwrap());
        Snapshot {
            services,
            tasks: parse_tasks(TASKS).unwrap(),
            containers: parse_containers(CONTAINERS)
                .unwrap()
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
        }
    }

    #[test]
    fn service_ls_lines_give_names_and_replicas() {
        let s = parse_service_ls_line(SERVICE_LS.lines().next().unwrap(), "capt").unwrap();
        assert_eq!(s.name, "capt_app");
        assert_eq!(s.short_name, "app");
        assert_eq!(s.image, "ccci-busybox:1");
        assert_eq!((s.running, s.desired), (1, 1));
        assert!(parse_service_ls_line("not json", "capt").is_err());
    }

    #[test]
    fn replicas_text_is_parsed() {
        assert_eq!(parse_replicas("1/1"), (1, 1, None));
        assert_eq!(parse_replicas("0/3 (max 1 per node)"), (0, 3, None));
        assert_eq!(parse_replicas("0/1 (1/1 completed)"), (0, 1, Some((1, 1))));
        assert_eq!(parse_replicas(""), (0, 0, None));
    }

    #[test]
    fn short_names_drop_the_stack_prefix_only() {
        assert_eq!(short_name("capt_app", "capt"), "app");
        assert_eq!(short_name("capt_my_db", "capt"), "my_db");
        assert_eq!(short_name("other_app", "capt"), "other_app");
        assert_eq!(short_name("capt_", "capt"), "capt_");
    }

    #[test]
    fn service_inspection_adds_labels_healthcheck_and_update_state() {
        let snap = captured();
        let app = snap
            .services
            .iter()
            .find(|s| s.short_name == "app")
            .unwrap();
        assert_eq!(app.id.len(), 25, "the full id replaces the short one");
        assert_eq!(
            app.labels.get(NAMESPACE_LABEL).map(String::as_str),
            Some("capt")
        );
        assert!(app.has_healthcheck);
        assert_eq!(app.update_state, None);
        let noimg = snap
            .services
            .iter()
            .find(|s| s.short_name == "noimg")
            .unwrap();
        assert!(!noimg.has_healthcheck);

        let updating: Vec<ServiceJson> = parse_array(SERVICE_UPDATING).unwrap();
        let mut services = vec![ServiceState {
            id: "p0onkbs27a0k".into(),
            ..ServiceState::default()
        }];
        merge_inspected(&mut services, updating);
        assert_eq!(services[0].update_state.as_deref(), Some("updating"));
        assert_eq!(
            services[0].update_message.as_deref(),
            Some("update in progress")
        );
        assert_eq!(
            services[0].desired, 1,
            "taken from the spec when ls said nothing"
        );
    }

    #[test]
    fn tasks_carry_state_error_exit_code_and_creation_time() {
        let tasks = parse_tasks(TASKS).unwrap();
        assert_eq!(tasks.len(), 8);
        let unhealthy = tasks.iter().find(|t| t.state == "failed").unwrap();
        assert_eq!(
            unhealthy.error,
            "task: non-zero exit (137): dockerexec: unhealthy container"
        );
        assert_eq!(unhealthy.exit_code, Some(137));
        assert!(unhealthy.is_failure());
        assert!(unhealthy.created.is_some());
        let rejected = tasks.iter().find(|t| t.state == "rejected").unwrap();
        assert_eq!(rejected.error, "No such image: ccci-nonexistent:9");
        assert_eq!(rejected.exit_code, None, "a rejected task never ran");
        assert!(rejected.container_id.is_none());
        let running = tasks.iter().find(|t| t.state == "running").unwrap();
        assert!(running.is_running() && !running.is_failure());
        // A task still being prepared has no ContainerStatus at all.
        assert!(
            tasks
                .iter()
                .any(|t| t.state == "ready" && t.container_id.is_none())
        );
    }

    #[test]
    fn containers_carry_health_log_and_mounts() {
        let containers = parse_containers(CONTAINERS).unwrap();
        let healthy = containers.iter().find(|c| c.status == "running").unwrap();
        assert!(healthy.is_ready());
        assert!(!healthy.name.starts_with('/'));
        let dead = containers.iter().find(|c| c.status == "exited").unwrap();
        let health = dead.health.as_ref().unwrap();
        assert_eq!(health.status, "unhealthy");
        assert_eq!(health.last_probe().as_deref(), Some("exit 1: nope"));
        assert!(!dead.is_ready());

        let unhealthy = parse_containers(CONTAINER_UNHEALTHY).unwrap();
        assert_eq!(unhealthy[0].status, "running");
        assert!(!unhealthy[0].is_ready());
        assert_eq!(
            unhealthy[0].mounts,
            vec![Mount {
                kind: "volume".into(),
                name: "capu_data".into(),
                source: "/var/lib/docker/volumes/capu_data/_data".into(),
                destination: "/data".into(),
            }]
        );
    }

    #[test]
    fn engine_times_parse_with_nanoseconds_and_zero_is_none() {
        let t = parse_time("2026-11-22T00:12:20.272246184Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(secs.subsec_nanos(), 272_246_184);
        assert!(parse_time("0001-01-01T00:00:00Z").is_none());
        assert!(parse_time("garbage").is_none());
    }

    #[test]
    fn tasks_sort_newest_first_by_time_not_text() {
        let service = ServiceState {
            id: "svc".into(),
            ..ServiceState::default()
        };
        let task = |id: &str, created_at: &str| TaskState {
            id: id.into(),
            service_id: "svc1234".into(),
            created: parse_time(created_at),
            created_at: created_at.into(),
            ..TaskState::default()
        };
        let snap = Snapshot {
            services: vec![service.clone()],
            tasks: vec![
                task("older", "2026-11-22T00:12:20.2718Z"),
                task("newer", "2026-11-22T00:12:20.27181722Z"),
            ],
            ..Snapshot::default()
        };
        let ids: Vec<&str> = snap
            .tasks_of(&service)
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ids, ["newer", "older"]);
    }

    #[test]
    fn one_line_keeps_the_first_line() {
        assert_eq!(one_line("nope\n"), "nope");
        assert_eq!(one_line("\n a \nb\n"), "a …");
        assert_eq!(one_line(""), "");
    }
}
