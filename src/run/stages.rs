//! The stage machine of one run (behaviours.md §Lifecycle): one deployment walked through
//! base deploy → install checks → upgrade → backup/mutate/restore/verify, then teardown,
//! always (or the app kept, when asked).
//!
//! The machine decides only the order of things and what each outcome means: which base is
//! deployed, which stages are skipped and why, when to stop, which verdict a failure gives
//! (through [`Failure::verdict`], the one mapping). Every step it asks for goes through the
//! [`Steps`] trait: [`super::steps::RunContext`] does them on the real swarm, and the unit tests
//! below do them with a fake that records the order.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::driver::Version;
use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::recipe::suite::Marker;
use crate::stage::Stage;
use crate::verdict::{StageStatus, Verdict};

use super::Keep;
use super::failure::{Failure, StepResult};
use super::record::{self, CheckRecord, RunRecord};

/// What the stage machine asks of a run. Each method is one step; none decides what happens
/// next.
pub trait Steps {
    /// The run's record: stages and checks are written into it.
    fn record(&self) -> &RefCell<RunRecord>;
    /// Persists the record (run.json), so a watcher sees each stage as it starts and ends.
    fn save_record(&self);
    fn sink(&self) -> &dyn EventSink;
    /// The signal that interrupted the run, once one has.
    fn interrupted(&self) -> Option<i32>;
    /// The change's short commit, for stage details.
    fn change(&self) -> String;
    /// The upgrade's starting point: `pinned` (checked to be a tag), else the last published
    /// version older than the change; `None` when there is none.
    fn upgrade_base(&self, pinned: Option<&str>) -> Result<Option<String>>;
    /// Runs the recipe's hook `name` when it has one (a check of `stage`).
    fn hook(&self, name: &str, stage: Stage) -> StepResult;
    /// Checks out `version`, creates the app and deploys it.
    fn deploy_fresh(&self, version: &Version) -> StepResult;
    /// Checks out the change over the deployed app, applies the upgrade's env, redeploys.
    fn deploy_change(&self) -> StepResult;
    /// Swarm readiness, then the recipe's probe.
    fn ready(&self, stage: Stage) -> StepResult;
    /// The stage's test executables.
    fn run_tests(&self, stage: Stage) -> StepResult;
    /// True when the recipe has test executables for `stage`.
    fn has_tests(&self, stage: Stage) -> bool;
    /// True once something is deployed.
    fn is_deployed(&self) -> bool;
    /// Where data markers go: what the recipe backs up (or its ccci.yml names).
    fn markers(&self) -> Vec<Marker>;
    fn write_marker(&self, marker: &Marker, value: &str) -> Result<()>;
    fn read_marker(&self, marker: &Marker) -> Result<String>;
    /// Proves the change is what runs (the chaos-version label).
    fn verify_change_runs(&self) -> Result<()>;
    /// Proves the release `tag` is what runs (the version label).
    fn verify_release_runs(&self, tag: &str) -> Result<()>;
    fn backup(&self) -> Result<()>;
    fn restore(&self) -> Result<()>;
    /// Collects diagnostics; the swarm's top reason, when it has one.
    fn diagnose(&self) -> Option<String>;
    /// Leaves the app deployed until `until` (unix seconds); returns the command that removes
    /// it.
    fn keep(&self, until: u64) -> Result<String>;
    /// Removes everything the run deployed; what could not be removed.
    fn teardown(&self) -> Vec<String>;

    /// Runs one named check of `stage` and records it.
    fn check(&self, stage: Stage, name: &str, f: &mut dyn FnMut() -> Result<()>) -> StepResult {
        record_check(self.record(), self.sink(), stage, name, f)
    }
}

/// Runs one named check of `stage`, records it in `record` and reports it. A failed check is
/// the recipe's ([`Failure::Check`]); an interruption, or ccci or the host failing to do its
/// part (the engine, configuration, a file), stays an error (see [`super::failure`]).
pub(crate) fn record_check(
    record: &RefCell<RunRecord>,
    sink: &dyn EventSink,
    stage: Stage,
    name: &str,
    f: &mut dyn FnMut() -> Result<()>,
) -> StepResult {
    let started = Instant::now();
    let result = f();
    let check = CheckRecord {
        name: name.to_string(),
        ok: result.is_ok(),
        seconds: started.elapsed().as_secs_f64(),
        detail: result
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    };
    sink.event(&Event::TestRan {
        name: name.to_string(),
        ok: check.ok,
        detail: check.detail.clone(),
    });
    if let Some(s) = record.borrow_mut().stage_mut(stage) {
        s.checks.push(check);
    }
    result.map_err(|e| match e {
        // The recipe's: a check found it wrong, its test or hook exited non-zero, or the
        // deployer refused it. Anything else (the engine, a file, an interruption) is not.
        e @ (Error::Failed(_) | Error::Command(_) | Error::Rejected(_)) => {
            Failure::Check(format!("{name}: {e}"))
        }
        e => Failure::Error(e),
    })
}

/// What the machine is asked to do.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The stages that apply, in order.
    pub stages: Vec<Stage>,
    /// `--from` / `upgrade_from`: the upgrade's base version.
    pub from: Option<String>,
    pub keep: Keep,
    /// Unix seconds a kept app is kept until.
    pub keep_until: u64,
}

/// How the machine ended. The verdict and reason are in the record.
#[derive(Debug)]
pub struct Ending {
    /// What teardown could not remove; `None` when the app was kept.
    pub leftovers: Option<Vec<String>>,
}

/// Runs the stages of `plan`, records the verdict, then tears down (or keeps the app).
pub fn drive(steps: &dyn Steps, plan: &Plan) -> Ending {
    let (verdict, reason) = match (Machine { steps, plan }).stages() {
        Ok(()) => (Verdict::Pass, None),
        Err(failure) => failure,
    };
    {
        let mut record = steps.record().borrow_mut();
        record.verdict = Some(verdict);
        record.reason = reason.clone();
    }
    steps.save_record();
    steps.sink().event(&Event::Verdict {
        verdict,
        reason: reason.clone(),
    });

    let keep = match plan.keep {
        Keep::Always => true,
        Keep::OnFailure => verdict != Verdict::Pass,
        Keep::Never => false,
    };
    // An interrupted run is torn down whatever --keep says: whoever stopped it wants it gone.
    if keep && !matches!(verdict, Verdict::Interrupted(_)) && steps.is_deployed() {
        match steps.keep(plan.keep_until) {
            Ok(command) => {
                steps.sink().event(&Event::Notice {
                    message: format!(
                        "kept {} deployed until {}; remove it with: {command}",
                        steps.record().borrow().domain,
                        record::rfc3339_of_unix(plan.keep_until)
                    ),
                });
                steps.record().borrow_mut().kept = Some(command);
                steps.save_record();
                return Ending { leftovers: None };
            }
            Err(e) => steps.sink().event(&Event::Notice {
                message: format!("could not keep the app ({e}); tearing it down instead"),
            }),
        }
    }
    let leftovers = steps.teardown();
    {
        let mut record = steps.record().borrow_mut();
        record.torn_down = true;
        record.teardown_leftovers = leftovers.clone();
    }
    steps.save_record();
    Ending {
        leftovers: Some(leftovers),
    }
}

/// A failed run's verdict and one-line reason.
type Stopped = (Verdict, Option<String>);

struct Machine<'a> {
    steps: &'a dyn Steps,
    plan: &'a Plan,
}

impl Machine<'_> {
    fn stages(&self) -> std::result::Result<(), Stopped> {
        let stages = &self.plan.stages;
        // The base is decided up front: the upgrade's starting point, or the change itself.
        let base = if stages.contains(&Stage::Upgrade) {
            match self.steps.upgrade_base(self.plan.from.as_deref()) {
                Ok(Some(v)) => Some(v),
                Ok(None) => {
                    self.skip(
                        Stage::Upgrade,
                        "no published version older than the change to upgrade from",
                    );
                    None
                }
                Err(e) => {
                    let failure = Failure::Error(e);
                    let reason = failure.message();
                    self.set_stage(Stage::Upgrade, StageStatus::Failed, Some(reason.clone()));
                    self.skip_pending();
                    return Err((failure.verdict(), Some(reason)));
                }
            }
        } else {
            None
        };
        self.steps.record().borrow_mut().base_version = base.clone();
        let mut stopped = None;
        for &stage in stages {
            if self.status(stage) == Some(StageStatus::Skipped) {
                continue;
            }
            if let Some(signal) = self.steps.interrupted() {
                stopped = Some((
                    Verdict::Interrupted(signal),
                    Some(Error::Interrupted(signal).to_string()),
                ));
                break;
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
                    stopped = Some((failure.verdict(), Some(reason)));
                    break;
                }
            }
        }
        self.skip_pending();
        match stopped {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }

    fn status(&self, stage: Stage) -> Option<StageStatus> {
        let record = self.steps.record().borrow();
        record
            .stages
            .iter()
            .find(|s| s.stage == stage)
            .map(|s| s.status)
    }

    /// Stages after a failure are not run; say so rather than leave them pending.
    fn skip_pending(&self) {
        for s in self.steps.record().borrow_mut().stages.iter_mut() {
            if matches!(s.status, StageStatus::Pending | StageStatus::Running) {
                s.status = StageStatus::Skipped;
                s.reason = Some("not run: an earlier stage failed".into());
            }
        }
        self.steps.save_record();
    }

    fn set_stage(&self, stage: Stage, status: StageStatus, reason: Option<String>) {
        if let Some(s) = self.steps.record().borrow_mut().stage_mut(stage) {
            s.status = status;
            s.reason = reason;
        }
    }

    fn begin(&self, stage: Stage, base: Option<&str>) {
        let short = self.steps.change();
        let detail = match (stage, base) {
            (Stage::Install, Some(b)) => format!("base {b}"),
            (Stage::Upgrade, Some(b)) => format!("{b} → {short}"),
            _ => short,
        };
        if let Some(s) = self.steps.record().borrow_mut().stage_mut(stage) {
            s.status = StageStatus::Running;
            s.detail = detail.clone();
            s.started_at = Some(record::now_rfc3339());
        }
        self.steps.save_record();
        self.steps
            .sink()
            .event(&Event::StageStarted { stage, detail });
    }

    fn finish(&self, stage: Stage, status: StageStatus, reason: Option<String>, started: Instant) {
        let elapsed = started.elapsed();
        if let Some(s) = self.steps.record().borrow_mut().stage_mut(stage) {
            s.status = status;
            s.reason = reason.clone();
            s.seconds = Some(elapsed.as_secs_f64());
        }
        self.steps.save_record();
        self.steps.sink().event(&Event::StageFinished {
            stage,
            status,
            reason,
            elapsed,
        });
    }

    fn skip(&self, stage: Stage, reason: &str) {
        self.set_stage(stage, StageStatus::Skipped, Some(reason.to_string()));
        self.steps.sink().event(&Event::StageFinished {
            stage,
            status: StageStatus::Skipped,
            reason: Some(reason.to_string()),
            elapsed: Duration::ZERO,
        });
    }

    /// The one-line reason of a failure, after collecting diagnostics for failures on the
    /// swarm. The top reason from the swarm beats a generic timeout message.
    fn explain(&self, stage: Stage, failure: &Failure) -> String {
        let message = failure.message();
        if failure.interruption().is_some() {
            return message;
        }
        let on_swarm = matches!(failure.cause(), Failure::NotReady(_));
        if self.steps.is_deployed() || on_swarm {
            let top = self.steps.diagnose();
            if let (Failure::NotReady(crate::docker::NotReady::Timeout { .. }), Some(top)) =
                (failure.cause(), top)
            {
                return format!("{stage}: {message}; {top}");
            }
        }
        message
    }

    // ---- stages ---------------------------------------------------------------------------

    fn install(&self, base: Option<&str>) -> StepResult {
        let steps = self.steps;
        steps.hook("pre_install", Stage::Install)?;
        match base {
            Some(b) => self.deploy_base(b, Stage::Install)?,
            None => {
                steps.deploy_fresh(&Version::Chaos)?;
                steps.ready(Stage::Install)?;
            }
        }
        steps.run_tests(Stage::Install)?;
        steps.hook("post_install", Stage::Install)
    }

    /// The published base, deployed and ready; its own failures are `base-failed`.
    fn deploy_base(&self, base: &str, stage: Stage) -> StepResult {
        let version = Version::Release(base.to_string());
        self.steps
            .deploy_fresh(&version)
            .map_err(|f| f.on_base(base))?;
        self.steps.ready(stage).map_err(|f| f.on_base(base))?;
        self.steps
            .check(stage, "the release is what runs", &mut || {
                self.steps.verify_release_runs(base)
            })
            .map_err(|f| f.on_base(base))
    }

    fn upgrade(&self, base: &str) -> StepResult {
        let steps = self.steps;
        // `pre_upgrade` runs against the deployed base: it prepares data for the upgrade.
        if !steps.is_deployed() {
            self.deploy_base(base, Stage::Upgrade)?;
        }
        steps.hook("pre_upgrade", Stage::Upgrade)?;
        let markers = steps.markers();
        let value = format!("ccci-upgrade-{}", steps.change());
        if markers.is_empty() {
            steps.sink().event(&Event::Notice {
                message: "no directory among the backed-up paths (and no `marker` in ccci.yml) to put a marker in: data survival is checked by the recipe's upgrade.d tests alone".into(),
            });
        }
        for m in &markers {
            steps.check(
                Stage::Upgrade,
                &format!("write data before the upgrade ({}:{})", m.service, m.path),
                &mut || steps.write_marker(m, &value),
            )?;
        }
        steps.deploy_change()?;
        steps.ready(Stage::Upgrade)?;
        steps.check(Stage::Upgrade, "the change is what runs", &mut || {
            steps.verify_change_runs()
        })?;
        for m in &markers {
            steps.check(
                Stage::Upgrade,
                &format!("data survived the upgrade ({}:{})", m.service, m.path),
                &mut || {
                    let found = steps.read_marker(m)?;
                    if found == value {
                        Ok(())
                    } else {
                        Err(Error::Failed(format!(
                            "data written before the upgrade is gone: {} holds `{found}`",
                            m.path
                        )))
                    }
                },
            )?;
        }
        steps.run_tests(Stage::Upgrade)?;
        steps.hook("post_upgrade", Stage::Upgrade)
    }

    fn backup(&self) -> StepResult {
        let steps = self.steps;
        // `pre_backup` runs against the deployed app: it prepares the data to back up.
        if !steps.is_deployed() {
            steps.deploy_fresh(&Version::Chaos)?;
            steps.ready(Stage::Backup)?;
        }
        steps.hook("pre_backup", Stage::Backup)?;
        let markers = steps.markers();
        if markers.is_empty() {
            // A database's backed-up path is often a dump file its backup hook writes: nothing
            // to put a marker in. Then the recipe's own backup tests must say whether the
            // restore brought its data back; without them nothing would be checked.
            if !steps.has_tests(Stage::Backup) {
                return Err(Failure::Error(Error::Config(
                    "the backup stage has nothing to check: no backupbot path is a directory to put a marker in, no `marker` in ccci.yml, and no backup.d tests".into(),
                )));
            }
            steps.sink().event(&Event::Notice {
                message: "no directory among the backed-up paths for a marker: the backup is checked by the recipe's backup.d tests alone".into(),
            });
        }
        let original = format!("ccci-backup-{}", steps.change());
        let at = |m: &Marker| format!("{}:{}", m.service, m.path);
        for m in &markers {
            steps.check(
                Stage::Backup,
                &format!("write marker ({})", at(m)),
                &mut || steps.write_marker(m, &original),
            )?;
        }
        steps.check(Stage::Backup, "back up", &mut || steps.backup())?;
        for m in &markers {
            steps.check(
                Stage::Backup,
                &format!("mutate marker ({})", at(m)),
                &mut || steps.write_marker(m, "mutated"),
            )?;
        }
        steps.check(Stage::Backup, "restore", &mut || steps.restore())?;
        steps.ready(Stage::Backup)?;
        for m in &markers {
            steps.check(
                Stage::Backup,
                &format!("marker restored ({})", at(m)),
                &mut || {
                    let found = steps.read_marker(m)?;
                    if found == original {
                        Ok(())
                    } else {
                        Err(Error::Failed(format!(
                            "restore did not bring the data back: {} in {} holds `{found}`",
                            m.path, m.service
                        )))
                    }
                },
            )?;
        }
        steps.run_tests(Stage::Backup)?;
        steps.hook("post_backup", Stage::Backup)
    }
}

#[cfg(test)]
mod tests {
    //! The stage machine with a fake swarm: every step is recorded by name, and a test makes
    //! chosen steps fail. Pins down the order of steps, that there is one deployment, that
    //! teardown always happens, which verdict each failure gives, and why stages are skipped.

    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use super::*;
    use crate::docker::NotReady;
    use crate::event::Discard;
    use crate::run::record::StageRecord;

    /// How a step of the fake fails.
    #[derive(Clone)]
    enum Fault {
        NotReady,
        Rejected,
        OurError,
        Interrupt,
        CheckFails,
    }

    impl Fault {
        fn failure(&self) -> Failure {
            match self {
                Fault::NotReady => Failure::NotReady(NotReady::TaskFailed {
                    service: "app".into(),
                    error: "task: non-zero exit (1)".into(),
                    exit_code: Some(1),
                }),
                Fault::Rejected => Failure::Error(Error::Rejected("invalid compose".into())),
                Fault::OurError => {
                    Failure::Error(Error::Config("compose.yml: not valid YAML".into()))
                }
                Fault::Interrupt => Failure::Error(Error::Interrupted(15)),
                Fault::CheckFails => Failure::Check("probe: 502".into()),
            }
        }

        fn error(&self) -> Error {
            match self {
                Fault::Interrupt => Error::Interrupted(15),
                Fault::OurError => Error::Infra("docker is not reachable".into()),
                _ => Error::Failed("marker gone".into()),
            }
        }
    }

    struct Fake {
        record: RefCell<RunRecord>,
        calls: RefCell<Vec<String>>,
        faults: HashMap<&'static str, Fault>,
        base: std::result::Result<Option<String>, Fault>,
        deployed: Cell<bool>,
        marker_value: RefCell<String>,
        backed_up: RefCell<String>,
        /// False: restore succeeds but brings nothing back.
        restore_works: bool,
        /// Where markers go; none for a recipe that backs up only dump files.
        markers: Vec<Marker>,
        has_tests: bool,
    }

    impl Fake {
        fn new(stages: &[Stage]) -> Fake {
            let mut record = RunRecord::new("r1", "demo", "/src", "stack");
            record.domain = "dem-abc123.ccci.localhost".into();
            record.stages = stages.iter().map(|&s| StageRecord::pending(s)).collect();
            Fake {
                record: RefCell::new(record),
                calls: RefCell::new(Vec::new()),
                faults: HashMap::new(),
                base: Ok(Some("0.2.0+1.1".into())),
                deployed: Cell::new(false),
                marker_value: RefCell::new(String::new()),
                backed_up: RefCell::new(String::new()),
                restore_works: true,
                markers: vec![Marker {
                    service: "app".into(),
                    path: "/data/m".into(),
                }],
                has_tests: true,
            }
        }

        fn failing(mut self, step: &'static str, fault: Fault) -> Fake {
            self.faults.insert(step, fault);
            self
        }

        fn call(&self, name: String) -> StepResult {
            let key = name.split(' ').next().unwrap_or_default().to_string();
            self.calls.borrow_mut().push(name);
            match self.faults.get(key.as_str()) {
                Some(f) => Err(f.failure()),
                None => Ok(()),
            }
        }

        fn call_plain(&self, name: &str) -> Result<()> {
            self.calls.borrow_mut().push(name.to_string());
            match self.faults.get(name) {
                Some(f) => Err(f.error()),
                None => Ok(()),
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }

        fn count(&self, prefix: &str) -> usize {
            self.calls()
                .iter()
                .filter(|c| c.starts_with(prefix))
                .count()
        }

        fn verdict(&self) -> Option<Verdict> {
            self.record.borrow().verdict
        }

        fn stage(&self, stage: Stage) -> StageRecord {
            self.record
                .borrow()
                .stages
                .iter()
                .find(|s| s.stage == stage)
                .cloned()
                .unwrap()
        }
    }

    impl Steps for Fake {
        fn record(&self) -> &RefCell<RunRecord> {
            &self.record
        }
        fn save_record(&self) {}
        fn sink(&self) -> &dyn EventSink {
            &Discard
        }
        fn interrupted(&self) -> Option<i32> {
            None
        }
        fn change(&self) -> String {
            "abc1234".into()
        }
        fn upgrade_base(&self, pinned: Option<&str>) -> Result<Option<String>> {
            self.calls.borrow_mut().push("upgrade_base".into());
            if let Some(p) = pinned {
                return Ok(Some(p.to_string()));
            }
            self.base.clone().map_err(|f| f.error())
        }
        fn hook(&self, name: &str, _: Stage) -> StepResult {
            self.call(format!("hook {name}"))
        }
        fn deploy_fresh(&self, version: &Version) -> StepResult {
            let v = match version {
                Version::Release(v) => v.clone(),
                Version::Chaos => "change".into(),
            };
            self.call(format!("deploy_fresh {v}"))?;
            self.deployed.set(true);
            Ok(())
        }
        fn deploy_change(&self) -> StepResult {
            self.call("deploy_change".into())
        }
        fn ready(&self, stage: Stage) -> StepResult {
            self.call(format!("ready {stage}"))
        }
        fn run_tests(&self, stage: Stage) -> StepResult {
            self.call(format!("run_tests {stage}"))
        }
        fn has_tests(&self, _: Stage) -> bool {
            self.has_tests
        }
        fn is_deployed(&self) -> bool {
            self.deployed.get()
        }
        fn markers(&self) -> Vec<Marker> {
            self.markers.clone()
        }
        fn write_marker(&self, _: &Marker, value: &str) -> Result<()> {
            self.call_plain("write_marker")?;
            *self.marker_value.borrow_mut() = value.to_string();
            Ok(())
        }
        fn read_marker(&self, _: &Marker) -> Result<String> {
            self.call_plain("read_marker")?;
            Ok(self.marker_value.borrow().clone())
        }
        fn verify_change_runs(&self) -> Result<()> {
            self.call_plain("verify_change_runs")
        }
        fn verify_release_runs(&self, _: &str) -> Result<()> {
            self.call_plain("verify_release_runs")
        }
        fn backup(&self) -> Result<()> {
            self.call_plain("backup")?;
            *self.backed_up.borrow_mut() = self.marker_value.borrow().clone();
            Ok(())
        }
        fn restore(&self) -> Result<()> {
            self.call_plain("restore")?;
            if self.restore_works {
                *self.marker_value.borrow_mut() = self.backed_up.borrow().clone();
            }
            Ok(())
        }
        fn diagnose(&self) -> Option<String> {
            self.calls.borrow_mut().push("diagnose".into());
            None
        }
        fn keep(&self, until: u64) -> Result<String> {
            self.calls.borrow_mut().push(format!("keep {until}"));
            Ok("ccci teardown --domain dem-abc123.ccci.localhost".into())
        }
        fn teardown(&self) -> Vec<String> {
            self.calls.borrow_mut().push("teardown".into());
            Vec::new()
        }
    }

    fn plan(stages: &[Stage]) -> Plan {
        Plan {
            stages: stages.to_vec(),
            from: None,
            keep: Keep::Never,
            keep_until: 0,
        }
    }

    #[test]
    fn all_stages_deploy_once_in_order_and_tear_down() {
        let fake = Fake::new(&Stage::ALL);
        let ending = drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::Pass));
        assert_eq!(ending.leftovers, Some(Vec::new()));
        let calls = fake.calls();
        assert_eq!(fake.count("deploy_fresh"), 1, "{calls:?}");
        assert_eq!(calls[0], "upgrade_base");
        assert_eq!(calls[2], "deploy_fresh 0.2.0+1.1", "the base comes first");
        let order = |name: &str| calls.iter().position(|c| c == name).unwrap();
        assert!(order("run_tests install") < order("deploy_change"));
        assert!(order("deploy_change") < order("verify_change_runs"));
        assert!(order("verify_change_runs") < order("backup"));
        assert!(order("backup") < order("restore"));
        assert_eq!(calls.last().unwrap(), "teardown");
        for stage in Stage::ALL {
            assert_eq!(fake.stage(stage).status, StageStatus::Passed);
        }
        assert_eq!(
            fake.record.borrow().base_version.as_deref(),
            Some("0.2.0+1.1")
        );
    }

    #[test]
    fn install_alone_deploys_the_change_without_looking_for_a_base() {
        let fake = Fake::new(&[Stage::Install]);
        drive(&fake, &plan(&[Stage::Install]));
        assert_eq!(fake.count("upgrade_base"), 0);
        assert_eq!(fake.count("deploy_fresh change"), 1);
        assert_eq!(fake.verdict(), Some(Verdict::Pass));
    }

    #[test]
    fn teardown_always_follows_whatever_failed() {
        for (step, fault) in [
            ("ready", Fault::NotReady),
            ("deploy_fresh", Fault::OurError),
            ("deploy_change", Fault::Rejected),
            ("run_tests", Fault::CheckFails),
            ("hook", Fault::Interrupt),
            ("backup", Fault::OurError),
        ] {
            let fake = Fake::new(&Stage::ALL).failing(step, fault);
            let ending = drive(&fake, &plan(&Stage::ALL));
            assert_eq!(fake.calls().last().unwrap(), "teardown", "after {step}");
            assert_eq!(fake.count("teardown"), 1);
            assert!(ending.leftovers.is_some());
            assert_ne!(fake.verdict(), Some(Verdict::Pass), "{step}");
        }
    }

    #[test]
    fn base_failed_only_when_the_base_itself_fails() {
        let fake = Fake::new(&Stage::ALL).failing("ready", Fault::NotReady);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::BaseFailed));
        let reason = fake.record.borrow().reason.clone().unwrap();
        assert!(
            reason.starts_with("base version 0.2.0+1.1 does not deploy: app:"),
            "{reason}"
        );

        // ccci failing to read the recipe while deploying the base is ccci's error.
        let fake = Fake::new(&Stage::ALL).failing("deploy_fresh", Fault::OurError);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::Error));

        // The change failing after the base deployed is the change's failure.
        let fake = Fake::new(&Stage::ALL).failing("deploy_change", Fault::Rejected);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::Fail));

        // Install tests failing on the base are a failure, not base-failed: it deployed.
        let fake = Fake::new(&Stage::ALL).failing("run_tests", Fault::CheckFails);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::Fail));
    }

    #[test]
    fn a_release_that_runs_another_version_is_base_failed() {
        let fake = Fake::new(&Stage::ALL).failing("verify_release_runs", Fault::CheckFails);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::BaseFailed));
        assert_eq!(fake.count("deploy_change"), 0);
    }

    #[test]
    fn regression_pre_hooks_of_a_first_stage_ran_before_anything_was_deployed() {
        for stage in [Stage::Upgrade, Stage::Backup] {
            let fake = Fake::new(&[stage]);
            drive(&fake, &plan(&[stage]));
            let calls = fake.calls();
            let hook = calls
                .iter()
                .position(|c| c == &format!("hook pre_{stage}"))
                .unwrap();
            let deploy = calls
                .iter()
                .position(|c| c.starts_with("deploy_fresh"))
                .unwrap();
            assert!(deploy < hook, "{stage}: {calls:?}");
        }
    }

    #[test]
    fn without_markers_the_backup_is_left_to_the_recipes_tests_or_is_an_error() {
        let mut fake = Fake::new(&[Stage::Backup]);
        fake.markers.clear();
        drive(&fake, &plan(&[Stage::Backup]));
        assert_eq!(fake.verdict(), Some(Verdict::Pass));
        let calls = fake.calls();
        let at = |name: &str| calls.iter().position(|c| c == name).unwrap();
        assert!(at("backup") < at("restore") && at("restore") < at("run_tests backup"));

        let mut fake = Fake::new(&[Stage::Backup]);
        fake.markers.clear();
        fake.has_tests = false;
        drive(&fake, &plan(&[Stage::Backup]));
        assert_eq!(fake.verdict(), Some(Verdict::Error));
        assert_eq!(fake.count("backup"), 0);
    }

    #[test]
    fn regression_an_engine_error_in_a_check_of_the_base_was_blamed_on_the_recipe() {
        let fake = Fake::new(&Stage::ALL).failing("verify_release_runs", Fault::OurError);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::Error));
        let fake = Fake::new(&[Stage::Backup]).failing("backup", Fault::OurError);
        drive(&fake, &plan(&[Stage::Backup]));
        assert_eq!(fake.verdict(), Some(Verdict::Error));
        let fake = Fake::new(&[Stage::Backup]).failing("backup", Fault::CheckFails);
        drive(&fake, &plan(&[Stage::Backup]));
        assert_eq!(fake.verdict(), Some(Verdict::Fail));
    }

    #[test]
    fn regression_infra_error_looking_up_the_base_is_error_not_fail() {
        let mut fake = Fake::new(&Stage::ALL);
        fake.base = Err(Fault::OurError);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::Error));
        assert_eq!(fake.count("deploy_fresh"), 0);
        assert_eq!(fake.stage(Stage::Upgrade).status, StageStatus::Failed);
        assert_eq!(fake.stage(Stage::Install).status, StageStatus::Skipped);
        assert_eq!(fake.calls().last().unwrap(), "teardown");
    }

    #[test]
    fn no_published_version_skips_the_upgrade_with_its_reason() {
        let mut fake = Fake::new(&Stage::ALL);
        fake.base = Ok(None);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.verdict(), Some(Verdict::Pass));
        let upgrade = fake.stage(Stage::Upgrade);
        assert_eq!(upgrade.status, StageStatus::Skipped);
        assert_eq!(
            upgrade.reason.as_deref(),
            Some("no published version older than the change to upgrade from")
        );
        assert_eq!(
            fake.count("deploy_fresh change"),
            1,
            "install deploys the change"
        );
        assert_eq!(fake.count("deploy_change"), 0);
    }

    #[test]
    fn stages_after_a_failure_are_skipped_with_a_reason() {
        let fake = Fake::new(&Stage::ALL).failing("deploy_change", Fault::NotReady);
        drive(&fake, &plan(&Stage::ALL));
        assert_eq!(fake.stage(Stage::Install).status, StageStatus::Passed);
        assert_eq!(fake.stage(Stage::Upgrade).status, StageStatus::Failed);
        let backup = fake.stage(Stage::Backup);
        assert_eq!(backup.status, StageStatus::Skipped);
        assert_eq!(
            backup.reason.as_deref(),
            Some("not run: an earlier stage failed")
        );
        assert_eq!(fake.count("backup"), 0);
    }

    #[test]
    fn an_interrupted_stage_gives_interrupted_and_is_torn_down_even_when_kept() {
        let fake = Fake::new(&Stage::ALL).failing("deploy_change", Fault::Interrupt);
        let mut p = plan(&Stage::ALL);
        p.keep = Keep::Always;
        drive(&fake, &p);
        assert_eq!(fake.verdict(), Some(Verdict::Interrupted(15)));
        assert_eq!(fake.count("keep"), 0);
        assert_eq!(fake.count("teardown"), 1);
    }

    #[test]
    fn kept_runs_are_labelled_not_torn_down() {
        let fake = Fake::new(&[Stage::Install]).failing("run_tests", Fault::CheckFails);
        let mut p = plan(&[Stage::Install]);
        p.keep = Keep::OnFailure;
        p.keep_until = 1_900_000_000;
        let ending = drive(&fake, &p);
        assert_eq!(ending.leftovers, None);
        assert_eq!(fake.count("teardown"), 0);
        assert_eq!(fake.count("keep 1900000000"), 1);
        assert_eq!(
            fake.record.borrow().kept.as_deref(),
            Some("ccci teardown --domain dem-abc123.ccci.localhost")
        );

        // On a pass, on-failure tears down.
        let fake = Fake::new(&[Stage::Install]);
        drive(&fake, &p);
        assert_eq!(fake.count("teardown"), 1);
    }

    #[test]
    fn backup_restores_after_backing_up_and_checks_the_marker() {
        let fake = Fake::new(&[Stage::Backup]);
        drive(&fake, &plan(&[Stage::Backup]));
        assert_eq!(fake.verdict(), Some(Verdict::Pass));
        let mut fake = Fake::new(&[Stage::Backup]);
        fake.restore_works = false;
        drive(&fake, &plan(&[Stage::Backup]));
        let calls = fake.calls();
        let seq: Vec<&str> = calls
            .iter()
            .map(String::as_str)
            .filter(|c| c.contains("marker") || *c == "backup" || *c == "restore")
            .collect();
        assert_eq!(
            seq,
            [
                "write_marker",
                "backup",
                "write_marker",
                "restore",
                "read_marker"
            ]
        );
        // A restore that brings nothing back must fail the stage.
        assert_eq!(fake.verdict(), Some(Verdict::Fail));
        let reason = fake.record.borrow().reason.clone().unwrap();
        assert!(
            reason.contains("restore did not bring the data back"),
            "{reason}"
        );
    }
}
