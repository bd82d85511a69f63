//! [`Swarm`]: asking the engine about one stack (services, tasks, health), readiness and
//! diagnostics entry points, and running commands in a service's container.
//!
//! Looks go through the engine's API ([`crate::docker::api`]): readiness looks at a stack every
//! time it changes, and a request costs about a millisecond where a docker CLI call costs tens.
//! Short commands run in containers (probes, markers) go through the API too; commands that
//! stream data (backups, hooks) go through the `docker` CLI as [`super::cli`] builds it (pinned
//! to the same engine endpoint, run by [`crate::sys::process::Runner`], so every call is
//! cancellable and bounded). This module only
//! reads and execs; it never deploys or removes anything (the drivers deploy,
//! [`crate::docker::teardown`] removes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::event::EventSink;
use crate::sys::process::{Cmd, Output, Runner};

use super::api::{API_VERSION, Engine, url_encode};
use super::cli;
use super::inspect;
use super::{ContainerInfo, Diagnosis, ServiceState, Snapshot};

/// How long a command in a container may run unless its caller says otherwise: a recipe's
/// hooks, probes and backups may be slow, but a hung one must not hold the run until its
/// deadline (or forever, without one).
const EXEC_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The engine, as ccci talks to it.
#[derive(Clone, Debug)]
pub struct Swarm {
    runner: Runner,
}

/// How [`Swarm::wait_ready`] waits.
#[derive(Clone, Debug)]
pub struct ReadyOptions {
    /// How long the stack may take to become ready.
    pub timeout: Duration,
    /// When the deploy being waited for began: tasks created before it belong to an earlier
    /// deploy and are never taken for its failures. Take it before deploying.
    pub since: SystemTime,
    /// This process deployed at `since`: a service whose task template changed is not ready
    /// until the swarm has begun (and finished) the rolling update after it. A wait on an app
    /// deployed earlier (a replayed step) knows no deploy to wait for.
    pub deployed: bool,
}

/// Why a stack did not become ready.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotReady {
    /// The swarm rejected or killed a task of this deploy.
    #[error("{service}: {error}{}", exit_suffix(error, *exit_code))]
    TaskFailed {
        service: String,
        error: String,
        exit_code: Option<i64>,
    },
    /// A service's update is paused: the swarm gave up on it and will not go on by itself.
    #[error("{service}: update paused: {message}")]
    Paused { service: String, message: String },
    #[error("not ready after {}: waiting for {waiting_for}", humantime::format_duration(Duration::from_secs(waited.as_secs())))]
    Timeout {
        waited: Duration,
        waiting_for: String,
    },
    #[error("interrupted by {}", crate::sys::signal::signal_name(*.0))]
    Interrupted(i32),
    /// The engine could not be asked.
    #[error("{0}")]
    Infra(String),
}

fn exit_suffix(error: &str, exit_code: Option<i64>) -> String {
    match exit_code {
        Some(code) if !error.contains(&code.to_string()) => format!(" (exit code {code})"),
        _ => String::new(),
    }
}

impl From<NotReady> for Error {
    /// For callers that only need the library error: an interruption stays an interruption,
    /// everything else is the stack's (or engine's) fault and reads as one line.
    fn from(e: NotReady) -> Self {
        match e {
            NotReady::Interrupted(signal) => Error::Interrupted(signal),
            other => Error::Infra(other.to_string()),
        }
    }
}

/// How [`Swarm::exec_with`] connects the command's standard streams.
#[derive(Clone, Debug, Default)]
pub struct ExecIo {
    /// Bytes to feed to the command's stdin.
    pub stdin: Option<Vec<u8>>,
    /// A file to stream to the command's stdin (backups can be large).
    pub stdin_file: Option<PathBuf>,
    /// A file to write the command's stdout to instead of capturing it.
    pub stdout_file: Option<PathBuf>,
    /// How long the command may run.
    pub timeout: Option<Duration>,
    /// Copy the command's output, line by line, to the runner's log sink as it arrives,
    /// whether or not it succeeds: what hooks use, so their output is always in the run log.
    /// Never for a stream of data (a tar of a backup).
    pub log_output: bool,
}

impl Swarm {
    pub fn new(runner: Runner) -> Self {
        Swarm { runner }
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Docker is installed, reachable, and this node is an active swarm manager. Asked of the
    /// engine's API (as every look at a stack is), which also proves it can be reached the
    /// way readiness and teardown reach it; the CLI must be there for deploys and execs.
    pub fn preflight(&self) -> Result<()> {
        cli::require_installed()?;
        let engine = Engine::from_env()?.with_timeout(inspect::QUERY_TIMEOUT);
        if let Err(e) = std::os::unix::net::UnixStream::connect(engine.socket()) {
            return Err(Error::Infra(match e.kind() {
                std::io::ErrorKind::PermissionDenied => format!(
                    "permission denied on the docker socket {}: run as root or as a member of the docker group",
                    engine.socket().display()
                ),
                _ => format!(
                    "docker is not running (nothing answers at {}): start dockerd (e.g. `systemctl start docker`) or set DOCKER_HOST",
                    engine.socket().display()
                ),
            }));
        }
        let info = engine.get_json(&format!("/{API_VERSION}/info"))?;
        check_swarm_info(&info.get("Swarm").cloned().unwrap_or_default().to_string())
    }

    /// The services of `stack` with their replicas, update state and labels.
    pub fn services(&self, stack: &str) -> Result<Vec<ServiceState>> {
        Ok(inspect::snapshot(&self.runner, stack, inspect::Containers::None)?.services)
    }

    /// One look at `stack`: services, tasks (with history) and the containers of the tasks
    /// the swarm still wants.
    pub fn snapshot(&self, stack: &str) -> Result<Snapshot> {
        inspect::snapshot(&self.runner, stack, inspect::Containers::Current)
    }

    /// Waits until `stack` is ready (see [`assess`]), failing fast on a failed task, an
    /// unhealthy container or a paused update of this deploy. Reports progress as
    /// [`crate::event::Event::Waiting`] and failures as
    /// [`crate::event::Event::TaskFailed`]. Wakes on engine events, and looks at least every
    /// second.
    pub fn wait_ready(
        &self,
        stack: &str,
        opts: &ReadyOptions,
        sink: &dyn EventSink,
    ) -> std::result::Result<(), NotReady> {
        self.wait_ready_loop(stack, opts, sink)
    }

    /// Writes diagnostics for `stack` into `dir` (one `<service>.txt` each) and finds the top
    /// reason. Never fails: what could not be collected is noted.
    pub fn diagnose(&self, stack: &str, dir: &Path) -> Diagnosis {
        self.collect_diagnosis(stack, dir)
    }

    /// Runs `command` in a running container of `<stack>_<service>`, feeding it `stdin`.
    /// Returns the output whatever the exit code; fails when no container runs.
    pub fn exec(
        &self,
        stack: &str,
        service: &str,
        command: &[String],
        stdin: Option<Vec<u8>>,
    ) -> Result<Output> {
        self.exec_with(
            stack,
            service,
            command,
            ExecIo {
                stdin,
                ..ExecIo::default()
            },
        )
    }

    /// Runs a short `command` (a probe, a marker read or write) in a running container of
    /// `<stack>_<service>` through the engine's API, without a docker CLI process. Its output
    /// is held in memory (at most the API client's bound): commands that stream data (backups)
    /// use [`Swarm::exec`]. Returns the output whatever the exit code; fails when no container
    /// runs. A cancelled run stops waiting at once; the command itself ends in its container,
    /// as it would after a killed `docker exec`.
    pub fn exec_short(&self, stack: &str, service: &str, command: &[String]) -> Result<Output> {
        if command.is_empty() {
            return Err(Error::Usage(format!(
                "no command given to run in service {service}"
            )));
        }
        let container = self.running_container_id(stack, service)?;
        let engine = Engine::from_env()?.with_timeout(API_EXEC_TIMEOUT);
        let started = Instant::now();
        let command = command.to_vec();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(exec_over_api(&engine, &container, &command));
        });
        loop {
            self.runner.check()?;
            match result.recv_timeout(CANCEL_CHECK) {
                Ok(answer) => {
                    let (code, stdout, stderr) = answer?;
                    return Ok(Output {
                        code: Some(code),
                        signal: None,
                        stdout,
                        stderr,
                        elapsed: started.elapsed(),
                    });
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Infra(format!(
                        "running a command in service {service} ended without an answer"
                    )));
                }
            }
        }
    }

    /// [`Swarm::exec`] with files for stdin and stdout, and a timeout (30 minutes unless
    /// `io` sets one).
    pub fn exec_with(
        &self,
        stack: &str,
        service: &str,
        command: &[String],
        io: ExecIo,
    ) -> Result<Output> {
        if command.is_empty() {
            return Err(Error::Usage(format!(
                "no command given to run in service {service}"
            )));
        }
        let container = self.running_container_id(stack, service)?;
        cli::output(&self.runner, &exec_cmd(&container, command, io)?)
    }

    /// The running container of `<stack>_<service>`: its id, health and mounts.
    pub fn running_container(&self, stack: &str, service: &str) -> Result<ContainerInfo> {
        let id = self.running_container_id(stack, service)?;
        let mut found = inspect::inspect_containers(&self.runner, std::slice::from_ref(&id))?;
        found.remove(&id).ok_or_else(|| {
            Error::Infra(format!(
                "the container of service {service} in stack {stack} went away"
            ))
        })
    }

    fn running_container_id(&self, stack: &str, service: &str) -> Result<String> {
        self.runner.check()?;
        let filters = serde_json::json!({
            "label": [format!("com.docker.swarm.service.name={stack}_{service}")],
            "status": ["running"],
        });
        let path = format!(
            "/{API_VERSION}/containers/json?filters={}",
            url_encode(&filters.to_string())
        );
        let listed = Engine::from_env()?
            .with_timeout(inspect::QUERY_TIMEOUT)
            .get_json(&path)?;
        listed
            .as_array()
            .and_then(|containers| containers.first())
            .and_then(|c| c.get("Id"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Infra(format!(
                    "no running container of service {service} in stack {stack}"
                ))
            })
    }

    /// True when the engine has `image` locally (no registry is asked).
    pub fn image_present(&self, image: &str) -> Result<bool> {
        self.exists(&format!("/{API_VERSION}/images/{}/json", url_encode(image)))
    }

    /// True when the swarm has a secret named `name`.
    pub fn secret_exists(&self, name: &str) -> Result<bool> {
        self.exists(&format!("/{API_VERSION}/secrets/{}", url_encode(name)))
    }

    /// Whether the engine answers `path` with the object (200) or without it (404).
    fn exists(&self, path: &str) -> Result<bool> {
        self.runner.check()?;
        let response = Engine::from_env()?
            .with_timeout(inspect::QUERY_TIMEOUT)
            .request("GET", path, None)?;
        match response.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            status => Err(Error::Infra(format!(
                "docker engine answered {status} to GET {path}: {}",
                response.message()
            ))),
        }
    }
}

/// `docker exec` of `command` in `container`, connected as `io` says.
fn exec_cmd(container: &str, command: &[String], io: ExecIo) -> Result<Cmd> {
    let interactive = io.stdin.is_some() || io.stdin_file.is_some();
    let mut cmd = cli::cmd(["exec"])?.timeout(EXEC_TIMEOUT);
    if interactive {
        cmd = cmd.arg("-i");
    }
    cmd = cmd.arg(container).args(command);
    if let Some(bytes) = io.stdin {
        cmd = cmd.stdin_bytes(bytes);
    }
    if let Some(path) = io.stdin_file {
        cmd = cmd.stdin_file(path);
    }
    if let Some(path) = io.stdout_file {
        cmd = cmd.stdout_file(path);
    }
    if let Some(timeout) = io.timeout {
        cmd = cmd.timeout(timeout);
    }
    if io.log_output {
        cmd = cmd.log_output();
    }
    Ok(cmd)
}

/// How long an exec through the API may stay silent before it counts as failed.
const API_EXEC_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a run waiting for an exec notices that it was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// Creates an exec of `command` in `container`, runs it attached, and returns its exit code,
/// stdout and stderr.
fn exec_over_api(
    engine: &Engine,
    container: &str,
    command: &[String],
) -> Result<(i32, Vec<u8>, Vec<u8>)> {
    let short = container.get(..12).unwrap_or(container);
    let failed = |what: &str, response: &super::api::Response| {
        Error::Infra(format!(
            "cannot {what} in container {short}: {}",
            inspect::one_line(&response.message())
        ))
    };
    let create = serde_json::json!({
        "AttachStdout": true,
        "AttachStderr": true,
        "Cmd": command,
    })
    .to_string();
    let created = engine.request(
        "POST",
        &format!("/{API_VERSION}/containers/{}/exec", url_encode(container)),
        Some(create.as_bytes()),
    )?;
    if !created.is_success() {
        return Err(failed("run a command", &created));
    }
    let id = serde_json::from_slice::<serde_json::Value>(&created.body)
        .ok()
        .and_then(|v| v.get("Id").and_then(|id| id.as_str()).map(str::to_string))
        .ok_or_else(|| failed("run a command", &created))?;
    let id = url_encode(&id);
    let streamed = engine.request(
        "POST",
        &format!("/{API_VERSION}/exec/{id}/start"),
        Some(br#"{"Detach":false,"Tty":false}"#),
    )?;
    if !streamed.is_success() {
        return Err(failed("start a command", &streamed));
    }
    let (stdout, stderr) = demux(&streamed.body);
    // The stream ends with the command; the engine may record its exit a moment later.
    for _ in 0..100 {
        let info = engine.get_json(&format!("/{API_VERSION}/exec/{id}/json"))?;
        if info.get("Running").and_then(serde_json::Value::as_bool) == Some(false) {
            let code = info
                .get("ExitCode")
                .and_then(serde_json::Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .ok_or_else(|| failed("read the exit code of a command", &streamed))?;
            return Ok((code, stdout, stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Error::Infra(format!(
        "a command in container {short} ended its output but not its run"
    )))
}

/// Splits an attached exec's stream into stdout and stderr: frames of an 8-byte header (the
/// stream: 1 stdout, 2 stderr; three zero bytes; the length, big-endian) and the payload.
/// Anything that is not a frame is kept as stdout rather than dropped.
fn demux(mut raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while raw.len() >= 8 && raw[0] <= 2 && raw[1..4] == [0, 0, 0] {
        let size = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        let end = raw.len().min(8 + size);
        if raw[0] == 2 {
            stderr.extend_from_slice(&raw[8..end]);
        } else {
            stdout.extend_from_slice(&raw[8..end]);
        }
        raw = &raw[end..];
    }
    stdout.extend_from_slice(raw);
    (stdout, stderr)
}

/// Judges `docker info --format '{{json .Swarm}}'`.
fn check_swarm_info(json: &str) -> Result<()> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct SwarmInfo {
        local_node_state: String,
        control_available: bool,
        error: String,
    }
    let info: SwarmInfo = serde_json::from_str(json.trim()).map_err(|e| {
        Error::Infra(format!(
            "unexpected output from `docker info`: {e}: {}",
            inspect::one_line(json)
        ))
    })?;
    const INIT: &str = "run `docker swarm init --advertise-addr 127.0.0.1`";
    match info.local_node_state.as_str() {
        "active" if info.control_available => Ok(()),
        "active" => Err(Error::Infra(
            "this node is a swarm worker, not a manager: run ccci on a manager node".to_string(),
        )),
        "" | "inactive" => Err(Error::Infra(format!("the swarm is not active: {INIT}"))),
        "locked" => Err(Error::Infra(
            "the swarm is locked: run `docker swarm unlock`".to_string(),
        )),
        state => {
            let detail = if info.error.is_empty() {
                String::new()
            } else {
                format!(" ({})", info.error)
            };
            Err(Error::Infra(format!(
                "the swarm is {state}{detail}: check `docker info`, or {INIT}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_info_is_judged_with_a_hint() {
        let active =
            r#"{"NodeID":"i62n","LocalNodeState":"active","ControlAvailable":true,"Error":""}"#;
        assert!(check_swarm_info(active).is_ok());
        let inactive = r#"{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}"#;
        let err = check_swarm_info(inactive).unwrap_err().to_string();
        assert_eq!(
            err,
            "the swarm is not active: run `docker swarm init --advertise-addr 127.0.0.1`"
        );
        let worker = r#"{"LocalNodeState":"active","ControlAvailable":false}"#;
        assert!(
            check_swarm_info(worker)
                .unwrap_err()
                .to_string()
                .contains("worker")
        );
        let error = r#"{"LocalNodeState":"error","Error":"raft failed"}"#;
        assert!(
            check_swarm_info(error)
                .unwrap_err()
                .to_string()
                .contains("raft failed")
        );
        assert!(check_swarm_info("nope").is_err());
    }

    #[test]
    fn regression_exec_could_not_log_the_output_of_a_hook_that_succeeded() {
        let hook = ["sh", "-c", "pg_dump app > /tmp/dump.sql"].map(String::from);
        let cmd = exec_cmd(
            "c0ffee",
            &hook,
            ExecIo {
                log_output: true,
                ..ExecIo::default()
            },
        )
        .unwrap();
        assert!(cmd.logs_output());
        assert_eq!(
            cmd.get_args(),
            ["exec", "c0ffee", "sh", "-c", "pg_dump app > /tmp/dump.sql"]
        );
        let tar = ["tar", "-cf", "-", "data"].map(String::from);
        assert!(
            !exec_cmd("c0ffee", &tar, ExecIo::default())
                .unwrap()
                .logs_output(),
            "a data stream is never copied to the log"
        );
    }

    #[test]
    fn exec_streams_are_split_by_their_frames() {
        let mut raw = vec![2, 0, 0, 0, 0, 0, 0, 4];
        raw.extend_from_slice(b"err\n");
        raw.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 4]);
        raw.extend_from_slice(b"out\n");
        assert_eq!(demux(&raw), (b"out\n".to_vec(), b"err\n".to_vec()));
        // A frame cut short, and text that is no frame at all, are kept, not dropped.
        assert_eq!(
            demux(&[1, 0, 0, 0, 0, 0, 0, 9, b'a', b'b']),
            (b"ab".to_vec(), Vec::new())
        );
        assert_eq!(demux(b"plain text"), (b"plain text".to_vec(), Vec::new()));
        assert_eq!(demux(&[]), (Vec::new(), Vec::new()));
    }

    #[test]
    fn not_ready_reads_as_one_line() {
        let failed = NotReady::TaskFailed {
            service: "app".into(),
            error: "task: non-zero exit (137): dockerexec: unhealthy container".into(),
            exit_code: Some(137),
        };
        assert_eq!(
            failed.to_string(),
            "app: task: non-zero exit (137): dockerexec: unhealthy container"
        );
        let exited = NotReady::TaskFailed {
            service: "db".into(),
            error: "unhealthy container".into(),
            exit_code: Some(1),
        };
        assert_eq!(exited.to_string(), "db: unhealthy container (exit code 1)");
        let timeout = NotReady::Timeout {
            waited: Duration::from_millis(120_400),
            waiting_for: "app 0/1 (task starting)".into(),
        };
        assert_eq!(
            timeout.to_string(),
            "not ready after 2m: waiting for app 0/1 (task starting)"
        );
        assert_eq!(
            NotReady::Interrupted(15).to_string(),
            "interrupted by SIGTERM"
        );
        let paused = NotReady::Paused {
            service: "app".into(),
            message: "update paused due to failure".into(),
        };
        assert_eq!(
            paused.to_string(),
            "app: update paused: update paused due to failure"
        );
        assert!(matches!(
            Error::from(NotReady::Interrupted(2)),
            Error::Interrupted(2)
        ));
    }
}
