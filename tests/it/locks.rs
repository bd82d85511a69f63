//! L1–L5: app-domain locks held by real helper processes (this binary re-executed as a lock
//! holder, see `support::helper`), in a lock dir of each test's own.

use std::time::{Duration, Instant};

use ccci::sys::cancel::Cancel;
use ccci::sys::lock::{self, AppLock, Contents, Holder};
use nix::sys::signal::Signal;

use crate::support::helper::Scratch;
use crate::support::proc::{self as support, Reaper, wait_file, wait_until};

crate::tests! {
    local: l1_holder_records_run_id_pid_and_start_in_the_lock_file,
    local: l2_sigkill_of_the_holder_releases_the_lock_at_once,
    local: l3_probes_fail_at_once_when_held_and_succeed_when_free,
    local: l4_lock_fd_is_not_inherited_by_children_that_outlive_the_holder,
    local: l5_second_acquire_waits_for_the_first_holder_then_succeeds,
    local: l5_a_waiting_acquire_is_interrupted_by_the_cancel_token,
    local: j3_waiter_on_an_unlinked_lock_file_opens_the_path_again,
}

fn probe_holder() -> Holder {
    Holder::this_process("probe")
}

fn lock_file_text(scratch: &Scratch, domain: &str) -> String {
    std::fs::read_to_string(scratch.locks.join(format!("{domain}.lock"))).unwrap()
}

/// Starts a `hold` helper for `domain` named `name` and waits until it holds the lock.
fn holder(reaper: &mut Reaper, scratch: &Scratch, name: &str, domain: &str, run_id: &str) -> i32 {
    let pid = reaper.spawn(scratch.holder(name, domain, run_id));
    wait_file(&scratch.file(&format!("{name}.ready")));
    pid
}

fn l1_holder_records_run_id_pid_and_start_in_the_lock_file() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let pid = holder(&mut reaper, &scratch, "h", "l1.ccci.test", "run-l1");
    let value: serde_json::Value =
        serde_json::from_str(&lock_file_text(&scratch, "l1.ccci.test")).unwrap();
    assert_eq!(value["format_version"], 1);
    assert_eq!(value["run_id"], "run-l1");
    assert_eq!(value["pid"], pid);
    let started = value["started_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(started).is_ok(), "{started}");
    // `ccci locks` sees it held, with its holder, and an age.
    let listed = lock::list(&scratch.locks).unwrap();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(info.domain, "l1.ccci.test");
    assert!(info.held);
    assert_eq!(info.holder.as_ref().unwrap().pid, pid as u32);
    assert!(info.age_secs.is_some());
    let json = serde_json::to_value(&listed).unwrap();
    assert_eq!(json[0]["holder"]["run_id"], "run-l1");
}

fn l2_sigkill_of_the_holder_releases_the_lock_at_once() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let pid = holder(&mut reaper, &scratch, "h", "l2.ccci.test", "run-l2");
    assert!(
        AppLock::try_acquire(&scratch.locks, "l2.ccci.test", &probe_holder())
            .unwrap()
            .is_none()
    );
    reaper.signal(pid, Signal::SIGKILL);
    let ended = reaper.wait_exit(pid, support::WAIT);
    assert_eq!(ended.signal, Some(Signal::SIGKILL as i32));
    // No wait, no retry: the kernel dropped the lock with the holder's last fd.
    let lock = AppLock::try_acquire(&scratch.locks, "l2.ccci.test", &probe_holder())
        .unwrap()
        .expect("free right after the holder died");
    assert_eq!(lock.previous().holder().unwrap().run_id, "run-l2");
}

fn l3_probes_fail_at_once_when_held_and_succeed_when_free() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let pid = holder(&mut reaper, &scratch, "h", "l3.ccci.test", "run-l3");
    let started = Instant::now();
    let probe = AppLock::try_acquire(&scratch.locks, "l3.ccci.test", &probe_holder()).unwrap();
    assert!(probe.is_none());
    assert!(lock::list(&scratch.locks).unwrap()[0].held);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "probes of a held lock took {:?}",
        started.elapsed()
    );
    // The probes did not take the lock from the holder or change its record.
    assert!(lock_file_text(&scratch, "l3.ccci.test").contains("run-l3"));
    std::fs::write(scratch.file("h.release"), "").unwrap();
    assert_eq!(reaper.wait_exit(pid, support::WAIT).code, Some(0));
    let free = AppLock::try_acquire(&scratch.locks, "l3.ccci.test", &probe_holder()).unwrap();
    assert!(free.is_some());
    drop(free);
    assert!(!lock::list(&scratch.locks).unwrap()[0].held);
}

fn l4_lock_fd_is_not_inherited_by_children_that_outlive_the_holder() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let mut cmd = scratch.holder("h", "l4.ccci.test", "run-l4");
    cmd.env("CCCI_IT_CHILD", "1");
    let pid = reaper.spawn(cmd);
    wait_file(&scratch.file("h.ready"));
    let child = support::read_pid(&scratch.file("h.child"));
    reaper.adopt(child);
    let lock_path = std::fs::canonicalize(scratch.locks.join("l4.ccci.test.lock")).unwrap();
    // The child has no fd on the lock file.
    for fd in std::fs::read_dir(format!("/proc/{child}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        assert_ne!(target, lock_path, "child {child} inherited the lock fd");
    }
    reaper.signal(pid, Signal::SIGKILL);
    reaper.wait_exit(pid, support::WAIT);
    assert!(
        support::running(child),
        "the child should outlive the holder"
    );
    assert!(
        AppLock::try_acquire(&scratch.locks, "l4.ccci.test", &probe_holder())
            .unwrap()
            .is_some(),
        "the holder's child kept the lock alive"
    );
}

fn l5_second_acquire_waits_for_the_first_holder_then_succeeds() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    let first = holder(&mut reaper, &scratch, "one", "l5.ccci.test", "run-one");
    reaper.spawn(scratch.holder("two", "l5.ccci.test", "run-two"));
    wait_file(&scratch.file("two.waiting"));
    // While the first holds, the second does not get it.
    let two_ready = scratch.file("two.ready");
    assert!(
        !support::happens_within(Duration::from_millis(300), || two_ready.exists()),
        "the second holder got a held lock"
    );
    assert!(lock_file_text(&scratch, "l5.ccci.test").contains("run-one"));
    std::fs::write(scratch.file("one.release"), "").unwrap();
    assert_eq!(reaper.wait_exit(first, support::WAIT).code, Some(0));
    wait_file(&two_ready);
    assert!(lock_file_text(&scratch, "l5.ccci.test").contains("run-two"));
}

fn l5_a_waiting_acquire_is_interrupted_by_the_cancel_token() {
    let scratch = Scratch::new();
    let mut reaper = Reaper::new();
    holder(&mut reaper, &scratch, "h", "l5c.ccci.test", "run-h");
    let cancel = Cancel::new();
    let waiter = {
        let (locks, cancel) = (scratch.locks.clone(), cancel.clone());
        std::thread::spawn(move || {
            AppLock::acquire(&locks, "l5c.ccci.test", &probe_holder(), &cancel).map(|_| ())
        })
    };
    cancel.trip(15);
    let started = Instant::now();
    wait_until("the waiter to give up", || waiter.is_finished());
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = waiter.join().unwrap().unwrap_err();
    assert!(matches!(err, ccci::Error::Interrupted(15)), "{err}");
}

/// J3 at the lock level: a locker waiting on a file the janitor unlinks must not end up
/// holding the removed inode, which nobody else could see.
fn j3_waiter_on_an_unlinked_lock_file_opens_the_path_again() {
    let scratch = Scratch::new();
    let domain = "j3w.ccci.test";
    let janitor = AppLock::try_acquire(&scratch.locks, domain, &Holder::this_process("janitor"))
        .unwrap()
        .unwrap();
    let path = std::fs::canonicalize(janitor.path()).unwrap();
    let opened = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
            .count()
    };
    let waiter = {
        let locks = scratch.locks.clone();
        std::thread::spawn(move || {
            AppLock::acquire(
                &locks,
                domain,
                &Holder::this_process("new-run"),
                &Cancel::new(),
            )
        })
    };
    // The waiter has the old file open (and is polling its lock) before the unlink.
    wait_until("the waiter to open the lock file", || opened() >= 2);
    janitor.unlink_held().unwrap();
    drop(janitor);
    let lock = waiter.join().unwrap().unwrap();
    assert!(lock.path().exists(), "the waiter holds a removed file");
    assert_eq!(
        lock.previous(),
        &Contents::Empty,
        "a fresh file, not the old one"
    );
    let listed = lock::list(&scratch.locks).unwrap();
    assert!(listed[0].held);
    assert_eq!(listed[0].holder.as_ref().unwrap().run_id, "new-run");
}
