//! The `abra` driver: every call goes to the real abra CLI with `ABRA_DIR` set in the child's
//! environment to the run's home (A2). Every argument abra gets is built in [`args`], so a
//! correction for another abra version is one edit there.

use std::path::PathBuf;
use std::time::Duration;

use super::{App, Driver, Version};
use crate::error::Result;
use crate::sys::process::Cmd;

/// abra pulls images and talks to the swarm; a deploy that takes longer than this is stuck.
const ABRA_TIMEOUT: Duration = Duration::from_secs(900);

pub struct AbraDriver {
    program: PathBuf,
}

impl AbraDriver {
    pub fn new(program: PathBuf) -> Self {
        AbraDriver { program }
    }

    fn run(&self, app: &App, args: Vec<String>) -> Result<()> {
        // A2: ABRA_DIR in the child's environment only, never in ccci's own.
        let cmd = Cmd::new(&self.program)
            .args(args)
            .env("ABRA_DIR", app.abra_dir)
            .current_dir(app.abra_dir)
            .timeout(ABRA_TIMEOUT)
            .log_output();
        app.runner.run(&cmd)?;
        Ok(())
    }
}

/// The arguments of every abra call ccci makes. See reference/abra.md for what is confirmed.
pub mod args {
    use super::Version;

    /// `abra app new <recipe> [version] --server <s> --domain <d> --secrets --no-input`;
    /// `--chaos` for the change, which is no release.
    pub fn app_new(recipe: &str, version: &Version, server: &str, domain: &str) -> Vec<String> {
        let mut a: Vec<String> = vec!["app".into(), "new".into(), recipe.into()];
        match version {
            Version::Release(v) => a.push(v.clone()),
            Version::Chaos => a.push("--chaos".into()),
        }
        a.extend(
            [
                "--server",
                server,
                "--domain",
                domain,
                "--secrets",
                "--no-input",
            ]
            .map(String::from),
        );
        a
    }

    /// `abra app deploy <domain> [version]` without abra's converge checks (ccci owns
    /// readiness) or domain checks (test domains need no DNS). A chaos deploy takes the
    /// checked-out tree, overlay included, and `--force` redeploys the running app.
    pub fn app_deploy(domain: &str, version: &Version) -> Vec<String> {
        let mut a: Vec<String> = vec!["app".into(), "deploy".into(), domain.into()];
        match version {
            Version::Release(v) => a.push(v.clone()),
            Version::Chaos => a.extend(["--chaos".into(), "--force".into()]),
        }
        a.extend(["--no-converge-checks", "--no-domain-checks", "--no-input"].map(String::from));
        a
    }

    pub fn backup_create(domain: &str) -> Vec<String> {
        ["app", "backup", "create", domain, "--no-input"]
            .map(String::from)
            .to_vec()
    }

    /// Unconfirmed in reference/abra.md: `abra app restore <domain>`.
    pub fn restore(domain: &str) -> Vec<String> {
        ["app", "restore", domain, "--no-input"]
            .map(String::from)
            .to_vec()
    }
}

impl Driver for AbraDriver {
    fn name(&self) -> &'static str {
        "abra"
    }

    fn new_app(&self, app: &App, version: &Version) -> Result<()> {
        self.run(
            app,
            args::app_new(app.recipe, version, app.server, app.domain),
        )
    }

    fn deploy(&self, app: &App, version: &Version) -> Result<()> {
        self.run(app, args::app_deploy(app.domain, version))
    }

    fn backup(&self, app: &App) -> Result<()> {
        self.run(app, args::backup_create(app.domain))
    }

    fn restore(&self, app: &App) -> Result<()> {
        self.run(app, args::restore(app.domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_skip_abra_converge_checks() {
        let a = args::app_deploy("d.example.org", &Version::Chaos);
        assert_eq!(
            a,
            [
                "app",
                "deploy",
                "d.example.org",
                "--chaos",
                "--force",
                "--no-converge-checks",
                "--no-domain-checks",
                "--no-input"
            ]
        );
        let a = args::app_new(
            "demo",
            &Version::Release("0.1.0+1.0".into()),
            "default",
            "d.x",
        );
        assert_eq!(a[..4], ["app", "new", "demo", "0.1.0+1.0"]);
    }
}
