//! The stage machine of one run (behaviours.md §Lifecycle): one deployment walked through
//! base deploy → install checks → upgrade → backup/mutate/restore/verify → teardown.
//!
//! Teardown always happens — on pass, failure, error and interruption — unless `--keep` says
//! otherwise, and then the exact command that tears down later is recorded. This module
//! decides what happens in which order; the driver deploys, the swarm module watches, the
//! suite module says what the recipe's tests are. It never prints: everything goes to the
//! event sink, which also feeds the run's log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::abra_home::AbraHome;
use crate::compose::Compose;
use crate::config::{Config, Env};
use crate::driver::{self, App, Driver, DriverChoice, Version};
use crate::envfile::EnvFile;
use crate::error::{Error, Result};
use crate::event::{Event, EventSink, Fanout};
use crate::lock::{AppLock, Holder};
use crate::overlay::{self, OverlayInput};
use crate::process::{Cmd, Runner};
use crate::recipe;
use crate::report::{self, CheckRecord, RunRecord, StageRecord, StageStatus, Verdict};
use crate::rundir::{RunDir, RunLog};
use crate::signal::Cancel;
use crate::stage::Stage;
use crate::suite::{self, RecipeTests, TestTrees};
use crate::swarm::{NotReady, ReadyOptions, Swarm};
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
    let recipe_dir = home.recipe_dir(&req.recipe);
    let fetched = step(&*sink, "fetch", &source, || {
        if req.skip_fetch {
            recipe::copy_staged(
                &runner,
                &home.canonical_recipe_dir(&req.recipe),
                &recipe_dir,
            )?;
        } else {
            recipe::clone(&runner, &source, &recipe_dir)?;
        }
        recipe::resolve(&runner, &recipe_dir, req.git_ref.as_deref())
    });
    let commit = match fetched {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir.path);
            return Err(e);
        }
    };
    recipe::exclude(&recipe_dir, overlay::OVERLAY_FILE)?;
    let domain = req.domain.clone().unwrap_or_else(|| {
        crate::naming::test_domain(&req.recipe, &commit, &run_id, &host.config.domain_zone)
    });
    let stack = crate::naming::stack_name(&domain);

    let roots = suite::roots(
        req.tests_dir.as_deref(),
        &host.config,
        Config::config_dir(&host.env).as_deref(),
        suite::bundled_root(&host.env).as_deref(),
    );
    let trees = TestTrees::find(&req.recipe, &roots);
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

    let mut record = RunRecord {
        format_version: report::RUN_FORMAT_VERSION,
        run_id: run_id.clone(),
        recipe: req.recipe.clone(),
        source: source.clone(),
        git_ref: req.git_ref.clone(),
        commit: Some(commit.clone()),
        base_version: None,
        domain: domain.clone(),
        stack: stack.clone(),
        driver: driver.name().to_string(),
        stages: req
            .stages
            .iter()
            .map(|&stage| StageRecord {
                stage,
                status: if stages.contains(&stage) {
                    StageStatus::Pending
                } else {
                    StageStatus::Skipped
                },
                detail: String::new(),
                started_at: None,
                seconds: None,
                reason: (!stages.contains(&stage))
                    .then(|| format!("the recipe's ccci.yml does not apply the {stage} stage")),
                checks: Vec::new(),
            })
            .collect(),
        started_at: report::now_rfc3339(),
        finished_at: None,
        seconds: None,
        verdict: None,
        reason: None,
        torn_down: false,
        teardown_leftovers: Vec::new(),
        kept: None,
    };
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
    let labels = vec![
        (overlay::LABEL_RUN_ID.to_string(), run_id.clone()),
        (
            overlay::LABEL_DEADLINE.to_string(),
            req.deadline_unix
                .map_or("none".to_string(), |d| d.to_string()),
        ),
        ("ccci.domain".to_string(), domain.clone()),
    ];
    let backups = run_dir.backups();
    let app = App {
        runner: &runner,
        home: &home,
        server: &host.config.server,
        recipe: &req.recipe,
        domain: &domain,
        stack: &stack,
        labels: &labels,
        backups: &backups,
        sink: &*sink,
    };
    let mut run = Run {
        host,
        req,
        driver: &*driver,
        app,
        swarm: Swarm::new(runner.clone()),
        tests,
        trees,
        commit: commit.clone(),
        run_dir: &run_dir,
        record: std::cell::RefCell::new(&mut record),
        deployed: None,
        deploy_started: None,
        sink: &*sink,
    };
    let verdict = run.stages(&stages);
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
        let marker = if outcome.leftovers.is_empty() {
            "clean\n".to_string()
        } else {
            format!("left for the janitor:\n{}\n", outcome.leftovers.join("\n"))
        };
        let _ = report::write_atomic(&run_dir.teardown_marker(), marker.as_bytes());
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

/// A run in progress: what the stages share.
struct Run<'a> {
    host: &'a Host,
    req: &'a TestRequest,
    driver: &'a dyn Driver,
    app: App<'a>,
    swarm: Swarm,
    tests: RecipeTests,
    trees: TestTrees,
    commit: String,
    run_dir: &'a RunDir,
    /// Shared with the checks' closures, which borrow the run immutably.
    record: std::cell::RefCell<&'a mut RunRecord>,
    /// What is deployed now, once something is.
    deployed: Option<Version>,
    /// When the last deploy started: task failures older than that are history.
    deploy_started: Option<SystemTime>,
    sink: &'a dyn EventSink,
}

/// Times a step and reports its start and end.
fn step<T>(
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

impl Run<'_> {
    fn stages(&mut self, stages: &[Stage]) -> std::result::Result<(), StageFailure> {
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
        self.record.borrow_mut().base_version = base.clone();
        let mut first_failure: Option<StageFailure> = None;
        for &stage in stages {
            if self
                .record
                .borrow_mut()
                .stages
                .iter()
                .any(|s| s.stage == stage && s.status == StageStatus::Skipped)
            {
                continue;
            }
            if let Some(signal) = self.host.cancel.signal() {
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
                    let verdict = match (&failure, self.deployed.is_none() || self.on_base()) {
                        (Failure::Error(Error::Interrupted(s)), _) => Verdict::Interrupted(*s),
                        (Failure::Base { .. }, _) => Verdict::BaseFailed,
                        (
                            Failure::Error(Error::Infra(_) | Error::Config(_) | Error::Usage(_)),
                            _,
                        ) => Verdict::Error,
                        _ => Verdict::Fail,
                    };
                    first_failure = Some(StageFailure { verdict, reason });
                    break;
                }
            }
        }
        // Stages after a failure are not run; say so rather than leave them pending.
        for s in self.record.borrow_mut().stages.iter_mut() {
            if s.status == StageStatus::Pending {
                s.status = StageStatus::Skipped;
                s.reason = Some("not run: an earlier stage failed".into());
            }
        }
        let _ = self.record.borrow_mut().write(&self.run_dir.run_json());
        match first_failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn on_base(&self) -> bool {
        matches!(self.deployed, Some(Version::Release(_)))
    }

    fn upgrade_base(&self) -> Result<Option<String>> {
        let pinned = self
            .req
            .from
            .clone()
            .or_else(|| self.tests.upgrade_from.clone());
        let dir = self.app.recipe_dir();
        match pinned {
            Some(v) => {
                recipe::resolve(self.app.runner, &dir, Some(&v)).map_err(|_| {
                    Error::Usage(format!(
                        "base version `{v}` is not a tag of the recipe: check --from or upgrade_from"
                    ))
                })?;
                Ok(Some(v))
            }
            None => recipe::last_published_before(self.app.runner, &dir, &self.commit),
        }
    }

    fn begin(&mut self, stage: Stage, base: Option<&str>) {
        let detail = match (stage, base) {
            (Stage::Install, Some(b)) => format!("base {b}"),
            (Stage::Upgrade, Some(b)) => format!("{b} → {}", recipe::short(&self.commit)),
            _ => recipe::short(&self.commit).to_string(),
        };
        if let Some(s) = self.record.borrow_mut().stage_mut(stage) {
            s.status = StageStatus::Running;
            s.detail = detail.clone();
            s.started_at = Some(report::now_rfc3339());
        }
        let _ = self.record.borrow_mut().write(&self.run_dir.run_json());
        self.sink.event(&Event::StageStarted { stage, detail });
    }

    fn finish(
        &mut self,
        stage: Stage,
        status: StageStatus,
        reason: Option<String>,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        if let Some(s) = self.record.borrow_mut().stage_mut(stage) {
            s.status = status;
            s.reason = reason.clone();
            s.seconds = Some(elapsed.as_secs_f64());
        }
        let _ = self.record.borrow_mut().write(&self.run_dir.run_json());
        self.sink.event(&Event::StageFinished {
            stage,
            status,
            reason,
            elapsed,
        });
    }

    fn skip(&mut self, stage: Stage, reason: &str) {
        if let Some(s) = self.record.borrow_mut().stage_mut(stage) {
            s.status = StageStatus::Skipped;
            s.reason = Some(reason.to_string());
        }
        self.sink.event(&Event::StageFinished {
            stage,
            status: StageStatus::Skipped,
            reason: Some(reason.to_string()),
            elapsed: Duration::ZERO,
        });
    }

    fn fail_error(&mut self, stage: Stage, e: Error) -> StageFailure {
        let reason = e.to_string();
        if let Some(s) = self.record.borrow_mut().stage_mut(stage) {
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
    fn explain(&mut self, stage: Stage, failure: &Failure) -> String {
        let base_prefix = match failure {
            Failure::Base { version, .. } => format!("base version {version} does not deploy: "),
            _ => String::new(),
        };
        let message = failure.message();
        if matches!(failure.error(), Some(Error::Interrupted(_))) {
            return message;
        }
        if self.deployed.is_some() || matches!(failure, Failure::NotReady(_) | Failure::Base { .. })
        {
            let diagnosis = self
                .swarm
                .diagnose(self.app.stack, &self.run_dir.diagnostics());
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
            if let (Failure::NotReady(NotReady::Timeout { .. }), Some(top)) =
                (failure, &diagnosis.top_reason)
            {
                return format!("{base_prefix}{stage}: {message}; {top}");
            }
        }
        format!("{base_prefix}{message}")
    }

    // ---- stages ---------------------------------------------------------------------------

    fn install(&mut self, base: Option<&str>) -> std::result::Result<(), Failure> {
        self.hook("pre_install", Stage::Install)?;
        match base {
            Some(b) => {
                let version = Version::Release(b.to_string());
                self.deploy_fresh(&version).map_err(|f| f.on_base(b))?;
                self.ready(Stage::Install).map_err(|f| f.on_base(b))?;
            }
            None => {
                self.deploy_fresh(&Version::Chaos)?;
                self.ready(Stage::Install)?;
            }
        }
        self.run_tests(Stage::Install)?;
        self.hook("post_install", Stage::Install)
    }

    fn upgrade(&mut self, base: &str) -> std::result::Result<(), Failure> {
        self.hook("pre_upgrade", Stage::Upgrade)?;
        if self.deployed.is_none() {
            let version = Version::Release(base.to_string());
            self.deploy_fresh(&version).map_err(|f| f.on_base(base))?;
            self.ready(Stage::Upgrade).map_err(|f| f.on_base(base))?;
        }
        let marker = self.marker();
        let value = format!("ccci-upgrade-{}", self.app.stack);
        if let Some(m) = &marker {
            self.check(Stage::Upgrade, "write data before the upgrade", || {
                write_marker(&self.swarm, self.app.stack, m, &value)
            })?;
        } else {
            self.sink.event(&Event::Notice {
                message: "no marker location (no `marker` in ccci.yml and no backupbot path): data survival is not checked".into(),
            });
        }
        // The change, checked out by force over the base's tree, with its own overlay.
        recipe::checkout(self.app.runner, &self.app.recipe_dir(), &self.commit)
            .map_err(Failure::Error)?;
        self.apply_env(&self.tests.upgrade_env.clone())
            .map_err(Failure::Error)?;
        self.deploy(&Version::Chaos)?;
        self.ready(Stage::Upgrade)?;
        let short = recipe::short(&self.commit).to_string();
        self.check(Stage::Upgrade, "the change is what runs", || {
            self.verify_chaos_version(&short)
        })?;
        if let Some(m) = &marker {
            self.check(Stage::Upgrade, "data survived the upgrade", || {
                let found = read_marker(&self.swarm, self.app.stack, m)?;
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
        self.run_tests(Stage::Upgrade)?;
        self.hook("post_upgrade", Stage::Upgrade)
    }

    fn backup(&mut self) -> std::result::Result<(), Failure> {
        self.hook("pre_backup", Stage::Backup)?;
        if self.deployed.is_none() {
            self.deploy_fresh(&Version::Chaos)?;
            self.ready(Stage::Backup)?;
        }
        let Some(marker) = self.marker() else {
            return Err(Failure::Error(Error::Config(
                "the backup stage needs a marker location: add `marker` to the recipe's ccci.yml or a backupbot.backup.path label".into(),
            )));
        };
        let original = format!("ccci-backup-{}", self.app.stack);
        let stack = self.app.stack;
        self.check(Stage::Backup, "write marker", || {
            write_marker(&self.swarm, stack, &marker, &original)
        })?;
        self.check(Stage::Backup, "back up", || self.driver.backup(&self.app))?;
        self.check(Stage::Backup, "mutate marker", || {
            write_marker(&self.swarm, stack, &marker, "mutated")
        })?;
        self.check(Stage::Backup, "restore", || self.driver.restore(&self.app))?;
        self.ready(Stage::Backup)?;
        self.check(Stage::Backup, "marker restored", || {
            let found = read_marker(&self.swarm, stack, &marker)?;
            if found == original {
                Ok(())
            } else {
                Err(Error::Infra(format!(
                    "restore did not bring the data back: {} holds `{found}`",
                    marker.path
                )))
            }
        })?;
        self.run_tests(Stage::Backup)?;
        self.hook("post_backup", Stage::Backup)
    }

    // ---- steps ----------------------------------------------------------------------------

    /// Checks out `version`, creates the app, applies the recipe's env and install steps, and
    /// deploys.
    fn deploy_fresh(&mut self, version: &Version) -> std::result::Result<(), Failure> {
        let dir = self.app.recipe_dir();
        let commit = match version {
            Version::Release(tag) => recipe::resolve(self.app.runner, &dir, Some(tag)),
            Version::Chaos => Ok(self.commit.clone()),
        }
        .map_err(Failure::Error)?;
        recipe::checkout(self.app.runner, &dir, &commit).map_err(Failure::Error)?;
        step(self.sink, "new app", self.app.domain, || {
            self.driver.new_app(&self.app, version)
        })
        .map_err(Failure::Error)?;
        self.apply_env(&self.tests.env.clone())
            .map_err(Failure::Error)?;
        if let Some(script) = self.trees.file(suite::INSTALL_STEPS) {
            self.run_script(&script, Stage::Install)
                .map_err(Failure::Error)?;
        }
        self.deploy(version)
    }

    /// Writes the overlay for what is checked out and deploys it.
    fn deploy(&mut self, version: &Version) -> std::result::Result<(), Failure> {
        let detail = match version {
            Version::Release(v) => v.clone(),
            Version::Chaos => format!("{} (chaos)", recipe::short(&self.commit)),
        };
        if self.req.overlay {
            step(self.sink, "overlay", overlay::OVERLAY_FILE, || {
                self.write_overlay(version)
            })
            .map_err(Failure::Error)?;
        }
        self.deploy_started = Some(SystemTime::now());
        step(self.sink, "deploy", &detail, || {
            self.driver.deploy(&self.app, version)
        })
        .map_err(Failure::Error)?;
        self.deployed = Some(version.clone());
        Ok(())
    }

    fn write_overlay(&self, version: &Version) -> Result<PathBuf> {
        let env_path = self.app.env_file();
        let mut env = EnvFile::read(&env_path)?;
        let dir = self.app.recipe_dir();
        let vars = driver::stack::deploy_vars(&self.app, &env);
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
                stack: self.app.stack,
                domain: self.app.domain,
                recipe: self.app.recipe,
                run_id: &self.run_dir.id,
                deadline_unix: self.req.deadline_unix,
                chaos_version: matches!(version, Version::Chaos).then_some(chaos.as_str()),
                template: template.as_deref(),
                template_vars: &vars,
            },
        )?;
        env.write(&env_path)?;
        Ok(path)
    }

    fn apply_env(&self, vars: &BTreeMap<String, String>) -> Result<()> {
        if vars.is_empty() {
            return Ok(());
        }
        let path = self.app.env_file();
        let mut env = EnvFile::read(&path)?;
        for (k, v) in vars {
            env.set(k, v);
        }
        env.write(&path)
    }

    /// Swarm readiness (with fail-fast), then the recipe's probe.
    fn ready(&mut self, stage: Stage) -> std::result::Result<(), Failure> {
        let timeout = self
            .tests
            .deploy_timeout
            .unwrap_or(self.host.config.deploy_timeout);
        let since = self.deploy_started.unwrap_or_else(SystemTime::now);
        let started = Instant::now();
        self.sink.event(&Event::StepStarted {
            step: "wait".into(),
            detail: format!("readiness of {}", self.app.stack),
        });
        let result =
            self.swarm
                .wait_ready(self.app.stack, &ReadyOptions { timeout, since }, self.sink);
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
                    self.app.runner,
                    self.app.stack,
                    self.app.domain,
                    within,
                )
            })?;
        }
        Ok(())
    }

    /// Runs one named check of a stage, recording it.
    fn check(
        &self,
        stage: Stage,
        name: &str,
        f: impl FnOnce() -> Result<()>,
    ) -> std::result::Result<(), Failure> {
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

    fn verify_chaos_version(&self, short: &str) -> Result<()> {
        let key = format!("coop-cloud.{}.chaos-version", self.app.stack);
        let services = self.swarm.services(self.app.stack)?;
        let found: Vec<String> = services
            .iter()
            .filter_map(|s| s.labels.get(&key).cloned())
            .collect();
        let matches = |label: &str| {
            let label = label.trim_end_matches("+U");
            label.len() >= 7 && (self.commit.starts_with(label) || label.starts_with(short))
        };
        match found.first() {
            Some(label) if found.iter().all(|l| matches(l)) => {
                let _ = label;
                Ok(())
            }
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
    fn marker(&self) -> Option<suite::Marker> {
        if let Some(m) = &self.tests.marker {
            return Some(m.clone());
        }
        let env = EnvFile::read(&self.app.env_file()).ok()?;
        let vars = driver::stack::deploy_vars(&self.app, &env);
        let compose = Compose::load(&self.app.recipe_dir(), &env.compose_files(), &vars).ok()?;
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

    /// Runs the stage's test executables from the recipe's test trees.
    fn run_tests(&mut self, stage: Stage) -> std::result::Result<(), Failure> {
        for test in self.trees.tests(stage) {
            let name = test
                .file_name()
                .map(|n| format!("{stage}.d/{}", n.to_string_lossy()))
                .unwrap_or_default();
            self.check(stage, &name, || self.run_script(&test, stage))?;
        }
        Ok(())
    }

    fn hook(&mut self, name: &str, stage: Stage) -> std::result::Result<(), Failure> {
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
            .app
            .home
            .apply(Cmd::new(path))
            .current_dir(path.parent().unwrap_or(Path::new("/")))
            .env("DOMAIN", self.app.domain)
            .env("STAGE", stage.as_str())
            .env("RECIPE_DIR", self.app.recipe_dir())
            .env("RUN_ID", &self.run_dir.id)
            .env("BASE_URL", format!("https://{}", self.app.domain))
            .env("STACK_NAME", self.app.stack)
            .env("CCCI_DRIVER", self.driver.name())
            .env("CCCI_ENV_FILE", self.app.env_file())
            .timeout(Duration::from_secs(900))
            .log_output();
        self.app.runner.run(&cmd)?;
        Ok(())
    }
}

fn write_marker(swarm: &Swarm, stack: &str, marker: &suite::Marker, value: &str) -> Result<()> {
    let script = format!(
        "mkdir -p \"$(dirname '{0}')\" && printf '%s' '{1}' > '{0}'",
        marker.path.replace('\'', ""),
        value.replace('\'', "")
    );
    let out = swarm.exec(
        stack,
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

fn read_marker(swarm: &Swarm, stack: &str, marker: &suite::Marker) -> Result<String> {
    let out = swarm.exec(
        stack,
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

/// What went wrong in a stage.
enum Failure {
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
    fn on_base(self, version: &str) -> Failure {
        match self {
            Failure::Error(e @ Error::Interrupted(_)) => Failure::Error(e),
            Failure::NotReady(NotReady::Interrupted(s)) => Failure::Error(Error::Interrupted(s)),
            other => Failure::Base {
                version: version.to_string(),
                message: other.message(),
            },
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::NotReady(n) => n.to_string(),
            Failure::Check(m) => m.clone(),
            Failure::Error(e) => e.to_string(),
            Failure::Base { message, .. } => message.clone(),
        }
    }

    fn error(&self) -> Option<&Error> {
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
