//! End-to-end tests: the real `ccci` binary against the real single-node swarm, on recipe
//! repositories built from the fixture trees. After every run nothing of it may remain: no
//! stack resource, no env file, no lock file.

use std::path::PathBuf;

use ccci::run::record::{StageStatus, Verdict};

use crate::support::sandbox::{Sandbox, root};

crate::tests! {
    swarm: demo_passes_install_upgrade_and_backup,
    swarm: regression_every_look_at_the_swarm_started_a_docker_cli_process,
    swarm: slow_database_passes_because_of_the_overlay,
    swarm: slow_database_without_the_overlay_fails_fast_with_the_kill,
    swarm: missing_image_is_named_before_anything_is_deployed,
    swarm: no_published_version_skips_the_upgrade_with_its_reason,
    local: bad_input_is_one_line_and_changes_nothing,
    swarm: missing_abra_is_an_infrastructure_error,
    swarm: every_step_replays_by_hand_on_a_prepared_run,
    swarm: a_release_whose_version_label_names_another_version_is_base_failed,
    swarm: kept_app_is_listed_left_by_the_janitor_and_removed_by_its_command,
    swarm: database_recipe_passes_install_upgrade_and_backup_with_real_postgres,
    swarm: a_restore_that_does_nothing_fails_the_backup_stage,
    swarm: recipe_files_ccci_cannot_read_are_one_error_and_nothing_is_deployed,
}

fn demo_passes_install_upgrade_and_backup() {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let out = sb
        .ccci()
        .args([
            "test",
            "demo",
            "--source",
            repo.to_str().unwrap(),
            "--stage",
            "all",
            "--run-id",
            "e2e-demo",
        ])
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
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

fn slow_database_passes_because_of_the_overlay() {
    let sb = Sandbox::new("");
    let repo = sb.recipe_repo("tests/fixtures/recipes/slowdb", "slowdb");
    let tests = root().join("tests/fixtures/tests-recipes");
    let out = sb
        .ccci()
        .args([
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
        ])
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    let record = sb.record("e2e-slow");
    assert_eq!(record.verdict, Some(Verdict::Pass));
    sb.assert_nothing_left(&record);
}

fn slow_database_without_the_overlay_fails_fast_with_the_kill() {
    let sb = Sandbox::new("");
    let repo = sb.recipe_repo("tests/fixtures/recipes/slowdb", "slowdb");
    let started = std::time::Instant::now();
    let out = sb
        .ccci()
        .args([
            "test",
            "slowdb",
            "--source",
            repo.to_str().unwrap(),
            "--stage",
            "install",
            "--no-overlay",
            "--run-id",
            "e2e-slow-raw",
        ])
        .run();
    assert_eq!(out.code(), Some(1), "{out}");
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

fn missing_image_is_named_before_anything_is_deployed() {
    let sb = Sandbox::new("");
    let repo = sb.recipe_repo("tests/fixtures/recipes/badimage", "bad");
    let out = sb
        .ccci()
        .args([
            "test",
            "badimage",
            "--source",
            repo.to_str().unwrap(),
            "--stage",
            "install",
            "--run-id",
            "e2e-badimage",
        ])
        .run();
    // No registry answers here: the host cannot get the image, which is no verdict on the
    // recipe (a registry saying the image does not exist would be).
    assert_eq!(out.code(), Some(3), "{out}");
    let record = sb.record("e2e-badimage");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("service app: image ccci-no-such-image:404 is not on this host"),
        "{reason}"
    );
    let log = sb.log("e2e-badimage");
    assert!(!log.contains(" deploy:"), "nothing may be deployed:\n{log}");
    sb.assert_nothing_left(&record);
}

fn no_published_version_skips_the_upgrade_with_its_reason() {
    let sb = Sandbox::new("");
    let repo = sb.recipe_repo("tests/fixtures/recipes/nobase", "nobase");
    let out = sb
        .ccci()
        .args([
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
        ])
        .run();
    let record = sb.record("e2e-nobase");
    let upgrade = record
        .stages
        .iter()
        .find(|s| s.stage == ccci::stage::Stage::Upgrade)
        .unwrap();
    assert_eq!(upgrade.status, StageStatus::Skipped, "{out}");
    assert!(
        upgrade
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("no published version")
    );
    sb.assert_nothing_left(&record);
}

fn bad_input_is_one_line_and_changes_nothing() {
    let sb = Sandbox::new("");
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
        let out = sb.ccci().args(&args).run();
        assert_eq!(out.code(), Some(2), "{args:?}: {out}");
        let errors = out.error_lines();
        assert_eq!(errors.len(), 1, "{args:?}: {out}");
        assert!(errors[0].contains(want), "{args:?}: {out}");
        let runs: Vec<_> = std::fs::read_dir(sb.path("runs"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(runs.is_empty(), "{args:?} left a run directory");
    }
}

/// The driver is chosen after the swarm's preflight, so this one needs the swarm.
fn missing_abra_is_an_infrastructure_error() {
    let sb = Sandbox::new("");
    let out = sb
        .ccci()
        .args(["test", "demo", "--driver", "abra", "--source", "/tmp"])
        .run();
    if which_abra().is_none() {
        assert_eq!(out.code(), Some(3), "{out}");
        assert!(out.stderr.contains("abra is not on PATH"), "{out}");
    }
}

fn which_abra() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("abra"))
            .find(|f| f.is_file())
    })
}

fn every_step_replays_by_hand_on_a_prepared_run() {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let step = |args: &[&str], expect: i32| {
        let out = sb.ccci().args(args).run();
        assert_eq!(out.code(), Some(expect), "{args:?}\n{out}");
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
    assert_eq!(out.stdout.trim(), "by-hand");
    // Nothing to wait for before the recipe is fetched and deployed.
    let out = step(&["wait", "--run", "by-hand"], 2);
    assert!(
        out.to_string().contains("ccci fetch --run by-hand"),
        "{}",
        out
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
        out.to_string().contains("ccci deploy --run by-hand"),
        "{}",
        out
    );

    // The upgrade, step by step: base release, then the change.
    step(&["deploy", "--run", "by-hand", "--release", "0.2.0+1.1"], 0);
    step(&["wait", "--run", "by-hand"], 0);
    step(&["check", "--run", "by-hand"], 0);
    // The base is not the change: the upgrade's proof fails, with its reason.
    let out = step(&["check", "--run", "by-hand", "--stage", "upgrade"], 1);
    assert!(
        out.to_string().contains("the change is what runs"),
        "{}",
        out
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
        out.to_string().contains("locked by run someone-else"),
        "{}",
        out
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

fn a_release_whose_version_label_names_another_version_is_base_failed() {
    let sb = Sandbox::new("");
    let repo = sb.recipe_repo("tests/fixtures/recipes/mislabel", "mislabel");
    let out = sb
        .ccci()
        .args([
            "test",
            "mislabel",
            "--source",
            repo.to_str().unwrap(),
            "--stage",
            "upgrade",
            "--run-id",
            "e2e-mislabel",
        ])
        .run();
    assert_eq!(out.code(), Some(4), "{out}");
    let record = sb.record("e2e-mislabel");
    assert_eq!(record.verdict, Some(Verdict::BaseFailed));
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("base version 0.1.0+1.0 does not deploy: the release is what runs:")
            && reason.contains("0.0.9+1.0"),
        "{reason}"
    );
    sb.assert_nothing_left(&record);
}

fn kept_app_is_listed_left_by_the_janitor_and_removed_by_its_command() {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let out = sb
        .ccci()
        .args([
            "test",
            "demo",
            "--source",
            repo.to_str().unwrap(),
            "--stage",
            "install",
            "--keep",
            "always",
            "--keep-for",
            "1h",
            "--run-id",
            "e2e-kept",
        ])
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    let record = sb.record("e2e-kept");
    let command = format!("ccci teardown --domain {}", record.domain);
    assert_eq!(record.kept.as_deref(), Some(command.as_str()));
    assert!(!record.torn_down);

    let apps = sb.ccci().args(["apps"]).run();
    assert_eq!(apps.code(), Some(0), "{apps}");
    let line = apps
        .stdout
        .lines()
        .find(|l| l.starts_with(&record.domain))
        .unwrap_or_else(|| panic!("{} not listed:\n{apps}", record.domain));
    assert!(line.contains("kept") && line.contains(&command), "{line}");

    let janitor = sb.ccci().args(["janitor", "--json"]).run();
    assert_eq!(janitor.code(), Some(0), "{janitor}");
    let summary: serde_json::Value = serde_json::from_str(&janitor.stdout).unwrap();
    assert_eq!(summary["reaped"], 0, "{janitor}");
    assert!(
        sb.env_file(&record.domain).exists(),
        "the janitor took a kept app"
    );

    let teardown = sb
        .ccci()
        .args(["teardown", "--domain", &record.domain])
        .run();
    assert_eq!(teardown.code(), Some(0), "{teardown}");
    sb.assert_nothing_left(&record);
}

fn database_recipe_passes_install_upgrade_and_backup_with_real_postgres() {
    let sb = Sandbox::new("");
    let repo = sb.recipe_repo("recipes/pgapp", "pgapp");
    let out = sb
        .ccci()
        .args([
            "test",
            "pgapp",
            "--source",
            repo.to_str().unwrap(),
            "--stage",
            "all",
            "--driver",
            "stack",
            "--run-id",
            "e2e-pgapp",
        ])
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    let record = sb.record("e2e-pgapp");
    assert_eq!(record.verdict, Some(Verdict::Pass));
    assert_eq!(record.base_version.as_deref(), Some("0.2.0+1.0"));
    let checks: Vec<&str> = record
        .stages
        .iter()
        .flat_map(|s| s.checks.iter().filter(|c| c.ok).map(|c| c.name.as_str()))
        .collect();
    for expected in [
        "install.d/10-rows",
        "upgrade.d/10-rows-survived",
        "backup.d/10-rows-restored",
        "the release is what runs",
        "the change is what runs",
    ] {
        assert!(
            checks.contains(&expected),
            "{expected} not among {checks:?}"
        );
    }
    sb.assert_nothing_left(&record);
}

fn a_restore_that_does_nothing_fails_the_backup_stage() {
    let sb = Sandbox::new("");
    // pgapp as published, but the change's database restore hook does nothing.
    let fixture = sb.path("pgapp-norestore");
    copy_tree(&root().join("recipes/pgapp"), &fixture);
    let compose = fixture.join("03-change/compose.postgres.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    let hook = text
        .lines()
        .find(|l| l.contains("backupbot.restore.post-hook"))
        .expect("pgapp has a restore hook")
        .to_string();
    let noop = format!("{}: \"true\"", hook.split(':').next().unwrap());
    std::fs::write(&compose, text.replace(&hook, &noop)).unwrap();
    let repo = sb.recipe_repo(fixture.to_str().unwrap(), "pgapp");
    let out = sb
        .ccci()
        .args(["test", "pgapp", "--source", repo.to_str().unwrap()])
        .args([
            "--stage",
            "backup",
            "--driver",
            "stack",
            "--run-id",
            "e2e-norestore",
        ])
        .run();
    assert_eq!(out.code(), Some(1), "{out}");
    let record = sb.record("e2e-norestore");
    assert_eq!(record.verdict, Some(Verdict::Fail));
    let reason = record.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("backup.d/10-rows-restored"), "{reason}");
    sb.assert_nothing_left(&record);
}

fn recipe_files_ccci_cannot_read_are_one_error_and_nothing_is_deployed() {
    for (fixture, expected) in [("badyaml", "compose.extra.yml"), ("needsvar", "SMTP_HOST")] {
        let sb = Sandbox::new("");
        let repo = sb.recipe_repo(&format!("tests/fixtures/recipes/{fixture}"), fixture);
        let run_id = format!("e2e-{fixture}");
        let out = sb
            .ccci()
            .args(["test", fixture, "--source", repo.to_str().unwrap()])
            .args(["--stage", "install", "--run-id", &run_id])
            .run();
        assert_eq!(out.code(), Some(3), "{fixture}: {out}");
        let record = sb.record(&run_id);
        assert_eq!(record.verdict, Some(Verdict::Error), "{fixture}");
        let reason = record.reason.clone().unwrap_or_default();
        assert!(reason.contains(expected), "{fixture}: {reason}");
        assert_eq!(reason.lines().count(), 1, "{fixture}: {reason}");
        let log = sb.log(&run_id);
        assert!(!log.contains(" deploy:"), "{fixture}: deployed:\n{log}");
        sb.assert_nothing_left(&record);
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Each docker CLI start costs tens of milliseconds; each engine API request about one. A run
/// used to start one for every look at the swarm (four or five per readiness look, a dozen in
/// teardown, one for preflight, for each image and secret check, for creating each secret and
/// for the probe). Now an install run starts the CLI only for what has no plain API: deploying
/// a stack (and asking its flags), and the event stream readiness wakes on.
fn regression_every_look_at_the_swarm_started_a_docker_cli_process() {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("docker"))
        .find(|p| p.is_file())
        .expect("docker on PATH");
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
    let out = sb
        .ccci()
        .env("PATH", &path)
        .args(["test", "demo", "--source", repo.to_str().unwrap()])
        .args(["--stage", "install", "--run-id", "e2e-calls"])
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
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
