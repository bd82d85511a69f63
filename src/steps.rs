//! The steps of a run, each usable on its own: deploy (new app, env, install steps, overlay,
//! deploy), wait (swarm readiness and the recipe's probe), check (a stage's test executables),
//! backup and restore, and the data markers the upgrade and backup stages write and read.
//!
//! A [`RunContext`] is everything those steps share about one run: its directory and abra home,
//! the app's domain and stack, the driver, the recipe's test trees, the run record their checks
//! are written into. The lifecycle builds one and strings the steps into stages; the step
//! subcommands (`ccci deploy --run ID`, …) open one from a run directory's `run.json` and
//! replay a single step by hand.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::abra_home::AbraHome;
use crate::compose::Compose;
use crate::config::Config;
use crate::driver::{self, App, Driver, Version};
use crate::envfile::EnvFile;
use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::lifecycle::Host;
use crate::overlay::{self, OverlayInput};
use crate::process::{Cmd, Runner};
use crate::recipe;
use crate::report::{CheckRecord, RunRecord};
use crate::rundir::RunDir;
use crate::stage::Stage;
use crate::suite::{self, RecipeTests, TestTrees};
use crate::swarm::{NotReady, ReadyOptions, Swarm};

/// One run's shared state for its steps.
pub struct RunContext<'h> {
    pub(crate) host: &'h Host,
    pub(crate) driver: Box<dyn Driver>,
    pub(crate) runner: Runner,
    pub(crate) home: AbraHome,
    pub(crate) recipe: String,
    pub(crate) domain: String,
    pub(crate) stack: String,
    /// The labels every resource of the run carries (run id, deadline, domain).
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) backups: PathBuf,
    pub(crate) swarm: Swarm,
    pub(crate) tests: RecipeTests,
    pub(crate) trees: TestTrees,
    /// The change: the commit under test.
    pub(crate) commit: String,
    pub(crate) run_dir: RunDir,
    /// Checks are recorded here, under their stage.
    pub(crate) record: RefCell<RunRecord>,
    /// Write ccci's compose overlay before each deploy.
    pub(crate) overlay: bool,
    /// Unix time the run must be over by, for the overlay's labels.
    pub(crate) deadline_unix: Option<u64>,
    /// What is deployed now, once something is.
    pub(crate) deployed: RefCell<Option<Version>>,
    /// When the last deploy started: task failures older than that are history.
    pub(crate) deploy_started: Cell<Option<SystemTime>>,
    pub(crate) sink: Arc<dyn EventSink>,
}

/// What went wrong in a step.
pub(crate) enum Failure {
    /// The swarm would not run it.
    NotReady(NotReady),
    /// A check or test of the recipe failed.
    Check(String),
    /// Something could not be done at all.
    Error(Error),
    /// The base version of the upgrade failed to deploy.
    Base { version: String, message: String },
}

impl Failure {
    pub(crate) fn on_base(self, version: &str) -> Failure {
        match self {
            Failure::Error(e @ Error::Interrupted(_)) => Failure::Error(e),
            Failure::NotReady(NotReady::Interrupted(s)) => Failure::Error(Error::Interrupted(s)),
            other => Failure::Base {
                version: version.to_string(),
                message: other.message(),
            },
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Failure::NotReady(n) => n.to_string(),
            Failure::Check(m) => m.clone(),
            Failure::Error(e) => e.to_string(),
            Failure::Base { message, .. } => message.clone(),
        }
    }

    pub(crate) fn error(&self) -> Option<&Error> {
        match self {
            Failure::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

pub(crate) type StepResult = std::result::Result<(), Failure>;

/// Times a step and reports its start and end.
pub(crate) fn step<T>(
    sink: &dyn EventSink,
    name: &str,
    detail: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    sink.event(&Event::StepStarted {
        step: name.to_string(),
        detail: detail.to_string(),
    });
    let result = f();
    sink.event(&Event::StepFinished {
        step: name.to_string(),
        ok: result.is_ok(),
        detail: match &result {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        },
        elapsed: started.elapsed(),
    });
    result
}

/// The labels a run's resources carry, for the janitor.
pub(crate) fn run_labels(
    run_id: &str,
    domain: &str,
    deadline_unix: Option<u64>,
) -> Vec<(String, String)> {
    vec![
        (overlay::LABEL_RUN_ID.to_string(), run_id.to_string()),
        (
            overlay::LABEL_DEADLINE.to_string(),
            deadline_unix.map_or("none".to_string(), |d| d.to_string()),
        ),
        ("ccci.domain".to_string(), domain.to_string()),
    ]
}

/// Fetches the recipe into the run's abra home (a clone of `source`, or with `skip_fetch` a
/// copy of the canonically staged clone, A4), keeps the overlay out of git's view, and returns
/// the commit `git_ref` resolves to.
pub(crate) fn fetch_recipe(
    runner: &Runner,
    home: &AbraHome,
    recipe_name: &str,
    source: &str,
    git_ref: Option<&str>,
    skip_fetch: bool,
    sink: &dyn EventSink,
) -> Result<String> {
    let dir = home.recipe_dir(recipe_name);
    let commit = step(sink, "fetch", source, || {
        if skip_fetch {
            recipe::copy_staged(runner, &home.canonical_recipe_dir(recipe_name), &dir)?;
        } else {
            recipe::clone(runner, source, &dir)?;
        }
        recipe::resolve(runner, &dir, git_ref)
    })?;
    recipe::exclude(&dir, overlay::OVERLAY_FILE)?;
    Ok(commit)
}

/// The recipe's test trees, in the documented precedence.
pub(crate) fn test_trees(host: &Host, recipe: &str, tests_dir: Option<&Path>) -> TestTrees {
    let roots = suite::roots(
        tests_dir,
        &host.config,
        Config::config_dir(&host.env).as_deref(),
        suite::bundled_root(&host.env).as_deref(),
    );
    TestTrees::find(recipe, &roots)
}

impl RunContext<'_> {
    /// The app, as the driver sees it.
    pub(crate) fn app(&self) -> App<'_> {
        App {
            runner: &self.runner,
            home: &self.home,
            server: &self.host.config.server,
            recipe: &self.recipe,
            domain: &self.domain,
            stack: &self.stack,
            labels: &self.labels,
            backups: &self.backups,
            sink: &*self.sink,
        }
    }

    pub(crate) fn recipe_dir(&self) -> PathBuf {
        self.home.recipe_dir(&self.recipe)
    }

    fn env_file(&self) -> PathBuf {
        self.home.env_file(&self.host.config.server, &self.domain)
    }

    /// Checks out `version`, creates the app, applies the recipe's env and install steps, and
    /// deploys.
    pub(crate) fn deploy_fresh(&self, version: &Version) -> StepResult {
        let dir = self.recipe_dir();
        let commit = match version {
            Version::Release(tag) => recipe::resolve(&self.runner, &dir, Some(tag))?,
            Version::Chaos => self.commit.clone(),
        };
        recipe::checkout(&self.runner, &dir, &commit)?;
        step(&*self.sink, "new app", &self.domain, || {
            self.driver.new_app(&self.app(), version)
        })?;
        self.apply_env(&self.tests.env)?;
        if let Some(script) = self.trees.file(suite::INSTALL_STEPS) {
            self.run_script(&script, Stage::Install)?;
        }
        self.deploy(version)
    }

    /// Writes the overlay for what is checked out and deploys it.
    pub(crate) fn deploy(&self, version: &Version) -> StepResult {
        let detail = match version {
            Version::Release(v) => v.clone(),
            Version::Chaos => format!("{} (chaos)", recipe::short(&self.commit)),
        };
        if self.overlay {
            step(&*self.sink, "overlay", overlay::OVERLAY_FILE, || {
                self.write_overlay(version)
            })?;
        }
        self.deploy_started.set(Some(SystemTime::now()));
        step(&*self.sink, "deploy", &detail, || {
            self.driver.deploy(&self.app(), version)
        })?;
        *self.deployed.borrow_mut() = Some(version.clone());
        Ok(())
    }

    fn write_overlay(&self, version: &Version) -> Result<PathBuf> {
        let app = self.app();
        let env_path = self.env_file();
        let mut env = EnvFile::read(&env_path)?;
        let dir = self.recipe_dir();
        let vars = driver::stack::deploy_vars(&app, &env);
        let compose = Compose::load(&dir, &overlay::without_overlay(&env.compose_files()), &vars)?;
        let min_start_period = self
            .tests
            .min_start_period
            .unwrap_or(self.host.config.min_start_period);
        let template = self.trees.file(overlay::TEMPLATE_FILE);
        let chaos = recipe::short(&self.commit).to_string();
        let path = overlay::apply(
            &dir,
            &mut env,
            &OverlayInput {
                compose: &compose,
                min_start_period,
                stack: &self.stack,
                domain: &self.domain,
                recipe: &self.recipe,
                run_id: &self.run_dir.id,
                deadline_unix: self.deadline_unix,
                chaos_version: matches!(version, Version::Chaos).then_some(chaos.as_str()),
                template: template.as_deref(),
                template_vars: &vars,
            },
        )?;
        env.write(&env_path)?;
        Ok(path)
    }

    /// Sets `vars` in the app's env file.
    pub(crate) fn apply_env(&self, vars: &BTreeMap<String, String>) -> Result<()> {
        if vars.is_empty() {
            return Ok(());
        }
        let path = self.env_file();
        let mut env = EnvFile::read(&path)?;
        for (k, v) in vars {
            env.set(k, v);
        }
        env.write(&path)
    }

    /// Swarm readiness (with fail-fast), then the recipe's probe.
    pub(crate) fn ready(&self, stage: Stage) -> StepResult {
        let timeout = self
            .tests
            .deploy_timeout
            .unwrap_or(self.host.config.deploy_timeout);
        let since = self.deploy_started.get().unwrap_or_else(SystemTime::now);
        let started = Instant::now();
        self.sink.event(&Event::StepStarted {
            step: "wait".into(),
            detail: format!("readiness of {}", self.stack),
        });
        let result =
            self.swarm
                .wait_ready(&self.stack, &ReadyOptions { timeout, since }, &*self.sink);
        self.sink.event(&Event::StepFinished {
            step: "wait".into(),
            ok: result.is_ok(),
            detail: result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            elapsed: started.elapsed(),
        });
        match result {
            Ok(()) => {}
            Err(NotReady::Interrupted(s)) => return Err(Failure::Error(Error::Interrupted(s))),
            Err(e) => return Err(Failure::NotReady(e)),
        }
        if let Some(probe) = self.tests.probe.clone() {
            let within = self.tests.probe_within.unwrap_or(Duration::from_secs(300));
            self.check(stage, "probe", || {
                crate::probe::wait(
                    &probe,
                    &self.swarm,
                    &self.runner,
                    &self.stack,
                    &self.domain,
                    within,
                )
            })?;
        }
        Ok(())
    }

    /// Runs one named check of a stage, recording it.
    pub(crate) fn check(
        &self,
        stage: Stage,
        name: &str,
        f: impl FnOnce() -> Result<()>,
    ) -> StepResult {
        let started = Instant::now();
        let result = f();
        let record = CheckRecord {
            name: name.to_string(),
            ok: result.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            detail: result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        };
        self.sink.event(&Event::TestRan {
            name: name.to_string(),
            ok: record.ok,
            detail: record.detail.clone(),
        });
        if let Some(s) = self.record.borrow_mut().stage_mut(stage) {
            s.checks.push(record);
        }
        result.map_err(|e| match e {
            e @ Error::Interrupted(_) => Failure::Error(e),
            e => Failure::Check(format!("{name}: {e}")),
        })
    }

    /// Proves the stack runs the change: its chaos-version label names the change's commit.
    pub(crate) fn verify_chaos_version(&self) -> Result<()> {
        let short = recipe::short(&self.commit);
        let key = format!("coop-cloud.{}.chaos-version", self.stack);
        let services = self.swarm.services(&self.stack)?;
        let found: Vec<String> = services
            .iter()
            .filter_map(|s| s.labels.get(&key).cloned())
            .collect();
        let matches = |label: &str| {
            let label = label.trim_end_matches("+U");
            label.len() >= 7 && (self.commit.starts_with(label) || label.starts_with(short))
        };
        match found.first() {
            Some(_) if found.iter().all(|l| matches(l)) => Ok(()),
            Some(label) => Err(Error::Infra(format!(
                "the stack runs {label}, not the change {short}"
            ))),
            None => Err(Error::Infra(format!(
                "no service carries the label {key}: cannot prove the change is what runs"
            ))),
        }
    }

    /// Where data markers go: the recipe's `marker`, else the first backup path of the first
    /// service that declares backups.
    pub(crate) fn marker(&self) -> Option<suite::Marker> {
        if let Some(m) = &self.tests.marker {
            return Some(m.clone());
        }
        let env = EnvFile::read(&self.env_file()).ok()?;
        let vars = driver::stack::deploy_vars(&self.app(), &env);
        let compose = Compose::load(&self.recipe_dir(), &env.compose_files(), &vars).ok()?;
        compose.services().into_iter().find_map(|s| {
            if s.labels.get("backupbot.backup").map(String::as_str) != Some("true") {
                return None;
            }
            let path = match s.labels.get("backupbot.backup.path") {
                Some(p) => p.split(',').next()?.trim().to_string(),
                None => s.volumes.first()?.target.clone(),
            };
            Some(suite::Marker {
                service: s.name.clone(),
                path: format!("{}/ccci-marker", path.trim_end_matches('/')),
            })
        })
    }

    /// Writes `value` into the marker file inside its service.
    pub(crate) fn write_marker(&self, marker: &suite::Marker, value: &str) -> Result<()> {
        let script = format!(
            "mkdir -p \"$(dirname '{0}')\" && printf '%s' '{1}' > '{0}'",
            marker.path.replace('\'', ""),
            value.replace('\'', "")
        );
        let out = self.swarm.exec(
            &self.stack,
            &marker.service,
            &["sh".into(), "-c".into(), script],
            None,
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::Infra(format!(
                "cannot write {} in {}: {}",
                marker.path,
                marker.service,
                out.last_error_line()
            )))
        }
    }

    /// What the marker file holds, or why it holds nothing.
    pub(crate) fn read_marker(&self, marker: &suite::Marker) -> Result<String> {
        let out = self.swarm.exec(
            &self.stack,
            &marker.service,
            &["cat".into(), marker.path.clone()],
            None,
        )?;
        if out.success() {
            Ok(out.stdout_str())
        } else {
            Ok(format!("(missing: {})", out.last_error_line()))
        }
    }

    /// Runs the stage's test executables from the recipe's test trees.
    pub(crate) fn run_tests(&self, stage: Stage) -> StepResult {
        for test in self.trees.tests(stage) {
            let name = test
                .file_name()
                .map(|n| format!("{stage}.d/{}", n.to_string_lossy()))
                .unwrap_or_default();
            self.check(stage, &name, || self.run_script(&test, stage))?;
        }
        Ok(())
    }

    /// Runs a hook of the recipe's tree (`pre_<stage>`, `post_<stage>`) when it has one.
    pub(crate) fn hook(&self, name: &str, stage: Stage) -> StepResult {
        match self.trees.file(name) {
            Some(path) if crate::process::is_executable(&path) => {
                self.check(stage, name, || self.run_script(&path, stage))
            }
            Some(path) => Err(Failure::Error(Error::Config(format!(
                "hook {} is not executable: chmod +x it",
                path.display()
            )))),
            None => Ok(()),
        }
    }

    fn run_script(&self, path: &Path, stage: Stage) -> Result<()> {
        let cmd = self
            .home
            .apply(Cmd::new(path))
            .current_dir(path.parent().unwrap_or(Path::new("/")))
            .env("DOMAIN", &self.domain)
            .env("STAGE", stage.as_str())
            .env("RECIPE_DIR", self.recipe_dir())
            .env("RUN_ID", &self.run_dir.id)
            .env("BASE_URL", format!("https://{}", self.domain))
            .env("STACK_NAME", &self.stack)
            .env("CCCI_DRIVER", self.driver.name())
            .env("CCCI_ENV_FILE", self.env_file())
            .timeout(Duration::from_secs(900))
            .log_output();
        self.runner.run(&cmd)?;
        Ok(())
    }
}
