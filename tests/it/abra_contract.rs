//! Contract tests of the abra driver: the real driver code spawns a recording stand-in `abra`
//! (tests/fixtures/abra-standin) found on PATH, and the tests check the arguments and the
//! `ABRA_DIR` of every call. abra itself cannot be installed here; the stand-in lives only in
//! the tests.

use std::path::{Path, PathBuf};

use ccci::driver::abra::{AbraDriver, Backups};
use ccci::driver::{App, Driver, Version};
use ccci::event::Discard;
use ccci::run::abra_home::AbraHome;
use ccci::sys::cancel::Cancel;
use ccci::sys::process::Runner;

crate::tests! {
    local: every_abra_call_gets_the_run_home_and_the_documented_arguments,
    local: a_failing_abra_call_is_an_error_naming_the_command,
}

fn standin() -> PathBuf {
    crate::support::sandbox::root().join("tests/fixtures/abra-standin/abra")
}

/// Sets process environment variables for one test and restores them when dropped, so no
/// later test in the same process sees the stand-in on PATH.
struct EnvGuard(Vec<(&'static str, Option<std::ffi::OsString>)>);

impl EnvGuard {
    fn set(vars: &[(&'static str, std::ffi::OsString)]) -> EnvGuard {
        let mut saved = Vec::new();
        for (key, value) in vars {
            saved.push((*key, std::env::var_os(key)));
            // SAFETY: the harness runs one test at a time per process, on one thread (see
            // support::harness::main), and no thread of this test reads the environment
            // through libc while it changes; the variables must reach the stand-in, which the
            // driver spawns with the inherited environment.
            unsafe { std::env::set_var(key, value) };
        }
        EnvGuard(saved)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (key, value) in self.0.drain(..) {
            // SAFETY: as in `EnvGuard::set`.
            unsafe {
                match value {
                    Some(value) => std::env::set_var(key, value),
                    None => std::env::remove_var(key),
                }
            }
        }
    }
}

fn calls(record: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (dir, args) = l.split_once('|').unwrap();
            (
                dir.trim_start_matches("ABRA_DIR=").to_string(),
                args.to_string(),
            )
        })
        .collect()
}

fn every_abra_call_gets_the_run_home_and_the_documented_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("calls");
    let home = AbraHome::create(&tmp.path().join("run"), &tmp.path().join("canonical")).unwrap();
    let recipe_dir = home.recipe_dir("demo");
    std::fs::create_dir_all(&recipe_dir).unwrap();
    std::fs::write(recipe_dir.join(".env.sample"), "TYPE=demo\nDOMAIN=x\n").unwrap();
    let runner = Runner::new(Cancel::new());
    let labels = Vec::new();
    let backups = tmp.path().join("backups");
    let app = App {
        runner: &runner,
        abra_dir: &home.dir,
        recipe_dir: home.recipe_dir("demo"),
        env_file: home.env_file("default", "dem-abc123.ccci.localhost"),
        server: "default",
        recipe: "demo",
        domain: "dem-abc123.ccci.localhost",
        stack: "dem-abc123_ccci_localhost",
        labels,
        backups: &backups,
        sink: &Discard,
    };
    // The record path travels in the child's environment, like ABRA_DIR itself; the stand-in
    // is found on PATH, the way `--driver abra` finds the real one.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![standin().parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    let _env = EnvGuard::set(&[
        ("ABRA_RECORD", record.clone().into_os_string()),
        ("PATH", std::env::join_paths(dirs).unwrap()),
    ]);
    let (driver, notice) = ccci::driver::select(ccci::driver::DriverChoice::Abra).unwrap();
    assert_eq!(driver.name(), "abra");
    assert_eq!(notice, None);
    // The backup calls as abra gets them where a backup-bot-two app runs (this host has none;
    // then the driver backs up itself, see the driver's module header).
    let driver = AbraDriver::new(standin()).with_backups(Backups::Abra);
    let base = Version::Release("0.1.0+1.0".into());
    driver.new_app(&app, &base).unwrap();
    driver.deploy(&app, &base).unwrap();
    driver.deploy(&app, &Version::Chaos).unwrap();
    driver.backup(&app).unwrap();
    driver.restore(&app).unwrap();

    let calls = calls(&record);
    let home_dir = home.dir.display().to_string();
    assert!(
        calls.iter().all(|(dir, _)| *dir == home_dir),
        "ABRA_DIR must be the run's home on every call: {calls:?}"
    );
    let args: Vec<&str> = calls.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        args,
        [
            "app new demo 0.1.0+1.0 --server default --domain dem-abc123.ccci.localhost --secrets --no-input",
            "app deploy dem-abc123.ccci.localhost 0.1.0+1.0 --no-converge-checks --no-domain-checks --no-input",
            "app deploy dem-abc123.ccci.localhost --chaos --force --no-converge-checks --no-domain-checks --no-input",
            "app backup create dem-abc123.ccci.localhost --no-input",
            "app restore dem-abc123.ccci.localhost --no-input",
        ]
    );
    // The env file the stand-in wrote through the run's servers/ link is the canonical one.
    assert!(
        tmp.path()
            .join("canonical/servers/default/dem-abc123.ccci.localhost.env")
            .is_file()
    );
    // ccci's own environment never got ABRA_DIR.
    assert_ne!(
        std::env::var_os("ABRA_DIR").map(PathBuf::from),
        Some(home.dir.clone())
    );
}

fn a_failing_abra_call_is_an_error_naming_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let home = AbraHome::create(&tmp.path().join("run"), &tmp.path().join("canonical")).unwrap();
    let runner = Runner::new(Cancel::new());
    let labels = Vec::new();
    let backups = tmp.path().join("b");
    let app = App {
        runner: &runner,
        abra_dir: &home.dir,
        recipe_dir: home.recipe_dir("demo"),
        env_file: home.env_file("default", "dem-abc123.ccci.localhost"),
        server: "default",
        recipe: "demo",
        domain: "dem-abc123.ccci.localhost",
        stack: "dem-abc123_ccci_localhost",
        labels,
        backups: &backups,
        sink: &Discard,
    };
    let failing = tmp.path().join("abra");
    std::fs::write(
        &failing,
        "#!/bin/sh\necho 'FATA unable to deploy' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = AbraDriver::new(failing)
        .deploy(&app, &Version::Chaos)
        .unwrap_err()
        .to_string();
    assert!(err.contains("app deploy"), "{err}");
    assert!(err.contains("unable to deploy"), "{err}");
}
