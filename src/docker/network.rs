//! The external `proxy` network every Co-op Cloud server has (traefik's; recipes attach their
//! web services to it as `external: true`). A test host may not run traefik, so ccci creates
//! the network as a server would have it when it is absent.

use crate::error::Result;
use crate::sys::process::Runner;

use super::cli;

/// The network recipes route their services through.
pub const PROXY: &str = "proxy";

/// What the host has under the proxy network's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyNetwork {
    Absent,
    /// An attachable overlay network: what recipes expect.
    Ready,
    /// Something else by that name (e.g. a bridge): deploys that attach to it fail.
    Unusable(String),
}

/// Looks at the proxy network.
pub fn proxy_network(runner: &Runner) -> Result<ProxyNetwork> {
    let out = cli::output(
        runner,
        &cli::cmd([
            "network",
            "inspect",
            "--format",
            "{{.Driver}} {{.Attachable}} {{.Scope}}",
            PROXY,
        ])?,
    )?;
    if !out.success() {
        return if cli::is_no_such(&out.stderr_str()) {
            Ok(ProxyNetwork::Absent)
        } else {
            Err(cli::failed("inspect the proxy network", &out))
        };
    }
    let text = out.stdout_str();
    Ok(match text.split_whitespace().collect::<Vec<_>>()[..] {
        ["overlay", "true", "swarm"] => ProxyNetwork::Ready,
        _ => ProxyNetwork::Unusable(format!(
            "`{PROXY}` is `{}`, not an attachable swarm overlay network",
            text.trim()
        )),
    })
}

/// Creates the proxy network when it is absent; `true` when it did. Another process creating
/// it at the same moment is fine.
pub fn ensure_proxy_network(runner: &Runner) -> Result<bool> {
    match proxy_network(runner)? {
        ProxyNetwork::Ready => Ok(false),
        ProxyNetwork::Unusable(why) => Err(crate::Error::Infra(format!(
            "{why}: remove it or recreate it with `docker network create -d overlay --attachable {PROXY}`"
        ))),
        ProxyNetwork::Absent => {
            let out = cli::output(
                runner,
                &cli::cmd(["network", "create", "-d", "overlay", "--attachable", PROXY])?,
            )?;
            if out.success() || out.stderr_str().contains("already exists") {
                Ok(true)
            } else {
                Err(cli::failed("create the proxy network", &out))
            }
        }
    }
}
