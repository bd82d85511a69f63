//! The `docker` CLI as the swarm and teardown modules call it: one place that builds the
//! commands (always through [`crate::sys::process::Runner`], always with a timeout) and turns the
//! CLI's failures into one-line [`crate::Error`]s with a hint.

use crate::error::{Error, Result};
use crate::sys::process::{Cmd, CommandError, Output, Runner};

use super::inspect::{QUERY_TIMEOUT, one_line};

/// The program every engine call runs.
pub const DOCKER: &str = "docker";

/// `docker <args>` with the default query timeout.
pub fn cmd<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Cmd {
    Cmd::new(DOCKER).args(args).timeout(QUERY_TIMEOUT)
}

/// Runs `cmd` whatever its exit code; only failing to run it at all is an error.
pub fn output(runner: &Runner, cmd: &Cmd) -> Result<Output> {
    runner.output(cmd).map_err(command_error)
}

/// A docker command that ran and failed, as one line: `failed to <what>: <docker's error>`,
/// with a hint when the daemon is down.
pub fn failed(what: &str, out: &Output) -> Error {
    let line = out.last_error_line();
    if let Some(hint) = daemon_hint(&out.stderr_str()) {
        return Error::Infra(hint);
    }
    Error::Infra(format!("failed to {what}: {}", one_line(&line)))
}

/// "docker is not running" and friends, recognised from the CLI's stderr.
pub fn daemon_hint(stderr: &str) -> Option<String> {
    if stderr.contains("Cannot connect to the Docker daemon") {
        Some(
            "docker is not running: start dockerd (e.g. `systemctl start docker`) or set DOCKER_HOST"
                .to_string(),
        )
    } else if stderr.contains("permission denied") && stderr.contains("docker.sock") {
        Some(
            "permission denied on the docker socket: run as root or as a member of the docker group"
                .to_string(),
        )
    } else if stderr.contains("This node is not a swarm manager") {
        Some(
            "the swarm is not active: run `docker swarm init --advertise-addr 127.0.0.1`"
                .to_string(),
        )
    } else {
        None
    }
}

/// Maps a failure to run docker at all to the library's error.
pub fn command_error(e: CommandError) -> Error {
    match e {
        CommandError::NotFound { .. } => Error::Infra(
            "docker is not installed or not on PATH: install docker.io (Debian) or Docker Engine"
                .to_string(),
        ),
        CommandError::Cancelled { signal, .. } => Error::Interrupted(signal),
        CommandError::Failed { ref output, .. } => match daemon_hint(&output.stderr_str()) {
            Some(hint) => Error::Infra(hint),
            None => Error::Infra(e.to_string()),
        },
        other => Error::Infra(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_problems_get_a_hint() {
        let down = "Cannot connect to the Docker daemon at unix:///tmp/nope.sock. Is the docker daemon running?";
        assert!(
            daemon_hint(down)
                .unwrap()
                .starts_with("docker is not running")
        );
        let worker = "Error response from daemon: This node is not a swarm manager. Use \"docker swarm init\"";
        assert!(daemon_hint(worker).unwrap().contains("docker swarm init"));
        assert!(daemon_hint("Error: No such object: x").is_none());
    }
}
