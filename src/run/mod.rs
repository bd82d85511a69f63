//! One run of `ccci test`: the host it runs on, what it was asked to do, and the whole of it
//! from preflight to teardown. [`run_test`] creates the run directory, fetches the recipe, takes
//! the domain's lock, and hands the rest to the stage machine ([`stages::drive`]), which always
//! ends with teardown (or with the app kept, when asked, and how to remove it recorded).
//! Nothing here prints: events go to the sink, which also feeds the run's log.
//!
//! The parts: [`dir`] and [`abra_home`] (where a run lives), [`record`] (run.json, junit),
//! [`failure`] (what went wrong, and the one mapping of failures to verdicts), [`steps`] (each
//! step a run is made of), [`stages`] (the order they run in), [`replay`] (the step
//! subcommands), [`preview`] (`ccci overlay`).

pub mod abra_home;
pub mod dir;
pub mod failure;
pub mod preview;
pub mod record;
pub mod replay;
pub mod stages;
pub mod steps;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Env};
use crate::docker::Swarm;
use crate::driver::{self, Driver, DriverChoice};
use crate::error::{Error, Result};
use crate::event::{Event, EventSink, Fanout};
use crate::labels::RunLabels;
use crate::recipe::git;
use crate::stage::Stage;
use crate::sys::cancel::Cancel;
use crate::sys::lock::{AppLock, Holder};
use crate::sys::process::Runner;
use crate::verdict::{StageStatus, Verdict};

use abra_home::AbraHome;
use dir::{RunDir, RunLog};
use record::{RunRecord, StageRecord};
use stages::{Ending, Plan};
use steps::RunContext;

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
    /// How long a kept app is left alone before the janitor reaps it.
    pub keep_for: Duration,
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
        git::check_local_source(source)?;
    }
    if crate::sys::process::find_program("git").is_none() {
        return Err(Error::Infra("git is not installed: install git".into()));
    }
    Swarm::new(Runner::new(host.cancel.clone())).preflight()?;
    driver::select(req.driver)
}

/// Runs `ccci test`: the whole lifecycle of one run.
pub fn run_test(host: &Host, req: &TestRequest, user_sink: Arc<dyn EventSink>) -> Result<Outcome> {
    let (driver, notice) = preflight(host, req)?;
    let run_dir = match &req.run_id {
        Some(id) => RunDir::create(&host.config.runs_dir, id, false)?,
        None => RunDir::create_manual(&host.config.runs_dir)?,
    };
    let run_id = run_dir.id.clone();
    let log = RunLog::open(&run_dir.log())?;
    let sink: Arc<dyn EventSink> = Arc::new(Fanout(vec![Arc::new(log.clone()), user_sink]));
    if let Some(message) = notice {
        sink.event(&Event::Notice { message });
    }
    let runner = Runner::new(host.cancel.clone())
        .with_grace(host.config.kill_grace)
        .with_sink(log.output_sink());
    let home = AbraHome::create(&run_dir.path, &host.config.abra_dir)?;
    let source = git::source_for(
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
    // The recipe's test tree is checked whole before anything is deployed: a broken ccci.yml
    // or a test file without its executable bit is one line now, not a failure half-way.
    let checked = trees.config().and_then(|tests| {
        for stage in &req.stages {
            trees.tests(*stage)?;
        }
        Ok(tests)
    });
    let tests = match checked {
        Ok(tests) => tests,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir.path);
            return Err(e);
        }
    };
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
    let labels = RunLabels {
        run_id: run_id.clone(),
        domain: domain.clone(),
        setup: crate::labels::setup_id(&host.config.lock_dir),
        deadline_unix: req.deadline_unix,
        keep_until: None,
    };
    let ctx = RunContext {
        host,
        driver,
        runner: runner.clone(),
        home,
        recipe: req.recipe.clone(),
        domain: domain.clone(),
        stack,
        labels,
        backups: run_dir.backups(),
        swarm: Swarm::new(runner),
        tests,
        trees,
        commit,
        run_dir: run_dir.clone(),
        record: RefCell::new(record),
        overlay: req.overlay,
        deployed: RefCell::new(None),
        deploy_started: Cell::new(None),
        sink: sink.clone(),
    };
    let plan = Plan {
        stages,
        from: req.from.clone(),
        keep: req.keep,
        keep_until: unix_after(req.keep_for),
    };
    let Ending { leftovers } = stages::drive(&ctx, &plan);
    let mut record = ctx.record.into_inner();
    if leftovers.as_ref().is_some_and(Vec::is_empty) {
        let _ = lock.unlink_held();
    }
    drop(lock);
    let signal = host.cancel.signal();
    if let Some(signal) = signal
        && !matches!(record.verdict, Some(Verdict::Interrupted(_)))
    {
        sink.event(&Event::Notice {
            message: format!(
                "{} arrived after the verdict; teardown finished first",
                crate::sys::signal::signal_name(signal)
            ),
        });
    }
    record.finished_at = Some(record::now_rfc3339());
    record.seconds = Some(started.elapsed().as_secs_f64());
    record.write(&run_dir.run_json())?;
    let _ = record::write_atomic(&run_dir.junit(), record.junit().as_bytes());
    Ok(Outcome {
        record,
        run_dir: run_dir.path.clone(),
        signal,
    })
}

/// Unix seconds `after` from now, for deadline labels. Saturates instead of overflowing: a
/// duration too long for the clock means "never" in practice.
pub fn unix_after(after: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now.saturating_add(after.as_secs())
}
