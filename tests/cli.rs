//! The binary's surface that needs no swarm: generated docs are fresh, help works, exit codes.

use std::path::PathBuf;
use std::process::Command;

fn ccci(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ccci"))
        .args(args)
        .output()
        .expect("run ccci")
}

fn committed(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn committed_completions_and_man_page_are_fresh() {
    for (args, path) in [
        (vec!["completions", "bash"], "completions/ccci.bash"),
        (vec!["completions", "zsh"], "completions/_ccci"),
        (vec!["completions", "fish"], "completions/ccci.fish"),
        (vec!["man"], "man/ccci.1"),
    ] {
        let out = ccci(&args);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout) == committed(path),
            "{path} is stale: run scripts/gen-docs.sh and commit the result"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = ccci(&["test"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ccci(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_config_named_by_env_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ccci"))
        .args(["locks"])
        .env("CCCI_CONFIG", "/nonexistent/ccci.yml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CCCI_CONFIG"));
}
