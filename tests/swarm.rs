//! Real-swarm tests of the swarm inspector (readiness, fail-fast, diagnostics, exec) and of
//! teardown. They deploy small stacks of the locally built `ccci-busybox:1` image onto the
//! single-node swarm of this machine, each under its own stack name, and tear each one down
//! even when the test fails.
//!
//! Without docker these tests fail with a message saying so, unless `CCCI_SKIP_SWARM_TESTS=1`
//! asks to skip them. Nothing here waits with a blind sleep: waits are for conditions or
//! engine events, bounded by deadlines.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ccci::docker::teardown::{self, Target};
use ccci::docker::{NotReady, ReadyOptions, Swarm};
use ccci::event::{Event, Recorder};
use ccci::sys::cancel::Cancel;
use ccci::sys::process::{Cmd, Runner};

const IMAGE: &str = "ccci-busybox:1";
const READY_TIMEOUT: Duration = Duration::from_secs(90);

fn runner() -> Runner {
    Runner::new(Cancel::new())
}

/// `None` when the swarm tests are to be skipped; panics when docker or the swarm is missing,
/// so a machine without them never passes these tests silently.
fn swarm() -> Option<Swarm> {
    if std::env::var("CCCI_SKIP_SWARM_TESTS").as_deref() == Ok("1") {
        return None;
    }
    let swarm = Swarm::new(runner());
    if let Err(e) = swarm.preflight() {
        panic!(
            "the swarm tests need docker with an active swarm: {e} \
             (run `bash scripts/setup-host.sh`, or set CCCI_SKIP_SWARM_TESTS=1 to skip them)"
        );
    }
    match swarm.image_present(IMAGE) {
        Ok(true) => {}
        Ok(false) => panic!(
            "the swarm tests need the local image {IMAGE} (run `bash scripts/setup-host.sh`)"
        ),
        Err(e) => panic!("cannot inspect image {IMAGE}: {e}"),
    }
    Some(swarm)
}

/// A deployed stack that is torn down when dropped, whatever the test did.
struct Stack {
    name: String,
    dir: tempfile::TempDir,
}

impl Stack {
    /// A unique stack name: tests run in parallel, and other runs may use the swarm too.
    fn unique_name() -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "ccci-t-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        )
    }

    fn new() -> Stack {
        Stack {
            name: Stack::unique_name(),
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// Writes `compose` and deploys it; returns the time taken just before deploying, which
    /// is what readiness takes as the start of this deploy.
    fn deploy(&self, compose: &str) -> SystemTime {
        let file = self.dir.path().join("compose.yml");
        std::fs::write(&file, compose).expect("write compose file");
        std::fs::write(self.dir.path().join("pw.txt"), "secret\n").expect("write secret file");
        let since = SystemTime::now();
        let out = runner()
            .output(
                &Cmd::new("docker")
                    .args(["stack", "deploy", "-c"])
                    .arg(&file)
                    .arg(&self.name)
                    .current_dir(self.dir.path())
                    .timeout(Duration::from_secs(60)),
            )
            .expect("run docker stack deploy");
        assert!(
            out.success(),
            "docker stack deploy {} failed: {}",
            self.name,
            out.stderr_str()
        );
        since
    }

    fn service(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    fn target(&self) -> Target {
        Target {
            domain: format!("{}.test", self.name),
            stack: self.name.clone(),
            env_file: None,
        }
    }

    fn teardown(&self) -> teardown::Outcome {
        teardown::teardown(
            &runner().with_budget(Duration::from_secs(90)),
            &self.target(),
            &Recorder::default(),
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let outcome = self.teardown();
        if !outcome.leftovers.is_empty() && !std::thread::panicking() {
            panic!("teardown of {} left {:?}", self.name, outcome.leftovers);
        }
    }
}

fn wait(swarm: &Swarm, stack: &Stack, since: SystemTime, sink: &Recorder) -> Result<(), NotReady> {
    swarm.wait_ready(
        &stack.name,
        &ReadyOptions {
            timeout: READY_TIMEOUT,
            since,
        },
        sink,
    )
}

/// A web server that is healthy at once, with a named volume.
fn healthy_compose() -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "echo app starting; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"]
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]
      interval: 1s
      start_period: 1s
      retries: 3
volumes:
  data:
"#
    )
}

/// A service whose healthcheck always fails, and whose main process ignores SIGTERM, so the
/// swarm's own kill would only come after the 10 s stop grace period.
fn unhealthy_compose() -> String {
    format!(
        r#"version: "3.8"
services:
  bad:
    image: {IMAGE}
    command: ["sh", "-c", "trap '' TERM; echo bad is starting; sleep 3600"]
    healthcheck:
      test: ["CMD", "sh", "-c", "echo probe says no; exit 1"]
      interval: 1s
      start_period: 1s
      retries: 1
"#
    )
}

fn missing_image_compose() -> &'static str {
    r#"version: "3.8"
services:
  ghost:
    image: ccci-nonexistent:9
    command: ["sleep", "3600"]
"#
}

#[test]
fn a_healthy_stack_becomes_ready_and_can_be_exec_ed_into() {
    let Some(swarm) = swarm() else { return };
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

    // The same through the engine's API: exit code, and stdout and stderr kept apart.
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
    assert!(
        missing.last_error_line().contains("no-such-command"),
        "{missing:?}"
    );
    let err = swarm
        .exec_short(&stack.name, "nosuch", &["true".into()])
        .unwrap_err();
    assert!(err.to_string().contains("no running container"), "{err}");
    assert!(swarm.image_present(IMAGE).unwrap());
    assert!(!swarm.image_present("ccci-nonexistent:9").unwrap());
}

#[test]
fn an_unhealthy_service_fails_fast_and_is_diagnosed() {
    let Some(swarm) = swarm() else { return };
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

#[test]
fn a_missing_image_fails_fast_with_no_such_image() {
    let Some(swarm) = swarm() else { return };
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

#[test]
fn failures_of_an_earlier_deploy_do_not_fail_the_next_one() {
    let Some(swarm) = swarm() else { return };
    let stack = Stack::new();
    let since = stack.deploy(missing_image_compose());
    wait(&swarm, &stack, since, &Recorder::default()).unwrap_err();
    // The same service, now with an image that exists: the rejected tasks stay in the
    // service's history, and must not be taken for failures of this deploy.
    let fixed = missing_image_compose().replace("ccci-nonexistent:9", IMAGE);
    let since = stack.deploy(&fixed);
    wait(&swarm, &stack, since, &Recorder::default()).expect("the fixed deploy becomes ready");
}

#[test]
fn a_cancelled_wait_is_interrupted() {
    let Some(_) = swarm() else { return };
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
            },
            &Recorder::default(),
        )
        .unwrap_err();
    assert_eq!(err, NotReady::Interrupted(15));
}

#[test]
fn a_short_timeout_says_what_it_waited_for() {
    let Some(swarm) = swarm() else { return };
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
            },
            &Recorder::default(),
        )
        .unwrap_err();
    let NotReady::Timeout { waiting_for, .. } = &err else {
        panic!("expected a timeout, got {err}");
    };
    assert!(waiting_for.starts_with("app "), "{waiting_for}");
}

/// A stack with a volume, a secret and a config from its compose file, a secret ccci made
/// itself with the stack's label, and a main process that ignores SIGTERM.
fn everything_compose() -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "trap '' TERM; touch /data/marker; sleep 3600"]
    volumes:
      - data:/data
    secrets:
      - pw
    configs:
      - source: conf
        target: /conf
volumes:
  data:
secrets:
  pw:
    file: ./pw.txt
configs:
  conf:
    file: ./pw.txt
"#
    )
}

fn create_labelled_secret(stack: &Stack) -> String {
    let name = format!("{}_made_by_ccci_v1", stack.name);
    let out = runner()
        .output(
            &Cmd::new("docker")
                .args(["secret", "create", "--label"])
                .arg(format!("com.docker.stack.namespace={}", stack.name))
                .arg(&name)
                .arg("-")
                .stdin_bytes("s3cret"),
        )
        .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    name
}

#[test]
fn teardown_removes_everything_fast_and_is_idempotent() {
    let Some(swarm) = swarm() else { return };
    let stack = Stack::new();
    let since = stack.deploy(&everything_compose());
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready");
    let own_secret = create_labelled_secret(&stack);
    let env_file = stack.dir.path().join("app.env");
    std::fs::write(&env_file, "TYPE=test\n").unwrap();
    let before = teardown::remaining(&runner(), &stack.name).unwrap();
    for expected in [
        format!("service {}_app", stack.name),
        format!("volume {}_data", stack.name),
        format!("secret {own_secret}"),
        format!("network {}_default", stack.name),
    ] {
        assert!(before.contains(&expected), "{expected} not in {before:?}");
    }

    let events = Recorder::default();
    let target = Target {
        env_file: Some(env_file.clone()),
        ..stack.target()
    };
    let budget = runner().with_budget(Duration::from_secs(90));
    let outcome = teardown::teardown(&budget, &target, &events);
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    assert_eq!(
        teardown::remaining(&runner(), &stack.name).unwrap(),
        Vec::<String>::new()
    );
    assert!(!env_file.exists());
    for expected in [
        format!("volume {}_data", stack.name),
        format!("secret {own_secret}"),
    ] {
        assert!(
            outcome.removed.contains(&expected),
            "{expected} not in {:?}",
            outcome.removed
        );
    }
    // The container ignores SIGTERM: a graceful stop would take its 10 s grace period.
    assert!(
        outcome.elapsed < Duration::from_secs(8),
        "teardown took {:?}",
        outcome.elapsed
    );
    assert!(
        events
            .events()
            .iter()
            .all(|e| matches!(e, Event::TeardownStep { ok: true, .. }))
    );

    let again = teardown::teardown(&budget, &target, &Recorder::default());
    assert!(again.leftovers.is_empty(), "{:?}", again.leftovers);
    assert!(again.removed.is_empty(), "{:?}", again.removed);
}

#[test]
fn teardown_of_a_stack_that_never_existed_is_clean() {
    let Some(_) = swarm() else { return };
    let target = Target {
        domain: "never.test".into(),
        stack: Stack::unique_name(),
        env_file: Some(PathBuf::from("/nonexistent/ccci/never.env")),
    };
    let outcome = teardown::teardown(
        &runner().with_budget(Duration::from_secs(30)),
        &target,
        &Recorder::default(),
    );
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    assert!(outcome.removed.is_empty(), "{:?}", outcome.removed);
}

#[test]
fn teardown_out_of_budget_reports_leftovers_instead_of_failing() {
    let Some(_) = swarm() else { return };
    let stack = Stack::new();
    stack.deploy(&healthy_compose());
    // A budget already spent: nothing can run, and teardown must say so, not hang or panic.
    let spent = runner().with_budget(Duration::ZERO);
    let events = Recorder::default();
    let started = Instant::now();
    let outcome = teardown::teardown(&spent, &stack.target(), &events);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!outcome.leftovers.is_empty());
    assert!(
        events
            .events()
            .iter()
            .any(|e| matches!(e, Event::TeardownStep { ok: false, .. })),
        "{:?}",
        events.events()
    );
    // The guard's teardown, with a real budget, then cleans up.
}

/// Measures teardown against a graceful `docker stack rm` that waits for the containers to
/// go, for a one-service stack whose main process ignores SIGTERM. Run with
/// `cargo test --test swarm -- --ignored --nocapture teardown_timing`.
#[test]
#[ignore = "a measurement, not a check; takes about 15 s"]
fn teardown_timing() {
    let Some(swarm) = swarm() else { return };
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

/// A sink that notes when each event came, for the timing measurement.
#[derive(Default)]
struct Timed(
    std::sync::Mutex<Vec<(f64, Event)>>,
    std::sync::OnceLock<Instant>,
);

impl ccci::event::EventSink for Timed {
    fn event(&self, event: &Event) {
        let start = *self.1.get_or_init(Instant::now);
        self.0
            .lock()
            .unwrap()
            .push((start.elapsed().as_secs_f64(), event.clone()));
    }
}

/// `docker stack rm` removed a stack's networks while its containers were still attached; the
/// node then kept each network listed until its own shutdown delay (about 2 s) had passed, and
/// every teardown waited that out. Teardown now removes the networks itself once the
/// containers are gone, and they go at once.
#[test]
fn regression_teardown_removed_networks_while_their_containers_were_attached() {
    let Some(swarm) = swarm() else { return };
    let compose = unhealthy_compose()
        .replace("echo probe says no; exit 1", "true")
        .replace("bad", "app");
    let stack = Stack::new();
    let since = stack.deploy(&compose);
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready");
    let steps = Timed::default();
    let outcome = teardown::teardown(
        &runner().with_budget(Duration::from_secs(90)),
        &stack.target(),
        &steps,
    );
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    let steps = steps.0.lock().unwrap();
    let at = |name: &str| {
        steps
            .iter()
            .find_map(|(at, e)| match e {
                Event::TeardownStep { what, detail, .. } if what == name => {
                    Some((*at, detail.clone()))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no `{name}` step in {steps:?}"))
    };
    let (containers_gone, _) = at("containers");
    let (networks_gone, networks) = at("networks");
    let network = format!("network {}_default", stack.name);
    assert_eq!(
        networks, network,
        "teardown did not remove the network itself"
    );
    let stack_step = at(&format!("stack {}", stack.name)).1;
    assert!(!stack_step.contains("network"), "{stack_step}");
    let waited = networks_gone - containers_gone;
    assert!(
        waited < 2.0,
        "the network went {waited:.2} s after the containers"
    );
}

/// The swarm turns a task `running` some time after its container's `health_status: healthy`,
/// and no event says so: the look that the health event wakes can still see the task
/// `starting`. The wait then slept until its next once-a-second look. It now looks again
/// every 50 ms for a while after each event, so readiness follows health closely.
#[test]
fn regression_readiness_saw_a_healthy_stack_only_at_its_next_poll() {
    let Some(swarm) = swarm() else { return };
    let stack = Stack::new();
    let since = stack.deploy(&healthy_compose());
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready");
    let ready_at = SystemTime::now();
    // The engine's own record of when the container turned healthy, in its nanoseconds.
    let until = ready_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let start = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = runner()
        .output(
            &Cmd::new("docker")
                .args(["events", "--since", &start.to_string(), "--until"])
                .arg(until.to_string())
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
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let behind = Duration::from_nanos((ready_ns.saturating_sub(healthy_ns)) as u64);
    assert!(
        behind < Duration::from_millis(700),
        "ready {behind:?} after the container turned healthy"
    );
}
