//! Per-app-domain locks (L1–L5): an exclusive `flock` on `<lock dir>/<domain>.lock`, held by a
//! run for its whole life and by the janitor while it reaps.
//!
//! This module owns the lock files: creating them, locking them, writing the holder record into
//! them, probing them, and unlinking them under the lock. It must never steal a lock (a held lock
//! is only ever reported, whatever its age), never wait without watching the run's cancel token,
//! and never let a child process inherit a lock fd.
//!
//! Why `flock` on an open file: the kernel drops the lock with the last fd of the open file
//! description, so a SIGKILLed holder frees it at once (L2), and std opens every file with
//! `O_CLOEXEC`, so abra, docker or a hook started by the holder never keep it alive (L4).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::sys::cancel::Cancel;

/// Bump when a field's meaning changes or a field goes away; adding a field does not.
pub const LOCK_FORMAT_VERSION: u32 = 1;

/// How long a blocked acquire waits between two non-blocking attempts, at most. Polling keeps
/// the wait interruptible by the cancel token without a thread parked in `flock(2)` that could
/// not be called back; a release is noticed within this delay.
const MAX_BACKOFF: Duration = Duration::from_millis(25);

/// Who holds a lock: written into the lock file by the holder, read by `ccci locks` and the
/// janitor to say whose run it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub started_at: String,
}

impl Holder {
    /// A holder record for this process, started now.
    pub fn this_process(run_id: impl Into<String>) -> Self {
        Holder {
            run_id: run_id.into(),
            pid: std::process::id(),
            started_at: crate::timestamp::now_rfc3339(),
        }
    }

    /// How long ago the holder started; `None` when `started_at` is unreadable or in the future.
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        let started = humantime::parse_rfc3339_weak(&self.started_at).ok()?;
        now.duration_since(started).ok()
    }
}

/// The file as written: the holder's fields next to the format version.
#[derive(Serialize, Deserialize)]
struct Record {
    format_version: u32,
    run_id: String,
    pid: u32,
    started_at: String,
}

/// What a lock file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contents {
    /// Nothing yet: a fresh file, or a holder killed between truncating and writing.
    Empty,
    Holder(Holder),
    /// Bytes that are no holder record ccci understands.
    Corrupt,
}

impl Contents {
    /// Parses lock file bytes. Never fails: what cannot be read is [`Contents::Corrupt`].
    pub fn parse(bytes: &[u8]) -> Self {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Contents::Empty;
        }
        match serde_json::from_slice::<Record>(bytes) {
            Ok(record) if record.format_version <= LOCK_FORMAT_VERSION => {
                Contents::Holder(Holder {
                    run_id: record.run_id,
                    pid: record.pid,
                    started_at: record.started_at,
                })
            }
            _ => Contents::Corrupt,
        }
    }

    pub fn holder(&self) -> Option<&Holder> {
        match self {
            Contents::Holder(h) => Some(h),
            _ => None,
        }
    }
}

/// A held app-domain lock. Released when dropped: closing the fd releases the `flock`.
#[derive(Debug)]
pub struct AppLock {
    // fd-lock's write guard borrows its `RwLock`, so a struct cannot own both. The flock
    // belongs to the open file description, not to the guard: we lock through a short-lived
    // `RwLock<&File>`, `mem::forget` the guard so it never unlocks, and own the `File`. The
    // lock then stays until this `File` (the only fd of that description, close-on-exec, never
    // duplicated) is closed on drop and the kernel releases it: released exactly when the
    // holder lets go or dies, and by nothing else.
    file: File,
    path: PathBuf,
    domain: String,
    previous: Contents,
}

/// Whether an acquire may wait for the lock.
enum Wait<'a> {
    No,
    Until(&'a Cancel),
}

impl AppLock {
    /// Takes the lock of `domain`, waiting while another process holds it (L5), and records
    /// `holder` in it (L1). Returns `Err(Interrupted)` when `cancel` trips while waiting.
    /// Creates `lock_dir` (mode 0755) when it is missing.
    pub fn acquire(
        lock_dir: &Path,
        domain: &str,
        holder: &Holder,
        cancel: &Cancel,
    ) -> Result<Self> {
        let lock = Self::lock(lock_dir, domain, Wait::Until(cancel), true)?
            .ok_or_else(|| Error::Infra(format!("failed to lock {domain}")))?;
        lock.record(holder)?;
        Ok(lock)
    }

    /// Takes the lock of `domain` if it is free, at once (L3); `Ok(None)` when it is held.
    pub fn try_acquire(lock_dir: &Path, domain: &str, holder: &Holder) -> Result<Option<Self>> {
        match Self::lock(lock_dir, domain, Wait::No, true)? {
            Some(lock) => {
                lock.record(holder)?;
                Ok(Some(lock))
            }
            None => Ok(None),
        }
    }

    /// Like [`AppLock::try_acquire`] but writes no holder record yet, so the caller can look at
    /// what the previous holder left ([`AppLock::previous`]) before deciding to act; call
    /// [`AppLock::record`] to claim it. With `create` false nothing is created: a missing lock
    /// directory or file reads as `Ok(None)`, like a held lock (check the path to tell them
    /// apart); that is what a dry run needs.
    pub fn try_acquire_unrecorded(
        lock_dir: &Path,
        domain: &str,
        create: bool,
    ) -> Result<Option<Self>> {
        Self::lock(lock_dir, domain, Wait::No, create)
    }

    fn lock(lock_dir: &Path, domain: &str, wait: Wait<'_>, create: bool) -> Result<Option<Self>> {
        let path = lock_path(lock_dir, domain)?;
        if create && !lock_dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(lock_dir)
                .at("create the lock directory", lock_dir)?;
        }
        let mut backoff = Duration::from_millis(1);
        loop {
            let file = match open(&path, create) {
                Ok(file) => file,
                Err(e) if !create && e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("open lock file", &path, e)),
            };
            // Wait on this fd: after a release it is ours, then checked against the path.
            loop {
                match fd_lock::RwLock::new(&file).try_write() {
                    Ok(guard) => {
                        // See the comment on `AppLock::file`: the lock must outlive the guard.
                        std::mem::forget(guard);
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => match wait {
                        Wait::No => return Ok(None),
                        Wait::Until(cancel) => {
                            cancel.check()?;
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    },
                    Err(e) => return Err(Error::io("lock", &path, e)),
                }
            }
            // The janitor unlinks a lock file after reaping, while holding it (J3). Whoever
            // waited on the old inode now holds a lock nobody else can see: let go and open the
            // path again.
            if !still_at_path(&file, &path)? {
                if !create {
                    return Ok(None);
                }
                continue;
            }
            let mut bytes = Vec::new();
            (&file)
                .read_to_end(&mut bytes)
                .at("read lock file", &path)?;
            return Ok(Some(AppLock {
                file,
                path,
                domain: domain.to_string(),
                previous: Contents::parse(&bytes),
            }));
        }
    }

    /// Writes `holder` into the locked file, in place: the lock is on the inode, so a rename
    /// would leave the record in a file nobody locks. Truncating first means a holder killed
    /// half-way leaves an empty file, never a mix of two records.
    pub fn record(&self, holder: &Holder) -> Result<()> {
        let record = Record {
            format_version: LOCK_FORMAT_VERSION,
            run_id: holder.run_id.clone(),
            pid: holder.pid,
            started_at: holder.started_at.clone(),
        };
        let mut bytes = serde_json::to_vec(&record)
            .map_err(|e| Error::Infra(format!("failed to encode the lock holder: {e}")))?;
        bytes.push(b'\n');
        let file = &self.file;
        file.set_len(0).at("truncate lock file", &self.path)?;
        file.write_all_at(&bytes, 0)
            .at("write lock file", &self.path)
    }

    /// Removes the lock file while still holding it (J1, J3): a waiter on it then sees that
    /// its fd no longer matches the path and opens a new file. Only unlinks when the path is
    /// still this lock's inode, so it never removes someone else's file.
    pub fn unlink_held(&self) -> Result<()> {
        if still_at_path(&self.file, &self.path)? {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove lock file", &self.path, e)),
            }
        }
        Ok(())
    }

    /// What the lock file held when this lock was taken.
    pub fn previous(&self) -> &Contents {
        &self.previous
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
}

/// The lock file of `domain`. Refuses names that would leave the lock directory.
pub fn lock_path(lock_dir: &Path, domain: &str) -> Result<PathBuf> {
    let ok = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.contains(['/', '\0'])
        && domain.len() <= 253;
    if !ok {
        return Err(Error::Usage(format!(
            "invalid domain `{domain}` for a lock file"
        )));
    }
    Ok(lock_dir.join(format!("{domain}.lock")))
}

fn open(path: &Path, create: bool) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    if create {
        options.create(true).mode(0o644);
    }
    // std sets O_CLOEXEC on every file it opens (L4); NOFOLLOW keeps a planted symlink from
    // pointing the lock (and the holder write) at another file.
    options.custom_flags(nix::libc::O_NOFOLLOW);
    options.open(path)
}

/// True when `path` still names the inode `file` is open on.
fn still_at_path(file: &File, path: &Path) -> Result<bool> {
    let held = file.metadata().at("stat lock file", path)?;
    match std::fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("stat lock file", path, e)),
    }
}

/// One lock file, as `ccci locks` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockInfo {
    pub domain: String,
    pub path: PathBuf,
    /// Held by a live process right now.
    pub held: bool,
    /// The holder recorded in the file; `None` when the file is empty or unreadable.
    pub holder: Option<Holder>,
    /// Seconds since the holder started (or, without a holder, since the file changed).
    pub age_secs: Option<u64>,
    /// The file holds bytes that are no holder record.
    pub corrupt: bool,
}

/// Every `*.lock` file in `lock_dir`, sorted by domain. Probes are non-blocking and shared, so
/// they never make a holder wait, and never create or remove a file. A missing lock directory
/// lists as empty (after a reboot it is simply not there yet).
pub fn list(lock_dir: &Path) -> Result<Vec<LockInfo>> {
    let entries = match std::fs::read_dir(lock_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read the lock directory", lock_dir, e)),
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.at("read the lock directory", lock_dir)?;
        let name = entry.file_name();
        let Some(domain) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        if domain.is_empty() || domain.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Some(info) = probe(&path, domain, now) else {
            continue;
        };
        out.push(info);
    }
    out.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(out)
}

/// Looks at one lock file without disturbing its holder: a shared, non-blocking probe on a
/// read-only fd. `None` for what is not a lock file (a directory, a vanished file).
fn probe(path: &Path, domain: &str, now: SystemTime) -> Option<LockInfo> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    // A shared probe fails against an exclusive holder and, when it succeeds, is dropped at
    // once: a run acquiring at that very moment retries a few milliseconds later.
    let held = match fd_lock::RwLock::new(&file).try_read() {
        Ok(_guard) => false,
        Err(e) => e.kind() == ErrorKind::WouldBlock,
    };
    let mut bytes = Vec::new();
    let _ = (&file).read_to_end(&mut bytes);
    let contents = Contents::parse(&bytes);
    let holder = contents.holder().cloned();
    let age = match &holder {
        Some(h) => h.age(now),
        None => meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok()),
    };
    Some(LockInfo {
        domain: domain.to_string(),
        path: path.to_path_buf(),
        held,
        holder,
        age_secs: age.map(|a| a.as_secs()),
        corrupt: contents == Contents::Corrupt,
    })
}

/// Reads the holder record of a lock file without locking it.
pub fn read_contents(path: &Path) -> Result<Contents> {
    let bytes = std::fs::read(path).at("read lock file", path)?;
    Ok(Contents::parse(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> Holder {
        Holder {
            run_id: run.into(),
            pid: 42,
            started_at: "2024-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn contents_are_read_forgivingly() {
        assert_eq!(Contents::parse(b""), Contents::Empty);
        assert_eq!(Contents::parse(b" \n"), Contents::Empty);
        assert_eq!(Contents::parse(b"{\"run_id\""), Contents::Corrupt);
        assert_eq!(Contents::parse(b"\xff\xfe"), Contents::Corrupt);
        let newer = br#"{"format_version":99,"run_id":"r","pid":1,"started_at":"x"}"#;
        assert_eq!(Contents::parse(newer), Contents::Corrupt);
        let ok = br#"{"format_version":1,"run_id":"r","pid":1,"started_at":"x","extra":1}"#;
        assert_eq!(Contents::parse(ok).holder().map(|h| h.pid), Some(1));
    }

    #[test]
    fn lock_paths_stay_in_the_lock_dir() {
        let dir = Path::new("/locks");
        assert_eq!(
            lock_path(dir, "a-b.example").unwrap(),
            Path::new("/locks/a-b.example.lock")
        );
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(lock_path(dir, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn holder_is_written_and_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("nested/locks");
        let first = AppLock::try_acquire(&locks, "a.test", &holder("one"))
            .unwrap()
            .expect("free lock");
        // A second open file description in the same process conflicts, like another process.
        assert!(
            AppLock::try_acquire(&locks, "a.test", &holder("two"))
                .unwrap()
                .is_none()
        );
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert!(text.contains("\"format_version\":1"), "{text}");
        assert_eq!(
            read_contents(first.path())
                .unwrap()
                .holder()
                .unwrap()
                .run_id,
            "one"
        );
        let listed = list(&locks).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].held);
        assert_eq!(listed[0].holder.as_ref().unwrap().run_id, "one");
        // Listing did not disturb the holder.
        assert!(
            AppLock::try_acquire(&locks, "a.test", &holder("two"))
                .unwrap()
                .is_none()
        );
        drop(first);
        let second = AppLock::try_acquire(&locks, "a.test", &holder("two"))
            .unwrap()
            .expect("released on drop");
        assert_eq!(second.previous().holder().unwrap().run_id, "one");
        drop(second);
        assert!(!list(&locks).unwrap()[0].held);
    }

    #[test]
    fn a_directory_in_place_of_a_lock_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d.test.lock")).unwrap();
        let err = AppLock::try_acquire(dir.path(), "d.test", &holder("x")).unwrap_err();
        assert!(err.to_string().contains("open lock file"), "{err}");
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn unlinked_lock_is_reopened_by_the_next_locker() {
        let dir = tempfile::tempdir().unwrap();
        let first = AppLock::try_acquire(dir.path(), "u.test", &holder("one"))
            .unwrap()
            .unwrap();
        first.unlink_held().unwrap();
        assert!(!first.path().exists());
        // Someone who opened the old inode before the unlink would hold a lock nobody sees;
        // a new locker gets a fresh file at the path instead.
        let second = AppLock::try_acquire(dir.path(), "u.test", &holder("two"))
            .unwrap()
            .unwrap();
        assert!(second.path().exists());
        assert_eq!(second.previous(), &Contents::Empty);
        drop(first);
        assert!(
            AppLock::try_acquire(dir.path(), "u.test", &holder("three"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn unrecorded_probe_creates_nothing_when_asked_not_to() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        assert!(
            AppLock::try_acquire_unrecorded(&missing, "n.test", false)
                .unwrap()
                .is_none()
        );
        assert!(!missing.exists());
    }

    #[test]
    fn missing_lock_dir_lists_empty() {
        assert!(
            list(Path::new("/nonexistent/ccci/locks"))
                .unwrap()
                .is_empty()
        );
    }
}
