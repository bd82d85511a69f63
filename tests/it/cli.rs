//! The binary's surface that needs no swarm: generated docs are fresh, help works, exit codes.

use crate::support::ccci::Ccci;
use crate::support::sandbox::root;

crate::tests! {
    local: committed_completions_and_man_page_are_fresh,
    local: usage_errors_exit_2,
    local: a_missing_config_named_by_env_is_a_usage_error,
    local: a_relative_config_path_is_read_from_the_working_directory,
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
