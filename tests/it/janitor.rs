//! J1–J9: the janitor against real env files in a temporary abra home, real lock files held by
//! helper processes, and real stacks on this machine's swarm.
//!
//! Each test uses its own domain zone, so its sweeps only ever see its own apps: other tests
//! (and other ccci runs) deploy onto the same swarm at the same time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ccci::config::Config;
use ccci::docker::api::{Engine, Kind};
use ccci::docker::teardown::{self, Target};
use ccci::event::{Event, EventSink, Recorder};
use ccci::janitor::{self, Action, Summary, SweepOptions};
use ccci::labels;
use ccci::naming;
use ccci::sys::cancel::Cancel;
use ccci::sys::lock::{self, AppLock, Holder};
use ccci::sys::process::Cmd;

use crate::support::ccci::Ccci;
use crate::support::helper::Scratch;
use crate::support::proc::{self as support, Reaper, wait_file};
use crate::support::sandbox::runner;
use crate::support::swarm::IMAGE;

crate::tests! {
    swarm: j1_orphan_is_reaped_exactly_once_and_its_lock_file_unlinked,
    swarm: j2_app_of_a_live_run_is_never_reaped_and_the_skip_is_logged,
    swarm: j3_run_waiting_for_a_domain_starts_after_the_reap_on_a_clean_slate,
    swarm: j4_second_janitor_skips_an_orphan_the_first_is_reaping,
    swarm: j4_janitor_that_listed_an_orphan_another_reaped_does_not_reap_it_again,
    swarm: j5_app_without_any_lock_file_is_reaped_at_once,
    swarm: j5_stack_without_env_file_or_domain_label_is_reaped_by_its_stack_name,
    swarm: j5_stack_without_domain_label_follows_its_lock_file,
    local: j6_lock_held_past_the_leak_threshold_is_flagged_with_its_holder_not_stolen,
    local: j7_warm_apps_are_never_probed_and_get_no_lock_file,
    local: j8_directory_in_place_of_a_lock_file_is_skipped_and_logged,
    local: j8_missing_lock_directory_is_skipped_and_logged_nothing_reaped,
    local: j8_corrupt_lock_file_is_skipped_not_reaped_not_rewritten,
    swarm: j8_unreadable_env_file_is_skipped_and_logged,
    local: j8_swarm_that_cannot_be_asked_means_nothing_is_reaped,
    swarm: j9_nothing_created_after_the_sweep_started_is_reaped,
    swarm: j9_stack_deployed_after_the_sweep_started_is_left_for_the_next_sweep,
    swarm: j9_containers_swarm_restarts_after_the_sweep_started_do_not_make_an_orphan_new,
    swarm: j10_app_of_another_setup_is_never_a_candidate,
    local: j10_env_file_of_another_setups_run_that_has_not_deployed_is_left_alone,
    swarm: j11_kept_app_is_left_until_its_keep_deadline_then_reaped,
    swarm: dry_run_reports_the_orphan_and_changes_nothing,
    local: hand_made_apps_and_other_zones_are_not_candidates,
    swarm: stale_lock_file_of_a_run_killed_before_deploying_is_removed_live_and_foreign_kept,
    swarm: sigterm_stops_the_janitor_between_apps_after_finishing_the_reap_under_way,
}

/// A temporary abra home and lock dir, under a zone of this test's own.
struct Host {
    scratch: Scratch,
    config: Config,
}

impl Host {
    fn new(yaml: &str) -> Self {
        let scratch = Scratch::new();
        let zone = format!("{}.ccci.test", support::unique("z"));
        let abra = scratch.dir.path().join("abra");
        std::fs::create_dir_all(abra.join("servers/default")).unwrap();
        let env = [
            ("HOME", scratch.dir.path().to_str().unwrap()),
            ("ABRA_DIR", abra.to_str().unwrap()),
            ("CCCI_APP_LOCK_DIR", scratch.locks.to_str().unwrap()),
            (
                "CCCI_RUNS_DIR",
                scratch.dir.path().join("runs").to_str().unwrap(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text = format!("domain_zone: {zone}\nteardown_budget: 90s\n{yaml}");
        let (config, warnings) = Config::from_yaml(&text, &env).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        Host { scratch, config }
    }

    fn domain(&self) -> String {
        naming::test_domain(
            "busybox",
            "c0ffee",
            &support::unique("run"),
            &self.config.domain_zone,
        )
    }

    /// An app env file as a run of this setup writes it (with its setup mark).
    fn env_file(&self, domain: &str) -> PathBuf {
        let path = self.config.env_file(domain);
        let setup = labels::setup_id(&self.config.lock_dir);
        std::fs::write(
            &path,
            format!("TYPE=busybox\nDOMAIN={domain}\nCCCI_SETUP={setup}\n"),
        )
        .unwrap();
        path
    }

    /// The labels a run of this setup puts on its resources, besides its run id.
    fn marks(&self) -> Vec<(String, String)> {
        vec![(
            labels::SETUP.to_string(),
            labels::setup_id(&self.config.lock_dir),
        )]
    }

    fn lock_file(&self, domain: &str) -> PathBuf {
        self.config.lock_file(domain)
    }

    fn sweep(&self, opts: &SweepOptions) -> (Summary, Recorder) {
        let events = Recorder::default();
        let summary = janitor::sweep(&self.config, &runner(), opts, &events);
        (summary, events)
    }

    fn sweep_now(&self) -> (Summary, Recorder) {
        self.sweep(&SweepOptions::now(false))
    }

    /// A `hold` helper holding `domain`'s lock, as a live run would.
    fn hold(&self, reaper: &mut Reaper, name: &str, domain: &str, extra: &[(&str, &str)]) -> i32 {
        let mut cmd = self.scratch.holder(name, domain, &format!("run-{name}"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let pid = reaper.spawn(cmd);
        wait_file(&self.scratch.file(&format!("{name}.ready")));
        pid
    }
}

fn notices(events: &Recorder) -> Vec<String> {
    events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Notice { message } => Some(message),
            _ => None,
        })
        .collect()
}

fn only_detail(summary: &Summary) -> &janitor::Detail {
    assert_eq!(summary.details.len(), 1, "{:#?}", summary.details);
    &summary.details[0]
}

/// A stack labelled like ccci's overlay labels a run's resources; torn down when dropped,
/// whatever the test did.
struct Deployed {
    stack: String,
    domain: String,
    _dir: tempfile::TempDir,
}

impl Deployed {
    /// `extra`: more labels, e.g. the setup mark every run puts on its resources.
    fn new(domain: &str, with_domain_label: bool, extra: &[(String, String)]) -> Self {
        let stack = naming::stack_name(domain);
        let dir = tempfile::tempdir().unwrap();
        let run_id = support::unique("run");
        let deadline = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let mut labels = format!(
            "ccci.run-id: \"{run_id}\"\n        ccci.deadline: \"{deadline}\"\n        ccci.recipe: busybox\n"
        );
        if with_domain_label {
            labels.push_str(&format!("        ccci.domain: \"{domain}\"\n"));
        }
        for (key, value) in extra {
            labels.push_str(&format!("        {key}: \"{value}\"\n"));
        }
        let compose = format!(
            r#"version: "3.8"
services:
  app:
    image: {IMAGE}
    command: ["sleep", "3600"]
    labels:
        {labels}
    deploy:
      labels:
        {labels}
    volumes:
      - data:/data
    secrets:
      - pw
volumes:
  data:
    labels:
        {labels}
secrets:
  pw:
    file: ./pw
    name: {stack}_pw_v1
    labels:
        {labels}
networks:
  default:
    labels:
        {labels}
"#
        );
        std::fs::write(dir.path().join("compose.yml"), compose).unwrap();
        std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
        let deployed = Deployed {
            stack: stack.clone(),
            domain: domain.to_string(),
            _dir: dir,
        };
        runner()
            .run(
                &Cmd::new("docker")
                    .args(["stack", "deploy", "-c", "compose.yml", &stack])
                    .current_dir(deployed._dir.path())
                    .timeout(Duration::from_secs(60)),
            )
            .unwrap_or_else(|e| panic!("deploy {stack}: {e}"));
        // The volume appears when the task's container starts: wait for it, so a reap has
        // every kind of resource to remove.
        let engine = Engine::from_env().unwrap();
        let namespace = format!("com.docker.stack.namespace={stack}");
        support::wait_until_for(
            Duration::from_secs(90),
            &format!("the volume of {stack}"),
            &mut || {
                engine
                    .list(Kind::Volume, &[namespace.as_str()])
                    .is_ok_and(|v| !v.is_empty())
            },
        );
        deployed
    }

    fn remaining(&self) -> Vec<String> {
        teardown::remaining(&runner(), &self.stack).unwrap()
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let target = Target {
            domain: self.domain.clone(),
            stack: self.stack.clone(),
            env_file: None,
        };
        let budget = runner().with_budget(Duration::from_secs(120));
        teardown::teardown(&budget, &target, &ccci::event::Discard);
    }
}

fn assert_reaped(host: &Host, app: &Deployed, env_file: Option<&PathBuf>) {
    assert_eq!(app.remaining(), Vec::<String>::new(), "left on the swarm");
    if let Some(env_file) = env_file {
        assert!(!env_file.exists(), "env file left behind");
    }
    assert!(
        !host.lock_file(&app.domain).exists(),
        "lock file not unlinked"
    );
}

fn j1_orphan_is_reaped_exactly_once_and_its_lock_file_unlinked() {
    let host = Host::new("");
    let mut reaper = Reaper::new();
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let app = Deployed::new(&domain, true, &host.marks());
    // The run that made it was SIGKILLed: its lock file stays, free.
    let pid = host.hold(&mut reaper, "dead", &domain, &[]);
    reaper.signal(pid, nix::sys::signal::Signal::SIGKILL);
    reaper.wait_exit(pid, support::WAIT);
    assert!(host.lock_file(&domain).exists());

    let (summary, events) = host.sweep_now();
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_eq!(summary.errors, 0, "{summary:#?}");
    let detail = only_detail(&summary);
    assert_eq!(detail.action, Action::Reaped);
    assert_eq!(detail.domain.as_deref(), Some(domain.as_str()));
    assert_reaped(&host, &app, Some(&env_file));
    assert!(
        events
            .events()
            .iter()
            .any(|e| matches!(e, Event::TeardownStep { .. })),
        "teardown reported nothing"
    );
    assert!(
        summary
            .line()
            .starts_with("janitor: reaped 1, skipped 0 live")
    );

    // Exactly once: the next sweep has nothing to do.
    let (again, _) = host.sweep_now();
    assert_eq!((again.reaped, again.errors), (0, 0), "{again:#?}");
    assert!(again.details.is_empty(), "{again:#?}");
}

fn j2_app_of_a_live_run_is_never_reaped_and_the_skip_is_logged() {
    let host = Host::new("");
    let mut reaper = Reaper::new();
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let app = Deployed::new(&domain, true, &host.marks());
    let pid = host.hold(&mut reaper, "live", &domain, &[]);

    let (summary, events) = host.sweep_now();
    assert_eq!(
        (summary.reaped, summary.skipped_live),
        (0, 1),
        "{summary:#?}"
    );
    let detail = only_detail(&summary);
    assert_eq!(detail.action, Action::SkippedLive);
    assert_eq!(detail.holder.as_ref().unwrap().pid, pid as u32);
    assert_eq!(detail.holder.as_ref().unwrap().run_id, "run-live");
    assert!(
        notices(&events)
            .iter()
            .any(|n| n.contains(&domain) && n.contains("skipped")),
        "{:?}",
        notices(&events)
    );
    assert!(!app.remaining().is_empty());
    assert!(env_file.exists());
    // The holder still holds: the probe took nothing from it.
    assert!(
        AppLock::try_acquire(
            &host.config.lock_dir,
            &domain,
            &Holder::this_process("probe")
        )
        .unwrap()
        .is_none()
    );

    // Once the run is gone, the next sweep reaps it.
    std::fs::write(host.scratch.file("live.release"), "").unwrap();
    reaper.wait_exit(pid, support::WAIT);
    let (summary, _) = host.sweep_now();
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_reaped(&host, &app, Some(&env_file));
}

/// Runs `action` once, the first time an event matches.
struct OnEvent<F: Fn() + Send + Sync> {
    matches: fn(&Event) -> bool,
    action: Mutex<Option<F>>,
    events: Recorder,
}

impl<F: Fn() + Send + Sync> OnEvent<F> {
    fn new(matches: fn(&Event) -> bool, action: F) -> Self {
        OnEvent {
            matches,
            action: Mutex::new(Some(action)),
            events: Recorder::default(),
        }
    }
}

impl<F: Fn() + Send + Sync> EventSink for OnEvent<F> {
    fn event(&self, event: &Event) {
        self.events.event(event);
        if (self.matches)(event)
            && let Some(action) = self.action.lock().unwrap().take()
        {
            action();
        }
    }
}

fn reap_started(e: &Event) -> bool {
    matches!(e, Event::StepStarted { step, .. } if step == "reap")
}

fn candidates_listed(e: &Event) -> bool {
    matches!(e, Event::StepStarted { step, .. } if step == "janitor")
}

fn j3_run_waiting_for_a_domain_starts_after_the_reap_on_a_clean_slate() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let app = Deployed::new(&domain, true, &host.marks());
    let seen = Arc::new(Mutex::new(None));
    let waiter = Arc::new(Mutex::new(None));
    // When the reap starts, a new run asks for the same domain and blocks.
    let sink = {
        let (locks, domain, stack, env_file, seen, waiter) = (
            host.config.lock_dir.clone(),
            domain.clone(),
            app.stack.clone(),
            env_file.clone(),
            seen.clone(),
            waiter.clone(),
        );
        OnEvent::new(reap_started, move || {
            let (locks, domain, stack, env_file, seen) = (
                locks.clone(),
                domain.clone(),
                stack.clone(),
                env_file.clone(),
                seen.clone(),
            );
            let handle = std::thread::spawn(move || {
                let holder = Holder::this_process("new-run");
                let lock = AppLock::acquire(&locks, &domain, &holder, &Cancel::new()).unwrap();
                // What the new run finds once it holds the lock (`remaining` gives the node's
                // copy of a network the reap removed its moment to go, as the new run's deploy
                // would: see `teardown::clear_networks`).
                let left = teardown::remaining(&runner(), &stack).unwrap();
                let listed = lock::list(&locks).unwrap();
                *seen.lock().unwrap() =
                    Some((left, env_file.exists(), lock.path().exists(), listed));
                lock
            });
            *waiter.lock().unwrap() = Some(handle);
        })
    };
    let summary = janitor::sweep(&host.config, &runner(), &SweepOptions::now(false), &sink);
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    let handle = waiter.lock().unwrap().take().expect("the reap started");
    let lock = handle.join().unwrap();
    let (left, env_exists, lock_exists, listed) = seen.lock().unwrap().take().unwrap();
    assert_eq!(left, Vec::<String>::new(), "the new run found leftovers");
    assert!(!env_exists, "the new run found the old env file");
    assert!(lock_exists, "the new run holds an unlinked lock file");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].held);
    assert_eq!(listed[0].holder.as_ref().unwrap().run_id, "new-run");
    drop(lock);
}

fn j4_second_janitor_skips_an_orphan_the_first_is_reaping() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let app = Deployed::new(&domain, true, &host.marks());
    let second = Arc::new(Mutex::new(None));
    // The second janitor sweeps, start to end, while the first holds the lock and reaps.
    let sink = {
        let (config, second) = (host.config.clone(), second.clone());
        OnEvent::new(reap_started, move || {
            let events = Recorder::default();
            let summary = janitor::sweep(&config, &runner(), &SweepOptions::now(false), &events);
            *second.lock().unwrap() = Some(summary);
        })
    };
    let first = janitor::sweep(&host.config, &runner(), &SweepOptions::now(false), &sink);
    let second = second
        .lock()
        .unwrap()
        .take()
        .expect("the second janitor ran");
    assert_eq!(first.reaped, 1, "{first:#?}");
    assert_eq!((second.reaped, second.skipped_live), (0, 1), "{second:#?}");
    let holder = only_detail(&second).holder.clone().unwrap();
    assert!(holder.run_id.starts_with("janitor-"), "{holder:?}");
    assert_reaped(&host, &app, Some(&env_file));
}

fn j4_janitor_that_listed_an_orphan_another_reaped_does_not_reap_it_again() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let app = Deployed::new(&domain, true, &host.marks());
    let first = Arc::new(Mutex::new(None));
    // The second janitor has listed its candidates; the first then sweeps start to end
    // before the second probes any lock.
    let sink = {
        let (config, first) = (host.config.clone(), first.clone());
        OnEvent::new(candidates_listed, move || {
            let summary = janitor::sweep(
                &config,
                &runner(),
                &SweepOptions::now(false),
                &Recorder::default(),
            );
            *first.lock().unwrap() = Some(summary);
        })
    };
    let second = janitor::sweep(&host.config, &runner(), &SweepOptions::now(false), &sink);
    let first = first.lock().unwrap().take().expect("the first janitor ran");
    assert_eq!(first.reaped, 1, "{first:#?}");
    assert_eq!((second.reaped, second.errors), (0, 0), "{second:#?}");
    assert_eq!(only_detail(&second).action, Action::AlreadyGone);
    assert_reaped(&host, &app, Some(&env_file));
}

fn j5_app_without_any_lock_file_is_reaped_at_once() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let app = Deployed::new(&domain, true, &host.marks());
    assert_eq!(std::fs::read_dir(&host.config.lock_dir).unwrap().count(), 0);
    let (summary, _) = host.sweep_now();
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_reaped(&host, &app, Some(&env_file));
}

fn j5_stack_without_env_file_or_domain_label_is_reaped_by_its_stack_name() {
    let host = Host::new("");
    let domain = host.domain();
    let app = Deployed::new(&domain, false, &host.marks());
    let (summary, _) = host.sweep_now();
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_eq!(
        only_detail(&summary).domain.as_deref(),
        Some(domain.as_str())
    );
    assert_reaped(&host, &app, None);
}

fn j5_stack_without_domain_label_follows_its_lock_file() {
    let host = Host::new("");
    let mut reaper = Reaper::new();
    let domain = host.domain();
    let app = Deployed::new(&domain, false, &host.marks());
    host.hold(&mut reaper, "live", &domain, &[]);
    let (summary, _) = host.sweep_now();
    assert_eq!(
        (summary.reaped, summary.skipped_live),
        (0, 1),
        "{summary:#?}"
    );
    assert!(!app.remaining().is_empty());
}

fn j6_lock_held_past_the_leak_threshold_is_flagged_with_its_holder_not_stolen() {
    let host = Host::new("leak_threshold: 120m\n");
    let mut reaper = Reaper::new();
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let three_hours_ago =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(3 * 3600))
            .to_string();
    let pid = host.hold(
        &mut reaper,
        "old",
        &domain,
        &[("CCCI_IT_STARTED_AT", three_hours_ago.as_str())],
    );
    let (summary, events) = host.sweep_now();
    assert_eq!(
        (summary.reaped, summary.flagged_leaked, summary.skipped_live),
        (0, 1, 0),
        "{summary:#?}"
    );
    let detail = summary
        .details
        .iter()
        .find(|d| d.action == Action::FlaggedLeaked)
        .unwrap();
    let holder = detail.holder.as_ref().unwrap();
    assert_eq!(
        (holder.run_id.as_str(), holder.pid),
        ("run-old", pid as u32)
    );
    assert!(detail.held_secs.unwrap() >= 3 * 3600);
    assert!(
        notices(&events)
            .iter()
            .any(|n| n.contains("possible leaked run") && n.contains("run-old")),
        "{:?}",
        notices(&events)
    );
    assert!(summary.needs_attention());
    // Not stolen: still held by the old run, its app untouched.
    assert!(env_file.exists());
    assert!(
        AppLock::try_acquire(
            &host.config.lock_dir,
            &domain,
            &Holder::this_process("probe")
        )
        .unwrap()
        .is_none()
    );
    let text = std::fs::read_to_string(host.lock_file(&domain)).unwrap();
    assert!(text.contains("run-old"), "{text}");
}

fn j7_warm_apps_are_never_probed_and_get_no_lock_file() {
    let host = Host::new("");
    let domain = host.domain();
    let host = {
        let mut host = host;
        host.config.warm_apps = vec![domain.clone()];
        host
    };
    let env_file = host.env_file(&domain);
    for dry_run in [true, false] {
        let (summary, _) = host.sweep(&SweepOptions::now(dry_run));
        assert_eq!((summary.reaped, summary.would_reap), (0, 0), "{summary:#?}");
        let warm = summary
            .details
            .iter()
            .find(|d| d.domain.as_deref() == Some(domain.as_str()))
            .unwrap();
        assert_eq!(warm.action, Action::SkippedWarm);
        assert!(!host.lock_file(&domain).exists(), "a lock file was created");
        assert!(env_file.exists());
    }
}

fn j8_directory_in_place_of_a_lock_file_is_skipped_and_logged() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    std::fs::create_dir(host.lock_file(&domain)).unwrap();
    let (summary, events) = host.sweep_now();
    assert_eq!(summary.reaped, 0);
    let detail = summary
        .details
        .iter()
        .find(|d| d.domain.as_deref() == Some(domain.as_str()))
        .unwrap();
    assert_eq!(detail.action, Action::Error);
    assert!(detail.reason.contains("directory"), "{}", detail.reason);
    assert!(notices(&events).iter().any(|n| n.contains("directory")));
    assert!(summary.errors >= 1);
    assert!(env_file.exists());
    assert!(host.lock_file(&domain).is_dir());
}

fn j8_missing_lock_directory_is_skipped_and_logged_nothing_reaped() {
    let mut host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    host.config.lock_dir = host.scratch.dir.path().join("no-such-locks");
    let (summary, events) = host.sweep_now();
    assert_eq!((summary.reaped, summary.errors), (0, 1), "{summary:#?}");
    assert!(
        notices(&events)
            .iter()
            .any(|n| n.contains("lock directory"))
    );
    assert!(env_file.exists());
    assert!(
        !host.config.lock_dir.exists(),
        "the janitor created the lock dir"
    );
    // Unreadable is no better than missing: a file where the directory should be.
    std::fs::write(&host.config.lock_dir, "").unwrap();
    let (summary, _) = host.sweep_now();
    assert_eq!((summary.reaped, summary.errors), (0, 1), "{summary:#?}");
}

fn j8_corrupt_lock_file_is_skipped_not_reaped_not_rewritten() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    std::fs::write(host.lock_file(&domain), "{not json").unwrap();
    let (summary, events) = host.sweep_now();
    assert_eq!(summary.reaped, 0, "{summary:#?}");
    let detail = summary
        .details
        .iter()
        .find(|d| d.domain.as_deref() == Some(domain.as_str()))
        .unwrap();
    assert_eq!(detail.action, Action::Error, "{summary:#?}");
    assert!(!notices(&events).is_empty());
    assert!(env_file.exists());
    assert_eq!(
        std::fs::read_to_string(host.lock_file(&domain)).unwrap(),
        "{not json"
    );
    // `ccci locks` shows it rather than failing.
    let listed = lock::list(&host.config.lock_dir).unwrap();
    assert!(listed[0].corrupt && listed[0].holder.is_none());
}

fn j8_unreadable_env_file_is_skipped_and_logged() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.config.env_file(&domain);
    std::fs::write(&env_file, b"TYPE=\xff\xfe\n").unwrap();
    let (summary, _) = host.sweep_now();
    let detail = only_detail(&summary);
    assert_eq!(detail.action, Action::Error, "{summary:#?}");
    assert!(detail.reason.contains("env file"), "{}", detail.reason);
    assert!(env_file.exists());
}

fn j8_swarm_that_cannot_be_asked_means_nothing_is_reaped() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let dead = Engine::at(host.scratch.dir.path().join("no-docker.sock"));
    let events = Recorder::default();
    let summary = janitor::sweep_with(
        &host.config,
        &runner(),
        Ok(&dead),
        &SweepOptions::now(false),
        &events,
    );
    assert_eq!(summary.reaped, 0, "{summary:#?}");
    assert!(summary.errors >= 1);
    assert!(
        notices(&events).iter().any(|n| n.contains("swarm")),
        "{:?}",
        notices(&events)
    );
    assert!(env_file.exists());
    assert!(!host.lock_file(&domain).exists(), "a lock file was created");
}

fn j9_nothing_created_after_the_sweep_started_is_reaped() {
    // An env file newer than the sweep's start.
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let opts = SweepOptions {
        dry_run: false,
        now: SystemTime::now() - Duration::from_secs(60),
    };
    let (summary, _) = host.sweep(&opts);
    assert_eq!(
        only_detail(&summary).action,
        Action::SkippedNew,
        "{summary:#?}"
    );
    assert_eq!(summary.reaped, 0);
    assert!(env_file.exists());
    assert!(!host.lock_file(&domain).exists());
}

fn j9_stack_deployed_after_the_sweep_started_is_left_for_the_next_sweep() {
    let host = Host::new("");
    let domain = host.domain();
    let started = SystemTime::now() - Duration::from_secs(1);
    let app = Deployed::new(&domain, true, &host.marks());
    let opts = SweepOptions {
        dry_run: false,
        now: started,
    };
    let (summary, _) = host.sweep(&opts);
    assert_eq!(
        only_detail(&summary).action,
        Action::SkippedNew,
        "{summary:#?}"
    );
    assert!(!app.remaining().is_empty());
    let (summary, _) = host.sweep_now();
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_reaped(&host, &app, None);
}

fn dry_run_reports_the_orphan_and_changes_nothing() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let app = Deployed::new(&domain, true, &host.marks());
    let (summary, _) = host.sweep(&SweepOptions::now(true));
    assert_eq!((summary.would_reap, summary.reaped), (1, 0), "{summary:#?}");
    assert_eq!(only_detail(&summary).action, Action::WouldReap);
    assert!(
        summary
            .line()
            .starts_with("janitor (dry run): would reap 1")
    );
    assert!(env_file.exists());
    assert!(!host.lock_file(&domain).exists());
    assert!(!app.remaining().is_empty());
    let (summary, _) = host.sweep_now();
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_reaped(&host, &app, Some(&env_file));
}

fn hand_made_apps_and_other_zones_are_not_candidates() {
    let host = Host::new("");
    for name in ["myblog.example.org", "bus-abcdef.other.zone"] {
        std::fs::write(host.config.env_file(name), "TYPE=x\n").unwrap();
    }
    let (summary, _) = host.sweep(&SweepOptions::now(true));
    assert!(
        summary.details.iter().all(|d| d.domain.is_none()),
        "{summary:#?}"
    );
}

fn stale_lock_file_of_a_run_killed_before_deploying_is_removed_live_and_foreign_kept() {
    let host = Host::new("");
    let mut reaper = Reaper::new();
    // A run killed after taking its lock, before creating anything: only the file remains.
    let stale = host.domain();
    drop(
        AppLock::try_acquire(
            &host.config.lock_dir,
            &stale,
            &Holder::this_process("killed"),
        )
        .unwrap()
        .unwrap(),
    );
    assert!(host.lock_file(&stale).exists());
    // A live run that has not deployed yet, and a lock of a domain outside the zone.
    let live = host.domain();
    let pid = host.hold(&mut reaper, "early", &live, &[]);
    let foreign = host.config.lock_dir.join("myblog.example.org.lock");
    std::fs::write(&foreign, "").unwrap();

    let (summary, events) = host.sweep_now();
    assert!(!host.lock_file(&stale).exists(), "{summary:#?}");
    let detail = summary
        .details
        .iter()
        .find(|d| d.domain.as_deref() == Some(stale.as_str()))
        .unwrap();
    assert_eq!(detail.action, Action::AlreadyGone, "{summary:#?}");
    assert!(
        detail.reason.contains("stale lock file"),
        "{}",
        detail.reason
    );
    assert_eq!(
        (summary.skipped_live, summary.errors),
        (1, 0),
        "{summary:#?}"
    );
    assert!(host.lock_file(&live).exists());
    assert!(foreign.exists());
    assert!(
        notices(&events)
            .iter()
            .any(|n| n.contains("stale lock file"))
    );

    std::fs::write(host.scratch.file("early.release"), "").unwrap();
    reaper.wait_exit(pid, support::WAIT);
}

fn sigterm_stops_the_janitor_between_apps_after_finishing_the_reap_under_way() {
    let host = Host::new("");
    let mut domains = [host.domain(), host.domain()];
    // The sweep takes candidates in stack-name order.
    domains.sort_by_key(|d| naming::stack_name(d));
    let apps: Vec<Deployed> = domains
        .iter()
        .map(|d| Deployed::new(d, true, &host.marks()))
        .collect();
    let env_files: Vec<PathBuf> = domains.iter().map(|d| host.env_file(d)).collect();
    let config = host.scratch.file("config.yml");
    std::fs::write(
        &config,
        format!("domain_zone: {}\n", host.config.domain_zone),
    )
    .unwrap();

    let mut janitor = Ccci::new()
        .args(["--config", config.to_str().unwrap(), "janitor"])
        .env("ABRA_DIR", &host.config.abra_dir)
        .env("CCCI_APP_LOCK_DIR", &host.config.lock_dir)
        .env("CCCI_RUNS_DIR", &host.config.runs_dir)
        .spawn();
    janitor.wait_for_line(&format!("reap: {}", domains[0]), 1);
    janitor.signal(nix::sys::signal::Signal::SIGTERM);
    let out = janitor.wait();
    assert_eq!(out.code(), Some(143), "{out}");
    let (_, rest) = out
        .stderr
        .split_once(&format!("reap: {}", domains[0]))
        .unwrap();
    assert!(rest.contains("sweep interrupted by SIGTERM"), "{out}");
    // The reap under way finished; the next app was not started on.
    assert_reaped(&host, &apps[0], Some(&env_files[0]));
    assert!(!apps[1].remaining().is_empty());
    assert!(env_files[1].exists());
}

fn j9_containers_swarm_restarts_after_the_sweep_started_do_not_make_an_orphan_new() {
    let host = Host::new("");
    let domain = host.domain();
    let app = Deployed::new(&domain, true, &host.marks());
    let engine = Engine::from_env().unwrap();
    let namespace = format!("com.docker.stack.namespace={}", app.stack);
    let containers = || engine.list(Kind::Container, &[namespace.as_str()]).unwrap();
    let before = containers().len();
    // The sweep starts now; the task swarm starts next is created in a later whole second
    // (container times have one-second resolution).
    let sweep_started = SystemTime::now();
    let next_second = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            sweep_started
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 1,
        );
    support::wait_until("the next whole second", || SystemTime::now() >= next_second);
    runner()
        .run(
            &Cmd::new("docker")
                .args(["service", "update", "--force", "--detach"])
                .arg(format!("{}_app", app.stack))
                .timeout(Duration::from_secs(60)),
        )
        .unwrap();
    support::wait_until_for(
        Duration::from_secs(60),
        "swarm to start a new container",
        &mut || containers().len() > before,
    );
    let (summary, _) = host.sweep(&SweepOptions {
        dry_run: false,
        now: sweep_started,
    });
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_reaped(&host, &app, None);
}

/// The setup mark of another ccci setup's lock directory on this host.
fn other_setup() -> String {
    labels::setup_id(std::path::Path::new("/run/another-ccci-setup/locks"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn j10_app_of_another_setup_is_never_a_candidate() {
    let host = Host::new("");
    let domain = host.domain();
    // The other setup's run is live: its lock is held in its own lock directory, so this
    // janitor's directory has no lock file for it (which J5 alone would call an orphan).
    let env_file = host.config.env_file(&domain);
    std::fs::write(
        &env_file,
        format!("TYPE=busybox\nCCCI_SETUP={}\n", other_setup()),
    )
    .unwrap();
    let app = Deployed::new(&domain, true, &[(labels::SETUP.to_string(), other_setup())]);
    let (summary, _) = host.sweep_now();
    assert_eq!(summary.reaped, 0, "{summary:#?}");
    let detail = only_detail(&summary);
    assert_eq!(detail.action, Action::SkippedForeign, "{detail:#?}");
    assert!(detail.reason.contains(&other_setup()), "{}", detail.reason);
    assert!(
        !app.remaining().is_empty(),
        "another setup's app was touched"
    );
    assert!(env_file.exists());
    assert!(
        !host.lock_file(&domain).exists(),
        "no lock file may be made for it"
    );
}

fn j10_env_file_of_another_setups_run_that_has_not_deployed_is_left_alone() {
    let host = Host::new("");
    let marked = host.domain();
    let unmarked = host.domain();
    std::fs::write(
        host.config.env_file(&marked),
        format!("TYPE=busybox\nCCCI_SETUP={}\n", other_setup()),
    )
    .unwrap();
    // Created by `app new` a moment before its run writes the setup mark, with the run's lock
    // held in the other setup's directory.
    std::fs::write(host.config.env_file(&unmarked), "TYPE=busybox\n").unwrap();
    let (summary, _) = host.sweep_now();
    assert_eq!(summary.reaped + summary.errors, 0, "{summary:#?}");
    assert_eq!(summary.details.len(), 2, "{summary:#?}");
    for detail in &summary.details {
        assert_eq!(detail.action, Action::SkippedForeign, "{detail:#?}");
    }
    assert!(host.config.env_file(&marked).exists());
    assert!(host.config.env_file(&unmarked).exists());
}

fn j11_kept_app_is_left_until_its_keep_deadline_then_reaped() {
    let host = Host::new("");
    let domain = host.domain();
    let env_file = host.env_file(&domain);
    let until = unix_now() + 3600;
    let mut marks = host.marks();
    marks.push((labels::KEEP_UNTIL.to_string(), until.to_string()));
    let app = Deployed::new(&domain, true, &marks);
    let (summary, _) = host.sweep_now();
    let detail = only_detail(&summary);
    assert_eq!(detail.action, Action::SkippedKept, "{detail:#?}");
    assert_eq!(detail.keep_until, Some(until));
    assert!(
        detail
            .reason
            .contains(&format!("ccci teardown --domain {domain}")),
        "{}",
        detail.reason
    );
    assert!(!app.remaining().is_empty());
    // Two hours later the keep is over: an orphan like any other.
    let later = SweepOptions {
        dry_run: false,
        now: SystemTime::now() + Duration::from_secs(7200),
    };
    let (summary, _) = host.sweep(&later);
    assert_eq!(summary.reaped, 1, "{summary:#?}");
    assert_reaped(&host, &app, Some(&env_file));
}
