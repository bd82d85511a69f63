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

use crate::config::Config;
use crate::docker::{NotReady, ReadyOptions, Swarm};
use crate::driver::{self, App, Driver, Version};
use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::labels::RunLabels;
use crate::recipe::compose::Compose;
use crate::recipe::envfile::EnvFile;
use crate::recipe::git;
use crate::recipe::overlay::{self, OverlayInput};
use crate::recipe::suite::{self, RecipeTests, TestTrees};
use crate::stage::Stage;
use crate::sys::process::Cmd;
use crate::sys::process::Runner;

use super::Host;
use super::abra_home::AbraHome;
use super::dir::RunDir;
use super::failure::{Failure, StepResult};
use super::record::RunRecord;
use super::stages::Steps;

/// One run's shared state for its steps.
pub struct RunContext<'h> {
    pub(crate) host: &'h Host,
    pub(crate) driver: Box<dyn Driver>,
    pub(crate) runner: Runner,
    pub(crate) home: AbraHome,
    pub(crate) recipe: String,
    pub(crate) domain: String,
    pub(crate) stack: String,
    /// The labels every resource of the run carries (run id, domain, setup, deadline).
    pub(crate) labels: RunLabels,
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
    /// What is deployed now, once something is.
    pub(crate) deployed: RefCell<Option<Version>>,
    /// When the last deploy started: task failures older than that are history.
    pub(crate) deploy_started: Cell<Option<SystemTime>>,
    pub(crate) sink: Arc<dyn EventSink>,
}

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
            git::copy_staged(runner, &home.canonical_recipe_dir(recipe_name), &dir)?;
        } else {
            git::clone(runner, source, &dir)?;
        }
        git::resolve(runner, &dir, git_ref)
    })?;
    git::exclude(&dir, overlay::OVERLAY_FILE)?;
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
            abra_dir: &self.home.dir,
            recipe_dir: self.recipe_dir(),
            env_file: self.env_file(),
            server: &self.host.config.server,
            recipe: &self.recipe,
            domain: &self.domain,
            stack: &self.stack,
            labels: self.labels.pairs(),
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
            Version::Release(tag) => git::resolve(&self.runner, &dir, Some(tag))?,
            Version::Chaos => self.commit.clone(),
        };
        git::checkout(&self.runner, &dir, &commit)?;
        step(&*self.sink, "new app", &self.domain, || {
            self.driver.new_app(&self.app(), version)
        })?;
        // The setup mark, for a janitor that finds the env file before anything is deployed
        // (J10): another setup's janitor must leave it alone.
        let setup = BTreeMap::from([(
            crate::labels::ENV_SETUP.to_string(),
            self.labels.setup.clone(),
        )]);
        self.apply_env(&setup)?;
        self.apply_env(&self.tests.env)?;
        if let Some(script) = self.trees.file(suite::INSTALL_STEPS) {
            self.run_script(&script, Stage::Install)?;
        }
        // A run on a domain that was torn down a moment ago (a repeat on one domain, a reap by
        // the janitor) may find the node still listing that deployment's networks.
        let stale = crate::docker::teardown::clear_networks(&self.runner, &self.stack)?;
        if !stale.is_empty() {
            self.sink.event(&Event::Notice {
                message: format!(
                    "cleared what an earlier deployment of this stack left: {}",
                    stale.join(", ")
                ),
            });
        }
        self.deploy(version)
    }

    /// Writes the overlay for what is checked out and deploys it.
    pub(crate) fn deploy(&self, version: &Version) -> StepResult {
        let detail = match version {
            Version::Release(v) => v.clone(),
            Version::Chaos => format!("{} (chaos)", git::short(&self.commit)),
        };
        if self.overlay {
            step(&*self.sink, "overlay", overlay::OVERLAY_FILE, || {
                self.write_overlay(version)
            })?;
        }
        // What the deploy will read, read once for the checks before it.
        let compose = self.compose()?;
        self.ensure_proxy_network(&compose)?;
        self.ensure_images(&compose)?;
        self.deploy_started.set(Some(SystemTime::now()));
        step(&*self.sink, "deploy", &detail, || {
            self.driver.deploy(&self.app(), version)
        })?;
        *self.deployed.borrow_mut() = Some(version.clone());
        Ok(())
    }

    /// Creates the external `proxy` network a Co-op Cloud server has, when the app's compose
    /// files attach to it and this host lacks it.
    fn ensure_proxy_network(&self, compose: &Compose) -> Result<()> {
        let external_proxy = compose
            .value()
            .get("networks")
            .and_then(|n| n.get(crate::docker::network::PROXY))
            .and_then(|n| n.get("external"))
            .is_some_and(|e| {
                !matches!(
                    e,
                    crate::yaml::Value::Bool(false) | crate::yaml::Value::Null
                )
            });
        if external_proxy && crate::docker::network::ensure_proxy_network(&self.runner)? {
            self.sink.event(&Event::Notice {
                message: "created the external `proxy` network (attachable overlay) the recipe \
                          attaches to, as a Co-op Cloud server has it"
                    .into(),
            });
        }
        Ok(())
    }

    /// Every image the app uses is here or pulled, before anything is deployed.
    fn ensure_images(&self, compose: &Compose) -> Result<()> {
        for service in compose.services() {
            if let Some(image) = &service.image {
                step(&*self.sink, "image", image, || {
                    crate::docker::image::ensure_available(&self.runner, &service.name, image)
                })?;
            }
        }
        Ok(())
    }

    /// The app's compose model as deployed: every file of its `COMPOSE_FILE`, interpolated.
    fn compose(&self) -> Result<Compose> {
        let env = EnvFile::read(&self.env_file())?;
        let vars = driver::stack::deploy_vars(&self.app(), &env);
        Compose::load(&self.recipe_dir(), &env.compose_files(), &vars)
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
        let chaos = git::short(&self.commit).to_string();
        let dnsrr = !crate::docker::host::has_ipvs();
        if dnsrr && self.deployed.borrow().is_none() {
            self.sink.event(&Event::Notice {
                message: "this host has no IPVS (service virtual IPs do not answer): services \
                          are deployed with endpoint_mode dnsrr, except those publishing ports \
                          through the ingress"
                    .into(),
            });
        }
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
                run_labels: &self.labels.pairs(),
                chaos_version: matches!(version, Version::Chaos).then_some(chaos.as_str()),
                dnsrr,
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
            env.set(k, v)?;
        }
        env.write(&path)
    }

    /// Swarm readiness (with fail-fast), then the recipe's probe.
    pub(crate) fn ready(&self, stage: Stage) -> StepResult {
        let timeout = self
            .tests
            .deploy_timeout
            .or_else(|| self.recipe_timeout())
            .unwrap_or(self.host.config.deploy_timeout);
        let deployed = self.deploy_started.get().is_some();
        let since = self.deploy_started.get().unwrap_or_else(SystemTime::now);
        let started = Instant::now();
        self.sink.event(&Event::StepStarted {
            step: "wait".into(),
            detail: format!("readiness of {}", self.stack),
        });
        let result = self.swarm.wait_ready(
            &self.stack,
            &ReadyOptions {
                timeout,
                since,
                deployed,
            },
            &*self.sink,
        );
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
                crate::recipe::probe::wait(
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
        mut f: impl FnMut() -> Result<()>,
    ) -> StepResult {
        super::stages::record_check(&self.record, &*self.sink, stage, name, &mut f)
    }

    /// Proves the stack runs the change: its chaos-version label names the change's commit.
    pub(crate) fn verify_chaos_version(&self) -> Result<()> {
        let short = git::short(&self.commit);
        let key = crate::labels::chaos_version(&self.stack);
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
            Some(label) => Err(Error::Failed(format!(
                "the stack runs {label}, not the change {short}"
            ))),
            None => Err(Error::Failed(format!(
                "no service carries the label {key}: cannot prove the change is what runs"
            ))),
        }
    }

    /// The deploy timeout the recipe declares as abra reads it: the
    /// `coop-cloud.<stack>.timeout` label (seconds), the longest if several services carry one.
    fn recipe_timeout(&self) -> Option<Duration> {
        let key = crate::labels::timeout(&self.stack);
        let compose = self.compose().ok()?;
        compose
            .services()
            .iter()
            .filter_map(|s| s.labels.get(&key)?.trim().parse::<u64>().ok())
            .max()
            .map(|secs| Duration::from_secs(secs).min(crate::config::MAX_DURATION))
    }

    /// Proves a published release is what runs: the `coop-cloud.<stack>.version` label the
    /// recipe puts on its main service names the release's tag (the release counterpart of
    /// the chaos-version proof). A recipe version without the label cannot be checked: said,
    /// not failed.
    pub(crate) fn verify_release_version(&self, tag: &str) -> Result<()> {
        let key = crate::labels::version(&self.stack);
        let services = self.swarm.services(&self.stack)?;
        let found: Vec<String> = services
            .iter()
            .filter_map(|s| s.labels.get(&key).cloned())
            .collect();
        if found.is_empty() {
            self.sink.event(&Event::Notice {
                message: format!(
                    "no service carries the label {key}: cannot check that release {tag} is what runs"
                ),
            });
            return Ok(());
        }
        match found.iter().find(|label| label.as_str() != tag) {
            None => Ok(()),
            Some(label) => Err(Error::Failed(format!(
                "release {tag} says it is {label} (label {key}): the release's version label was not bumped"
            ))),
        }
    }

    /// Where data markers go: the recipe's `marker` when its ccci.yml names one; else one in
    /// every path every backed-up service's backupbot labels name (see
    /// [`crate::recipe::backup`]), so a restore that skips a service or a path is caught.
    /// Only paths that are directories in the running container get one: a path a backup hook
    /// creates later (a dump file or directory) must not be pre-empted by a marker.
    pub(crate) fn markers(&self) -> Vec<suite::Marker> {
        if let Some(m) = &self.tests.marker {
            return vec![m.clone()];
        }
        let Ok(compose) = self.compose() else {
            return Vec::new();
        };
        let mut markers = Vec::new();
        for target in crate::recipe::backup::targets(&compose) {
            if target.paths.is_empty() {
                continue;
            }
            let probe = target
                .paths
                .iter()
                .map(|p| format!("[ -d '{0}' ] && echo '{0}'", p.replace('\'', "")))
                .collect::<Vec<_>>()
                .join("; ");
            let Ok(out) = self.swarm.exec(
                &self.stack,
                &target.service,
                &["sh".into(), "-c".into(), format!("{probe}; true")],
                None,
            ) else {
                continue;
            };
            markers.extend(out.stdout_str().lines().map(|dir| suite::Marker {
                service: target.service.clone(),
                path: format!("{}/ccci-marker", dir.trim_end_matches('/')),
            }));
        }
        markers
    }

    /// Writes `value` into the marker file inside its service.
    pub(crate) fn write_marker(&self, marker: &suite::Marker, value: &str) -> Result<()> {
        let script = format!(
            "printf '%s' '{1}' > '{0}'",
            marker.path.replace('\'', ""),
            value.replace('\'', "")
        );
        let out = self.swarm.exec_short(
            &self.stack,
            &marker.service,
            &["sh".into(), "-c".into(), script],
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "cannot write {} in {}: {}",
                marker.path,
                marker.service,
                out.last_error_line()
            )))
        }
    }

    /// What the marker file holds, or why it holds nothing.
    pub(crate) fn read_marker(&self, marker: &suite::Marker) -> Result<String> {
        let out = self.swarm.exec_short(
            &self.stack,
            &marker.service,
            &["cat".into(), marker.path.clone()],
        )?;
        if out.success() {
            Ok(out.stdout_str())
        } else {
            Ok(format!("(missing: {})", out.last_error_line()))
        }
    }

    /// Runs the stage's test executables from the recipe's test trees. A test that cannot be
    /// run fails the step as ccci's configuration error before any test runs.
    pub(crate) fn run_tests(&self, stage: Stage) -> StepResult {
        for test in self.trees.tests(stage)? {
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
            Some(path) if crate::sys::process::is_executable(&path) => {
                self.check(stage, name, || self.run_script(&path, stage))
            }
            Some(path) => Err(Failure::Error(Error::Config(format!(
                "hook {0} is not executable: run `chmod +x {0}`",
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

impl RunContext<'_> {
    /// Collects diagnostics of the run's stack into its `diagnostics/`, summarises each
    /// service in the log, and returns the swarm's top reason.
    pub(crate) fn diagnose(&self) -> Option<String> {
        let diagnosis = self
            .swarm
            .diagnose(&self.stack, &self.run_dir.diagnostics());
        for service in &diagnosis.services {
            let reason = service.reason.as_deref().unwrap_or("ready");
            let last_log = service.logs.last().map(String::as_str).unwrap_or("");
            self.sink.event(&Event::Notice {
                message: format!(
                    "diagnostics: {}: {reason}; last log line: {last_log}",
                    service.service
                ),
            });
        }
        diagnosis.top_reason
    }

    /// The upgrade's base: `pinned` when it is a tag of the recipe, else the last published
    /// version older than the change.
    pub(crate) fn upgrade_base(&self, pinned: Option<&str>) -> Result<Option<String>> {
        let dir = self.recipe_dir();
        match pinned {
            Some(v) => {
                git::resolve(&self.runner, &dir, Some(v)).map_err(|e| match e {
                    e @ Error::Interrupted(_) => e,
                    _ => Error::Usage(format!(
                        "base version `{v}` is not a tag of the recipe: check --from or upgrade_from"
                    )),
                })?;
                Ok(Some(v.to_string()))
            }
            None => git::last_published_before(&self.runner, &dir, &self.commit),
        }
    }

    /// Removes everything the run deployed, records it in the teardown marker, and returns what
    /// could not be removed.
    pub(crate) fn teardown(&self) -> Vec<String> {
        crate::sys::signal::clear_deadline();
        let outcome = crate::docker::teardown::teardown(
            &self.runner.with_budget(self.host.config.teardown_budget),
            &crate::docker::teardown::Target {
                domain: self.domain.clone(),
                stack: self.stack.clone(),
                env_file: Some(self.env_file()),
            },
            &*self.sink,
        );
        let _ = self.run_dir.mark_torn_down(&outcome.leftovers);
        outcome.leftovers
    }
}

impl Steps for RunContext<'_> {
    fn record(&self) -> &RefCell<RunRecord> {
        &self.record
    }

    fn save_record(&self) {
        let _ = self.record.borrow().write(&self.run_dir.run_json());
    }

    fn sink(&self) -> &dyn EventSink {
        &*self.sink
    }

    fn interrupted(&self) -> Option<i32> {
        self.host.cancel.signal()
    }

    fn change(&self) -> String {
        git::short(&self.commit).to_string()
    }

    fn upgrade_base(&self, pinned: Option<&str>) -> Result<Option<String>> {
        RunContext::upgrade_base(self, pinned)
    }

    fn hook(&self, name: &str, stage: Stage) -> StepResult {
        RunContext::hook(self, name, stage)
    }

    fn deploy_fresh(&self, version: &Version) -> StepResult {
        RunContext::deploy_fresh(self, version)
    }

    fn deploy_change(&self) -> StepResult {
        git::checkout(&self.runner, &self.recipe_dir(), &self.commit)?;
        self.apply_env(&self.tests.upgrade_env)?;
        self.deploy(&Version::Chaos)
    }

    fn ready(&self, stage: Stage) -> StepResult {
        RunContext::ready(self, stage)
    }

    fn run_tests(&self, stage: Stage) -> StepResult {
        RunContext::run_tests(self, stage)
    }

    fn has_tests(&self, stage: Stage) -> bool {
        self.trees.tests(stage).is_ok_and(|tests| !tests.is_empty())
    }

    fn is_deployed(&self) -> bool {
        self.deployed.borrow().is_some()
    }

    fn markers(&self) -> Vec<suite::Marker> {
        RunContext::markers(self)
    }

    fn write_marker(&self, marker: &suite::Marker, value: &str) -> Result<()> {
        RunContext::write_marker(self, marker, value)
    }

    fn read_marker(&self, marker: &suite::Marker) -> Result<String> {
        RunContext::read_marker(self, marker)
    }

    fn verify_change_runs(&self) -> Result<()> {
        self.verify_chaos_version()
    }

    fn verify_release_runs(&self, tag: &str) -> Result<()> {
        self.verify_release_version(tag)
    }

    fn backup(&self) -> Result<()> {
        self.driver.backup(&self.app())
    }

    fn restore(&self) -> Result<()> {
        self.driver.restore(&self.app())
    }

    fn diagnose(&self) -> Option<String> {
        RunContext::diagnose(self)
    }

    fn keep(&self, until: u64) -> Result<String> {
        crate::docker::teardown::keep_until(&self.runner, &self.stack, until)?;
        Ok(format!("ccci teardown --domain {}", self.domain))
    }

    fn teardown(&self) -> Vec<String> {
        RunContext::teardown(self)
    }
}
