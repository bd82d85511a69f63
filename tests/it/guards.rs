//! G1–G6: the lifetime guards of the real `ccci test demo` on the real swarm: parent death,
//! orphan refusal, the deadline, SIGTERM and SIGINT, children ended TERM → grace → KILL, and
//! the teardown budget. Each run is interrupted the moment a given line of its own output or
//! log appears (never after a sleep), and must then tear down: its `torn-down` marker written,
//! nothing of it left on the swarm, its lock released, and the documented exit code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ccci::docker::teardown::{self, Target};
use ccci::exit_code;
use ccci::run::record::Verdict;
use ccci::sys::cancel::Cancel;
use ccci::sys::process::{Cmd, CommandError, Runner};
use nix::sys::signal::Signal;

use crate::support::ccci::{Ccci, Output};
use crate::support::proc::{self, Reaper};
use crate::support::sandbox::{Sandbox, runner};

crate::tests! {
    swarm: g1_parent_sigkill_makes_the_run_tear_down_release_and_exit,
    local: g2_run_whose_parent_died_before_the_guard_refuses_to_start,
    swarm: g3_deadline_interrupts_the_run_which_tears_down_and_exits_142,
    swarm: g4_sigterm_tears_down_releases_and_exits_143,
    swarm: g4_sigint_tears_down_releases_and_exits_130,
    swarm: g5_children_get_sigterm_then_sigkill_after_the_grace_and_none_survive,
    swarm: g6_teardown_budget_stops_teardown_which_says_what_it_left,
    local: g6_teardown_budget_cuts_off_a_hanging_step_even_after_cancellation,
    local: regression_a_cancelled_runner_started_new_children,
    local: regression_a_spent_budget_started_new_children,
}

/// How long one run may take from its start to its end, interruption and teardown included.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// The line a run prints once its app is deployed: the point where interrupting it leaves
/// something for teardown to remove.
const DEPLOYED: &str = "deploy done";

/// `ccci test demo --stage install` in `sb`, as run `run_id`.
fn demo(sb: &Sandbox, repo: &Path, run_id: &str) -> Ccci {
    sb.ccci()
        .args(["test", "demo", "--source"])
        .arg(repo)
        .args(["--stage", "install", "--run-id", run_id])
        .timeout(RUN_LIMIT)
}

/// The run ended with `code` after tearing down: verdict interrupted by `signal`, the marker
/// says clean, nothing of it is left (stack, env file, lock file), and its lock is free.
fn assert_torn_down(sb: &Sandbox, run_id: &str, out: &Output, code: i32, signal: Signal) {
    assert_eq!(out.code(), Some(code), "{out}");
    let record = sb.record(run_id);
    assert_eq!(
        record.verdict,
        Some(Verdict::Interrupted(signal as i32)),
        "{out}"
    );
    assert!(record.torn_down, "{record:?}");
    assert_eq!(sb.teardown_marker(run_id), "clean\n", "{out}");
    sb.assert_nothing_left(&record);
    assert!(sb.lock_is_free(&record.domain));
}

fn g1_parent_sigkill_makes_the_run_tear_down_release_and_exit() {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let mut run = demo(&sb, &repo, "g1").under_shell_parent().spawn();
    run.wait_for_line(DEPLOYED, 1);
    let record = sb.record("g1");
    assert!(!sb.lock_is_free(&record.domain), "the run holds no lock");
    run.kill_parent();
    // ccci is now this (subreaper) process's child: its own exit status is readable.
    let out = run.wait();
    assert_torn_down(&sb, "g1", &out, exit_code::SIGTERM, Signal::SIGTERM);
}

fn g2_run_whose_parent_died_before_the_guard_refuses_to_start() {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let mut reaper = Reaper::new();
    // A live process that is not ccci's parent, named as its parent: as if the real parent
    // had died before ccci installed its parent-death signal.
    let mut sleep = Command::new("sleep");
    sleep.arg("60");
    let stranger = reaper.spawn(sleep);
    // Any docker call would fail, with exit 3: an exit 5 shows that nothing got that far.
    let no_docker = "unix:///nonexistent/ccci-g2/docker.sock";
    let out = demo(&sb, &repo, "g2")
        .env("CCCI_PARENT_PID", stranger.to_string())
        .env("DOCKER_HOST", no_docker)
        .run();
    assert_eq!(out.code(), Some(exit_code::ORPHANED), "{out}");
    let errors = out.error_lines();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("refusing to start"), "{out}");
    assert!(
        sandbox_dir_is_empty(&sb.path("runs")),
        "a run directory was created"
    );
    assert!(
        sandbox_dir_is_empty(&sb.path("locks")),
        "a lock file was created"
    );
    // The same command naming its real parent passes the guard and stops only at docker: the
    // guard is what refused the orphan, before the swarm was asked anything.
    let guarded = demo(&sb, &repo, "g2")
        .env("CCCI_PARENT_PID", std::process::id().to_string())
        .env("DOCKER_HOST", no_docker)
        .run();
    assert_eq!(guarded.code(), Some(exit_code::INFRA), "{guarded}");
}

fn sandbox_dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

fn g3_deadline_interrupts_the_run_which_tears_down_and_exits_142() {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let started = Instant::now();
    let out = demo(&sb, &repo, "g3").args(["--deadline", "2s"]).run();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended after {:?}, before its deadline",
        started.elapsed()
    );
    assert_torn_down(&sb, "g3", &out, exit_code::DEADLINE, Signal::SIGALRM);
    assert!(out.stderr.contains("deadline"), "{out}");
}

fn interrupted_by(signal: Signal, code: i32) {
    let sb = Sandbox::new("");
    let repo = sb.demo_repo();
    let run_id = format!("g4-{}", signal.as_str().to_lowercase());
    let mut run = demo(&sb, &repo, &run_id).spawn();
    run.wait_for_line(DEPLOYED, 1);
    run.signal(signal);
    let out = run.wait();
    assert_torn_down(&sb, &run_id, &out, code, signal);
}

fn g4_sigterm_tears_down_releases_and_exits_143() {
    interrupted_by(Signal::SIGTERM, exit_code::SIGTERM);
}

fn g4_sigint_tears_down_releases_and_exits_130() {
    interrupted_by(Signal::SIGINT, exit_code::SIGINT);
}

/// An install test of the demo recipe that ignores SIGTERM (it only notes it in `term_log`)
/// and keeps a `sleep` running in its process group, recording every pid in `pids`.
fn write_term_ignoring_test(tests_dir: &Path, pids: &Path, term_log: &Path) {
    let dir = tests_dir.join("demo/install.d");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        "#!/bin/sh\n\
         trap 'echo TERM >> {log}' TERM\n\
         echo $$ >> {pids}\n\
         sleep 600 & echo $! >> {pids}\n\
         echo 'g5: ignoring SIGTERM now'\n\
         while :; do wait $!; sleep 600 & echo $! >> {pids}; done\n",
        log = term_log.display(),
        pids = pids.display()
    );
    let path = dir.join("90-ignores-sigterm");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn recorded_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn g5_children_get_sigterm_then_sigkill_after_the_grace_and_none_survive() {
    let grace = Duration::from_secs(1);
    let sb = Sandbox::new("kill_grace: 1s\n");
    let repo = sb.demo_repo();
    let tests_dir = sb.path("tests-dir");
    let (pids, term_log) = (sb.path("g5.pids"), sb.path("g5.term"));
    write_term_ignoring_test(&tests_dir, &pids, &term_log);
    let mut reaper = Reaper::new();
    let mut run = demo(&sb, &repo, "g5")
        .arg("--tests-dir")
        .arg(&tests_dir)
        .spawn();
    run.wait_until("the install test's line in the run's log", || {
        sb.log("g5").contains("g5: ignoring SIGTERM now")
    });
    // The shell and its first sleep; whatever they leave is this test's to reap.
    let before = recorded_pids(&pids);
    assert_eq!(before.len(), 2, "{before:?}");
    for &pid in &before {
        reaper.adopt(pid);
    }
    let sent = Instant::now();
    run.signal(Signal::SIGTERM);
    let out = run.wait();
    let took = sent.elapsed();
    // The run waited out the grace for the TERM-ignoring test before killing its group.
    assert!(took >= grace, "the run ended {took:?} after SIGTERM: {out}");
    let noted = std::fs::read_to_string(&term_log).unwrap_or_default();
    assert!(
        noted.contains("TERM"),
        "the test's group never got SIGTERM: {out}"
    );
    let all = recorded_pids(&pids);
    for &pid in &all {
        reaper.adopt(pid);
    }
    for pid in all {
        proc::wait_until(&format!("the test's process {pid} to be gone"), || {
            !proc::running(pid)
        });
    }
    assert_torn_down(&sb, "g5", &out, exit_code::SIGTERM, Signal::SIGTERM);
}

fn g6_teardown_budget_stops_teardown_which_says_what_it_left() {
    let sb = Sandbox::new("teardown_budget: 1ms\n");
    let repo = sb.demo_repo();
    let mut run = demo(&sb, &repo, "g6").spawn();
    run.wait_for_line(DEPLOYED, 1);
    run.signal(Signal::SIGTERM);
    let out = run.wait();
    assert_eq!(out.code(), Some(exit_code::SIGTERM), "{out}");
    let record = sb.record("g6");
    let marker = sb.teardown_marker("g6");
    assert!(
        marker.starts_with("left for the janitor:") && marker.contains(&record.stack),
        "{marker}\n{out}"
    );
    let log = sb.log("g6");
    assert!(
        log.contains(&format!("teardown: stack {} NOT removed", record.stack)),
        "the log does not say what was left:\n{log}"
    );
    // The run released its lock, and left its app for the janitor; clean it up here.
    assert!(sb.lock_is_free(&record.domain));
    let left = teardown::remaining(&runner(), &record.stack).unwrap();
    assert!(
        !left.is_empty(),
        "nothing was left: the budget did not bound teardown"
    );
    let outcome = teardown::teardown(
        &runner().with_budget(Duration::from_secs(120)),
        &Target {
            domain: record.domain.clone(),
            stack: record.stack.clone(),
            env_file: Some(sb.env_file(&record.domain)),
        },
        &ccci::event::Discard,
    );
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    assert_eq!(
        teardown::remaining(&runner(), &record.stack).unwrap(),
        Vec::<String>::new()
    );
}

/// The budget runner teardown uses, at the library level: it works after cancellation, cuts a
/// hanging step off, and refuses further steps at once once spent.
fn g6_teardown_budget_cuts_off_a_hanging_step_even_after_cancellation() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = Cancel::new();
    cancel.trip(Signal::SIGTERM as i32);
    let runner = Runner::new(cancel).with_grace(Duration::from_millis(200));
    // The cancelled runner refuses to work; the budget runner still does.
    assert!(matches!(
        runner.run(&Cmd::new("true")),
        Err(CommandError::Cancelled { .. })
    ));
    // Long enough for `sh` to start and set its trap on a busy host: the step must be seen
    // hanging, not cut off before it begins.
    let budget = runner.with_budget(Duration::from_secs(2));
    budget
        .run(&Cmd::new("true"))
        .expect("teardown works after cancellation");
    let pid_file: PathBuf = dir.path().join("hang.pid");
    let script = format!(
        "trap '' TERM; echo $$ > {}; exec sleep 30",
        pid_file.display()
    );
    let started = Instant::now();
    let err = budget
        .run(&Cmd::new("sh").args(["-c", &script]))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
    assert!(
        took < Duration::from_secs(5),
        "a hanging teardown step ran for {took:?}"
    );
    let hung = proc::read_pid(&pid_file);
    assert!(!proc::running(hung), "the hanging step survived");
    // Once spent, the budget refuses further steps at once instead of hanging again.
    let spent = Instant::now();
    assert!(budget.check().is_err());
    let _ = budget.run(&Cmd::new("sleep").arg("30"));
    assert!(spent.elapsed() < Duration::from_secs(2));
}

/// A cancelled runner used to start whatever it was asked to, and only noticed the
/// cancellation while waiting: a child that ended before the first look (`true`) passed, and
/// an interrupted run could start new steps. It must refuse before starting anything.
fn regression_a_cancelled_runner_started_new_children() {
    let cancel = Cancel::new();
    cancel.trip(Signal::SIGTERM as i32);
    let runner = Runner::new(cancel);
    // A program that cannot start tells "never tried" from "started, then stopped".
    let err = runner
        .run(&Cmd::new("/nonexistent/ccci-test/program"))
        .unwrap_err();
    assert!(matches!(err, CommandError::Cancelled { .. }), "{err}");
    for _ in 0..20 {
        let result = runner.run(&Cmd::new("true"));
        assert!(
            matches!(result, Err(CommandError::Cancelled { .. })),
            "{result:?}"
        );
    }
}

/// The same for a teardown budget that is spent: no new step starts.
fn regression_a_spent_budget_started_new_children() {
    let spent = Runner::new(Cancel::new()).with_budget(Duration::ZERO);
    let err = spent
        .run(&Cmd::new("/nonexistent/ccci-test/program"))
        .unwrap_err();
    assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
    for _ in 0..20 {
        let result = spent.run(&Cmd::new("true"));
        assert!(
            matches!(result, Err(CommandError::TimedOut { .. })),
            "{result:?}"
        );
    }
}
