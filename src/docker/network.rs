//! The external `proxy` network every Co-op Cloud server has (traefik's; recipes attach their
//! web services to it as `external: true`). A test host may not run traefik, so ccci creates
//! the network as a server would have it when it is absent.

use crate::error::Result;
use crate::sys::process::Runner;

use super::api::{API_VERSION, Engine};
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

/// Looks at the proxy network (through the engine's API: a run asks before every deploy).
pub fn proxy_network(runner: &Runner) -> Result<ProxyNetwork> {
    runner.check()?;
    let response = Engine::from_env()?
        .with_timeout(super::inspect::QUERY_TIMEOUT)
        .request("GET", &format!("/{API_VERSION}/networks/{PROXY}"), None)?;
    match response.status {
        404 => Ok(ProxyNetwork::Absent),
        200 => {
            let spec: serde_json::Value = serde_json::from_slice(&response.body)
                .map_err(|e| crate::Error::Infra(format!("unreadable network `{PROXY}`: {e}")))?;
            let field = |key: &str| spec.get(key).cloned().unwrap_or_default();
            let (driver, attachable, scope) =
                (field("Driver"), field("Attachable"), field("Scope"));
            if driver == "overlay" && attachable == true && scope == "swarm" {
                Ok(ProxyNetwork::Ready)
            } else {
                Ok(ProxyNetwork::Unusable(format!(
                    "`{PROXY}` is a {driver} network (attachable: {attachable}, scope: {scope}), not an attachable swarm overlay network"
                )))
            }
        }
        status => Err(crate::Error::Infra(format!(
            "docker engine answered {status} about network `{PROXY}`: {}",
            response.message()
        ))),
    }
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
