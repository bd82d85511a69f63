//! Kill-anywhere proof: the real `ccci test` on the bundled demo recipe, on the real swarm,
//! interrupted at points spread across its whole lifecycle (fetch, deploy, readiness, upgrade,
//! backup, restore, teardown), three ways:
//!
//! - SIGKILL of the run itself, at every point; then one `ccci janitor` pass must leave nothing.
//! - SIGKILL of the run's parent: the run tears itself down through its parent-death signal
//!   and exits 143; nothing is left and no janitor runs.
//! - SIGTERM of the run: teardown, exit 143, nothing left, no janitor.
//!
//! A point is a line of the run's own output (its plain, timestamped CI log): the signal is sent
//! the moment that line is read, so every kill lands where the run is, not where a sleep
//! guessed it would be. Each test has a domain zone of its own, so it counts only its own runs'
//! leftovers while other tests deploy on the same swarm; the counts are printed.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ccci::docker::api::{Engine, Kind};
use ccci::docker::teardown::NETWORK_LINGER;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::support::sandbox::{self, walk};

crate::tests! {
    swarm: sigkill_anywhere_then_one_janitor_pass_leaves_nothing,
    swarm: sigkill_of_the_parent_anywhere_tears_down_through_parent_death,
    swarm: sigterm_anywhere_tears_down_and_exits_143,
}

/// Where a run is interrupted: the `nth` line of its output that contains `line`.
struct Point {
    phase: &'static str,
    line: &'static str,
    nth: usize,
}

const fn at(phase: &'static str, line: &'static str, nth: usize) -> Point {
    Point { phase, line, nth }
}

/// Every point, in the order a passing demo run reaches them.
const POINTS: &[Point] = &[
    at("fetch", "fetch: ", 1),
    at("fetch", "fetch done", 1),
    at("fetch", ": recipe demo on ", 1),
    at("deploy", "stage install started", 1),
    at("deploy", "new app: ", 1),
    at("deploy", "overlay: ", 1),
    at("deploy", "deploy: ", 1),
    at("deploy", "deploy done", 1),
    at("readiness", "wait: readiness", 1),
    at("readiness", "waiting: ", 1),
    at("readiness", "test probe ok", 1),
    at("readiness", "test install.d/", 1),
    at("upgrade", "stage upgrade started", 1),
    at("upgrade", "write data before the upgrade", 1),
    at("upgrade", "deploy: ", 2),
    at("upgrade", "wait: readiness", 2),
    at("upgrade", "update updating", 1),
    at("upgrade", "the change is what runs", 1),
    at("backup", "stage backup started", 1),
    at("backup", "test write marker", 1),
    at("backup", "test back up", 1),
    at("restore", "test mutate marker", 1),
    at("restore", "test restore", 1),
    at("restore", "wait: readiness", 3),
    at("teardown", "verdict: ", 1),
    at("teardown", "teardown: stack", 1),
    at("teardown", "teardown: containers", 1),
    at("teardown", "teardown: volumes", 1),
];

/// The points the parent-death and SIGTERM proofs use: one or more in every phase.
const SPREAD: &[usize] = &[0, 3, 6, 9, 13, 16, 20, 22, 24, 26];

/// How a run is interrupted.
#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    Kill,
    KillParent,
    Term,
}

/// How long one run may take to reach its point, or to end after the signal.
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// Runs at once: enough to keep the swarm busy, few enough for a 2-core host.
const PARALLEL: usize = 3;

/// One isolated ccci setup (see `support::sandbox`) with the demo recipe's repository, and a
/// domain zone no other test uses.
struct Sandbox {
    sb: sandbox::Sandbox,
    zone: String,
    repo: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Self {
        let zone = format!("{}.ccci.test", crate::support::proc::unique(name));
        let sb = sandbox::Sandbox::new(&format!("domain_zone: {zone}\n"));
        let repo = sb.demo_repo();
        Sandbox { sb, zone, repo }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.sb.path(name)
    }

    fn test_args(&self, run_id: &str) -> Vec<String> {
        [
            "test",
            "demo",
            "--source",
            self.repo.to_str().unwrap(),
            "--stage",
            "all",
            "--run-id",
            run_id,
        ]
        .map(String::from)
        .to_vec()
    }

    /// What this sandbox's runs left behind once the node has dropped its copies of the networks
    /// the swarm removed (teardown does not wait for those): while networks are all that is
    /// listed, it looks again, for at most [`NETWORK_LINGER`].
    fn settled_leftovers(&self) -> Leftovers {
        let deadline = Instant::now() + NETWORK_LINGER;
        loop {
            let left = self.leftovers();
            let only_networks = left.total() == left.networks.len();
            if left.networks.is_empty() || !only_networks || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What this sandbox's runs left behind, by kind.
    fn leftovers(&self) -> Leftovers {
        let engine = Engine::from_env().unwrap();
        // Stack names are domains with dots as underscores; every resource name starts with one.
        let marker = self.zone.replace('.', "_");
        let named = |kind: Kind| -> Vec<String> {
            engine
                .list(kind, &[])
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| n.contains(&marker))
                .collect()
        };
        let stacks: std::collections::BTreeSet<String> = engine
            .list(Kind::Service, &[])
            .unwrap()
            .into_iter()
            .filter_map(|s| {
                s.label("com.docker.stack.namespace")
                    .filter(|n| n.contains(&marker))
                    .map(str::to_owned)
            })
            .collect();
        let files = |dir: PathBuf, suffix: &str| -> Vec<String> {
            walk(&dir)
                .into_iter()
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .map(|p| p.display().to_string())
                .collect()
        };
        Leftovers {
            stacks: stacks.into_iter().collect(),
            services: named(Kind::Service),
            containers: named(Kind::Container),
            volumes: named(Kind::Volume),
            secrets: named(Kind::Secret),
            configs: named(Kind::Config),
            networks: named(Kind::Network),
            env_files: files(self.path("abra/servers"), ".env"),
            lock_files: files(self.path("locks"), ".lock"),
        }
    }
}

#[derive(Debug, Default)]
struct Leftovers {
    stacks: Vec<String>,
    services: Vec<String>,
    containers: Vec<String>,
    volumes: Vec<String>,
    secrets: Vec<String>,
    configs: Vec<String>,
    networks: Vec<String>,
    env_files: Vec<String>,
    lock_files: Vec<String>,
}

impl Leftovers {
    fn counts(&self) -> [(&'static str, usize); 9] {
        [
            ("stacks", self.stacks.len()),
            ("services", self.services.len()),
            ("containers", self.containers.len()),
            ("volumes", self.volumes.len()),
            ("secrets", self.secrets.len()),
            ("configs", self.configs.len()),
            ("networks", self.networks.len()),
            ("env files", self.env_files.len()),
            ("lock files", self.lock_files.len()),
        ]
    }

    fn total(&self) -> usize {
        self.counts().iter().map(|(_, n)| n).sum()
    }

    fn line(&self) -> String {
        self.counts()
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How one interrupted run went.
struct Interrupted {
    point: usize,
    /// The run's exit code, or `None` when a signal ended it.
    code: Option<i32>,
    signal: Option<i32>,
    lines: Vec<String>,
}

impl Interrupted {
    /// The last teardown steps take a millisecond or two: a run may finish them, and exit 0
    /// with nothing left, before a signal sent at one of their lines lands. Everywhere else
    /// the signal must land.
    fn finished_first(&self) -> bool {
        POINTS[self.point].phase == "teardown" && self.code == Some(0)
    }
}

/// Starts one run, interrupts it at `POINTS[point]` the way `how` says, and waits for it to end.
fn interrupt(sb: &Sandbox, point: usize, how: How) -> Interrupted {
    let run_id = format!("{}-{point:02}", format!("{how:?}").to_lowercase());
    let mut ccci = sb.sb.ccci().args(sb.test_args(&run_id)).timeout(RUN_LIMIT);
    if how == How::KillParent {
        ccci = ccci.under_shell_parent();
    }
    let mut run = ccci.spawn();
    let target = &POINTS[point];
    run.wait_for_line(target.line, target.nth);
    match how {
        How::Kill => run.signal(Signal::SIGKILL),
        How::Term => run.signal(Signal::SIGTERM),
        // The run re-parents to this (subreaper) process, which reads its exit status.
        How::KillParent => run.kill_parent(),
    }
    let out = run.wait();
    use std::os::unix::process::ExitStatusExt;
    Interrupted {
        point,
        code: out.status.code(),
        signal: out.status.signal(),
        lines: out.stderr.lines().map(str::to_owned).collect(),
    }
}

/// Interrupts a run at each of `points`, `PARALLEL` at a time.
fn interrupt_all(sb: &Sandbox, points: &[usize], how: How) -> Vec<Interrupted> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&point) = points.get(i) else { break };
                    let result = interrupt(sb, point, how);
                    done.lock().unwrap().push(result);
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|r| r.point);
    done
}

/// Reaps every process re-parented to this one (children a killed run left running, such as
/// a `docker` call in flight), so none is still changing the swarm when the janitor sweeps.
fn reap_orphans() {
    let until = Instant::now() + RUN_LIMIT;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(nix::errno::Errno::ECHILD) => return,
            Ok(WaitStatus::StillAlive) => {
                assert!(Instant::now() < until, "orphaned children still running");
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {}
        }
    }
}

fn report(how: How, runs: &[Interrupted]) {
    println!("{how:?} at {} points:", runs.len());
    for run in runs {
        let p = &POINTS[run.point];
        let domain = run
            .lines
            .iter()
            .find_map(|l| l.split(": recipe demo on ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("(no domain yet)");
        println!(
            "  {:<10} `{}` #{} → exit {:?} signal {:?}  {domain}",
            p.phase, p.line, p.nth, run.code, run.signal
        );
    }
}

fn sigkill_anywhere_then_one_janitor_pass_leaves_nothing() {
    let sb = Sandbox::new("kill");
    let all: Vec<usize> = (0..POINTS.len()).collect();
    let runs = interrupt_all(&sb, &all, How::Kill);
    reap_orphans();
    report(How::Kill, &runs);
    for run in runs.iter().filter(|r| !r.finished_first()) {
        assert_eq!(run.signal, Some(9), "{}", run.lines.join("\n"));
    }
    let before = sb.leftovers();
    println!("left by the killed runs: {}", before.line());
    assert!(
        before.total() > 0,
        "no kill left anything: the points are too late"
    );

    let out = sb.sb.ccci().args(["janitor", "--json"]).run();
    let summary: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("janitor --json: {e}: {out}"));
    println!(
        "one janitor pass: reaped {}, errors {}, {:.2}s",
        summary["reaped"], summary["errors"], summary["elapsed"]
    );
    assert_eq!(out.code(), Some(0), "{summary:#}");
    assert_eq!(summary["errors"], 0, "{summary:#}");

    let after = sb.settled_leftovers();
    println!("after one janitor pass: {}", after.line());
    assert_eq!(after.total(), 0, "{after:#?}\n{summary:#}");
}

/// The parent-death and SIGTERM proofs: exit 143 after teardown, nothing left, no janitor.
fn interrupted_runs_tear_themselves_down(how: How) {
    let sb = Sandbox::new(if how == How::Term { "term" } else { "parent" });
    let runs = interrupt_all(&sb, SPREAD, how);
    reap_orphans();
    report(how, &runs);
    for run in runs.iter().filter(|r| !r.finished_first()) {
        assert_eq!(
            (run.code, run.signal),
            (Some(143), None),
            "{}",
            run.lines.join("\n")
        );
    }
    // Runs that got as far as deploying say they tore down.
    let torn_down = runs
        .iter()
        .filter(|r| r.lines.iter().any(|l| l.contains("teardown: stack")))
        .count();
    println!("{torn_down} of {} runs tore a deployment down", runs.len());
    assert!(torn_down >= SPREAD.len() / 2, "too few runs had deployed");
    let left = sb.settled_leftovers();
    println!("left without a janitor: {}", left.line());
    assert_eq!(left.total(), 0, "{left:#?}");
}

fn sigkill_of_the_parent_anywhere_tears_down_through_parent_death() {
    interrupted_runs_tear_themselves_down(How::KillParent);
}

fn sigterm_anywhere_tears_down_and_exits_143() {
    interrupted_runs_tear_themselves_down(How::Term);
}
