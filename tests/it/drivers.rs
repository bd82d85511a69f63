//! The deploy drivers on the real swarm, below the level of a whole run: the stack driver's
//! backups stream to files, a refused deploy is blamed on the recipe, and the abra driver backs
//! up by itself where no backup-bot-two app runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ccci::Error;
use ccci::docker::teardown::{self, Target};
use ccci::docker::{ReadyOptions, Swarm};
use ccci::driver::abra::AbraDriver;
use ccci::driver::stack::StackDriver;
use ccci::driver::{App, Driver, Version};
use ccci::event::{Event, Recorder};
use ccci::sys::cancel::Cancel;
use ccci::sys::process::Runner;

use crate::support::swarm::IMAGE;

crate::tests! {
    swarm: regression_backups_were_held_whole_in_memory,
    swarm: regression_a_refused_stack_deploy_was_reported_as_a_ccci_error,
    swarm: abra_driver_backs_up_itself_where_no_backup_bot_runs,
    swarm: regression_a_backup_hook_that_succeeded_said_nothing_in_the_run_log,
}

/// A recipe checked out in a scratch directory, as a run would hold it; torn down on drop.
struct Scratch {
    dir: tempfile::TempDir,
    domain: String,
    stack: String,
    runner: Runner,
    sink: Recorder,
    backups: std::path::PathBuf,
}

impl Scratch {
    fn new(compose: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let domain = format!(
            "ccci-d-{}-{}.test",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("recipe");
        std::fs::create_dir_all(&recipe).unwrap();
        std::fs::write(recipe.join("compose.yml"), compose).unwrap();
        std::fs::write(recipe.join(".env.sample"), "TYPE=demo\nDOMAIN=\n").unwrap();
        let backups = dir.path().join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        Scratch {
            backups,
            stack: ccci::naming::stack_name(&domain),
            domain,
            dir,
            runner: Runner::new(Cancel::new()),
            sink: Recorder::default(),
        }
    }

    fn app(&self) -> App<'_> {
        App {
            runner: &self.runner,
            abra_dir: self.dir.path(),
            recipe_dir: self.dir.path().join("recipe"),
            env_file: self.dir.path().join("app.env"),
            server: "default",
            recipe: "demo",
            domain: &self.domain,
            stack: &self.stack,
            labels: Vec::new(),
            backups: &self.backups,
            sink: &self.sink,
        }
    }

    /// Creates and deploys the app with the stack driver, and waits until it is ready.
    fn deploy(&self) {
        let app = self.app();
        let driver = StackDriver::new();
        driver.new_app(&app, &Version::Chaos).unwrap();
        let since = SystemTime::now();
        driver.deploy(&app, &Version::Chaos).unwrap();
        Swarm::new(self.runner.clone())
            .wait_ready(
                &self.stack,
                &ReadyOptions {
                    timeout: Duration::from_secs(90),
                    since,
                    deployed: true,
                },
                &self.sink,
            )
            .unwrap();
    }

    fn sh(&self, script: &str) -> String {
        let out = Swarm::new(self.runner.clone())
            .exec(
                &self.stack,
                "app",
                &["sh".into(), "-c".into(), script.into()],
                None,
            )
            .unwrap();
        assert!(out.success(), "`{script}`: {}", out.stderr_str());
        out.stdout_str().trim().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let outcome = teardown::teardown(
            &self.runner.with_budget(Duration::from_secs(90)),
            &Target {
                domain: self.domain.clone(),
                stack: self.stack.clone(),
                env_file: None,
            },
            &Recorder::default(),
        );
        if !outcome.leftovers.is_empty() && !std::thread::panicking() {
            panic!("teardown of {} left {:?}", self.stack, outcome.leftovers);
        }
    }
}

/// One service with a backed-up volume.
fn backed_up_compose() -> String {
    format!(
        "version: \"3.8\"\n\
         services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    \
         volumes:\n      - data:/data\n    \
         deploy:\n      labels:\n        backupbot.backup: \"true\"\n\
         volumes:\n  data:\n"
    )
}

/// The peak resident memory of this process since the last reset, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn regression_backups_were_held_whole_in_memory() {
    const MIB: u64 = 64;
    let scratch = Scratch::new(&backed_up_compose());
    scratch.deploy();
    let app = scratch.app();
    let driver = StackDriver::new();
    scratch.sh(&format!(
        "dd if=/dev/zero of=/data/big bs=1048576 count={MIB} 2>/dev/null && echo before > /data/marker"
    ));

    // A backup far larger than anything else this process holds: held in memory, it would
    // raise the peak resident size by at least its own size.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let peak_before = peak_rss_kib();
    driver.backup(&app).unwrap();
    let file = app.backups.join("app.tar");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > MIB << 20, "backup of {size} bytes");
    let left: Vec<_> = std::fs::read_dir(app.backups).unwrap().collect();
    assert_eq!(left.len(), 1, "only the backup is left: {left:?}");

    scratch.sh("echo after > /data/marker && rm /data/big");
    driver.restore(&app).unwrap();
    let grown_mib = peak_rss_kib().saturating_sub(peak_before) / 1024;
    assert_eq!(scratch.sh("cat /data/marker"), "before");
    assert_eq!(
        scratch.sh("wc -c < /data/big"),
        (MIB << 20).to_string(),
        "restored"
    );
    assert!(
        grown_mib < MIB / 2,
        "backup and restore of {MIB} MiB raised the peak memory by {grown_mib} MiB"
    );
}

fn regression_a_refused_stack_deploy_was_reported_as_a_ccci_error() {
    let scratch = Scratch::new(&format!(
        "version: \"3.8\"\n\
         services:\n  app:\n    image: {IMAGE}\n    volumes:\n      - nosuch:/data\n"
    ));
    let app = scratch.app();
    let driver = StackDriver::new();
    driver.new_app(&app, &Version::Chaos).unwrap();
    match driver.deploy(&app, &Version::Chaos) {
        Err(Error::Rejected(m)) => assert!(m.contains("undefined volume"), "{m}"),
        other => panic!("expected the recipe to be blamed: {other:?}"),
    }
}

fn abra_driver_backs_up_itself_where_no_backup_bot_runs() {
    let scratch = Scratch::new(&backed_up_compose());
    scratch.deploy();
    scratch.sh("echo before > /data/marker");
    // An abra that must not be asked: this swarm runs no backup-bot-two.
    let abra = scratch.dir.path().join("abra-must-not-run");
    std::fs::write(&abra, "#!/bin/sh\necho \"abra $*\" >&2\nexit 9\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&abra, std::fs::Permissions::from_mode(0o755)).unwrap();
    let driver = AbraDriver::new(abra);
    let app = scratch.app();
    driver.backup(&app).unwrap();
    assert!(app.backups.join("app.tar").is_file());
    scratch.sh("echo after > /data/marker");
    driver.restore(&app).unwrap();
    assert_eq!(scratch.sh("cat /data/marker"), "before");
    let notices: Vec<String> = scratch
        .sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Notice { message } => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("no backup-bot-two app runs on this swarm")),
        "{notices:?}"
    );
}

fn regression_a_backup_hook_that_succeeded_said_nothing_in_the_run_log() {
    let mut scratch = Scratch::new(&backed_up_compose().replace(
        "backupbot.backup: \"true\"\n",
        "backupbot.backup: \"true\"\n        backupbot.backup.pre-hook: \"echo pg_dump says hello\"\n",
    ));
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    scratch.runner = Runner::new(Cancel::new()).with_sink(std::sync::Arc::new(move |l: &str| {
        seen.lock().unwrap().push(l.to_string())
    }));
    scratch.deploy();
    StackDriver::new().backup(&scratch.app()).unwrap();
    let lines = lines.lock().unwrap();
    assert!(
        lines.iter().any(|l| l == "pg_dump says hello"),
        "the hook's output did not reach the run's log: {lines:?}"
    );
}
