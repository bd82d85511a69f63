//! The binary's surface that needs no swarm: generated docs are fresh, help works, exit codes.

use crate::support::ccci::Ccci;
use crate::support::sandbox::root;

crate::tests! {
    local: committed_completions_and_man_page_are_fresh,
    local: usage_errors_exit_2,
    local: a_missing_config_named_by_env_is_a_usage_error,
    local: a_relative_config_path_is_read_from_the_working_directory,
    local: regression_output_into_a_closed_pipe_panicked,
    local: regression_a_huge_deadline_overflowed_the_clock,
    local: regression_comma_separated_stages_were_refused,
    local: regression_apps_said_there_were_none_when_the_engine_could_not_be_asked,
}

fn committed(path: &str) -> String {
    let file = root().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn committed_completions_and_man_page_are_fresh() {
    for (args, path) in [
        (vec!["completions", "bash"], "completions/ccci.bash"),
        (vec!["completions", "zsh"], "completions/_ccci"),
        (vec!["completions", "fish"], "completions/ccci.fish"),
        (vec!["man"], "man/ccci.1"),
    ] {
        let out = Ccci::new().args(&args).run();
        assert!(out.status.success(), "{args:?}: {out}");
        assert!(
            out.stdout == committed(path),
            "{path} is stale: run scripts/gen-docs.sh and commit the result"
        );
    }
}

fn usage_errors_exit_2() {
    let out = Ccci::new().arg("test").run();
    assert_eq!(out.code(), Some(2), "{out}");
    let out = Ccci::new().arg("no-such-command").run();
    assert_eq!(out.code(), Some(2), "{out}");
}

fn a_missing_config_named_by_env_is_a_usage_error() {
    let out = Ccci::new()
        .arg("locks")
        .env("CCCI_CONFIG", "/nonexistent/ccci.yml")
        .run();
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("CCCI_CONFIG"), "{out}");
}

fn a_relative_config_path_is_read_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks-from-config");
    std::fs::create_dir(&locks).unwrap();
    std::fs::write(
        dir.path().join("ccci.yml"),
        format!("lock_dir: {}\n", locks.display()),
    )
    .unwrap();
    let out = Ccci::new()
        .args(["--config", "ccci.yml", "locks"])
        .env_remove("CCCI_APP_LOCK_DIR")
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr
            .contains(&format!("no lock files in {}", locks.display())),
        "{out}"
    );
}

/// Runs `ccci <args> | head -1` in a shell and returns (ccci's exit code, its stderr).
pub fn into_head(args: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let script = format!(
        "'{}' {args} 2>'{}' | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_ccci"),
        stderr.display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", &script]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (code, std::fs::read_to_string(stderr).unwrap_or_default())
}

fn regression_output_into_a_closed_pipe_panicked() {
    // Long enough that the reader is gone before ccci has written it all.
    let (code, stderr) = into_head("completions bash", &[]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let locks = tempfile::tempdir().unwrap();
    for i in 0..5000 {
        std::fs::write(locks.path().join(format!("a{i}.ccci.localhost.lock")), "").unwrap();
    }
    let dir = locks.path().to_str().unwrap();
    let (code, stderr) = into_head("locks", &[("CCCI_APP_LOCK_DIR", dir)]);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

fn regression_a_huge_deadline_overflowed_the_clock() {
    let runs = tempfile::tempdir().unwrap();
    let out = Ccci::new()
        .args(["test", "demo", "--deadline", "500000000000y"])
        .env("CCCI_RUNS_DIR", runs.path())
        .run();
    assert_eq!(out.code(), Some(2), "{out}");
    assert_eq!(
        out.error_lines(),
        [
            "error: --deadline: `500000000000y` is longer than a year (366d): write a shorter duration"
        ],
        "{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert_eq!(std::fs::read_dir(runs.path()).unwrap().count(), 0);
}

fn regression_comma_separated_stages_were_refused() {
    let runs = tempfile::tempdir().unwrap();
    let out = Ccci::new()
        .args([
            "prepare",
            "demo",
            "--stage",
            "install,upgrade",
            "--driver",
            "stack",
        ])
        .args(["--run-id", "stages"])
        .env("CCCI_RUNS_DIR", runs.path())
        .env("ABRA_DIR", runs.path().join("abra"))
        .run();
    assert_eq!(out.code(), Some(0), "{out}");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.path().join("stages/run.json")).unwrap(),
    )
    .unwrap();
    let stages: Vec<&str> = record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["install", "upgrade"]);
}

fn regression_apps_said_there_were_none_when_the_engine_could_not_be_asked() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let out = Ccci::new()
        .args(["apps"])
        .env(
            "DOCKER_HOST",
            format!("unix://{}", dir.path().join("no.sock").display()),
        )
        .env("CCCI_APP_LOCK_DIR", &locks)
        .env("ABRA_DIR", dir.path().join("abra"))
        .run();
    assert_eq!(out.code(), Some(6), "{out}");
    assert!(
        out.error_lines()
            .iter()
            .any(|l| l.contains("nothing reaped")),
        "{out}"
    );
    assert!(!out.stderr.contains("no test apps"), "{out}");
}
