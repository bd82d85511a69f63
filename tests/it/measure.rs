//! Measurements: tests that print figures rather than check behaviour. They need the swarm
//! and are always listed as ignored; run them with `--run-ignored only` (nextest) or
//! `--ignored` (libtest). The `measure::` prefix tells them apart, in a listing, from tests
//! skipped for want of a swarm.

use std::time::{Duration, Instant};

use ccci::docker::teardown;
use ccci::event::Recorder;
use ccci::sys::process::Cmd;

use crate::support::sandbox::runner;
use crate::support::stack::{Stack, Timed, swarm, unhealthy_compose, wait};

crate::tests! {
    measurement: teardown_timing,
}

/// Measures teardown against a graceful `docker stack rm` that waits for the containers to
/// go, for a one-service stack whose main process ignores SIGTERM. Run with
/// `cargo nextest run --run-ignored only -E 'test(/^measure::/)' --no-capture` (about 15 s).
fn teardown_timing() {
    let swarm = swarm();
    let compose = unhealthy_compose()
        .replace("echo probe says no; exit 1", "true")
        .replace("bad", "app");

    let graceful = Stack::new();
    let since = graceful.deploy(&compose);
    wait(&swarm, &graceful, since, &Recorder::default()).expect("ready");
    let started = Instant::now();
    let out = runner()
        .output(&Cmd::new("docker").args(["stack", "rm", &graceful.name]))
        .unwrap();
    assert!(out.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while teardown::remaining(&runner(), &graceful.name)
        .unwrap()
        .iter()
        .any(|r| r.starts_with("container "))
    {
        assert!(
            Instant::now() < deadline,
            "containers still there after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let graceful_took = started.elapsed();

    let fast = Stack::new();
    let since = fast.deploy(&compose);
    wait(&swarm, &fast, since, &Recorder::default()).expect("ready");
    let steps = Timed::default();
    let outcome = teardown::teardown(
        &runner().with_budget(Duration::from_secs(90)),
        &fast.target(),
        &steps,
    );
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    for (at, event) in steps.0.lock().unwrap().iter() {
        println!("{at:>6.2}s {}", event.to_line());
    }
    println!(
        "graceful stack rm + containers gone: {:.2}s; ccci teardown (everything gone): {:.2}s",
        graceful_took.as_secs_f64(),
        outcome.elapsed.as_secs_f64()
    );
    assert!(outcome.elapsed < graceful_took);
}
