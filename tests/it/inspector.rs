//! The swarm inspector on the real swarm: readiness, fail-fast on unhealthy or rejected tasks,
//! diagnostics, exec, and the engine API's listings. Each test deploys small stacks of the
//! local `ccci-busybox:1` image, each under its own stack name, torn down even when the test
//! fails. Nothing waits with a blind sleep: waits are for conditions or engine events, bounded
//! by deadlines.

use std::time::{Duration, Instant};

use ccci::docker::api::{API_VERSION, Engine, Kind};
use ccci::docker::{NotReady, ReadyOptions, Swarm};
use ccci::event::{Event, Recorder};
use ccci::sys::cancel::Cancel;
use ccci::sys::process::Runner;

use crate::support::stack::{
    READY_TIMEOUT, Stack, healthy_compose, missing_image_compose, swarm, unhealthy_compose, wait,
};
use crate::support::swarm::IMAGE;

crate::tests! {
    swarm: regression_readiness_saw_a_healthy_stack_only_at_its_next_poll,
    swarm: a_healthy_stack_becomes_ready_and_can_be_exec_ed_into,
    swarm: an_unhealthy_service_fails_fast_and_is_diagnosed,
    swarm: a_missing_image_fails_fast_with_no_such_image,
    swarm: failures_of_an_earlier_deploy_do_not_fail_the_next_one,
    swarm: a_cancelled_wait_is_interrupted,
    swarm: a_short_timeout_says_what_it_waited_for,
    swarm: lists_from_the_real_engine,
}

fn a_healthy_stack_becomes_ready_and_can_be_exec_ed_into() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(&healthy_compose());
    let events = Recorder::default();
    let started = Instant::now();
    wait(&swarm, &stack, since, &events).expect("the healthy stack becomes ready");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        events.events().iter().any(|e| matches!(
            e,
            Event::Waiting {
                ready: 1,
                total: 1,
                ..
            }
        )),
        "{:?}",
        events.events()
    );

    let services = swarm.services(&stack.name).unwrap();
    assert_eq!(services.len(), 1);
    let app = &services[0];
    assert_eq!(app.name, stack.service("app"));
    assert_eq!(app.short_name, "app");
    assert_eq!((app.running, app.desired), (1, 1));
    assert_eq!(
        app.labels.get("com.docker.stack.namespace"),
        Some(&stack.name)
    );

    let out = swarm
        .exec(
            &stack.name,
            "app",
            &["cat".to_string()],
            Some(b"fed through stdin".to_vec()),
        )
        .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "fed through stdin");

    // A short command through the engine's API: exit code, and stdout and stderr kept apart.
    let out = swarm
        .exec_short(
            &stack.name,
            "app",
            &[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
        )
        .unwrap();
    assert_eq!(
        (out.code, out.stdout_str(), out.stderr_str()),
        (Some(3), "out\n".to_string(), "err\n".to_string())
    );
    let missing = swarm
        .exec_short(&stack.name, "app", &["no-such-command".into()])
        .unwrap();
    assert!(!missing.success(), "{missing:?}");
    let err = swarm
        .exec_short(&stack.name, "nosuch", &["true".into()])
        .unwrap_err();
    assert!(err.to_string().contains("no running container"), "{err}");

    let backup = stack.dir.path().join("www.tar");
    let out = swarm
        .exec_with(
            &stack.name,
            "app",
            &[
                "tar".into(),
                "-C".into(),
                "/www".into(),
                "-c".into(),
                ".".into(),
            ],
            ccci::docker::ExecIo {
                stdout_file: Some(backup.clone()),
                timeout: Some(Duration::from_secs(30)),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    assert!(std::fs::metadata(&backup).unwrap().len() > 0);

    let container = swarm.running_container(&stack.name, "app").unwrap();
    assert!(container.is_ready());
    let volume = container
        .mounts
        .iter()
        .find(|m| m.destination == "/data")
        .expect("the data volume is mounted");
    assert_eq!(volume.kind, "volume");
    assert_eq!(volume.name, format!("{}_data", stack.name));

    let err = swarm
        .exec(&stack.name, "nosuch", &["true".into()], None)
        .unwrap_err();
    assert!(err.to_string().contains("no running container"), "{err}");
    assert!(swarm.image_present(IMAGE).unwrap());
    assert!(!swarm.image_present("ccci-nonexistent:9").unwrap());
}

fn an_unhealthy_service_fails_fast_and_is_diagnosed() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(&unhealthy_compose());
    let events = Recorder::default();
    let started = Instant::now();
    let err = wait(&swarm, &stack, since, &events).unwrap_err();
    let took = started.elapsed();
    println!("unhealthy service failed after {took:?}: {err}");
    let NotReady::TaskFailed { service, error, .. } = &err else {
        panic!("expected a task failure, got {err}");
    };
    assert_eq!(service, "bad");
    assert!(
        error.contains("unhealthy") || error.contains("137"),
        "{error}"
    );
    assert!(error.contains("probe says no"), "{error}");
    // The swarm alone would report it only after the 10 s stop grace period.
    assert!(took < Duration::from_secs(9), "failing took {took:?}");
    assert!(
        events.events().iter().any(|e| matches!(
            e,
            Event::TaskFailed { service, .. } if service == "bad"
        )),
        "{:?}",
        events.events()
    );

    let dir = stack.dir.path().join("diagnostics");
    let diagnosis = swarm.diagnose(&stack.name, &dir);
    let top = diagnosis.top_reason.clone().expect("a top reason");
    assert!(top.starts_with("bad: "), "{top}");
    assert!(top.contains("unhealthy"), "{top}");
    let text = std::fs::read_to_string(dir.join("bad.txt")).unwrap();
    assert!(text.contains("unhealthy"), "{text}");
    assert!(text.contains("probe says no"), "{text}");
    assert!(text.contains("bad is starting"), "{text}");
}

fn a_missing_image_fails_fast_with_no_such_image() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(missing_image_compose());
    let started = Instant::now();
    let err = wait(&swarm, &stack, since, &Recorder::default()).unwrap_err();
    let took = started.elapsed();
    println!("missing image failed after {took:?}: {err}");
    let NotReady::TaskFailed {
        service,
        error,
        exit_code,
    } = &err
    else {
        panic!("expected a task failure, got {err}");
    };
    assert_eq!(service, "ghost");
    assert!(error.contains("No such image"), "{error}");
    assert_eq!(*exit_code, None);
    assert!(took < Duration::from_secs(10), "failing took {took:?}");
    assert_eq!(err.to_string(), format!("ghost: {error}"));

    let dir = stack.dir.path().join("diagnostics");
    let diagnosis = swarm.diagnose(&stack.name, &dir);
    assert_eq!(
        diagnosis.top_reason.as_deref(),
        Some("ghost: No such image: ccci-nonexistent:9")
    );
    let text = std::fs::read_to_string(dir.join("ghost.txt")).unwrap();
    assert!(text.contains("rejected"), "{text}");
}

fn failures_of_an_earlier_deploy_do_not_fail_the_next_one() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(missing_image_compose());
    wait(&swarm, &stack, since, &Recorder::default()).unwrap_err();
    // The same service, now with an image that exists: the rejected tasks stay in the
    // service's history, and must not be taken for failures of this deploy.
    let fixed = missing_image_compose().replace("ccci-nonexistent:9", IMAGE);
    let since = stack.deploy(&fixed);
    wait(&swarm, &stack, since, &Recorder::default()).expect("the fixed deploy becomes ready");
}

fn a_cancelled_wait_is_interrupted() {
    let stack = Stack::new();
    let since = stack.deploy(&healthy_compose());
    let cancel = Cancel::new();
    cancel.trip(15);
    let swarm = Swarm::new(Runner::new(cancel));
    let err = swarm
        .wait_ready(
            &stack.name,
            &ReadyOptions {
                timeout: READY_TIMEOUT,
                since,
                deployed: true,
            },
            &Recorder::default(),
        )
        .unwrap_err();
    assert_eq!(err, NotReady::Interrupted(15));
}

fn a_short_timeout_says_what_it_waited_for() {
    let swarm = swarm();
    let stack = Stack::new();
    // Healthy only after a while: the wait gives up first.
    let slow = healthy_compose()
        .replace("start_period: 1s", "start_period: 60s")
        .replace(
            r#"["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]"#,
            r#"["CMD", "false"]"#,
        );
    let since = stack.deploy(&slow);
    let err = swarm
        .wait_ready(
            &stack.name,
            &ReadyOptions {
                timeout: Duration::from_secs(3),
                since,
                deployed: true,
            },
            &Recorder::default(),
        )
        .unwrap_err();
    let NotReady::Timeout { waiting_for, .. } = &err else {
        panic!("expected a timeout, got {err}");
    };
    assert!(waiting_for.starts_with("app "), "{waiting_for}");
}

/// Moved from the unit tests of `docker::api`: it needs the real engine.
fn lists_from_the_real_engine() {
    let engine = Engine::from_env().unwrap();
    let info = engine
        .get_json(&format!("/{API_VERSION}/info"))
        .unwrap_or_else(|e| panic!("docker engine unavailable: {e}"));
    assert!(info.get("ServerVersion").is_some());
    // Every list endpoint answers in the shape we read, whatever is on the host.
    for kind in Kind::ALL {
        engine
            .list(kind, &["ccci.test-label-nobody-uses"])
            .unwrap_or_else(|e| panic!("listing {}: {e}", kind.as_str()));
    }
    let networks = engine.list(Kind::Network, &[]).unwrap();
    assert!(
        networks
            .iter()
            .any(|n| n.name == "bridge" && n.created.is_some())
    );
}

/// The swarm turns a task `running` some time after its container's `health_status: healthy`,
/// and no event says so: the look that the health event wakes can still see the task
/// `starting`. The wait then slept until its next once-a-second look. It now looks again
/// every 50 ms for a while after each event, so readiness follows health closely.
fn regression_readiness_saw_a_healthy_stack_only_at_its_next_poll() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(&healthy_compose());
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready");
    let ready_at = std::time::SystemTime::now();
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // The engine's own record of when the container turned healthy, in its nanoseconds.
    let out = Runner::new(Cancel::new())
        .output(
            &ccci::sys::process::Cmd::new("docker")
                .args(["events", "--since", &secs(since).to_string(), "--until"])
                .arg((secs(ready_at) + 1).to_string())
                .args(["--filter", "type=container", "--filter"])
                .arg("event=health_status")
                .args(["--filter"])
                .arg(format!("label=com.docker.stack.namespace={}", stack.name))
                .args(["--format", "{{.TimeNano}} {{.Status}}"])
                .timeout(Duration::from_secs(30)),
        )
        .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    let healthy_ns: u128 = out
        .stdout_str()
        .lines()
        .find(|l| l.ends_with("health_status: healthy"))
        .and_then(|l| l.split(' ').next())
        .and_then(|ns| ns.parse().ok())
        .unwrap_or_else(|| panic!("no healthy event: {}", out.stdout_str()));
    let ready_ns = ready_at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let behind = Duration::from_nanos(ready_ns.saturating_sub(healthy_ns) as u64);
    assert!(
        behind < Duration::from_millis(700),
        "ready {behind:?} after the container turned healthy"
    );
}
