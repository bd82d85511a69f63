//! `ccci doctor`: what this host has and lacks for ccci runs, each fact checked the way a run
//! would meet it, with what to do about a problem. Changes nothing on the host.
//!
//! A `fail` makes runs impossible (docker down, no swarm, nowhere to write); a `warn` changes
//! how runs go (no IPVS: dnsrr; no abra: the stack driver; no `proxy` network: created on the
//! first deploy that needs it).

use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::docker::Swarm;
use crate::docker::network::{self, ProxyNetwork};
use crate::sys::process::{Cmd, Runner};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One fact about the host.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
}

/// Free space below which a runs directory is a warning, and a failure.
const LOW_SPACE: u64 = 2 << 30;
const NO_SPACE: u64 = 200 << 20;

/// Runs every check, in the order a run meets them.
pub fn check_host(config: &Config, runner: &Runner) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |name, level, detail: String| {
        checks.push(Check {
            name,
            level,
            detail,
        })
    };

    let docker = crate::docker::cli::cmd(["version", "--format", "{{.Server.Version}}"])
        .and_then(|cmd| crate::docker::cli::output(runner, &cmd));
    let docker_up = match docker {
        Ok(out) if out.success() => {
            push(
                "docker",
                Level::Ok,
                format!("engine {}", out.stdout_str().trim()),
            );
            true
        }
        Ok(out) => {
            let why = crate::docker::cli::daemon_hint(&out.stderr_str())
                .unwrap_or_else(|| out.last_error_line());
            push("docker", Level::Fail, why);
            false
        }
        Err(e) => {
            push("docker", Level::Fail, e.to_string());
            false
        }
    };
    if docker_up {
        match Swarm::new(runner.clone()).preflight() {
            Ok(()) => push("swarm", Level::Ok, "active, this node is a manager".into()),
            Err(e) => push("swarm", Level::Fail, e.to_string()),
        }
        match network::proxy_network(runner) {
            Ok(ProxyNetwork::Ready) => push(
                "proxy network",
                Level::Ok,
                "attachable overlay `proxy` present".into(),
            ),
            Ok(ProxyNetwork::Absent) => push(
                "proxy network",
                Level::Warn,
                "absent: created on the first deploy of a recipe that attaches to it".into(),
            ),
            Ok(ProxyNetwork::Unusable(why)) => push("proxy network", Level::Fail, why),
            Err(e) => push("proxy network", Level::Fail, e.to_string()),
        }
    }
    if crate::docker::host::has_ipvs() {
        push(
            "ipvs",
            Level::Ok,
            "present: service virtual IPs answer".into(),
        );
    } else {
        push(
            "ipvs",
            Level::Warn,
            "absent: service virtual IPs do not answer; ccci deploys services with endpoint_mode dnsrr".into(),
        );
    }
    match crate::sys::process::find_program("abra") {
        Some(path) => {
            let version = runner
                .output(
                    &Cmd::new(&path)
                        .arg("--version")
                        .timeout(std::time::Duration::from_secs(10)),
                )
                .ok()
                .filter(|o| o.success())
                .map(|o| o.stdout_str().trim().to_string());
            match version {
                Some(v) => push("abra", Level::Ok, format!("{v} ({})", path.display())),
                None => push(
                    "abra",
                    Level::Warn,
                    format!("{} does not answer --version", path.display()),
                ),
            }
        }
        None => push(
            "abra",
            Level::Warn,
            "not on PATH: runs use the stack driver (docker stack deploy)".into(),
        ),
    }
    let (level, detail) = writable(&config.lock_dir);
    push("lock dir", level, detail);
    let (level, detail) = space(&config.runs_dir);
    push("runs dir", level, detail);
    checks
}

/// The nearest existing directory at or above `path`: where a run would create it.
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.is_dir())
}

fn writable(dir: &Path) -> (Level, String) {
    let Some(existing) = existing_ancestor(dir) else {
        return (
            Level::Fail,
            format!("{}: no existing parent", dir.display()),
        );
    };
    match nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK) {
        Ok(()) if existing == dir => (Level::Ok, format!("{} writable", dir.display())),
        Ok(()) => (
            Level::Ok,
            format!(
                "{} will be created in {}",
                dir.display(),
                existing.display()
            ),
        ),
        Err(e) => (
            Level::Fail,
            format!(
                "{} is not writable ({e}): fix its permissions or set CCCI_APP_LOCK_DIR",
                existing.display()
            ),
        ),
    }
}

fn space(dir: &Path) -> (Level, String) {
    let Some(existing) = existing_ancestor(dir) else {
        return (
            Level::Fail,
            format!("{}: no existing parent", dir.display()),
        );
    };
    match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => {
            let free = stat.blocks_available() * stat.fragment_size();
            let text = format!(
                "{:.1} GiB free at {}",
                free as f64 / f64::from(1 << 30),
                dir.display()
            );
            match free {
                f if f < NO_SPACE => (Level::Fail, format!("{text}: free some space")),
                f if f < LOW_SPACE => (Level::Warn, format!("{text}: backups may not fit")),
                _ => (Level::Ok, text),
            }
        }
        Err(e) => (
            Level::Fail,
            format!("cannot read free space of {}: {e}", existing.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dir_is_judged_by_the_parent_it_would_be_created_in() {
        let tmp = tempfile::tempdir().unwrap();
        let (level, detail) = writable(&tmp.path().join("a/b/locks"));
        assert_eq!(level, Level::Ok, "{detail}");
        assert!(detail.contains("will be created in"), "{detail}");
        let (level, _) = space(&tmp.path().join("runs"));
        assert_ne!(level, Level::Fail);
    }
}
