//! The stage machine of one run (behaviours.md §Lifecycle): one deployment walked through
//! base deploy → install checks → upgrade → backup/mutate/restore/verify → teardown.
//!
//! Teardown always happens — on pass, failure, error and interruption — unless `--keep` says
//! otherwise, and then the exact command that tears down later is recorded. This module
//! decides what happens in which order; the driver deploys, the swarm module watches, the
//! suite module says what the recipe's tests are. It never prints: everything goes to the
//! event sink, which also feeds the run's log.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::abra_home::AbraHome;
use crate::compose::Compose;
use crate::config::{Config, Env};
use crate::driver::{self, Driver, DriverChoice, Version};
use crate::envfile::EnvFile;
use crate::error::{Error, Result};
use crate::event::{Event, EventSink, Fanout};
use crate::lock::{AppLock, Holder};
use crate::overlay::{self, OverlayInput};
use crate::process::Runner;
use crate::recipe;
use crate::report::{self, RunRecord, StageRecord, StageStatus, Verdict};
use crate::rundir::{RunDir, RunLog};
use crate::signal::Cancel;
use crate::stage::Stage;
use crate::steps::{self, Failure, RunContext, StepResult};
use crate::suite::{self, TestTrees};
use crate::swarm::{NotReady, Swarm};
use crate::teardown;

/// When to leave the app deployed after the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Never,
    OnFailure,
    Always,
}

/// Everything `ccci test` was asked to do, validated by the caller's parsing.
#[derive(Clone, Debug)]
pub struct TestRequest {
    pub recipe: String,
    pub source: Option<String>,
    pub git_ref: Option<String>,
    /// `--from`: the upgrade's base version.
    pub from: Option<String>,
    pub stages: Vec<Stage>,
    pub domain: Option<String>,
    pub run_id: Option<String>,
    pub driver: DriverChoice,
    pub keep: Keep,
    pub tests_dir: Option<PathBuf>,
    /// `CCCI_SKIP_FETCH=1`: copy the canonically staged clone (A4).
    pub skip_fetch: bool,
    /// `--no-overlay`: deploy the recipe exactly as published (to show what the overlay fixes).
    pub overlay: bool,
    /// Unix time the run must be over by, for the janitor's labels.
    pub deadline_unix: Option<u64>,
}

/// The host side of a run: configuration and the process-wide cancel token.
pub struct Host {
    pub config: Config,
    pub env: Env,
    pub cancel: Cancel,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub record: RunRecord,
    pub run_dir: PathBuf,
    /// The signal that interrupted the run, even one that came after the verdict (during
    /// teardown): a supervisor that sent SIGTERM gets 143 either way (G4).
    pub signal: Option<i32>,
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self.signal {
            Some(signal) => crate::exit_code::for_signal(signal),
            None => crate::exit_code::for_verdict(self.record.verdict.unwrap_or(Verdict::Error)),
        }
    }
}

/// Checks the things that make a run impossible before anything is created: names, docker,
/// the swarm, the driver. Bad input changes nothing (it fails here).
pub fn preflight(host: &Host, req: &TestRequest) -> Result<(Box<dyn Driver>, Option<String>)> {
    crate::naming::validate_recipe(&req.recipe)?;
    if let Some(domain) = &req.domain {
        crate::naming::validate_domain(domain)?;
    }
    if let Some(id) = &req.run_id {
        RunDir::validate_id(id)?;
    }
    if let Some(source) = &req.source {
        recipe::check_local_source(source)?;
    }
    if crate::process::find_program("git").is_none() {
        return Err(Error::Infra("git is not installed: install git".into()));
    }
    Swarm::new(Runner::new(host.cancel.clone())).preflight()?;
    driver::select(req.driver)
}

/// Runs `ccci test`: the whole lifecycle of one run.
pub fn run_test(host: &Host, req: &TestRequest, user_sink: Arc<dyn EventSink>) -> Result<Outcome> {
    let (driver, notice) = preflight(host, req)?;
    let run_id = req.run_id.clone().unwrap_or_else(RunDir::manual_id);
    let run_dir = RunDir::create(&host.config.runs_dir, &run_id, false)?;
    let log = RunLog::open(&run_dir.log())?;
    let sink: Arc<dyn EventSink> = Arc::new(Fanout(vec![Arc::new(log.clone()), user_sink]));
    if let Some(message) = notice {
        sink.event(&Event::Notice { message });
    }
    let runner = Runner::new(host.cancel.clone())
        .with_grace(host.config.kill_grace)
        .with_sink(log.output_sink());
    let home = AbraHome::create(&run_dir.path, &host.config.abra_dir)?;
    let source = recipe::source_for(
        &req.recipe,
        req.source.as_deref(),
        &host.config.recipe_base_url,
    );

    // Fetch first: the generated domain depends on the commit.
    let fetched = steps::fetch_recipe(
        &runner,
        &home,
        &req.recipe,
        &source,
        req.git_ref.as_deref(),
        req.skip_fetch,
        &*sink,
    );
    let commit = match fetched {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir.path);
            return Err(e);
        }
    };
    let domain = req.domain.clone().unwrap_or_else(|| {
        crate::naming::test_domain(&req.recipe, &commit, &run_id, &host.config.domain_zone)
    });
    let stack = crate::naming::stack_name(&domain);

    let trees = steps::test_trees(host, &req.recipe, req.tests_dir.as_deref());
    let tests = trees.config()?;
    let stages: Vec<Stage> = match &tests.stages {
        Some(applicable) => req
            .stages
            .iter()
            .copied()
            .filter(|s| applicable.contains(s))
            .collect(),
        None => req.stages.clone(),
    };

    let mut record = RunRecord::new(&run_id, &req.recipe, &source, driver.name());
    record.git_ref = req.git_ref.clone();
    record.commit = Some(commit.clone());
    record.domain = domain.clone();
    record.stack = stack.clone();
    record.tests_dir = req.tests_dir.clone();
    record.stages = req
        .stages
        .iter()
        .map(|&stage| {
            let mut s = StageRecord::pending(stage);
            if !stages.contains(&stage) {
                s.status = StageStatus::Skipped;
                s.reason = Some(format!(
                    "the recipe's ccci.yml does not apply the {stage} stage"
                ));
            }
            s
        })
        .collect();
    record.write(&run_dir.run_json())?;
    sink.event(&Event::RunStarted {
        run_id: run_id.clone(),
        recipe: req.recipe.clone(),
        domain: domain.clone(),
        driver: driver.name().to_string(),
        stages: stages.clone(),
        run_dir: run_dir.path.display().to_string(),
    });

    // L1/L5: the domain's lock for the whole run; a second run of the same domain waits here.
    let holder = Holder {
        run_id: run_id.clone(),
        pid: std::process::id(),
        started_at: record.started_at.clone(),
    };
    let lock = AppLock::acquire(&host.config.lock_dir, &domain, &holder, &host.cancel)?;

    let started = Instant::now();
    let ctx = RunContext {
        host,
        driver,
        runner: runner.clone(),
        home: home.clone(),
        recipe: req.recipe.clone(),
        domain: domain.clone(),
        stack: stack.clone(),
        labels: steps::run_labels(&run_id, &domain, req.deadline_unix),
        backups: run_dir.backups(),
        swarm: Swarm::new(runner.clone()),
        tests,
        trees,
        commit: commit.clone(),
        run_dir: run_dir.clone(),
        record: RefCell::new(record),
        overlay: req.overlay,
        deadline_unix: req.deadline_unix,
        deployed: RefCell::new(None),
        deploy_started: Cell::new(None),
        sink: sink.clone(),
    };
    let verdict = Run { ctx: &ctx, req }.stages(&stages);
    let mut record = ctx.record.into_inner();
    let (verdict, reason) = match verdict {
        Ok(()) => (Verdict::Pass, None),
        Err(StageFailure { verdict, reason }) => (verdict, Some(reason)),
    };
    record.verdict = Some(verdict);
    record.reason = reason.clone();
    sink.event(&Event::Verdict {
        verdict,
        reason: reason.clone(),
    });

    let keep = match req.keep {
        Keep::Always => true,
        Keep::OnFailure => verdict != Verdict::Pass,
        Keep::Never => false,
    };
    if keep && !matches!(verdict, Verdict::Interrupted(_)) {
        let command = format!("ccci teardown --domain {domain}");
        sink.event(&Event::Notice {
            message: format!("kept {domain} deployed; remove it with: {command}"),
        });
        record.kept = Some(command);
    } else {
        crate::signal::clear_deadline();
        let outcome = teardown::teardown(
            &runner.with_budget(host.config.teardown_budget),
            &teardown::Target {
                domain: domain.clone(),
                stack: stack.clone(),
                env_file: Some(home.env_file(&host.config.server, &domain)),
            },
            &*sink,
        );
        record.torn_down = true;
        record.teardown_leftovers = outcome.leftovers.clone();
        let _ = run_dir.mark_torn_down(&outcome.leftovers);
        if outcome.leftovers.is_empty() {
            let _ = lock.unlink_held();
        }
    }
    drop(lock);
    let signal = host.cancel.signal();
    if let Some(signal) = signal
        && !matches!(verdict, Verdict::Interrupted(_))
    {
        sink.event(&Event::Notice {
            message: format!(
                "{} arrived after the verdict; teardown finished first",
                crate::signal::signal_name(signal)
            ),
        });
    }
    record.finished_at = Some(report::now_rfc3339());
    record.seconds = Some(started.elapsed().as_secs_f64());
    record.write(&run_dir.run_json())?;
    let _ = report::write_atomic(&run_dir.junit(), record.junit().as_bytes());
    Ok(Outcome {
        record,
        run_dir: run_dir.path.clone(),
        signal,
    })
}

/// Why the run did not pass.
struct StageFailure {
    verdict: Verdict,
    reason: String,
}

/// A run in progress: its steps' context and what it was asked to do.
struct Run<'a, 'h> {
    ctx: &'a RunContext<'h>,
    req: &'a TestRequest,
}

impl Run<'_, '_> {
    fn stages(&self, stages: &[Stage]) -> std::result::Result<(), StageFailure> {
        // The base is decided up front: the upgrade's starting point, or the change itself.
        let base = if stages.contains(&Stage::Upgrade) {
            match self.upgrade_base() {
                Ok(Some(v)) => Some(v),
                Ok(None) => {
                    self.skip(
                        Stage::Upgrade,
                        "no published version older than the change to upgrade from",
                    );
                    None
                }
                Err(e) => return Err(self.fail_error(Stage::Upgrade, e)),
            }
        } else {
            None
        };
        self.ctx.record.borrow_mut().base_version = base.clone();
        let mut first_failure: Option<StageFailure> = None;
        for &stage in stages {
            if self
                .ctx
                .record
                .borrow()
                .stages
                .iter()
                .any(|s| s.stage == stage && s.status == StageStatus::Skipped)
            {
                continue;
            }
            if let Some(signal) = self.ctx.host.cancel.signal() {
                return Err(StageFailure {
                    verdict: Verdict::Interrupted(signal),
                    reason: Error::Interrupted(signal).to_string(),
                });
            }
            self.begin(stage, base.as_deref());
            let started = Instant::now();
            let result = match stage {
                Stage::Install => self.install(base.as_deref()),
                Stage::Upgrade => self.upgrade(base.as_deref().unwrap_or_default()),
                Stage::Backup => self.backup(),
            };
            match result {
                Ok(()) => self.finish(stage, StageStatus::Passed, None, started),
                Err(failure) => {
                    let reason = self.explain(stage, &failure);
                    self.finish(stage, StageStatus::Failed, Some(reason.clone()), started);
                    let verdict = match &failure {
                        Failure::Error(Error::Interrupted(s)) => Verdict::Interrupted(*s),
                        Failure::Base { .. } => Verdict::BaseFailed,
                        Failure::Error(Error::Infra(_) | Error::Config(_) | Error::Usage(_)) => {
                            Verdict::Error
                        }
                        _ => Verdict::Fail,
                    };
                    first_failure = Some(StageFailure { verdict, reason });
                    break;
                }
            }
        }
        // Stages after a failure are not run; say so rather than leave them pending.
        for s in self.ctx.record.borrow_mut().stages.iter_mut() {
            if s.status == StageStatus::Pending {
                s.status = StageStatus::Skipped;
                s.reason = Some("not run: an earlier stage failed".into());
            }
        }
        self.write_record();
        match first_failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn write_record(&self) {
        let _ = self.ctx.record.borrow().write(&self.ctx.run_dir.run_json());
    }

    fn upgrade_base(&self) -> Result<Option<String>> {
        let pinned = self
            .req
            .from
            .clone()
            .or_else(|| self.ctx.tests.upgrade_from.clone());
        let dir = self.ctx.recipe_dir();
        match pinned {
            Some(v) => {
                recipe::resolve(&self.ctx.runner, &dir, Some(&v)).map_err(|_| {
                    Error::Usage(format!(
                        "base version `{v}` is not a tag of the recipe: check --from or upgrade_from"
                    ))
                })?;
                Ok(Some(v))
            }
            None => recipe::last_published_before(&self.ctx.runner, &dir, &self.ctx.commit),
        }
    }

    fn begin(&self, stage: Stage, base: Option<&str>) {
        let short = recipe::short(&self.ctx.commit);
        let detail = match (stage, base) {
            (Stage::Install, Some(b)) => format!("base {b}"),
            (Stage::Upgrade, Some(b)) => format!("{b} → {short}"),
            _ => short.to_string(),
        };
        if let Some(s) = self.ctx.record.borrow_mut().stage_mut(stage) {
            s.status = StageStatus::Running;
            s.detail = detail.clone();
            s.started_at = Some(report::now_rfc3339());
        }
        self.write_record();
        self.ctx.sink.event(&Event::StageStarted { stage, detail });
    }

    fn finish(&self, stage: Stage, status: StageStatus, reason: Option<String>, started: Instant) {
        let elapsed = started.elapsed();
        if let Some(s) = self.ctx.record.borrow_mut().stage_mut(stage) {
            s.status = status;
            s.reason = reason.clone();
            s.seconds = Some(elapsed.as_secs_f64());
        }
        self.write_record();
        self.ctx.sink.event(&Event::StageFinished {
            stage,
            status,
            reason,
            elapsed,
        });
    }

    fn skip(&self, stage: Stage, reason: &str) {
        if let Some(s) = self.ctx.record.borrow_mut().stage_mut(stage) {
            s.status = StageStatus::Skipped;
            s.reason = Some(reason.to_string());
        }
        self.ctx.sink.event(&Event::StageFinished {
            stage,
            status: StageStatus::Skipped,
            reason: Some(reason.to_string()),
            elapsed: Duration::ZERO,
        });
    }

    fn fail_error(&self, stage: Stage, e: Error) -> StageFailure {
        let reason = e.to_string();
        if let Some(s) = self.ctx.record.borrow_mut().stage_mut(stage) {
            s.status = StageStatus::Failed;
            s.reason = Some(reason.clone());
        }
        StageFailure {
            verdict: match e {
                Error::Interrupted(s) => Verdict::Interrupted(s),
                Error::Usage(_) | Error::Config(_) => Verdict::Error,
                _ => Verdict::Fail,
            },
            reason,
        }
    }

    /// The one-line reason of a failure, after collecting diagnostics for failures on the
    /// swarm. The top reason from the swarm beats a generic timeout message.
    fn explain(&self, stage: Stage, failure: &Failure) -> String {
        let base_prefix = match failure {
            Failure::Base { version, .. } => format!("base version {version} does not deploy: "),
            _ => String::new(),
        };
        let message = failure.message();
        if matches!(failure.error(), Some(Error::Interrupted(_))) {
            return message;
        }
        let deployed = self.ctx.deployed.borrow().is_some();
        if deployed || matches!(failure, Failure::NotReady(_) | Failure::Base { .. }) {
            let diagnosis = diagnose(self.ctx);
            if let (Failure::NotReady(NotReady::Timeout { .. }), Some(top)) =
                (failure, &diagnosis.top_reason)
            {
                return format!("{base_prefix}{stage}: {message}; {top}");
            }
        }
        format!("{base_prefix}{message}")
    }

    // ---- stages ---------------------------------------------------------------------------

    fn install(&self, base: Option<&str>) -> StepResult {
        let ctx = self.ctx;
        ctx.hook("pre_install", Stage::Install)?;
        match base {
            Some(b) => {
                let version = Version::Release(b.to_string());
                ctx.deploy_fresh(&version).map_err(|f| f.on_base(b))?;
                ctx.ready(Stage::Install).map_err(|f| f.on_base(b))?;
            }
            None => {
                ctx.deploy_fresh(&Version::Chaos)?;
                ctx.ready(Stage::Install)?;
            }
        }
        ctx.run_tests(Stage::Install)?;
        ctx.hook("post_install", Stage::Install)
    }

    fn upgrade(&self, base: &str) -> StepResult {
        let ctx = self.ctx;
        ctx.hook("pre_upgrade", Stage::Upgrade)?;
        if ctx.deployed.borrow().is_none() {
            let version = Version::Release(base.to_string());
            ctx.deploy_fresh(&version).map_err(|f| f.on_base(base))?;
            ctx.ready(Stage::Upgrade).map_err(|f| f.on_base(base))?;
        }
        let marker = ctx.marker();
        let value = format!("ccci-upgrade-{}", ctx.stack);
        if let Some(m) = &marker {
            ctx.check(Stage::Upgrade, "write data before the upgrade", || {
                ctx.write_marker(m, &value)
            })?;
        } else {
            ctx.sink.event(&Event::Notice {
                message: "no marker location (no `marker` in ccci.yml and no backupbot path): data survival is not checked".into(),
            });
        }
        // The change, checked out by force over the base's tree, with its own overlay.
        recipe::checkout(&ctx.runner, &ctx.recipe_dir(), &ctx.commit)?;
        ctx.apply_env(&ctx.tests.upgrade_env)?;
        ctx.deploy(&Version::Chaos)?;
        ctx.ready(Stage::Upgrade)?;
        ctx.check(Stage::Upgrade, "the change is what runs", || {
            ctx.verify_chaos_version()
        })?;
        if let Some(m) = &marker {
            ctx.check(Stage::Upgrade, "data survived the upgrade", || {
                let found = ctx.read_marker(m)?;
                if found == value {
                    Ok(())
                } else {
                    Err(Error::Infra(format!(
                        "data written before the upgrade is gone: {} holds `{found}`",
                        m.path
                    )))
                }
            })?;
        }
        ctx.run_tests(Stage::Upgrade)?;
        ctx.hook("post_upgrade", Stage::Upgrade)
    }

    fn backup(&self) -> StepResult {
        let ctx = self.ctx;
        ctx.hook("pre_backup", Stage::Backup)?;
        if ctx.deployed.borrow().is_none() {
            ctx.deploy_fresh(&Version::Chaos)?;
            ctx.ready(Stage::Backup)?;
        }
        let Some(marker) = ctx.marker() else {
            return Err(Failure::Error(Error::Config(
                "the backup stage needs a marker location: add `marker` to the recipe's ccci.yml or a backupbot.backup.path label".into(),
            )));
        };
        let original = format!("ccci-backup-{}", ctx.stack);
        ctx.check(Stage::Backup, "write marker", || {
            ctx.write_marker(&marker, &original)
        })?;
        ctx.check(Stage::Backup, "back up", || ctx.driver.backup(&ctx.app()))?;
        ctx.check(Stage::Backup, "mutate marker", || {
            ctx.write_marker(&marker, "mutated")
        })?;
        ctx.check(Stage::Backup, "restore", || ctx.driver.restore(&ctx.app()))?;
        ctx.ready(Stage::Backup)?;
        ctx.check(Stage::Backup, "marker restored", || {
            let found = ctx.read_marker(&marker)?;
            if found == original {
                Ok(())
            } else {
                Err(Error::Infra(format!(
                    "restore did not bring the data back: {} holds `{found}`",
                    marker.path
                )))
            }
        })?;
        ctx.run_tests(Stage::Backup)?;
        ctx.hook("post_backup", Stage::Backup)
    }
}

/// Collects diagnostics of the run's stack into its `diagnostics/` and summarises each service
/// in the log.
pub(crate) fn diagnose(ctx: &RunContext<'_>) -> crate::swarm::Diagnosis {
    let diagnosis = ctx.swarm.diagnose(&ctx.stack, &ctx.run_dir.diagnostics());
    for service in &diagnosis.services {
        let reason = service.reason.as_deref().unwrap_or("ready");
        let last_log = service.logs.last().map(String::as_str).unwrap_or("");
        ctx.sink.event(&Event::Notice {
            message: format!(
                "diagnostics: {}: {reason}; last log line: {last_log}",
                service.service
            ),
        });
    }
    diagnosis
}

/// Unix seconds `after` from now, for deadline labels.
pub fn unix_after(after: Duration) -> u64 {
    (SystemTime::now() + after)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
        started_at: report::now_rfc3339(),
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

/// `ccci overlay <recipe>`: the overlay a run would deploy with the recipe's `.env.sample`, for
/// the ref asked for, without touching the swarm. Works in a scratch directory that is removed
/// afterwards.
pub fn preview_overlay(
    config: &Config,
    env: &Env,
    recipe_name: &str,
    source: Option<&str>,
    git_ref: Option<&str>,
    tests_dir: Option<&Path>,
) -> Result<String> {
    crate::naming::validate_recipe(recipe_name)?;
    let scratch = std::env::temp_dir().join(format!("ccci-overlay-{}", std::process::id()));
    let result = (|| {
        let runner = Runner::new(Cancel::new());
        let dir = scratch.join(recipe_name);
        let source = recipe::source_for(recipe_name, source, &config.recipe_base_url);
        recipe::clone(&runner, &source, &dir)?;
        let commit = recipe::resolve(&runner, &dir, git_ref)?;
        recipe::checkout(&runner, &dir, &commit)?;
        let sample = EnvFile::read(&dir.join(".env.sample")).map_err(|_| {
            Error::Config(format!(
                "recipe {recipe_name} has no .env.sample: is it a Co-op Cloud recipe?"
            ))
        })?;
        let run_id = "preview";
        let domain = crate::naming::test_domain(recipe_name, &commit, run_id, &config.domain_zone);
        let stack = crate::naming::stack_name(&domain);
        let mut vars = driver::stack::abra_sh_exports(&dir);
        vars.extend(sample.vars());
        vars.insert("STACK_NAME".into(), stack.clone());
        vars.insert("DOMAIN".into(), domain.clone());
        let compose = Compose::load(
            &dir,
            &overlay::without_overlay(&sample.compose_files()),
            &vars,
        )?;
        let roots = suite::roots(
            tests_dir,
            config,
            Config::config_dir(env).as_deref(),
            suite::bundled_root(env).as_deref(),
        );
        let trees = TestTrees::find(recipe_name, &roots);
        let tests = trees.config()?;
        let template = trees.file(overlay::TEMPLATE_FILE);
        overlay::generate(&OverlayInput {
            compose: &compose,
            min_start_period: tests.min_start_period.unwrap_or(config.min_start_period),
            stack: &stack,
            domain: &domain,
            recipe: recipe_name,
            run_id,
            deadline_unix: None,
            chaos_version: Some(recipe::short(&commit)),
            template: template.as_deref(),
            template_vars: &vars,
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
