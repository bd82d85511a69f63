//! The repository's scripts as the README runs them, where that needs no swarm: what they do on
//! a machine that lacks something, without building or installing anything.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use crate::support::sandbox::root;

crate::tests! {
    local: regression_the_test_suite_stopped_where_the_forge_cannot_be_built,
    local: regression_setup_host_sometimes_reinstalled_busybox,
}

/// `scripts/build-forge.sh` with `go` standing for the Go toolchain and an empty cache.
fn build_forge(go: &std::path::Path, cache: &std::path::Path) -> Output {
    Command::new("bash")
        .arg(root().join("scripts/build-forge.sh"))
        .env("GO", go)
        .env("CCCI_CACHE", cache)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `scripts/test.sh` (the README's second command, `.ci/run`) stopped on a fresh Debian 12:
/// Gitea's build needs a newer Go than Debian has, and build-forge.sh failed like any failed
/// build. It now says so with exit 2, before downloading anything, and test.sh goes on without
/// the forge (whose tests nextest then counts as skipped).
fn regression_the_test_suite_stopped_where_the_forge_cannot_be_built() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Debian 12's Go: it answers `go env GOVERSION` and fails at anything else.
    let old_go = dir.path().join("go");
    std::fs::write(
        &old_go,
        "#!/bin/sh\n[ \"$1 $2\" = 'env GOVERSION' ] && echo go1.19.8 && exit 0\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&old_go, std::fs::Permissions::from_mode(0o755)).unwrap();
    let no_go = dir.path().join("no-such-go");
    for (go, says) in [(&old_go, "is 1.19.8"), (&no_go, "does not run")] {
        let out = build_forge(go, &cache);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{go:?}: {stderr}");
        assert!(
            stderr.contains("cannot build the test forge here"),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            !cache.join("go").exists(),
            "{go:?}: it began a build: {stderr}"
        );
    }
    // test.sh goes on past exit 2 only.
    let test_sh = std::fs::read_to_string(root().join("scripts/test.sh")).unwrap();
    assert!(
        test_sh.contains("bash scripts/build-forge.sh >/dev/null || forge=$?")
            && test_sh.contains("2) printf"),
        "scripts/test.sh no longer goes on without the forge"
    );
}

/// `scripts/setup-host.sh` asked `busybox --list | grep -qx httpd` under `pipefail`: grep quits
/// at the match, busybox (which writes its list a line at a time) now and then dies of SIGPIPE
/// before it is done, the pipeline fails, and the script ran `apt-get update` and reinstalled
/// busybox-static (2 times in 500 here), failing outright on a host without a package mirror.
/// No script of the repository stops reading a pipe early where `pipefail` is on.
fn regression_setup_host_sometimes_reinstalled_busybox() {
    let mut found = Vec::new();
    for dir in ["scripts", "bench", ".ci"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !text.contains("pipefail") {
                continue;
            }
            for (n, line) in text.lines().enumerate() {
                let code = line.split(" #").next().unwrap_or(line);
                if code
                    .split('|')
                    .skip(1)
                    .any(|stage| quits_at_the_first_match(stage.trim_start()))
                {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "a pipe into `grep -q` fails now and then under pipefail (read the input whole, e.g. \
         `grep … >/dev/null`):\n{}",
        found.join("\n")
    );
}

/// `grep` with `-q` among its flags: it exits at the first match, before its input ends.
fn quits_at_the_first_match(stage: &str) -> bool {
    let mut words = stage.split_whitespace();
    words.next() == Some("grep")
        && words.take_while(|w| *w != "--").any(|w| {
            w == "--quiet" || (w.starts_with('-') && !w.starts_with("--") && w.contains('q'))
        })
}
