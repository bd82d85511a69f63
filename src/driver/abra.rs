//! The `abra` driver: every call goes to the real abra CLI with `ABRA_DIR` set in the child's
//! environment to the run's home (A2). Every argument abra gets is built in [`args`], so a
//! correction for another abra version is one edit there.
//!
//! Backups: abra's own go through the backup-bot-two app on the server. Where none is
//! deployed (a test host), the driver backs up and restores the way the stack driver does,
//! from the same backupbot labels, and says so.

use std::path::PathBuf;
use std::time::Duration;

use super::{App, Driver, Version};
use crate::error::{Error, Result};
use crate::sys::process::{Cmd, CommandError};

/// abra pulls images and talks to the swarm; a deploy that takes longer than this is stuck.
const ABRA_TIMEOUT: Duration = Duration::from_secs(900);

pub struct AbraDriver {
    program: PathBuf,
    backups: Backups,
}

/// Who backs an app up under the abra driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backups {
    /// abra when a backup-bot-two app runs on the swarm, else ccci's own.
    Auto,
    /// Always `abra app backup` / `abra app restore`.
    Abra,
}

/// What the backup-bot-two app's image is called.
const BACKUP_BOT_IMAGE: &str = "backup-bot-two";

impl AbraDriver {
    pub fn new(program: PathBuf) -> Self {
        AbraDriver {
            program,
            backups: Backups::Auto,
        }
    }

    pub fn with_backups(mut self, backups: Backups) -> Self {
        self.backups = backups;
        self
    }

    /// True when abra's backups can work: a backup-bot-two service runs on this swarm.
    fn abra_backs_up(&self, app: &App) -> Result<bool> {
        if self.backups == Backups::Abra {
            return Ok(true);
        }
        let out = crate::docker::cli::output(
            app.runner,
            &crate::docker::cli::cmd(["service", "ls", "--format", "{{.Image}}"])?,
        )?;
        if !out.success() {
            return Err(crate::docker::cli::failed(
                "list the swarm's services",
                &out,
            ));
        }
        Ok(out
            .stdout_str()
            .lines()
            .any(|image| image.contains(BACKUP_BOT_IMAGE)))
    }

    /// ccci's own backup or restore, with a notice saying why.
    fn without_backup_bot(&self, app: &App, what: &str) -> super::stack::StackDriver {
        app.sink.event(&crate::event::Event::Notice {
            message: format!(
                "no backup-bot-two app runs on this swarm, which abra's {what} needs: ccci {what}s the app itself from its backupbot labels"
            ),
        });
        super::stack::StackDriver::new()
    }

    fn command(&self, app: &App, args: Vec<String>) -> Cmd {
        // A2: ABRA_DIR in the child's environment only, never in ccci's own.
        Cmd::new(&self.program)
            .args(args)
            .env("ABRA_DIR", app.abra_dir)
            .current_dir(app.abra_dir)
            .timeout(ABRA_TIMEOUT)
            .log_output()
    }

    fn run(&self, app: &App, args: Vec<String>) -> Result<()> {
        app.runner.run(&self.command(app, args))?;
        Ok(())
    }

    fn not_found(&self) -> Error {
        Error::Infra(format!(
            "abra (`{}`) is not installed or not on PATH: install abra or use --driver stack",
            self.program.display()
        ))
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

    /// abra exiting non-zero is abra refusing the recipe ([`Error::Rejected`]), unless it
    /// could not reach the engine.
    fn deploy(&self, app: &App, version: &Version) -> Result<()> {
        let cmd = self.command(app, args::app_deploy(app.domain, version));
        let out = app.runner.output(&cmd).map_err(|e| match e {
            CommandError::NotFound { .. } => self.not_found(),
            other => other.into(),
        })?;
        if out.success() {
            Ok(())
        } else {
            Err(super::deploy_failed("abra app deploy", &out))
        }
    }

    fn backup(&self, app: &App) -> Result<()> {
        if !self.abra_backs_up(app)? {
            return self.without_backup_bot(app, "backup").backup(app);
        }
        self.run(app, args::backup_create(app.domain))
    }

    fn restore(&self, app: &App) -> Result<()> {
        if !self.abra_backs_up(app)? {
            return self.without_backup_bot(app, "restore").restore(app);
        }
        self.run(app, args::restore(app.domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::App;
    use crate::event::Recorder;
    use crate::sys::cancel::Cancel;
    use crate::sys::process::Runner;

    /// Deploys with `program` standing in for abra.
    fn deploy_with(program: &std::path::Path) -> Result<()> {
        let home = tempfile::tempdir().unwrap();
        let runner = Runner::new(Cancel::new());
        let sink = Recorder::default();
        let app = App {
            runner: &runner,
            abra_dir: home.path(),
            recipe_dir: home.path().join("recipes/demo"),
            env_file: home.path().join("servers/default/d.x.env"),
            server: "default",
            recipe: "demo",
            domain: "d.x",
            stack: "d_x",
            labels: Vec::new(),
            backups: home.path(),
            sink: &sink,
        };
        AbraDriver::new(program.to_path_buf()).deploy(&app, &Version::Chaos)
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn regression_abra_refusing_a_deploy_was_reported_as_a_ccci_error() {
        let dir = tempfile::tempdir().unwrap();
        let refuses = script(
            dir.path(),
            "refuses",
            "echo 'FATA unable to deploy: service app: undefined network \"web\"' >&2; exit 1",
        );
        let err = deploy_with(&refuses).unwrap_err();
        assert!(
            matches!(&err, Error::Rejected(m) if m.contains("undefined network")),
            "{err:?}"
        );
        let down = script(
            dir.path(),
            "down",
            "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2; exit 1",
        );
        assert!(matches!(deploy_with(&down), Err(Error::Infra(_))));
        let missing = deploy_with(&dir.path().join("no-such-abra")).unwrap_err();
        assert!(
            matches!(&missing, Error::Infra(m) if m.contains("not installed")),
            "{missing:?}"
        );
        let deploys = script(dir.path(), "deploys", "exit 0");
        assert!(deploy_with(&deploys).is_ok());
    }

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
