//! End-to-end tests: the real `ccci` binary against the real single-node swarm, on recipe
//! repositories built from the fixture trees. After every run nothing of it may remain: no
//! stack resource, no env file, no lock file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ccci::run::record::{RunRecord, StageStatus, Verdict};
use ccci::sys::cancel::Cancel;
use ccci::sys::process::Runner;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_swarm() {
    if std::env::var_os("CCCI_SKIP_SWARM_TESTS").is_some() {
        return;
    }
    let out = Command::new("docker")
        .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .output()
        .expect("docker CLI");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "active",
        "these tests need an active swarm: run scripts/setup-host.sh"
    );
}

/// A recipe repository built from `fixture` (a directory of versioned trees).
fn recipe_repo(fixture: &Path, dest: &Path) -> PathBuf {
    let status = Command::new("bash")
        .arg(root().join("scripts/make-recipe-repo.sh"))
        .arg(fixture)
        .arg(dest)
        .output()
        .expect("make-recipe-repo.sh");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    dest.to_path_buf()
}

/// One isolated ccci environment: its own runs dir, lock dir and abra home.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        require_swarm();
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ccci(&self, args: &[&str]) -> Output {
        self.ccci_with(args, &[])
    }

    /// [`Sandbox::ccci`] with more environment.
    fn ccci_with(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ccci"))
            .args(args)
            .envs(env.iter().copied())
            .env("CCCI_RUNS_DIR", self.path("runs"))
            .env("CCCI_APP_LOCK_DIR", self.path("locks"))
            .env("ABRA_DIR", self.path("abra"))
            .env("CCCI_CONFIG", self.path("config.yml"))
            .env("CI", "true")
            .env_remove("CCCI_SKIP_FETCH")
            .output()
            .expect("run ccci")
    }

    fn config(&self, text: &str) {
        std::fs::write(self.path("config.yml"), text).unwrap();
    }

    fn record(&self, run_id: &str) -> RunRecord {
        RunRecord::read(&self.path("runs").join(run_id).join("run.json")).unwrap()
    }

    /// Nothing of the run is left: swarm resources, env file, lock file.
    fn assert_nothing_left(&self, record: &RunRecord) {
        let runner = Runner::new(Cancel::new());
        let left = ccci::docker::teardown::remaining(&runner, &record.stack).unwrap();
        assert!(left.is_empty(), "left on the swarm: {left:?}");
        let env_file = self
            .path("abra/servers/default")
            .join(format!("{}.env", record.domain));
        assert!(!env_file.exists(), "env file left: {}", env_file.display());
        let lock = self.path("locks").join(format!("{}.lock", record.domain));
        assert!(!lock.exists(), "lock file left: {}", lock.display());
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn demo_passes_install_upgrade_and_backup() {
    let sb = Sandbox::new();
    sb.config("");
    let repo = recipe_repo(&root().join("recipes/demo"), &sb.path("demo.git"));
    let out = sb.ccci(&[
        "test",
        "demo",
        "--source",
        repo.to_str().unwrap(),
        "--stage",
        "all",
        "--run-id",
        "e2e-demo",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let record = sb.record("e2e-demo");
    assert_eq!(record.verdict, Some(Verdict::Pass));
    assert_eq!(record.base_version.as_deref(), Some("0.2.0+1.1"));
    assert!(
        record
            .stages
            .iter()
            .all(|s| s.status == StageStatus::Passed),
        "{:?}",
        record.stages
    );
    let upgrade = record
        .stages
        .iter()
        .find(|s| s.stage == ccci::stage::Stage::Upgrade)
        .unwrap();
    assert!(
        upgrade
            .checks
            .iter()
            .any(|c| c.name == "the change is what runs" && c.ok),
        "{:?}",
        upgrade.checks
    );
    let log = std::fs::read_to_string(sb.path("runs/e2e-demo/log")).unwrap();
    assert!(log.contains("verdict: pass"), "{log}");
    let junit = std::fs::read_to_string(sb.path("runs/e2e-demo/junit.xml")).unwrap();
    assert!(junit.contains("failures=\"0\""), "{junit}");
    sb.assert_nothing_left(&record);
}

/// Each docker CLI start costs tens of milliseconds; each engine API request about one. A run
/// used to start one for every look at the swarm (four or five per readiness look, a dozen in
/// teardown, one for preflight, for each image and secret check, for creating each secret and
/// for the probe). Now an install run starts the CLI itself only for what has no plain API:
/// deploying a stack (and asking its flags), and the event stream readiness wakes on.
#[test]
fn regression_every_look_at_the_swarm_started_a_docker_cli_process() {
    let sb = Sandbox::new();
    sb.config("");
    let repo = recipe_repo(&root().join("recipes/demo"), &sb.path("demo.git"));
    let real = which_program("docker").expect("docker on PATH");
    let bin = sb.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = sb.path("docker-calls.log");
    let wrapper = bin.join("docker");
    // Logs who called (the caller's command name) and what, then becomes the real docker.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\t%s\\n' \"$(cat /proc/$PPID/comm)\" \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = sb.ccci_with(
        &[
            "test",
            "demo",
            "--source",
            repo.to_str().unwrap(),
            "--stage",
            "install",
            "--run-id",
            "e2e-calls",
        ],
        &[("PATH", path.as_os_str())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls = std::fs::read_to_string(&log).unwrap();
    let by_ccci: Vec<&str> = calls
        .lines()
        .filter_map(|l| l.strip_prefix("ccci\t"))
        .collect();
    assert!(
        by_ccci
            .iter()
            .any(|c| c.starts_with("stack deploy --prune")),
        "the wrapper saw no deploy: {calls}"
    );
    let needed = ["stack deploy ", "events "];
    let avoidable: Vec<&&str> = by_ccci
        .iter()
        .filter(|c| !needed.iter().any(|n| c.starts_with(n)))
        .collect();
    assert!(
        avoidable.is_empty(),
        "docker CLI calls where one engine request would do: {avoidable:#?}"
    );
    sb.assert_nothing_left(&sb.record("e2e-calls"));
}

fn which_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[test]
fn slow_database_passes_because_of_the_overlay() {
    let sb = Sandbox::new();
    sb.config("");
    let repo = recipe_repo(
        &root().join("tests/fixtures/recipes/slowdb"),
        &sb.path("slowdb.git"),
    );
    let tests = root().join("tests/fixtures/tests-recipes");
    let out = sb.ccci(&[
        "test",
        "slowdb",
        "--source",
        repo.to_str().unwrap(),
        "--stage",
        "install",
        "--tests-dir",
        tests.to_str().unwrap(),
        "--run-id",
        "e2e-slow",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let record = sb.record("e2e-slow");
    assert_eq!(record.verdict, Some(Verdict::Pass));
    sb.assert_nothing_left(&record);
}

#[test]
fn slow_database_without_the_overlay_fails_fast_with_the_kill() {
    let sb = Sandbox::new();
    sb.config("");
    let repo = recipe_repo(
        &root().join("tests/fixtures/recipes/slowdb"),
        &sb.path("slowdb.git"),
    );
    let started = std::time::Instant::now();
    let out = sb.ccci(&[
        "test",
        "slowdb",
        "--source",
        repo.to_str().unwrap(),
        "--stage",
        "install",
        "--no-overlay",
        "--run-id",
        "e2e-slow-raw",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let record = sb.record("e2e-slow-raw");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("db"),
        "reason does not name the service: {reason}"
    );
    assert!(
        reason.contains("137"),
        "reason does not carry the kill: {reason}"
    );
    // Fail fast: the database would need ~25 s; the swarm kills it after a few seconds and the
    // verdict follows, far from the 10 minute deploy timeout.
    assert!(
        started.elapsed().as_secs() < 120,
        "took {:?}",
        started.elapsed()
    );
    assert!(sb.path("runs/e2e-slow-raw/diagnostics").is_dir());
    sb.assert_nothing_left(&record);
}

#[test]
fn missing_image_fails_fast_with_the_swarms_reason() {
    let sb = Sandbox::new();
    sb.config("");
    let repo = recipe_repo(
        &root().join("tests/fixtures/recipes/badimage"),
        &sb.path("bad.git"),
    );
    let out = sb.ccci(&[
        "test",
        "badimage",
        "--source",
        repo.to_str().unwrap(),
        "--stage",
        "install",
        "--run-id",
        "e2e-badimage",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let record = sb.record("e2e-badimage");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(reason.contains("No such image"), "{reason}");
    sb.assert_nothing_left(&record);
}

#[test]
fn no_published_version_skips_the_upgrade_with_its_reason() {
    let sb = Sandbox::new();
    sb.config("");
    let repo = recipe_repo(
        &root().join("tests/fixtures/recipes/nobase"),
        &sb.path("nobase.git"),
    );
    let out = sb.ccci(&[
        "test",
        "nobase",
        "--source",
        repo.to_str().unwrap(),
        "--stage",
        "install",
        "--stage",
        "upgrade",
        "--run-id",
        "e2e-nobase",
    ]);
    let record = sb.record("e2e-nobase");
    let upgrade = record
        .stages
        .iter()
        .find(|s| s.stage == ccci::stage::Stage::Upgrade)
        .unwrap();
    assert_eq!(upgrade.status, StageStatus::Skipped, "{}", text(&out));
    assert!(
        upgrade
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("no published version")
    );
    sb.assert_nothing_left(&record);
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.config("");
    for (args, want) in [
        (vec!["test", "../etc"], "invalid recipe name"),
        (vec!["test", "a/b"], "invalid recipe name"),
        (
            vec!["test", "demo", "--domain", "Not_A_Domain"],
            "invalid domain",
        ),
        (
            vec!["test", "demo", "--source", "/nonexistent/recipe"],
            "does not exist",
        ),
        (vec!["test", "demo", "--stage", "deploy"], "unknown stage"),
        (vec!["test", "demo", "--deadline", "45"], "no unit"),
    ] {
        let out = sb.ccci(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(errors[0].contains(want), "{args:?}: {stderr}");
        let runs: Vec<_> = std::fs::read_dir(sb.path("runs"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(runs.is_empty(), "{args:?} left a run directory");
    }
    let out = sb.ccci(&["test", "demo", "--driver", "abra", "--source", "/tmp"]);
    if which_abra().is_none() {
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("abra is not on PATH"));
    }
}

fn which_abra() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("abra"))
            .find(|f| f.is_file())
    })
}

#[test]
fn every_step_replays_by_hand_on_a_prepared_run() {
    let sb = Sandbox::new();
    sb.config("");
    let repo = recipe_repo(&root().join("recipes/demo"), &sb.path("demo.git"));
    let step = |args: &[&str], expect: i32| {
        let out = sb.ccci(args);
        assert_eq!(out.status.code(), Some(expect), "{args:?}\n{}", text(&out));
        out
    };
    let out = step(
        &[
            "prepare",
            "demo",
            "--source",
            repo.to_str().unwrap(),
            "--run-id",
            "by-hand",
        ],
        0,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "by-hand");
    // Nothing to wait for before the recipe is fetched and deployed.
    let out = step(&["wait", "--run", "by-hand"], 2);
    assert!(
        text(&out).contains("ccci fetch --run by-hand"),
        "{}",
        text(&out)
    );
    step(&["fetch", "--run", "by-hand"], 0);
    let record = sb.record("by-hand");
    assert_eq!(record.commit.as_deref().map(str::len), Some(40));
    assert!(
        record.domain.ends_with(".ccci.localhost"),
        "{}",
        record.domain
    );
    let out = step(&["wait", "--run", "by-hand"], 2);
    assert!(
        text(&out).contains("ccci deploy --run by-hand"),
        "{}",
        text(&out)
    );

    // The upgrade, step by step: base release, then the change.
    step(&["deploy", "--run", "by-hand", "--release", "0.2.0+1.1"], 0);
    step(&["wait", "--run", "by-hand"], 0);
    step(&["check", "--run", "by-hand"], 0);
    // The base is not the change: the upgrade's proof fails, with its reason.
    let out = step(&["check", "--run", "by-hand", "--stage", "upgrade"], 1);
    assert!(
        text(&out).contains("the change is what runs"),
        "{}",
        text(&out)
    );
    step(&["deploy", "--run", "by-hand"], 0);
    step(&["wait", "--run", "by-hand"], 0);
    step(&["check", "--run", "by-hand", "--stage", "upgrade"], 0);
    step(&["backup", "--run", "by-hand"], 0);
    step(&["restore", "--run", "by-hand"], 0);
    step(&["wait", "--run", "by-hand"], 0);

    // A live holder of the domain's lock stops a step with its name, and changes nothing.
    let lock = ccci::sys::lock::AppLock::try_acquire(
        &sb.path("locks"),
        &record.domain,
        &ccci::sys::lock::Holder::this_process("someone-else"),
    )
    .unwrap()
    .unwrap();
    let out = step(&["backup", "--run", "by-hand"], 2);
    assert!(
        text(&out).contains("locked by run someone-else"),
        "{}",
        text(&out)
    );
    drop(lock);

    step(&["teardown", "--run", "by-hand"], 0);
    let record = sb.record("by-hand");
    assert!(record.torn_down, "{record:?}");
    let log = std::fs::read_to_string(sb.path("runs/by-hand/log")).unwrap();
    for line in [
        "fetch done",
        "deploy: 0.2.0+1.1",
        "(chaos)",
        "test back up ok",
        "teardown: stack",
    ] {
        assert!(
            log.contains(line),
            "`{line}` missing from the run's log:\n{log}"
        );
    }
    sb.assert_nothing_left(&record);
}
