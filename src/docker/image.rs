//! Images, checked before anything is deployed: each image an app uses must be on this host
//! or pullable, so a missing image is one clear line naming the service and the image instead
//! of a task the swarm rejects half-way through a deploy.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys::process::Runner;

use super::cli;

/// How long one pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// Makes sure `image` (used by `service`) is on this host, pulling it when it is not.
/// A registry that says the image does not exist is the recipe's fault ([`Error::Rejected`]);
/// a registry that cannot be reached is the host's ([`Error::Infra`]).
pub fn ensure_available(runner: &Runner, service: &str, image: &str) -> Result<()> {
    if super::Swarm::new(runner.clone()).image_present(image)? {
        return Ok(());
    }
    let pull = cli::output(
        runner,
        &cli::cmd(["pull", "--quiet", image])?.timeout(PULL_TIMEOUT),
    )?;
    if pull.success() {
        return Ok(());
    }
    let why = pull.last_error_line();
    let message =
        format!("service {service}: image {image} is not on this host and cannot be pulled: {why}");
    if names_a_missing_image(&why) {
        Err(Error::Rejected(message))
    } else {
        Err(Error::Infra(format!(
            "{message} (build or load it on this host, or check the registry)"
        )))
    }
}

/// True when a registry answered that the image does not exist (as opposed to not answering).
fn names_a_missing_image(why: &str) -> bool {
    let why = why.to_ascii_lowercase();
    [
        "manifest unknown",
        "not found",
        "repository does not exist",
        "pull access denied",
    ]
    .iter()
    .any(|s| why.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_saying_no_blames_the_recipe_an_unreachable_one_the_host() {
        assert!(names_a_missing_image(
            "Error response from daemon: manifest for ghost:9.9 not found: manifest unknown"
        ));
        assert!(names_a_missing_image(
            "Error response from daemon: pull access denied for nosuch, repository does not exist"
        ));
        assert!(!names_a_missing_image(
            "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host"
        ));
    }
}
