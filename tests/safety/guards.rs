//! G1–G6: lifetime guards with the real parent-death signal, alarm, signals and process groups.

use std::time::{Duration, Instant};

use ccci::exit_code;
use ccci::sys::cancel::Cancel;
use ccci::sys::lock::{AppLock, Holder};
use ccci::sys::process::{Cmd, CommandError, Runner};
use nix::sys::signal::Signal;

use super::support::{self, Ended, Reaper, Scratch, wait_file};

fn lock_is_free(scratch: &Scratch, domain: &str) -> bool {
    AppLock::try_acquire(&scratch.locks, domain, &Holder::this_process("probe"))
        .unwrap()
        .is_some()
}

/// The marker the helper's teardown wrote: `(signal, whether the lock was still held)`.
fn marker(scratch: &Scratch, name: &str) -> (i32, bool) {
    let text = wait_file(&scratch.file(&format!("{name}.teardown")));
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in marker {text:?}"))
            .to_string()
    };
    (
        field("signal=").parse().unwrap(),
        field("lock-held=") == "yes",
    )
}

/// Starts a guarded `run` helper and waits until it holds its lock.
fn start_run(reaper: &mut Reaper, scratch: &Scratch, domain: &str, extra: &[(&str, &str)]) -> i32 {
    let mut cmd = scratch.helper("run", "run");
    cmd.env("CCCI_SAFETY_DOMAIN", domain);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let pid = reaper.spawn(cmd);
    assert_eq!(support::read_pid(&scratch.file("run.ready")), pid);
    pid
}

#[test]
fn g1_parent_sigkill_makes_the_run_tear_down_release_and_exit() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let domain = "g1.ccci.test";
    let mut cmd = scratch.helper("parent", "parent");
    cmd.env("CCCI_SAFETY_DOMAIN", domain);
    let parent = reaper.spawn(cmd);
    let child = support::read_pid(&scratch.file("parent.child-pid"));
    reaper.adopt(child);
    assert_eq!(support::read_pid(&scratch.file("child.ready")), child);
    assert!(!lock_is_free(&scratch, domain));
    reaper.signal(parent, Signal::SIGKILL);
    assert_eq!(
        reaper.wait_exit(parent, support::WAIT).signal,
        Some(Signal::SIGKILL as i32)
    );
    // The child is now ours (subreaper): its real exit status is readable.
    let ended = reaper.wait_exit(child, support::WAIT);
    assert_eq!(
        ended,
        Ended {
            code: Some(exit_code::SIGTERM),
            signal: None
        }
    );
    let (signal, held) = marker(&scratch, "child");
    assert_eq!(signal, Signal::SIGTERM as i32);
    assert!(held, "teardown ran after the lock was released");
    assert!(lock_is_free(&scratch, domain));
}

#[test]
fn g2_run_whose_parent_died_before_the_guard_refuses_to_start() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let domain = "g2.ccci.test";
    let go = scratch.file("parent-dead");
    let mut cmd = scratch.helper("parent-exit", "parent");
    cmd.env("CCCI_SAFETY_DOMAIN", domain)
        .env("CCCI_SAFETY_GO_FILE", &go);
    let parent = reaper.spawn(cmd);
    let child = support::read_pid(&scratch.file("parent.child-pid"));
    reaper.adopt(child);
    assert_eq!(reaper.wait_exit(parent, support::WAIT).code, Some(0));
    // The parent is dead and reaped: the child is re-parented. Only now may it install its
    // guard, with the parent pid it recorded at start.
    std::fs::write(&go, "").unwrap();
    let ended = reaper.wait_exit(child, support::WAIT);
    assert_eq!(ended.code, Some(exit_code::ORPHANED));
    let refused = std::fs::read_to_string(scratch.file("child.refused")).unwrap();
    assert!(refused.contains("refusing to start"), "{refused}");
    // It refused before doing anything: no lock taken, no run.
    assert!(!scratch.file("child.ready").exists());
    assert!(!scratch.locks.join(format!("{domain}.lock")).exists());
}

#[test]
fn g3_deadline_interrupts_the_run_which_tears_down_and_exits_142() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let domain = "g3.ccci.test";
    let started = Instant::now();
    let pid = start_run(
        &mut reaper,
        &scratch,
        domain,
        &[("CCCI_SAFETY_DEADLINE_MS", "1000")],
    );
    let ended = reaper.wait_exit(pid, support::WAIT);
    assert_eq!(ended.code, Some(exit_code::DEADLINE));
    assert!(started.elapsed() >= Duration::from_millis(900));
    let (signal, held) = marker(&scratch, "run");
    assert_eq!(signal, Signal::SIGALRM as i32);
    assert!(held);
    assert!(lock_is_free(&scratch, domain));
}

fn interrupted_by(signal: Signal, code: i32) {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let domain = format!("g4-{}.ccci.test", signal as i32);
    let pid = start_run(&mut reaper, &scratch, &domain, &[]);
    reaper.signal(pid, signal);
    let ended = reaper.wait_exit(pid, support::WAIT);
    assert_eq!(ended.code, Some(code), "{signal}");
    let (seen, held) = marker(&scratch, "run");
    assert_eq!(seen, signal as i32);
    assert!(held, "teardown must run before the lock is released");
    assert!(lock_is_free(&scratch, &domain));
}

#[test]
fn g4_sigterm_tears_down_releases_and_exits_143() {
    interrupted_by(Signal::SIGTERM, exit_code::SIGTERM);
}

#[test]
fn g4_sigint_tears_down_releases_and_exits_130() {
    interrupted_by(Signal::SIGINT, exit_code::SIGINT);
}

#[test]
fn g5_children_get_sigterm_then_sigkill_after_the_grace_and_none_survive() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let domain = "g5.ccci.test";
    let pid = start_run(
        &mut reaper,
        &scratch,
        domain,
        &[
            ("CCCI_SAFETY_GRANDCHILD", "1"),
            ("CCCI_SAFETY_GRACE_MS", "400"),
        ],
    );
    let pids_file = scratch.file("run.grandchild-pids");
    // The shell and its first sleep.
    support::wait_until("the grandchildren to start", || {
        std::fs::read_to_string(&pids_file).is_ok_and(|t| t.lines().count() >= 2)
    });
    let recorded = |reaper: &mut Reaper| -> Vec<i32> {
        let pids: Vec<i32> = std::fs::read_to_string(&pids_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for &p in &pids {
            reaper.adopt(p);
        }
        pids
    };
    let before = recorded(&mut reaper);
    let sent = Instant::now();
    reaper.signal(pid, Signal::SIGTERM);
    let ended = reaper.wait_exit(pid, support::WAIT);
    assert_eq!(ended.code, Some(exit_code::SIGTERM));
    // The run waited out the grace period for the TERM-ignoring child before killing it.
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "{:?}",
        sent.elapsed()
    );
    let log = std::fs::read_to_string(scratch.file("run.grandchild-log")).unwrap_or_default();
    assert!(log.contains("TERM"), "the group never got SIGTERM: {log:?}");
    let result = std::fs::read_to_string(scratch.file("run.grandchild-result")).unwrap();
    assert!(result.contains("Cancelled"), "{result}");
    let all = recorded(&mut reaper);
    assert!(all.len() >= before.len());
    for p in all {
        support::wait_until(&format!("grandchild {p} to be gone"), || {
            !support::running(p)
        });
    }
    let (signal, held) = marker(&scratch, "run");
    assert_eq!(signal, Signal::SIGTERM as i32);
    assert!(held);
}

#[test]
fn g6_teardown_budget_cuts_off_a_hanging_step_even_after_cancellation() {
    let scratch = Scratch::new();
    let cancel = Cancel::new();
    cancel.trip(Signal::SIGTERM as i32);
    let runner = Runner::new(cancel).with_grace(Duration::from_millis(200));
    // The cancelled runner refuses to work; the budget runner still does.
    assert!(matches!(
        runner.run(&Cmd::new("true")),
        Err(CommandError::Cancelled { .. })
    ));
    let budget = runner.with_budget(Duration::from_millis(700));
    budget
        .run(&Cmd::new("true"))
        .expect("teardown works after cancellation");
    let pid_file = scratch.file("hang.pid");
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
        took < Duration::from_secs(3),
        "a hanging teardown step ran for {took:?}"
    );
    let hung = support::read_pid(&pid_file);
    assert!(!support::running(hung), "the hanging step survived");
    // Once spent, the budget refuses further steps at once instead of hanging again.
    let spent = Instant::now();
    assert!(budget.check().is_err());
    let _ = budget.run(&Cmd::new("sleep").arg("30"));
    assert!(spent.elapsed() < Duration::from_secs(2));
}
