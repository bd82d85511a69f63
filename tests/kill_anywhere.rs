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

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ccci::docker::api::{Engine, Kind};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

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

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `false` when swarm tests are to be skipped; panics when the swarm is missing, so a machine
/// without one never passes silently.
fn need_swarm() -> bool {
    if std::env::var("CCCI_SKIP_SWARM_TESTS").as_deref() == Ok("1") {
        return false;
    }
    let engine = Engine::from_env().expect("docker engine");
    let info = engine
        .get_json("/v1.41/info")
        .expect("these tests need a running docker engine: run scripts/setup-host.sh");
    assert_eq!(
        info["Swarm"]["LocalNodeState"].as_str(),
        Some("active"),
        "these tests need an active swarm: run scripts/setup-host.sh"
    );
    true
}

/// One isolated ccci setup: runs dir, lock dir, abra home, the demo recipe's repository, and a
/// domain zone no other test uses.
struct Sandbox {
    dir: tempfile::TempDir,
    zone: String,
    repo: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Self {
        // Everything a killed run leaves re-parents to this process, which reaps it.
        nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
        let dir = tempfile::tempdir().unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let zone = format!("{name}{}x{nanos:x}.ccci.test", std::process::id());
        std::fs::write(
            dir.path().join("config.yml"),
            format!("domain_zone: {zone}\n"),
        )
        .unwrap();
        let repo = dir.path().join("demo.git");
        let out = Command::new("bash")
            .arg(root().join("scripts/make-recipe-repo.sh"))
            .arg(root().join("recipes/demo"))
            .arg(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Sandbox { dir, zone, repo }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("CCCI_RUNS_DIR", self.path("runs"))
            .env("CCCI_APP_LOCK_DIR", self.path("locks"))
            .env("ABRA_DIR", self.path("abra"))
            .env("CCCI_CONFIG", self.path("config.yml"))
            .env("CI", "true")
            .env_remove("CCCI_SKIP_FETCH");
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

/// Files under `dir`, recursively (a missing directory has none).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
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

/// Starts one run, interrupts it at `POINTS[point]` the way `how` says, and waits for it to end.
fn interrupt(sb: &Sandbox, point: usize, how: How) -> Interrupted {
    let run_id = format!("{}-{point:02}", format!("{how:?}").to_lowercase());
    let ccci = env!("CARGO_BIN_EXE_ccci");
    let mut cmd = if how == How::KillParent {
        // A parent that is not ccci: bash forks ccci (more follows it, so it cannot exec it).
        let mut cmd = Command::new("bash");
        cmd.args(["-c", "\"$@\"; exit $?", "bash", ccci]);
        cmd
    } else {
        Command::new(ccci)
    };
    cmd.args(sb.test_args(&run_id))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    sb.env(&mut cmd);
    let mut child = cmd.spawn().expect("start ccci");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(|l| l.ok())
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let target = &POINTS[point];
    let until = Instant::now() + RUN_LIMIT;
    let mut lines = Vec::new();
    let mut seen = 0;
    while seen < target.nth {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains(target.line) {
                    seen += 1;
                }
                lines.push(line);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "run {run_id} never reached `{}` #{} ({e}):\n{}",
                    target.line,
                    target.nth,
                    lines.join("\n")
                );
            }
        }
    }

    let pid = child.id() as i32;
    let ended = match how {
        How::Kill | How::Term => {
            let signal = if how == How::Kill {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            kill(Pid::from_raw(pid), signal).expect("signal the run");
            wait_child(&mut child, until)
        }
        How::KillParent => {
            let run = child_of(pid).expect("bash's ccci child");
            kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the parent");
            let _ = child.wait();
            // The run re-parents to this (subreaper) process.
            wait_pid(run, until)
        }
    };
    // The rest of its output, until the pipe closes (bounded: every writer has exited or is
    // about to).
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        lines.push(line);
    }
    Interrupted {
        point,
        code: ended.0,
        signal: ended.1,
        lines,
    }
}

fn wait_child(child: &mut std::process::Child, until: Instant) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), status.signal());
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("process {} did not end in time", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_pid(pid: i32, until: Instant) -> (Option<i32>, Option<i32>) {
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return (Some(code), None),
            Ok(WaitStatus::Signaled(_, signal, _)) => return (None, Some(signal as i32)),
            Ok(_) => {}
            Err(e) => panic!("cannot wait for {pid}: {e}"),
        }
        if Instant::now() > until {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            panic!("process {pid} did not end in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child process of `parent`, from /proc.
fn child_of(parent: i32) -> Option<i32> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(parent) {
                return Some(pid);
            }
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
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

#[test]
fn sigkill_anywhere_then_one_janitor_pass_leaves_nothing() {
    if !need_swarm() {
        return;
    }
    let sb = Sandbox::new("kill");
    let all: Vec<usize> = (0..POINTS.len()).collect();
    let runs = interrupt_all(&sb, &all, How::Kill);
    reap_orphans();
    report(How::Kill, &runs);
    for run in &runs {
        assert_eq!(run.signal, Some(9), "{}", run.lines.join("\n"));
    }
    let before = sb.leftovers();
    println!("left by the killed runs: {}", before.line());
    assert!(
        before.total() > 0,
        "no kill left anything: the points are too late"
    );

    let mut janitor = Command::new(env!("CARGO_BIN_EXE_ccci"));
    janitor.args(["janitor", "--json"]);
    sb.env(&mut janitor);
    let out = janitor.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("janitor --json: {e}: {stdout}\n{out:?}"));
    println!(
        "one janitor pass: reaped {}, errors {}, {:.2}s",
        summary["reaped"], summary["errors"], summary["elapsed"]
    );
    assert_eq!(out.status.code(), Some(0), "{summary:#}");
    assert_eq!(summary["errors"], 0, "{summary:#}");

    let after = sb.leftovers();
    println!("after one janitor pass: {}", after.line());
    assert_eq!(after.total(), 0, "{after:#?}\n{summary:#}");
}

/// The parent-death and SIGTERM proofs: exit 143 after teardown, nothing left, no janitor.
fn interrupted_runs_tear_themselves_down(how: How) {
    if !need_swarm() {
        return;
    }
    let sb = Sandbox::new(if how == How::Term { "term" } else { "parent" });
    let runs = interrupt_all(&sb, SPREAD, how);
    reap_orphans();
    report(how, &runs);
    for run in &runs {
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
    let left = sb.leftovers();
    println!("left without a janitor: {}", left.line());
    assert_eq!(left.total(), 0, "{left:#?}");
}

#[test]
fn sigkill_of_the_parent_anywhere_tears_down_through_parent_death() {
    interrupted_runs_tear_themselves_down(How::KillParent);
}

#[test]
fn sigterm_anywhere_tears_down_and_exits_143() {
    interrupted_runs_tear_themselves_down(How::Term);
}
