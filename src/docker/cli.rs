//! The `docker` CLI as ccci calls it: the one builder of every docker command ([`cmd`]: pinned
//! to the engine [`super::endpoint`] resolved, with a timeout, run through
//! [`crate::sys::process::Runner`] so the run's cancel token ends it), and the mapping of the
//! CLI's failures to one-line [`crate::Error`]s with a hint. Nothing outside this module names
//! the docker program (a test below keeps it so).

use std::ffi::OsStr;

use crate::error::{Error, Result};
use crate::sys::process::{Cmd, CommandError, Output, Runner};

use super::endpoint::{self, Endpoint};
use super::inspect::{QUERY_TIMEOUT, one_line};

/// The program every engine call runs; private, so every call is built by [`cmd`].
const DOCKER: &str = "docker";

/// Variables that choose the docker CLI's engine or configuration. [`cmd`] sets the first two;
/// values a caller passes on to docker (a recipe's env file) must not override them.
const ENGINE_VARS: [&str; 5] = [
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
];

/// `docker <args>` talking to this process's engine, with the default query timeout (callers
/// set a longer one for deploys and execs). Fails when the engine endpoint cannot be resolved.
pub fn cmd<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Result<Cmd> {
    Ok(cmd_at(endpoint::current()?, args))
}

/// [`cmd`] for a given endpoint.
pub fn cmd_at<S: AsRef<OsStr>>(endpoint: &Endpoint, args: impl IntoIterator<Item = S>) -> Cmd {
    let mut cmd = Cmd::new(DOCKER).args(args).timeout(QUERY_TIMEOUT);
    for (key, value) in endpoint.cli_env() {
        cmd = match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

/// `vars` without the ones that would point docker at another engine than [`cmd`]'s.
pub fn without_engine_vars<K: AsRef<str>, V>(
    vars: impl IntoIterator<Item = (K, V)>,
) -> impl Iterator<Item = (K, V)> {
    vars.into_iter()
        .filter(|(k, _)| !ENGINE_VARS.contains(&k.as_ref()))
}

/// `Ok` when the docker CLI is on PATH (deploys and streaming execs need it), else the
/// not-installed error with its hint.
pub fn require_installed() -> Result<()> {
    match crate::sys::process::find_program(DOCKER) {
        Some(_) => Ok(()),
        None => Err(command_error(CommandError::NotFound {
            program: DOCKER.to_string(),
        })),
    }
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
    } else if let Some(line) = stderr.lines().find(|l| l.contains("error during connect")) {
        // The CLI's words for an engine it cannot reach over tcp or ssh.
        Some(format!(
            "cannot reach the docker engine: {}: check DOCKER_HOST or the docker context",
            one_line(line)
        ))
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
    use crate::docker::api::Engine;
    use crate::docker::endpoint::tests::{config_with_context, vars};
    use crate::sys::cancel::Cancel;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;

    /// A fake engine on a unix socket that answers every request with an empty list and
    /// records each request's User-Agent, until a request for `/stop` arrives.
    fn fake_engine(socket: &Path) -> std::thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let mut agents = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                if request_line.starts_with("GET /stop ") {
                    break;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(agent) = line
                        .strip_prefix("User-Agent: ")
                        .or_else(|| line.strip_prefix("user-agent: "))
                    {
                        agents.push(agent.trim().to_string());
                    }
                    line.clear();
                }
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
                );
            }
            agents
        })
    }

    #[test]
    fn regression_janitor_and_cli_use_the_same_engine_when_a_context_is_set() {
        // The user's docker configuration selects context `ctx-x`, whose engine is socket X.
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("x.sock");
        let config = config_with_context("ctx-x", &format!("unix://{}", x.display()), true);
        let endpoint = endpoint::resolve(&vars(config.path())).unwrap();

        // Both clients are pointed at X.
        let engine = Engine::for_endpoint(&endpoint).unwrap();
        assert_eq!(engine.socket(), x);
        let cmd = cmd_at(&endpoint, ["service", "ls", "--quiet"]);
        assert_eq!(
            cmd.get_env("DOCKER_HOST"),
            Some(OsStr::new(&format!("unix://{}", x.display())))
        );

        // And both really talk to X (a fake engine: no swarm needed, only the docker CLI): the API client listing (as the janitor does), and the
        // docker CLI run as ccci builds it, under the user's configuration.
        let server = fake_engine(&x);
        let listed = engine
            .list(crate::docker::api::Kind::Service, &["ccci.run-id"])
            .unwrap();
        assert!(listed.is_empty());
        let out = Runner::new(Cancel::new())
            .output(&cmd.env("DOCKER_CONFIG", config.path()))
            .expect("the docker CLI runs");
        let mut stop = UnixStream::connect(&x).unwrap();
        stop.write_all(b"GET /stop HTTP/1.1\r\n\r\n").unwrap();
        let agents = server.join().unwrap();
        assert!(agents.iter().any(|a| a == "ccci"), "{agents:?}");
        assert!(
            agents.iter().any(|a| a.starts_with("Docker-Client/")),
            "the docker CLI did not reach X: {agents:?}; it said {}",
            out.stderr_str()
        );
    }

    #[test]
    fn the_api_client_and_the_cli_share_the_process_endpoint() {
        let Ok(endpoint) = endpoint::current() else {
            // An environment ccci cannot use: both refuse alike.
            assert!(Engine::from_env().is_err() && cmd(["info"]).is_err());
            return;
        };
        let cmd = cmd(["info"]).unwrap();
        match endpoint.unix_socket() {
            Ok(socket) => {
                assert_eq!(Engine::from_env().unwrap().socket(), socket);
                assert_eq!(
                    cmd.get_env("DOCKER_HOST"),
                    Some(OsStr::new(endpoint.host()))
                );
            }
            Err(_) => assert!(Engine::from_env().is_err()),
        }
        assert_eq!(cmd.program(), DOCKER);
    }

    #[test]
    fn engine_variables_of_a_recipe_never_reach_docker() {
        let vars = [
            ("DOCKER_HOST", "tcp://elsewhere:2375"),
            ("DOCKER_CONTEXT", "elsewhere"),
            ("DOMAIN", "d.example.org"),
        ];
        let kept: Vec<_> = without_engine_vars(vars).collect();
        assert_eq!(kept, [("DOMAIN", "d.example.org")]);
    }

    /// Every docker command goes through [`cmd`]: nothing else in `src/` may start the docker
    /// program by name.
    #[test]
    fn docker_commands_are_built_only_here() {
        fn scan(dir: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    scan(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("docker/cli.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                    for needle in [
                        "Cmd::new(\"docker\"",
                        "Command::new(\"docker\"",
                        "cli::DOCKER",
                    ] {
                        if squeezed.contains(needle) {
                            found.push(format!("{}: {needle}", path.display()));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        scan(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.is_empty(),
            "build docker commands with docker::cli::cmd: {found:?}"
        );
    }

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
