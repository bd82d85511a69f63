//! The swarm as the tests see it: whether there is one, the check a swarm test makes before it
//! starts, and the local image the test stacks use.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The image every test stack runs, built locally by `scripts/setup-host.sh`.
pub const IMAGE: &str = "ccci-busybox:1";

/// The swarm's `LocalNodeState` as `docker info` reports it, or why docker could not say,
/// within `limit` (a hung engine must not hang the listing of the tests).
pub fn state(limit: Duration) -> Result<String, String> {
    let out = bounded(
        Command::new("docker").args(["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        limit,
    )?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("`docker info` failed: {}", first.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fails the calling test, saying what to do, unless docker has an active swarm and the test
/// image. Every swarm test makes this check first (see [`super::harness`]): one that runs
/// without a swarm fails, it never passes.
pub fn require() {
    let hint = "run `bash scripts/setup-host.sh`";
    match state(Duration::from_secs(20)) {
        Ok(state) if state == "active" => {}
        Ok(state) => panic!("this test needs an active swarm, and it is `{state}` ({hint})"),
        Err(e) => panic!("this test needs docker with an active swarm: {e} ({hint})"),
    }
    let image = bounded(
        Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", IMAGE]),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("cannot inspect the image {IMAGE}: {e}"));
    assert!(
        image.status.success(),
        "this test needs the local image {IMAGE} ({hint})"
    );
}

/// Runs `cmd` to completion within `limit`; kills it when the limit passes.
fn bounded(cmd: &mut Command, limit: Duration) -> Result<std::process::Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("docker did not answer within {limit:?}"));
            }
            Err(e) => return Err(format!("cannot wait for docker: {e}")),
        }
    }
    // The output is small (one line), so the pipes never filled while we polled.
    child
        .wait_with_output()
        .map_err(|e| format!("cannot read docker's answer: {e}"))
}
