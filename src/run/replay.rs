//! The step subcommands: `ccci prepare` starts a run directory by hand, and `fetch`, `deploy`,
//! `wait`, `check`, `backup`, `restore` and `teardown --run` each replay one step of a run —
//! one prepared that way, or one `ccci test` left behind (with `--keep`, or a failed step to
//! look at again).
//!
//! Every step works on the run's own directory and abra home, appends to the run's `log`, and
//! holds the app domain's lock while it touches the app (L1). A step never waits for a live
//! run's lock: it says who holds it and stops. Replayed steps do not rewrite the verdict in
//! `run.json`; only `prepare` and `fetch` (which decide what the run is) and `teardown` (which
//! records that it happened) write it.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::docker::Swarm;
use crate::docker::teardown;
use crate::driver::{self, DriverChoice, Version};
use crate::error::{Error, Result};
use crate::event::{EventSink, Fanout};
use crate::labels::RunLabels;
use crate::naming;
use crate::recipe::git;
use crate::stage::Stage;
use crate::sys::cancel::Cancel;
use crate::sys::lock::{AppLock, Contents, Holder};
use crate::sys::process::Runner;

use super::Host;
use super::abra_home::AbraHome;
use super::dir::{RunDir, RunLog};
use super::failure::{Failure, StepResult};
use super::record::{self, RunRecord, StageRecord};
use super::steps::{self, RunContext};

/// What `ccci prepare` records about the run to come.
#[derive(Clone, Debug)]
pub struct PrepareRequest {
    pub recipe: String,
    pub source: Option<String>,
    pub git_ref: Option<String>,
    pub domain: Option<String>,
    pub run_id: Option<String>,
    pub driver: DriverChoice,
    pub tests_dir: Option<PathBuf>,
    pub stages: Vec<Stage>,
}

/// One step to replay on a fetched run.
#[derive(Clone, Debug)]
pub enum Step {
    /// Deploy a published version, or the change (`None`); creates the app first when its env
    /// file does not exist.
    Deploy {
        version: Option<String>,
        overlay: bool,
    },
    /// Swarm readiness, then the recipe's probe.
    Wait,
    /// A stage's test executables (for upgrade, first the proof that the change runs).
    Check {
        stage: Stage,
    },
    Backup,
    Restore,
}

/// `ccci prepare`: creates the run directory, its abra home and `run.json`, touching neither
/// the recipe source nor the swarm. Returns the run's directory.
pub fn prepare(host: &Host, req: &PrepareRequest) -> Result<RunDir> {
    naming::validate_recipe(&req.recipe)?;
    if let Some(domain) = &req.domain {
        naming::validate_domain(domain)?;
    }
    if let Some(source) = &req.source {
        git::check_local_source(source)?;
    }
    let (driver, _) = driver::select(req.driver)?;
    let run_dir = match &req.run_id {
        Some(id) => RunDir::create(&host.config.runs_dir, id, false)?,
        None => RunDir::create_manual(&host.config.runs_dir)?,
    };
    let run_id = run_dir.id.clone();
    AbraHome::create(&run_dir.path, &host.config.abra_dir)?;
    let source = git::source_for(
        &req.recipe,
        req.source.as_deref(),
        &host.config.recipe_base_url,
    );
    let mut record = RunRecord::new(&run_id, &req.recipe, &source, driver.name());
    record.git_ref = req.git_ref.clone();
    record.tests_dir = req.tests_dir.clone();
    if let Some(domain) = &req.domain {
        record.domain = domain.clone();
        record.stack = naming::stack_name(domain);
    }
    record.stages = req
        .stages
        .iter()
        .map(|&s| StageRecord::pending(s))
        .collect();
    record.write(&run_dir.run_json())?;
    Ok(run_dir)
}

/// `ccci fetch --run ID`: fetches the recipe into the run's abra home, resolves the ref, and
/// records the commit and the app domain (generated from the commit unless one was given).
pub fn fetch(host: &Host, run_id: &str, user_sink: Arc<dyn EventSink>) -> Result<RunRecord> {
    let (run_dir, mut record) = open(host, run_id)?;
    let (sink, runner) = log_and_runner(host, &run_dir, user_sink)?;
    let home = AbraHome::create(&run_dir.path, &host.config.abra_dir)?;
    let dir = home.recipe_dir(&record.recipe);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
    }
    let skip_fetch = host.env.get("CCCI_SKIP_FETCH").is_some_and(|v| v == "1");
    let commit = steps::fetch_recipe(
        &runner,
        &home,
        &record.recipe,
        &record.source,
        record.git_ref.as_deref(),
        skip_fetch,
        &*sink,
    )?;
    if record.domain.is_empty() {
        record.domain =
            naming::test_domain(&record.recipe, &commit, run_id, &host.config.domain_zone);
        record.stack = naming::stack_name(&record.domain);
    }
    record.commit = Some(commit);
    record.write(&run_dir.run_json())?;
    Ok(record)
}

/// Replays `step` on the run `run_id`. `Ok(None)` when it passed, `Ok(Some(reason))` when the
/// step ran and failed (the app not ready, a check failed), `Err` when it could not run.
pub fn replay(
    host: &Host,
    run_id: &str,
    step: &Step,
    user_sink: Arc<dyn EventSink>,
) -> Result<Option<String>> {
    let (run_dir, record) = open(host, run_id)?;
    let Some(commit) = record.commit.clone() else {
        return Err(Error::Usage(format!(
            "run {run_id} has not fetched its recipe yet: run `ccci fetch --run {run_id}` first"
        )));
    };
    let (driver, _) = driver::select(DriverChoice::parse(&record.driver)?)?;
    Swarm::new(Runner::new(host.cancel.clone())).preflight()?;
    let (sink, runner) = log_and_runner(host, &run_dir, user_sink)?;
    let home = AbraHome::create(&run_dir.path, &host.config.abra_dir)?;
    let trees = steps::test_trees(host, &record.recipe, record.tests_dir.as_deref());
    let tests = trees.config()?;
    let env_file = home.env_file(&host.config.server, &record.domain);
    if !matches!(step, Step::Deploy { .. }) && !env_file.exists() {
        return Err(Error::Usage(format!(
            "{} is not deployed (no app env file): run `ccci deploy --run {run_id}` first",
            record.domain
        )));
    }
    let lock = lock_app(host, &record.domain, run_id)?;
    let ctx = RunContext {
        host,
        driver,
        runner: runner.clone(),
        home,
        recipe: record.recipe.clone(),
        domain: record.domain.clone(),
        stack: record.stack.clone(),
        labels: RunLabels {
            run_id: run_id.to_string(),
            domain: record.domain.clone(),
            setup: crate::labels::setup_id(&host.config.lock_dir),
            deadline_unix: None,
            keep_until: Some(super::unix_after(host.config.keep_for)),
        },
        backups: run_dir.backups(),
        swarm: Swarm::new(runner),
        tests,
        trees,
        commit,
        run_dir,
        overlay: !matches!(step, Step::Deploy { overlay: false, .. }),
        record: RefCell::new(record),
        deployed: RefCell::new(None),
        deploy_started: Cell::new(None),
        sink,
    };
    let result = run_step(&ctx, step);
    drop(lock);
    match result {
        Ok(()) => Ok(None),
        Err(Failure::Error(e)) => Err(e),
        Err(failure) => {
            if matches!(failure, Failure::NotReady(_)) {
                ctx.diagnose();
            }
            Ok(Some(failure.message()))
        }
    }
}

fn run_step(ctx: &RunContext<'_>, step: &Step) -> StepResult {
    match step {
        Step::Deploy { version, .. } => {
            let version = match version {
                Some(v) => Version::Release(v.clone()),
                None => Version::Chaos,
            };
            let env_file = ctx.home.env_file(&ctx.host.config.server, &ctx.domain);
            if !env_file.exists() {
                return ctx.deploy_fresh(&version);
            }
            let dir = ctx.recipe_dir();
            let commit = match &version {
                Version::Release(tag) => git::resolve(&ctx.runner, &dir, Some(tag))?,
                Version::Chaos => ctx.commit.clone(),
            };
            git::checkout(&ctx.runner, &dir, &commit)?;
            ctx.deploy(&version)
        }
        Step::Wait => ctx.ready(Stage::Install),
        Step::Check { stage } => {
            if *stage == Stage::Upgrade {
                ctx.check(*stage, "the change is what runs", || {
                    ctx.verify_chaos_version()
                })?;
            }
            ctx.run_tests(*stage)
        }
        Step::Backup => ctx.check(Stage::Backup, "back up", || ctx.driver.backup(&ctx.app())),
        Step::Restore => ctx.check(Stage::Backup, "restore", || ctx.driver.restore(&ctx.app())),
    }
}

/// `ccci teardown --run ID`: removes the run's app and records that in `run.json` and the
/// teardown marker.
pub fn teardown(
    host: &Host,
    run_id: &str,
    user_sink: Arc<dyn EventSink>,
) -> Result<teardown::Outcome> {
    let (run_dir, mut record) = open(host, run_id)?;
    if record.domain.is_empty() {
        return Err(Error::Usage(format!(
            "run {run_id} has no app domain yet (nothing was deployed): nothing to tear down"
        )));
    }
    let (sink, _) = log_and_runner(host, &run_dir, user_sink)?;
    let outcome = teardown_domain(&host.config, &host.cancel, &record.domain, &*sink)?;
    record.torn_down = true;
    record.teardown_leftovers = outcome.leftovers.clone();
    record.kept = None;
    record.write(&run_dir.run_json())?;
    run_dir.mark_torn_down(&outcome.leftovers)?;
    Ok(outcome)
}

fn open(host: &Host, run_id: &str) -> Result<(RunDir, RunRecord)> {
    let run_dir = RunDir::open(&host.config.runs_dir, run_id)?;
    let path = run_dir.run_json();
    if !path.exists() {
        return Err(Error::Usage(format!(
            "{} has no run.json: start the run with `ccci prepare` or `ccci test`",
            run_dir.path.display()
        )));
    }
    let record = RunRecord::read(&path)?;
    Ok((run_dir, record))
}

/// The run's log (appended to) next to the user's sink, and a runner that logs children's
/// output there too.
fn log_and_runner(
    host: &Host,
    run_dir: &RunDir,
    user_sink: Arc<dyn EventSink>,
) -> Result<(Arc<dyn EventSink>, Runner)> {
    let log = RunLog::open(&run_dir.log())?;
    let runner = Runner::new(host.cancel.clone())
        .with_grace(host.config.kill_grace)
        .with_sink(log.output_sink());
    let sink: Arc<dyn EventSink> = Arc::new(Fanout(vec![Arc::new(log), user_sink]));
    Ok((sink, runner))
}

/// Takes the app domain's lock for one step, or says who holds it.
fn lock_app(host: &Host, domain: &str, run_id: &str) -> Result<AppLock> {
    let holder = Holder::this_process(format!("{run_id}-step"));
    match AppLock::try_acquire(&host.config.lock_dir, domain, &holder)? {
        Some(lock) => Ok(lock),
        None => {
            let who = match crate::sys::lock::read_contents(&host.config.lock_file(domain)) {
                Ok(Contents::Holder(h)) => format!("run {} (pid {})", h.run_id, h.pid),
                _ => "another process".to_string(),
            };
            Err(Error::Usage(format!(
                "{domain} is locked by {who}: wait for it to finish (see `ccci locks`)"
            )))
        }
    }
}

/// `ccci teardown --domain D`: removes an app left by `--keep` or a crashed run, under the
/// domain's lock so it never races a live run of the same domain.
pub fn teardown_domain(
    config: &Config,
    cancel: &Cancel,
    domain: &str,
    sink: &dyn EventSink,
) -> Result<teardown::Outcome> {
    crate::naming::validate_domain(domain)?;
    let runner = Runner::new(cancel.clone()).with_grace(config.kill_grace);
    Swarm::new(runner.clone()).preflight()?;
    let holder = Holder {
        run_id: RunDir::manual_id(),
        pid: std::process::id(),
        started_at: record::now_rfc3339(),
    };
    let lock = AppLock::acquire(&config.lock_dir, domain, &holder, cancel)?;
    let outcome = teardown::teardown(
        &runner.with_budget(config.teardown_budget),
        &teardown::Target {
            domain: domain.to_string(),
            stack: crate::naming::stack_name(domain),
            env_file: Some(config.env_file(domain)),
        },
        sink,
    );
    if outcome.leftovers.is_empty() {
        let _ = lock.unlink_held();
    }
    Ok(outcome)
}
