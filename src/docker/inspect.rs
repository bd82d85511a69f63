//! What the engine says about a stack, as typed values: the engine's JSON for services (with
//! their task counts), tasks and containers, parsed with serde, and [`Snapshot`], one
//! consistent-enough look at a stack's services, tasks and containers taken with a handful of
//! requests to the engine's API (the same JSON `docker … inspect` prints).
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

use super::api::{API_VERSION, Engine, Response, url_encode};
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
    /// The last change of its spec changed what its tasks run (`Spec.TaskTemplate` differs
    /// from `PreviousSpec.TaskTemplate`): a rolling update replaces them.
    pub template_changed: bool,
    /// `UpdateStatus.StartedAt`: when the swarm began the latest rolling update. Right after
    /// `docker stack deploy` changed the template, it still tells of the previous one.
    pub update_started: Option<SystemTime>,
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

/// Takes a [`Snapshot`] of `stack` from the engine's API: its services with their task counts
/// (one request), their tasks (one request) and each container asked for (one request each).
/// A request costs about a millisecond where a docker CLI call costs tens of milliseconds of
/// process start, and readiness takes a snapshot every time the stack changes.
pub fn snapshot(runner: &Runner, stack: &str, containers: Containers) -> Result<Snapshot> {
    runner.check()?;
    let engine = engine()?;
    let services = list_services(&engine, stack)?;
    if services.is_empty() {
        return Ok(Snapshot::default());
    }
    if containers == Containers::None {
        return Ok(assemble(stack, services, Vec::new(), HashMap::new()));
    }
    runner.check()?;
    let ids: Vec<&str> = services.iter().map(|s| s.id.as_str()).collect();
    let tasks = list_tasks(&engine, &ids)?;
    let container_ids: Vec<String> = tasks
        .iter()
        .filter(|t| containers == Containers::All || t.is_current())
        .filter_map(|t| t.container_id.clone())
        .collect();
    runner.check()?;
    let containers = inspect_with(&engine, &container_ids)?;
    Ok(assemble(stack, services, tasks, containers))
}

/// The engine every inspection asks, with the inspection timeout.
fn engine() -> Result<Engine> {
    Ok(Engine::from_env()?.with_timeout(QUERY_TIMEOUT))
}

/// Inspects containers by id; containers that vanished meanwhile are simply absent.
pub fn inspect_containers(
    runner: &Runner,
    ids: &[String],
) -> Result<HashMap<String, ContainerInfo>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    runner.check()?;
    inspect_with(&engine()?, ids)
}

fn inspect_with(engine: &Engine, ids: &[String]) -> Result<HashMap<String, ContainerInfo>> {
    let mut found = HashMap::new();
    for id in ids {
        let path = format!("/{API_VERSION}/containers/{}/json", url_encode(id));
        let response = engine.request("GET", &path, None)?;
        if response.status == 404 {
            continue;
        }
        let json: ContainerJson = parse_answer(&response, &path)?;
        let info = ContainerInfo::from(json);
        found.insert(info.id.clone(), info);
    }
    Ok(found)
}

/// The services of `stack`, with the task counts the swarm keeps for each (what `docker
/// service ls` shows as replicas), sorted by name as `docker service ls` sorts them.
fn list_services(engine: &Engine, stack: &str) -> Result<Vec<ServiceJson>> {
    let filters = serde_json::json!({ "label": [format!("{NAMESPACE_LABEL}={stack}")] });
    let path = format!(
        "/{API_VERSION}/services?status=true&filters={}",
        url_encode(&filters.to_string())
    );
    let mut services: Vec<ServiceJson> = get(engine, &path)?;
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(services)
}

/// Every task of the services `ids`, with the swarm's short history of each slot.
fn list_tasks(engine: &Engine, ids: &[&str]) -> Result<Vec<TaskState>> {
    let filters = serde_json::json!({ "service": ids });
    let path = format!(
        "/{API_VERSION}/tasks?filters={}",
        url_encode(&filters.to_string())
    );
    let response = engine.request("GET", &path, None)?;
    let tasks: Vec<TaskJson> = if response.status == 404 {
        // A service went between the two requests, and the engine refuses the whole filter:
        // take every task and keep those of the services still asked about.
        let all = format!("/{API_VERSION}/tasks");
        get::<Vec<TaskJson>>(engine, &all)?
            .into_iter()
            .filter(|t| ids.contains(&t.service_id.as_str()))
            .collect()
    } else {
        parse_answer(&response, &path)?
    };
    Ok(tasks.into_iter().map(TaskState::from).collect())
}

fn get<T: serde::de::DeserializeOwned>(engine: &Engine, path: &str) -> Result<T> {
    parse_answer(&engine.request("GET", path, None)?, path)
}

/// A 2xx answer's JSON, or the engine's own message as the error.
fn parse_answer<T: serde::de::DeserializeOwned>(response: &Response, path: &str) -> Result<T> {
    if !response.is_success() {
        let message = response.message();
        return Err(Error::Infra(cli::daemon_hint(&message).unwrap_or_else(
            || {
                format!(
                    "docker engine answered {} to GET {path}: {}",
                    response.status,
                    one_line(&message)
                )
            },
        )));
    }
    serde_json::from_slice(&response.body).map_err(|e| {
        Error::Infra(format!(
            "unexpected answer from the docker engine to GET {path}: {e}"
        ))
    })
}

/// One snapshot from the engine's answers. Services the engine gave no task counts for (an
/// older engine, or a captured answer without them) are counted from their tasks.
pub fn assemble(
    stack: &str,
    services: Vec<ServiceJson>,
    tasks: Vec<TaskState>,
    containers: HashMap<String, ContainerInfo>,
) -> Snapshot {
    let services = services
        .into_iter()
        .map(|json| {
            let counted = json.service_status.is_none();
            let mut service = ServiceState::from(json);
            service.short_name = short_name(&service.name, stack).to_string();
            if counted {
                service.running = tasks
                    .iter()
                    .filter(|t| t.service_id == service.id && t.is_running())
                    .count() as u64;
            }
            service
        })
        .collect();
    Snapshot {
        services,
        tasks,
        containers,
    }
}

/// `<stack>_<name>` → `<name>`.
pub fn short_name<'a>(name: &'a str, stack: &str) -> &'a str {
    name.strip_prefix(stack)
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
}

impl From<ServiceJson> for ServiceState {
    /// What `docker service ls` and `docker service inspect` would say together: replicas as
    /// running/desired (and completions for jobs) from the swarm's task counts, the mode in
    /// the CLI's words, the image without its digest. The short name is the caller's to set:
    /// it depends on the stack.
    fn from(json: ServiceJson) -> Self {
        let spec = json.spec;
        let status = json.service_status.unwrap_or_default();
        let mode = &spec.mode;
        let (mode_name, desired, completed) = if let Some(replicated) = &mode.replicated {
            ("replicated", replicated.replicas.unwrap_or(0), None)
        } else if mode.global.is_some() {
            ("global", status.desired_tasks, None)
        } else if let Some(job) = &mode.replicated_job {
            let of = job.total_completions.unwrap_or(1);
            (
                "replicated job",
                status.desired_tasks,
                Some((status.completed_tasks, of)),
            )
        } else if mode.global_job.is_some() {
            let done = status.completed_tasks;
            (
                "global job",
                status.desired_tasks,
                Some((done, status.desired_tasks + done)),
            )
        } else {
            ("", 0, None)
        };
        let container = &spec.task_template.container_spec;
        let has_healthcheck = container
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"));
        let image = container
            .image
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        let template_changed = json
            .previous_spec
            .as_ref()
            .is_some_and(|previous| previous.task_template != spec.task_template.raw);
        let update_started = json
            .update_status
            .as_ref()
            .and_then(|u| parse_time(&u.started_at));
        let (update_state, update_message) = match json.update_status {
            Some(u) => (
                Some(u.state).filter(|s| !s.is_empty()),
                Some(u.message).filter(|s| !s.is_empty()),
            ),
            None => (None, None),
        };
        ServiceState {
            id: json.id,
            short_name: String::new(),
            name: spec.name,
            image,
            mode: mode_name.to_string(),
            desired,
            running: status.running_tasks,
            completed,
            update_state,
            update_message,
            template_changed,
            update_started,
            labels: spec.labels,
            has_healthcheck,
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
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceJson {
    #[serde(rename = "ID")]
    id: String,
    spec: ServiceSpecJson,
    previous_spec: Option<PreviousSpecJson>,
    update_status: Option<UpdateStatusJson>,
    /// Only with `?status=true`.
    service_status: Option<ServiceStatusJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ServiceSpecJson {
    name: String,
    labels: BTreeMap<String, String>,
    task_template: TaskTemplateJson,
    mode: ModeJson,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "PascalCase")]
struct PreviousSpecJson {
    task_template: serde_json::Value,
}

/// The task template, whole (to compare with the previous one) and as read.
#[derive(Debug, Default)]
struct TaskTemplateJson {
    raw: serde_json::Value,
    container_spec: ContainerSpecJson,
}

impl<'de> Deserialize<'de> for TaskTemplateJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        let container_spec = raw
            .get("ContainerSpec")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(serde::de::Error::custom)?
            .unwrap_or_default();
        Ok(TaskTemplateJson {
            raw,
            container_spec,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ContainerSpecJson {
    image: String,
    healthcheck: Option<HealthcheckJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct HealthcheckJson {
    test: Vec<String>,
}

/// Exactly one of these is present; `Global` and `GlobalJob` are empty objects.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ModeJson {
    replicated: Option<ReplicatedJson>,
    global: Option<serde_json::Value>,
    replicated_job: Option<ReplicatedJobJson>,
    global_job: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ReplicatedJson {
    replicas: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ReplicatedJobJson {
    total_completions: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ServiceStatusJson {
    running_tasks: u64,
    desired_tasks: u64,
    completed_tasks: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct UpdateStatusJson {
    state: String,
    message: String,
    started_at: String,
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

    #[test]
    fn a_changed_task_template_and_when_its_update_began_are_read() {
        let service = |previous: &str, started: &str| {
            let json = format!(
                r#"{{"ID":"s1",
                  "Spec":{{"Name":"st_app","TaskTemplate":{{"ContainerSpec":{{"Image":"app:2"}}}},"Mode":{{"Replicated":{{"Replicas":1}}}}}},
                  "PreviousSpec":{{"TaskTemplate":{{"ContainerSpec":{{"Image":"{previous}"}}}}}},
                  "UpdateStatus":{{"State":"completed","StartedAt":"{started}"}}}}"#
            );
            ServiceState::from(serde_json::from_str::<ServiceJson>(&json).unwrap())
        };
        let s = service("app:1", "2026-01-01T00:00:05Z");
        assert!(s.template_changed);
        assert_eq!(s.image, "app:2");
        assert_eq!(s.update_started, parse_time("2026-01-01T00:00:05Z"));
        // Only the service's own labels changed: nothing to roll out.
        assert!(!service("app:2", "2026-01-01T00:00:05Z").template_changed);
    }

    pub const SERVICE_LS: &str = include_str!("testdata/service_ls.jsonl");
    pub const SERVICES: &str = include_str!("testdata/services.json");
    /// `GET /services?status=true` for a one-service stack `capts`.
    pub const SERVICES_STATUS: &str = include_str!("testdata/services_status.json");
    pub const SERVICE_UPDATING: &str = include_str!("testdata/service_updating.json");
    pub const TASKS: &str = include_str!("testdata/tasks.json");
    pub const CONTAINERS: &str = include_str!("testdata/containers.json");
    pub const TASK_UNHEALTHY: &str = include_str!("testdata/task_unhealthy.json");
    pub const CONTAINER_UNHEALTHY: &str = include_str!("testdata/container_unhealthy.json");

    /// The captured stack `capt`: `app` healthy, `bad` killed for being unhealthy, `noimg`
    /// rejected for a missing image.
    pub fn captured() -> Snapshot {
        let containers = parse_containers(CONTAINERS)
            .unwrap()
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        assemble(
            "capt",
            parse_array(SERVICES).unwrap(),
            parse_tasks(TASKS).unwrap(),
            containers,
        )
    }

    #[test]
    fn services_from_the_api_carry_names_image_and_the_swarms_task_counts() {
        let services: Vec<ServiceJson> = parse_array(SERVICES_STATUS).unwrap();
        let snap = assemble("capts", services, Vec::new(), HashMap::new());
        let s = &snap.services[0];
        assert_eq!(s.name, "capts_app");
        assert_eq!(s.short_name, "app");
        assert_eq!(s.image, "ccci-busybox:1");
        assert_eq!(s.mode, "replicated");
        // From ServiceStatus: no task was given to count.
        assert_eq!((s.running, s.desired, s.completed), (1, 1, None));
    }

    #[test]
    fn counting_running_tasks_agrees_with_docker_service_ls() {
        // The captured answer has no ServiceStatus: replicas are counted from the tasks, and
        // must read as `docker service ls` printed them for the same stack.
        let snap = captured();
        for line in SERVICE_LS.lines() {
            let ls: serde_json::Value = serde_json::from_str(line).unwrap();
            let service = snap
                .services
                .iter()
                .find(|s| s.name == ls["Name"].as_str().unwrap())
                .unwrap();
            assert_eq!(
                format!("{}/{}", service.running, service.desired),
                ls["Replicas"].as_str().unwrap(),
                "{}",
                service.name
            );
            assert_eq!(service.image, ls["Image"].as_str().unwrap());
            assert_eq!(service.mode, ls["Mode"].as_str().unwrap());
        }
    }

    #[test]
    fn modes_read_as_the_cli_shows_them() {
        let service = |spec_mode: &str, status: &str| -> ServiceState {
            let json = format!(
                r#"{{"ID":"x","Spec":{{"Name":"s_a","Mode":{spec_mode},"TaskTemplate":{{"ContainerSpec":{{"Image":"img:1@sha256:abc"}}}}}},"ServiceStatus":{status}}}"#
            );
            ServiceState::from(serde_json::from_str::<ServiceJson>(&json).unwrap())
        };
        let counts = |s: &ServiceState| (s.mode.clone(), s.running, s.desired, s.completed);
        let status = r#"{"RunningTasks":1,"DesiredTasks":2,"CompletedTasks":3}"#;
        assert_eq!(
            counts(&service(r#"{"Replicated":{"Replicas":4}}"#, status)),
            ("replicated".into(), 1, 4, None)
        );
        assert_eq!(
            counts(&service(r#"{"Global":{}}"#, status)),
            ("global".into(), 1, 2, None)
        );
        assert_eq!(
            counts(&service(
                r#"{"ReplicatedJob":{"MaxConcurrent":1,"TotalCompletions":5}}"#,
                status
            )),
            ("replicated job".into(), 1, 2, Some((3, 5)))
        );
        assert_eq!(
            counts(&service(r#"{"GlobalJob":{}}"#, status)),
            ("global job".into(), 1, 2, Some((3, 5)))
        );
        assert_eq!(
            service(r#"{"Global":{}}"#, status).image,
            "img:1",
            "the digest is dropped as `docker service ls` drops it"
        );
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
        assert_eq!(app.id.len(), 25);
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
        let service = ServiceState::from(updating.into_iter().next().unwrap());
        assert_eq!(service.update_state.as_deref(), Some("updating"));
        assert_eq!(
            service.update_message.as_deref(),
            Some("update in progress")
        );
        assert_eq!(service.desired, 1, "taken from the spec");
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
