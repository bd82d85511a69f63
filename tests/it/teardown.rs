//! Teardown on the real swarm: everything of a stack removed fast (containers killed, not
//! stopped gracefully), idempotent, and bounded by its budget.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ccci::docker::api::{Engine, Kind};
use ccci::docker::teardown::{self, Target};
use ccci::event::{Event, Recorder};
use ccci::sys::process::Cmd;

use crate::support::sandbox::runner;
use crate::support::stack::{Stack, Timed, healthy_compose, swarm, wait};
use crate::support::swarm::IMAGE;

crate::tests! {
    swarm: regression_teardown_removed_networks_while_their_containers_were_attached,
    swarm: regression_teardown_waited_for_the_nodes_copy_of_a_network_the_swarm_had_removed,
    swarm: a_stack_deployed_again_right_after_its_teardown_deploys,
    swarm: teardown_removes_everything_fast_and_is_idempotent,
    swarm: teardown_of_a_stack_that_never_existed_is_clean,
    swarm: teardown_out_of_budget_reports_leftovers_instead_of_failing,
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

/// One service whose main process ignores SIGTERM, and nothing else.
fn term_ignoring_compose() -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "trap '' TERM; sleep 3600"]
"#
    )
}

/// `docker stack rm` of `stack`: the swarm removes its service and its network at once, while
/// the container (which ignores SIGTERM) stays attached for its stop grace period. The node then
/// lists its own copy of the network for seconds after the container is gone.
fn stack_rm(stack: &Stack) {
    let out = runner()
        .output(&Cmd::new("docker").args(["stack", "rm", &stack.name]))
        .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
}

/// The networks the node lists for `stack`, as `network <name>`.
fn listed_networks(stack: &Stack) -> Vec<String> {
    let label = format!("com.docker.stack.namespace={}", stack.name);
    Engine::from_env()
        .unwrap()
        .list(Kind::Network, &[&label])
        .unwrap()
        .into_iter()
        .map(|n| format!("network {}", n.name))
        .collect()
}

/// When `steps` saw the teardown step `name`, in seconds, and its detail.
fn step_at(steps: &Timed, name: &str) -> (f64, String) {
    let steps = steps.0.lock().unwrap();
    steps
        .iter()
        .find_map(|(at, e)| match e {
            Event::TeardownStep { what, detail, .. } if what == name => Some((*at, detail.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no `{name}` step in {steps:?}"))
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

fn teardown_removes_everything_fast_and_is_idempotent() {
    let swarm = swarm();
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

fn teardown_of_a_stack_that_never_existed_is_clean() {
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

fn teardown_out_of_budget_reports_leftovers_instead_of_failing() {
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

/// `docker stack rm` removed a stack's networks while its containers were still attached; the
/// node then kept each network listed until its own shutdown delay (about 2 s) had passed, and
/// every teardown waited that out. Teardown now removes the networks itself once the
/// containers are gone, and they go at once.
fn regression_teardown_removed_networks_while_their_containers_were_attached() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(&healthy_compose());
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready");
    let steps = Timed::default();
    let outcome = teardown::teardown(
        &runner().with_budget(Duration::from_secs(90)),
        &stack.target(),
        &steps,
    );
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    let (containers_gone, _) = step_at(&steps, "containers");
    let (networks_gone, networks) = step_at(&steps, "networks");
    assert_eq!(
        networks,
        format!("network {}_default", stack.name),
        "teardown did not remove the network itself"
    );
    let waited = networks_gone - containers_gone;
    assert!(
        waited < 2.0,
        "the network went {waited:.2} s after the containers"
    );
}

/// Teardown waited until the node stopped listing a network, though the swarm had removed it
/// already: a few tenths of a second after every teardown, and seconds when `docker stack rm`
/// had removed it while its containers were attached (the node answers its removal with "not
/// found" until it drops its copy). Teardown now counts such a network as removed, and
/// [`teardown::remaining`] waits for the copy to go instead.
fn regression_teardown_waited_for_the_nodes_copy_of_a_network_the_swarm_had_removed() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(&term_ignoring_compose());
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready");
    stack_rm(&stack);
    let steps = Timed::default();
    let outcome = teardown::teardown(
        &runner().with_budget(Duration::from_secs(90)),
        &stack.target(),
        &steps,
    );
    let listed = listed_networks(&stack);
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    let (containers_gone, _) = step_at(&steps, "containers");
    let (networks_done, _) = step_at(&steps, "networks");
    let waited = networks_done - containers_gone;
    assert!(
        waited < 1.0,
        "the networks step took {waited:.2} s after the containers were gone"
    );
    // What makes this test mean anything: the node still lists its copy of the network.
    assert_eq!(
        listed,
        vec![format!("network {}_default", stack.name)],
        "the node no longer listed the network when teardown returned: teardown waited for it"
    );
    // The copy goes by itself, within what `remaining` gives it.
    assert_eq!(
        teardown::remaining(&runner(), &stack.name).unwrap(),
        Vec::<String>::new()
    );
}

/// `docker stack deploy` takes a network the node still lists for one it can use: a stack
/// deployed again right after its teardown failed with "network … not found" while the node
/// still listed its copy of the removed network. A run's fresh deploy first waits for it with
/// [`teardown::clear_networks`].
fn a_stack_deployed_again_right_after_its_teardown_deploys() {
    let swarm = swarm();
    let stack = Stack::new();
    let since = stack.deploy(&term_ignoring_compose());
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready");
    // With `docker stack rm` first, the node keeps its copy for seconds, not tenths.
    stack_rm(&stack);
    let outcome = stack.teardown();
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    let cleared = teardown::clear_networks(&runner(), &stack.name).unwrap();
    assert_eq!(
        cleared,
        vec![format!("network {}_default", stack.name)],
        "the node no longer listed the network: this test saw nothing to wait for"
    );
    assert_eq!(listed_networks(&stack), Vec::<String>::new());
    let since = stack.deploy(&term_ignoring_compose());
    wait(&swarm, &stack, since, &Recorder::default()).expect("ready again");
    // A stack with services is not fresh: its networks are in use, and left alone.
    assert_eq!(
        teardown::clear_networks(&runner(), &stack.name).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        listed_networks(&stack),
        vec![format!("network {}_default", stack.name)]
    );
}
