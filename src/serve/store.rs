//! The service mode's one state store: a SQLite database in the state dir holding the queue,
//! the runs and their history, the comments already seen, the polling watermarks and each
//! pull request's summary comment. Every state change is one transaction, so a `ccci serve`
//! killed at any instant restarts from a consistent state ([`Store::recover`]).
//!
//! A run moves `received` (a command recorded, not yet authorized) → `queued` → `running` →
//! `done`, or straight to `done` when refused, superseded or cancelled. A comment is recorded
//! at most once, whichever path (webhook or polling) saw it first: `seen_comments` is keyed by
//! the comment id, never by a delivery id.
//!
//! What /metrics counts of finished runs (by verdict, and how long they ran) is kept apart, in
//! totals a trigger adds to as each run finishes: retention forgets runs, the totals never
//! fall.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::stage::Stage;

/// The version [`Store::open`] brings a database to, one step at a time (see [`step`]).
const SCHEMA_VERSION: i64 = 2;

/// The upper bounds of the run-duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 9] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
];

/// Version 2: totals of finished runs that outlive the runs. Counted from the runs already
/// finished, then by triggers as runs finish (every way a run ends sets its verdict in the
/// same statement that makes it `done`). First the tables:
const TOTALS: &str = "
CREATE TABLE finished_totals (
    verdict TEXT PRIMARY KEY,
    runs INTEGER NOT NULL
);
CREATE TABLE duration_buckets (
    le REAL PRIMARY KEY,
    runs INTEGER NOT NULL
);
CREATE TABLE duration_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    runs INTEGER NOT NULL,
    seconds REAL NOT NULL
);
";

/// Version 2, once the buckets have their rows: the counting so far, and the triggers.
const TOTALS_COUNTED: &str = "
INSERT INTO finished_totals (verdict, runs)
    SELECT verdict, COUNT(*) FROM runs WHERE state = 'done' AND verdict IS NOT NULL GROUP BY verdict;
UPDATE duration_buckets SET runs = (SELECT COUNT(*) FROM runs
    WHERE state = 'done' AND started_ms IS NOT NULL AND finished_ms IS NOT NULL
      AND MAX(finished_ms - started_ms, 0) / 1000.0 <= duration_buckets.le);
INSERT INTO duration_totals (id, runs, seconds)
    SELECT 1, COUNT(*), COALESCE(SUM(MAX(finished_ms - started_ms, 0) / 1000.0), 0.0) FROM runs
    WHERE state = 'done' AND started_ms IS NOT NULL AND finished_ms IS NOT NULL;
CREATE TRIGGER count_finished AFTER UPDATE OF state ON runs
WHEN NEW.state = 'done' AND OLD.state <> 'done' AND NEW.verdict IS NOT NULL
BEGIN
    INSERT INTO finished_totals (verdict, runs) VALUES (NEW.verdict, 1)
        ON CONFLICT (verdict) DO UPDATE SET runs = runs + 1;
END;
CREATE TRIGGER time_finished AFTER UPDATE OF state ON runs
WHEN NEW.state = 'done' AND OLD.state <> 'done'
     AND NEW.started_ms IS NOT NULL AND NEW.finished_ms IS NOT NULL
BEGIN
    UPDATE duration_buckets SET runs = runs + 1
        WHERE le >= MAX(NEW.finished_ms - NEW.started_ms, 0) / 1000.0;
    UPDATE duration_totals SET runs = runs + 1,
        seconds = seconds + MAX(NEW.finished_ms - NEW.started_ms, 0) / 1000.0;
END;
";

/// The SQL that takes a database from version `to - 1` to version `to`.
fn step(to: i64) -> String {
    match to {
        1 => SCHEMA.to_string(),
        2 => {
            let buckets: Vec<String> = DURATION_BUCKETS
                .iter()
                .map(|le| format!("({le:?}, 0)"))
                .collect();
            format!(
                "{TOTALS}INSERT INTO duration_buckets (le, runs) VALUES {};{TOTALS_COUNTED}",
                buckets.join(", ")
            )
        }
        _ => String::new(),
    }
}

/// Brings the database to [`SCHEMA_VERSION`], each step in a transaction that first looks at
/// the version again (another serve may be opening the same database).
fn migrate(conn: &mut Connection) -> rusqlite::Result<std::result::Result<(), i64>> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Ok(Err(version));
        }
        if version == SCHEMA_VERSION {
            return Ok(Ok(()));
        }
        tx.execute_batch(&step(version + 1))?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

const SCHEMA: &str = "
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    recipe TEXT NOT NULL,
    pr INTEGER NOT NULL,
    comment_id INTEGER UNIQUE,
    comment_url TEXT,
    requested_by TEXT NOT NULL,
    trigger TEXT NOT NULL,
    stages TEXT NOT NULL,
    head_sha TEXT,
    pr_url TEXT,
    state TEXT NOT NULL,
    verdict TEXT,
    reason TEXT,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    pid INTEGER,
    cancel_verdict TEXT,
    cancel_reason TEXT,
    reported INTEGER NOT NULL DEFAULT 0,
    tag TEXT NOT NULL DEFAULT ''
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE INDEX runs_by_pr ON runs (repo, pr, state);
CREATE INDEX runs_by_state ON runs (state, id);
CREATE TABLE seen_comments (
    comment_id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    seen_ms INTEGER NOT NULL
);
CREATE TABLE poll_watermarks (
    repo TEXT PRIMARY KEY,
    since TEXT NOT NULL
);
CREATE TABLE summary_comments (
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    comment_id INTEGER NOT NULL,
    PRIMARY KEY (repo, pr)
);
";

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// A command was recorded; authorization and the pull request's head are still to come.
    Received,
    Queued,
    Running,
    Done,
}

impl RunState {
    pub const ALL: [RunState; 4] = [
        RunState::Received,
        RunState::Queued,
        RunState::Running,
        RunState::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Received => "received",
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<RunState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// How a command reached ccci.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Webhook,
    Poll,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Webhook => "webhook",
            Trigger::Poll => "poll",
        }
    }
}

/// Verdicts serve gives runs that never reached a `ccci test` verdict of their own.
pub mod verdicts {
    /// The commenter may not ask for runs (or the check could not tell).
    pub const REFUSED: &str = "refused";
    /// A newer `!testme` on the same pull request replaced it.
    pub const SUPERSEDED: &str = "superseded";
    /// New commits were pushed to the pull request.
    pub const CANCELLED: &str = "cancelled";
    /// `ccci serve` stopped while it ran.
    pub const INTERRUPTED: &str = "interrupted";
    /// The run could not be started or judged.
    pub const ERROR: &str = "error";
}

/// A `!testme` to record.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub repo: String,
    pub recipe: String,
    pub pr: u64,
    pub comment_id: u64,
    pub comment_url: Option<String>,
    pub requested_by: String,
    pub trigger: Trigger,
    pub stages: Vec<Stage>,
    /// What is wrong with the command (a stage ccci does not know), kept as the run's reason
    /// while it waits: triage closes the run with it once the commenter may ask at all, so
    /// nobody else is answered on the pull request.
    pub mistake: Option<String>,
}

/// One run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub repo: String,
    pub recipe: String,
    pub pr: u64,
    pub comment_id: Option<u64>,
    pub comment_url: Option<String>,
    pub requested_by: String,
    pub trigger: String,
    pub stages: Vec<Stage>,
    pub head_sha: Option<String>,
    pub pr_url: Option<String>,
    pub state: RunState,
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub pid: Option<i32>,
    /// Set when the run was asked to stop while running: the verdict it ends with.
    pub cancel_verdict: Option<String>,
    pub cancel_reason: Option<String>,
    /// Its final status and summary reached the forge.
    pub reported: bool,
    /// The tag of the database it was recorded in (see [`RunRow::run_dir_id`]).
    pub tag: String,
}

impl RunRow {
    /// The run's directory name under runs_dir (and its `--run-id`): readable, and unique
    /// beyond this database, so two serves sharing a runs dir or a swarm never collide.
    pub fn run_dir_id(&self) -> String {
        format!("s{}-{}-pr{}-{}", self.id, self.recipe, self.pr, self.tag)
    }

    /// How long it ran (or has been running, at `now_ms`).
    pub fn seconds(&self, now_ms: i64) -> Option<f64> {
        let start = self.started_ms?;
        let end = self.finished_ms.unwrap_or(now_ms);
        Some((end - start).max(0) as f64 / 1000.0)
    }

    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.as_str().to_string()).collect()
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
        let stages: String = row.get("stages")?;
        let state: String = row.get("state")?;
        Ok(RunRow {
            id: row.get("id")?,
            repo: row.get("repo")?,
            recipe: row.get("recipe")?,
            pr: row.get::<_, i64>("pr")? as u64,
            comment_id: row.get::<_, Option<i64>>("comment_id")?.map(|c| c as u64),
            comment_url: row.get("comment_url")?,
            requested_by: row.get("requested_by")?,
            trigger: row.get("trigger")?,
            stages: Stage::parse_list(&stages).unwrap_or_default(),
            head_sha: row.get("head_sha")?,
            pr_url: row.get("pr_url")?,
            state: RunState::parse(&state).unwrap_or(RunState::Done),
            verdict: row.get("verdict")?,
            reason: row.get("reason")?,
            created_ms: row.get("created_ms")?,
            started_ms: row.get("started_ms")?,
            finished_ms: row.get("finished_ms")?,
            pid: row.get("pid")?,
            cancel_verdict: row.get("cancel_verdict")?,
            cancel_reason: row.get("cancel_reason")?,
            reported: row.get::<_, i64>("reported")? != 0,
            tag: row.get("tag")?,
        })
    }
}

/// Which runs a listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub repo: Option<String>,
    pub recipe: Option<String>,
    pub state: Option<RunState>,
    pub pr: Option<u64>,
    pub limit: usize,
}

/// Counts for /metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Runs per state.
    pub by_state: Vec<(String, u64)>,
    /// Runs ever finished, per verdict (forgotten ones too).
    pub by_verdict: Vec<(String, u64)>,
    /// Of the runs ever finished that ran: how many ran at most each of
    /// [`DURATION_BUCKETS`] seconds (cumulative, in that order).
    pub duration_buckets: Vec<(f64, u64)>,
    /// How many ran, and for how many seconds in all.
    pub ran: u64,
    pub ran_seconds: f64,
}

/// What the store knows about a pull request's runs when a new one is queued or a push
/// cancels them: the runs that were running and must be stopped (their children signalled),
/// and the queued ones that were closed at once (to report).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Displaced {
    pub to_stop: Vec<RunRow>,
    pub closed: Vec<RunRow>,
}

/// Checkpoints the store's write-ahead log from a thread of its own, so the disk syncs a
/// checkpoint takes never happen inside a transaction others wait for.
pub struct Checkpointer {
    conn: Connection,
    path: PathBuf,
}

impl Checkpointer {
    /// Copies what it can of the log into the database without waiting for readers or
    /// writers; returns the log's length and how much of it is copied, in pages.
    pub fn run(&self) -> Result<(i64, i64)> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .map_err(|e| {
                Error::Infra(format!(
                    "serve database {}: checkpoint: {e}",
                    self.path.display()
                ))
            })
    }
}

/// What [`Store::queue`] did with a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Queueing {
    /// Queued; the older runs of its pull request it displaced.
    Queued(Displaced),
    /// Closed as superseded by a newer command on its pull request (returned, to report).
    Superseded(Box<RunRow>),
    /// No longer waiting (cancelled meanwhile): nothing was done.
    NotWaiting,
}

pub struct Store {
    /// Every write, one transaction at a time.
    conn: Mutex<Connection>,
    /// Reads beside the writes. In WAL mode neither waits for the other, so a delivery being
    /// recorded never queues behind a page being rendered or a run being looked up, nor the
    /// reverse.
    reader: Mutex<Connection>,
    /// The intake's own reads (has this comment been seen?), for deliveries and polls, so a
    /// delivery never waits for a page being rendered or a background thread's read.
    intake: Mutex<Connection>,
    path: PathBuf,
    /// This database's own tag, part of every run directory's name.
    tag: String,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SELECT: &str = "SELECT * FROM runs";

impl Store {
    /// Opens (creating when needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create the state dir", dir, e))?;
        }
        let fail = |e: rusqlite::Error| {
            Error::Infra(format!(
                "cannot open the serve database {}: {e}; check the state_dir",
                path.display()
            ))
        };
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        // Every statement is kept compiled: the intake records a delivery without parsing SQL.
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        // SQLite checkpoints in whichever commit crosses the threshold — a delivery's, say —
        // and a checkpoint syncs the disk. [`Checkpointer`] does it beside the writes; this
        // threshold (about 40 MB of log) is only the backstop.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)
            .map_err(fail)?;
        if let Err(newer) = migrate(&mut conn).map_err(fail)? {
            return Err(Error::Infra(format!(
                "the serve database {} has schema version {newer}, this ccci knows {SCHEMA_VERSION}: use a newer ccci or another state_dir",
                path.display()
            )));
        }
        let tag = instance_tag(&conn).map_err(fail)?;
        let reader = || -> rusqlite::Result<Connection> {
            let reader = Connection::open(path)?;
            reader.busy_timeout(Duration::from_secs(5))?;
            reader.set_prepared_statement_cache_capacity(64);
            reader.pragma_update(None, "query_only", true)?;
            Ok(reader)
        };
        Ok(Store {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader().map_err(fail)?),
            intake: Mutex::new(reader().map_err(fail)?),
            path: path.to_path_buf(),
            tag,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A thread that panicked while holding the connection left no half-done transaction:
        // rusqlite rolls back on drop. The connection itself is still sound.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection of its own that moves the write-ahead log into the database file.
    pub fn checkpointer(&self) -> Result<Checkpointer> {
        let conn = Connection::open(&self.path).map_err(|e| self.err(e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| self.err(e))?;
        Ok(Checkpointer {
            conn,
            path: self.path.clone(),
        })
    }

    /// The connection for reads outside transactions: it sees the last commit.
    fn read(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        Error::Infra(format!("serve database {}: {e}", self.path.display()))
    }

    /// Runs `f` in one immediate transaction: all of it happens, or none.
    fn transaction<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let value = f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(value)
    }

    /// Records a command, unless its comment was seen before (by either path): then `None`.
    pub fn record_command(&self, new: &NewRun) -> Result<Option<RunRow>> {
        // A redelivery is told by a read, without waiting for the writer; two deliveries of a
        // new comment at once both pass here, and the insert below keeps only one.
        if self.is_seen(new.comment_id)? {
            return Ok(None);
        }
        self.transaction(|tx| {
            let now = now_ms();
            let fresh = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO seen_comments (comment_id, repo, seen_ms) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![new.comment_id as i64, new.repo, now])?
                == 1;
            if !fresh {
                return Ok(None);
            }
            let stages: Vec<&str> = new.stages.iter().map(|s| s.as_str()).collect();
            tx.prepare_cached(
                "INSERT INTO runs (repo, recipe, pr, comment_id, comment_url, requested_by, trigger, stages, state, created_ms, reason, tag)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'received', ?9, ?10, ?11)",
            )?
            .execute(params![
                    new.repo,
                    new.recipe,
                    new.pr as i64,
                    new.comment_id as i64,
                    new.comment_url,
                    new.requested_by,
                    new.trigger.as_str(),
                    stages.join(","),
                    now,
                    new.mistake,
                    self.tag
                ])?;
            let id = tx.last_insert_rowid();
            get(tx, id).map(Some)
        })
    }

    /// Marks comments as seen without running them (the first poll of a repository).
    pub fn mark_seen(&self, repo: &str, comment_ids: &[u64]) -> Result<()> {
        self.transaction(|tx| {
            let now = now_ms();
            for id in comment_ids {
                tx.execute(
                    "INSERT OR IGNORE INTO seen_comments (comment_id, repo, seen_ms) VALUES (?1, ?2, ?3)",
                    params![*id as i64, repo, now],
                )?;
            }
            Ok(())
        })
    }

    pub fn is_seen(&self, comment_id: u64) -> Result<bool> {
        self.intake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_row(
                "SELECT 1 FROM seen_comments WHERE comment_id = ?1",
                [comment_id as i64],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }

    /// Where the last poll of `repo` got to (the forge's `updated_at` of the newest comment
    /// seen); `None` before the first poll.
    pub fn watermark(&self, repo: &str) -> Result<Option<String>> {
        self.read()
            .query_row(
                "SELECT since FROM poll_watermarks WHERE repo = ?1",
                [repo],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_watermark(&self, repo: &str, since: &str) -> Result<()> {
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO poll_watermarks (repo, since) VALUES (?1, ?2)
                 ON CONFLICT (repo) DO UPDATE SET since = excluded.since",
                params![repo, since],
            )?;
            Ok(())
        })
    }

    /// The run was authorized and its pull request's head is known: queue it. Older runs of
    /// the same pull request are superseded: queued ones closed at once, running ones marked
    /// to stop (the caller signals them). When a newer command on the pull request is already
    /// queued or running, this run is the one superseded: the newest authorized command wins,
    /// whatever order triage saw them in. A newer command still waiting for its own
    /// authorization changes nothing yet: an outsider's `!testme` never displaces a member's.
    pub fn queue(&self, id: i64, head_sha: &str, pr_url: Option<&str>) -> Result<Queueing> {
        self.transaction(|tx| {
            let run = get(tx, id)?;
            if run.state != RunState::Received {
                return Ok(Queueing::NotWaiting);
            }
            let newer: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, requested_by FROM runs WHERE repo = ?1 AND pr = ?2 AND id > ?3
                     AND (state = 'queued' OR (state = 'running' AND cancel_verdict IS NULL))
                     ORDER BY id DESC LIMIT 1",
                    params![run.repo, run.pr as i64, id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((newer, by)) = newer {
                tx.execute(
                    "UPDATE runs SET state = 'done', verdict = ?2, reason = ?3, finished_ms = ?4 WHERE id = ?1",
                    params![
                        id,
                        verdicts::SUPERSEDED,
                        format!("superseded by run {newer}, asked for by {by}"),
                        now_ms()
                    ],
                )?;
                return get(tx, id).map(|run| Queueing::Superseded(Box::new(run)));
            }
            tx.execute(
                "UPDATE runs SET state = 'queued', head_sha = ?2, pr_url = ?3 WHERE id = ?1",
                params![id, head_sha, pr_url],
            )?;
            let reason = format!("superseded by run {id}, asked for by {}", run.requested_by);
            displace(tx, &run.repo, run.pr, Some(id), verdicts::SUPERSEDED, &reason)
                .map(Queueing::Queued)
        })
    }

    /// Stops every unfinished run of a pull request (new commits were pushed): queued ones
    /// are closed with `verdict` at once, running ones marked to stop.
    pub fn cancel_pr(&self, repo: &str, pr: u64, verdict: &str, reason: &str) -> Result<Displaced> {
        self.transaction(|tx| displace(tx, repo, pr, None, verdict, reason))
    }

    /// Closes a run that never started: refused, or failed before it could be queued.
    pub fn close(&self, id: i64, verdict: &str, reason: &str) -> Result<Option<RunRow>> {
        self.transaction(|tx| {
            let changed = tx.execute(
                "UPDATE runs SET state = 'done', verdict = ?2, reason = ?3, finished_ms = ?4
                 WHERE id = ?1 AND state IN ('received', 'queued')",
                params![id, verdict, reason, now_ms()],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            get(tx, id).map(Some)
        })
    }

    /// Takes the oldest queued run and marks it running, if fewer than `limit` run now.
    pub fn claim_next(&self, limit: usize) -> Result<Option<RunRow>> {
        self.transaction(|tx| {
            let running: i64 = tx.query_row(
                "SELECT COUNT(*) FROM runs WHERE state = 'running'",
                [],
                |r| r.get(0),
            )?;
            if running as usize >= limit {
                return Ok(None);
            }
            let next: Option<i64> = tx
                .query_row(
                    "SELECT id FROM runs WHERE state = 'queued' ORDER BY id LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = next else { return Ok(None) };
            tx.execute(
                "UPDATE runs SET state = 'running', started_ms = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            get(tx, id).map(Some)
        })
    }

    /// Notes the pid of a run's `ccci test` child.
    pub fn set_pid(&self, id: i64, pid: i32) -> Result<()> {
        self.transaction(|tx| {
            tx.execute("UPDATE runs SET pid = ?2 WHERE id = ?1", params![id, pid])?;
            Ok(())
        })
    }

    /// A running run ended with `verdict`; a stop asked for while it ran wins over what the
    /// child said (a superseded run's child exits as terminated).
    pub fn finish(&self, id: i64, verdict: &str, reason: Option<&str>) -> Result<RunRow> {
        self.transaction(|tx| {
            tx.execute(
                "UPDATE runs SET state = 'done',
                    verdict = COALESCE(cancel_verdict, ?2),
                    reason = COALESCE(cancel_reason, ?3),
                    finished_ms = ?4
                 WHERE id = ?1 AND state = 'running'",
                params![id, verdict, reason, now_ms()],
            )?;
            get(tx, id)
        })
    }

    /// After a restart: runs that were running when serve died are closed as interrupted
    /// (and returned, to report and reap); received and queued runs stay and resume.
    pub fn recover(&self, reason: &str) -> Result<Vec<RunRow>> {
        self.transaction(|tx| {
            let ids = ids_where(tx, "state = 'running'", params![])?;
            for id in &ids {
                tx.execute(
                    "UPDATE runs SET state = 'done', verdict = ?2, reason = ?3, finished_ms = ?4, reported = 0 WHERE id = ?1",
                    params![id, verdicts::INTERRUPTED, reason, now_ms()],
                )?;
            }
            ids.into_iter().map(|id| get(tx, id)).collect()
        })
    }

    /// The runs recorded and not yet triaged, oldest first, as (id, repository, pull
    /// request): enough to choose who triages each, without reading whole rows.
    pub fn received(&self) -> Result<Vec<(i64, String, u64)>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached("SELECT id, repo, pr FROM runs WHERE state = 'received' ORDER BY id")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| self.err(e))
    }

    /// Runs in `state`, oldest first.
    pub fn in_state(&self, state: RunState) -> Result<Vec<RunRow>> {
        self.query(
            &format!("{SELECT} WHERE state = ?1 ORDER BY id"),
            params![state.as_str()],
        )
    }

    /// Finished runs whose final report has not reached the forge yet.
    pub fn unreported(&self) -> Result<Vec<RunRow>> {
        self.query(
            &format!("{SELECT} WHERE state = 'done' AND reported = 0 ORDER BY id"),
            params![],
        )
    }

    pub fn mark_reported(&self, id: i64) -> Result<()> {
        self.transaction(|tx| {
            tx.execute("UPDATE runs SET reported = 1 WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    pub fn get(&self, id: i64) -> Result<Option<RunRow>> {
        let conn = self.read();
        get(&conn, id).optional().map_err(|e| self.err(e))
    }

    /// Runs, newest first, as `filter` selects.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<RunRow>> {
        let state = filter.state.map(RunState::as_str);
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        self.query(
            &format!(
                "{SELECT} WHERE (?1 IS NULL OR repo = ?1 COLLATE NOCASE) AND (?2 IS NULL OR recipe = ?2)
                 AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR pr = ?4)
                 ORDER BY id DESC LIMIT ?5"
            ),
            params![filter.repo, filter.recipe, state, filter.pr.map(|p| p as i64), limit],
        )
    }

    /// Every run of one pull request, newest first.
    pub fn runs_of_pr(&self, repo: &str, pr: u64) -> Result<Vec<RunRow>> {
        self.list(&ListFilter {
            repo: Some(repo.to_string()),
            pr: Some(pr),
            limit: 20,
            ..ListFilter::default()
        })
    }

    /// The recipes runs were recorded for.
    pub fn recipes(&self) -> Result<Vec<String>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare("SELECT DISTINCT recipe FROM runs ORDER BY recipe")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    pub fn summary_comment(&self, repo: &str, pr: u64) -> Result<Option<u64>> {
        self.read()
            .query_row(
                "SELECT comment_id FROM summary_comments WHERE repo = ?1 AND pr = ?2",
                params![repo, pr as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|c| c.map(|c| c as u64))
            .map_err(|e| self.err(e))
    }

    pub fn set_summary_comment(&self, repo: &str, pr: u64, comment_id: u64) -> Result<()> {
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO summary_comments (repo, pr, comment_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repo, pr) DO UPDATE SET comment_id = excluded.comment_id",
                params![repo, pr as i64, comment_id as i64],
            )?;
            Ok(())
        })
    }

    pub fn stats(&self) -> Result<Stats> {
        let conn = self.read();
        let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, u64)>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        };
        let by_state = pairs("SELECT state, COUNT(*) FROM runs GROUP BY state ORDER BY state")
            .map_err(|e| self.err(e))?;
        let by_verdict = pairs("SELECT verdict, runs FROM finished_totals ORDER BY verdict")
            .map_err(|e| self.err(e))?;
        let mut stmt = conn
            .prepare_cached("SELECT le, runs FROM duration_buckets ORDER BY le")
            .map_err(|e| self.err(e))?;
        let duration_buckets = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<(f64, u64)>>>())
            .map_err(|e| self.err(e))?;
        let (ran, ran_seconds) = conn
            .query_row(
                "SELECT runs, seconds FROM duration_totals WHERE id = 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .map_err(|e| self.err(e))?;
        Ok(Stats {
            by_state,
            by_verdict,
            duration_buckets,
            ran,
            ran_seconds,
        })
    }

    /// Forgets finished runs `max_age` old or older (a zero age: every one) and all but the
    /// newest `max_runs` finished ones; returns them, so their run directories can go too.
    pub fn prune(&self, max_age: Duration, max_runs: usize) -> Result<Vec<RunRow>> {
        self.transaction(|tx| {
            let cutoff = now_ms() - max_age.as_millis().min(i64::MAX as u128) as i64;
            let ids = ids_where(
                tx,
                "state = 'done' AND (created_ms <= ?1 OR id NOT IN
                    (SELECT id FROM runs WHERE state = 'done' ORDER BY id DESC LIMIT ?2))",
                params![cutoff, max_runs as i64],
            )?;
            let mut pruned = Vec::with_capacity(ids.len());
            for id in ids {
                pruned.push(get(tx, id)?);
                tx.execute("DELETE FROM runs WHERE id = ?1", [id])?;
            }
            Ok(pruned)
        })
    }

    fn query(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<RunRow>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_map(params, RunRow::from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }
}

/// The database's tag: four hex digits chosen at random when it was created.
fn instance_tag(conn: &Connection) -> rusqlite::Result<String> {
    use std::hash::{BuildHasher, Hasher};
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'tag'", [], |r| r.get(0))
        .optional()?;
    if let Some(tag) = existing {
        return Ok(tag);
    }
    // std's RandomState is seeded from the OS's randomness: enough for a name.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now_ms() as u128);
    let tag = format!("{:04x}", hasher.finish() & 0xffff);
    conn.execute("INSERT INTO meta (key, value) VALUES ('tag', ?1)", [&tag])?;
    Ok(tag)
}

fn get(conn: &Connection, id: i64) -> rusqlite::Result<RunRow> {
    conn.prepare_cached("SELECT * FROM runs WHERE id = ?1")?
        .query_row([id], RunRow::from_row)
}

fn ids_where(
    conn: &Connection,
    condition: &str,
    params: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM runs WHERE {condition} ORDER BY id"
    ))?;
    let rows = stmt.query_map(params, |r| r.get(0))?;
    rows.collect()
}

/// Closes a pull request's unfinished runs — every one, or with `older_than` only those
/// recorded before that run: received and queued ones at once, running ones marked to stop
/// with `verdict`.
fn displace(
    tx: &Connection,
    repo: &str,
    pr: u64,
    older_than: Option<i64>,
    verdict: &str,
    reason: &str,
) -> rusqlite::Result<Displaced> {
    let below = older_than.unwrap_or(i64::MAX);
    let waiting = ids_where(
        tx,
        "repo = ?1 AND pr = ?2 AND id < ?3 AND state IN ('received', 'queued')",
        params![repo, pr as i64, below],
    )?;
    let running = ids_where(
        tx,
        "repo = ?1 AND pr = ?2 AND id < ?3 AND state = 'running' AND cancel_verdict IS NULL",
        params![repo, pr as i64, below],
    )?;
    let mut displaced = Displaced::default();
    for id in waiting {
        tx.execute(
            "UPDATE runs SET state = 'done', verdict = ?2, reason = ?3, finished_ms = ?4 WHERE id = ?1",
            params![id, verdict, reason, now_ms()],
        )?;
        displaced.closed.push(get(tx, id)?);
    }
    for id in running {
        tx.execute(
            "UPDATE runs SET cancel_verdict = ?2, cancel_reason = ?3 WHERE id = ?1",
            params![id, verdict, reason],
        )?;
        displaced.to_stop.push(get(tx, id)?);
    }
    Ok(displaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state/serve.db")).unwrap();
        (dir, store)
    }

    fn command(comment_id: u64, pr: u64) -> NewRun {
        NewRun {
            repo: "coop-cloud/demo".into(),
            recipe: "demo".into(),
            pr,
            comment_id,
            comment_url: None,
            requested_by: "maintainer".into(),
            trigger: Trigger::Webhook,
            stages: vec![Stage::Install],
            mistake: None,
        }
    }

    #[test]
    fn a_comment_is_recorded_once_whichever_path_sees_it() {
        let (_d, store) = store();
        let first = store.record_command(&command(7, 1)).unwrap().unwrap();
        assert_eq!(first.state, RunState::Received);
        assert_eq!(first.stages, vec![Stage::Install]);
        let tag = first.run_dir_id().rsplit('-').next().unwrap().to_string();
        assert_eq!(first.run_dir_id(), format!("s{}-demo-pr1-{tag}", first.id));
        assert_eq!(tag.len(), 4);
        let mut again = command(7, 1);
        again.trigger = Trigger::Poll;
        assert_eq!(store.record_command(&again).unwrap(), None);
        store.mark_seen("coop-cloud/demo", &[8, 9]).unwrap();
        assert_eq!(store.record_command(&command(8, 1)).unwrap(), None);
        assert!(store.is_seen(9).unwrap());
        assert_eq!(store.list(&ListFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn a_newer_command_supersedes_queued_and_running_runs_of_its_pull_request() {
        let (_d, store) = store();
        let a = store.record_command(&command(1, 1)).unwrap().unwrap();
        store.queue(a.id, "aaa", None).unwrap();
        let running = store.claim_next(2).unwrap().unwrap();
        assert_eq!(running.id, a.id);
        let b = store.record_command(&command(2, 1)).unwrap().unwrap();
        let other_pr = store.record_command(&command(3, 2)).unwrap().unwrap();
        store.queue(other_pr.id, "ccc", None).unwrap();
        let Queueing::Queued(d) = store.queue(b.id, "bbb", None).unwrap() else {
            panic!("b was not queued");
        };
        assert_eq!(
            d.to_stop.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![a.id]
        );
        assert!(d.closed.is_empty());
        let c = store.record_command(&command(4, 1)).unwrap().unwrap();
        let Queueing::Queued(d) = store.queue(c.id, "ccc", None).unwrap() else {
            panic!("c was not queued");
        };
        assert_eq!(
            d.closed.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![b.id]
        );
        assert_eq!(d.closed[0].verdict.as_deref(), Some(verdicts::SUPERSEDED));
        assert!(
            d.to_stop.is_empty(),
            "a run already told to stop is not told twice"
        );
        // The child of the superseded run exits as terminated; the stop wins.
        let done = store.finish(a.id, "interrupted", Some("SIGTERM")).unwrap();
        assert_eq!(done.verdict.as_deref(), Some(verdicts::SUPERSEDED));
        assert!(done.reason.unwrap().contains("superseded by run"));
        assert_eq!(
            store.get(other_pr.id).unwrap().unwrap().state,
            RunState::Queued
        );
    }

    #[test]
    fn the_newest_command_wins_whichever_is_triaged_first() {
        let (_d, store) = store();
        let older = store.record_command(&command(1, 1)).unwrap().unwrap();
        let newer = store.record_command(&command(2, 1)).unwrap().unwrap();
        // A newer command not yet authorized (it may be an outsider's) displaces nothing.
        let waiting = store.record_command(&command(9, 1)).unwrap().unwrap();
        assert!(matches!(
            store.queue(older.id, "aaa", None).unwrap(),
            Queueing::Queued(_)
        ));
        store
            .close(waiting.id, verdicts::REFUSED, "outsider")
            .unwrap();
        let Queueing::Queued(d) = store.queue(newer.id, "bbb", None).unwrap() else {
            panic!("the newer command was not queued");
        };
        assert_eq!(
            d.closed.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![older.id]
        );
        // Queued in the other order, the newer one closes the older one, still waiting.
        let older = store.record_command(&command(11, 3)).unwrap().unwrap();
        let newer = store.record_command(&command(12, 3)).unwrap().unwrap();
        let Queueing::Queued(d) = store.queue(newer.id, "ddd", None).unwrap() else {
            panic!("the newer command was not queued");
        };
        assert_eq!(
            d.closed.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![older.id]
        );
        let closed = store.get(older.id).unwrap().unwrap();
        assert_eq!(closed.verdict.as_deref(), Some(verdicts::SUPERSEDED));
        assert!(
            closed
                .reason
                .as_deref()
                .unwrap()
                .contains(&format!("run {}", newer.id))
        );
        // A run no longer waiting is left alone.
        assert_eq!(
            store.queue(older.id, "ccc", None).unwrap(),
            Queueing::NotWaiting
        );
        let cancelled = store.record_command(&command(3, 2)).unwrap().unwrap();
        store
            .cancel_pr("coop-cloud/demo", 2, verdicts::CANCELLED, "pushed")
            .unwrap();
        assert_eq!(
            store.queue(cancelled.id, "ccc", None).unwrap(),
            Queueing::NotWaiting
        );
    }

    #[test]
    fn the_checkpointer_moves_the_log_into_the_database() {
        let (_d, store) = store();
        for c in 1..=20 {
            store.record_command(&command(c, c)).unwrap().unwrap();
        }
        let checkpointer = store.checkpointer().unwrap();
        let (log, copied) = checkpointer.run().unwrap();
        assert!(log > 0, "the writes left no log to checkpoint");
        assert_eq!(
            copied, log,
            "a passive checkpoint with nobody reading copies it all"
        );
        // Reads and writes go on as before.
        assert_eq!(store.list(&ListFilter::default()).unwrap().len(), 20);
        assert!(store.record_command(&command(21, 21)).unwrap().is_some());
    }

    #[test]
    fn claims_respect_the_concurrency_limit_and_queue_order() {
        let (_d, store) = store();
        for c in 1..=3 {
            let r = store.record_command(&command(c, c)).unwrap().unwrap();
            store.queue(r.id, "sha", None).unwrap();
        }
        let first = store.claim_next(2).unwrap().unwrap();
        let second = store.claim_next(2).unwrap().unwrap();
        assert!(first.id < second.id);
        assert_eq!(store.claim_next(2).unwrap(), None);
        store.finish(first.id, "pass", None).unwrap();
        assert!(store.claim_next(2).unwrap().is_some());
    }

    #[test]
    fn a_restart_closes_running_runs_as_interrupted_and_keeps_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.db");
        let (running, queued, received) = {
            let store = Store::open(&path).unwrap();
            let a = store.record_command(&command(1, 1)).unwrap().unwrap();
            store.queue(a.id, "a", None).unwrap();
            store.claim_next(1).unwrap().unwrap();
            let b = store.record_command(&command(2, 2)).unwrap().unwrap();
            store.queue(b.id, "b", None).unwrap();
            let c = store.record_command(&command(3, 3)).unwrap().unwrap();
            (a.id, b.id, c.id)
        };
        let store = Store::open(&path).unwrap();
        let interrupted = store.recover("serve stopped").unwrap();
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].id, running);
        assert_eq!(
            interrupted[0].verdict.as_deref(),
            Some(verdicts::INTERRUPTED)
        );
        assert!(!interrupted[0].reported);
        assert_eq!(store.in_state(RunState::Queued).unwrap()[0].id, queued);
        assert_eq!(store.in_state(RunState::Received).unwrap()[0].id, received);
        assert_eq!(store.unreported().unwrap().len(), 1);
    }

    #[test]
    fn pruning_keeps_the_newest_finished_runs_and_every_unfinished_one() {
        let (_d, store) = store();
        let mut ids = Vec::new();
        for c in 1..=4 {
            let r = store.record_command(&command(c, c)).unwrap().unwrap();
            store.close(r.id, verdicts::REFUSED, "no").unwrap();
            ids.push(r.id);
        }
        let live = store.record_command(&command(9, 9)).unwrap().unwrap();
        let pruned = store.prune(Duration::from_secs(3600), 2).unwrap();
        assert_eq!(pruned.iter().map(|r| r.id).collect::<Vec<_>>(), ids[..2]);
        assert!(store.get(live.id).unwrap().is_some());
        assert_eq!(store.prune(Duration::ZERO, 100).unwrap().len(), 2);
        assert!(store.get(live.id).unwrap().is_some());
    }

    #[test]
    fn listings_filter_and_stats_count() {
        let (_d, store) = store();
        let a = store.record_command(&command(1, 1)).unwrap().unwrap();
        store.close(a.id, verdicts::REFUSED, "outsider").unwrap();
        let b = store.record_command(&command(2, 2)).unwrap().unwrap();
        store.queue(b.id, "s", None).unwrap();
        let only = store
            .list(&ListFilter {
                state: Some(RunState::Queued),
                ..ListFilter::default()
            })
            .unwrap();
        assert_eq!(only.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b.id]);
        let by_pr = store.runs_of_pr("COOP-CLOUD/demo", 1).unwrap();
        assert_eq!(by_pr.len(), 1);
        let stats = store.stats().unwrap();
        assert!(stats.by_state.contains(&("queued".into(), 1)));
        assert_eq!(stats.by_verdict, vec![("refused".into(), 1)]);
        assert_eq!(store.recipes().unwrap(), vec!["demo".to_string()]);
        store.set_summary_comment("coop-cloud/demo", 1, 55).unwrap();
        store.set_summary_comment("coop-cloud/demo", 1, 56).unwrap();
        assert_eq!(
            store.summary_comment("coop-cloud/demo", 1).unwrap(),
            Some(56)
        );
        assert_eq!(store.watermark("coop-cloud/demo").unwrap(), None);
        store
            .set_watermark("coop-cloud/demo", "2026-01-01T00:00:00Z")
            .unwrap();
        assert!(store.watermark("coop-cloud/demo").unwrap().is_some());
    }

    #[test]
    fn a_database_of_a_newer_schema_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }

    /// Makes running run `id` look started `seconds` ago.
    fn started_ago(store: &Store, id: i64, seconds: i64) {
        store
            .conn()
            .execute(
                "UPDATE runs SET started_ms = ?2 WHERE id = ?1",
                params![id, now_ms() - seconds * 1000],
            )
            .unwrap();
    }

    /// Regression: /metrics counted finished runs and their durations from the runs retention
    /// keeps, so its counter and histogram fell whenever retention forgot runs.
    #[test]
    fn regression_finished_runs_stayed_counted_only_while_retention_kept_them() {
        let (_d, store) = store();
        for (c, (verdict, seconds)) in [("pass", 20), ("fail", 100), ("pass", 4000)]
            .into_iter()
            .enumerate()
        {
            let r = store
                .record_command(&command(c as u64 + 1, 1))
                .unwrap()
                .unwrap();
            store.queue(r.id, "sha", None).unwrap();
            let running = store.claim_next(1).unwrap().unwrap();
            started_ago(&store, running.id, seconds);
            store.finish(running.id, verdict, None).unwrap();
        }
        let refused = store.record_command(&command(9, 2)).unwrap().unwrap();
        store
            .close(refused.id, verdicts::REFUSED, "outsider")
            .unwrap();
        // Made `done` twice: counted once.
        store.close(refused.id, verdicts::ERROR, "again").unwrap();
        let before = store.stats().unwrap();
        assert_eq!(
            before.by_verdict,
            vec![
                ("fail".into(), 1),
                ("pass".into(), 2),
                ("refused".into(), 1)
            ]
        );
        let bucket = |stats: &Stats, le: f64| {
            stats
                .duration_buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map(|(_, n)| *n)
        };
        assert_eq!(bucket(&before, 30.0), Some(1));
        assert_eq!(bucket(&before, 120.0), Some(2));
        assert_eq!(bucket(&before, 3600.0), Some(2));
        assert_eq!(bucket(&before, 7200.0), Some(3));
        assert_eq!(before.ran, 3);
        assert!(
            (4120.0..4130.0).contains(&before.ran_seconds),
            "{}",
            before.ran_seconds
        );

        assert_eq!(store.prune(Duration::ZERO, 0).unwrap().len(), 4);
        let after = store.stats().unwrap();
        assert!(after.by_state.is_empty(), "{:?}", after.by_state);
        assert_eq!(after.by_verdict, before.by_verdict);
        assert_eq!(after.duration_buckets, before.duration_buckets);
        assert_eq!(
            (after.ran, after.ran_seconds),
            (before.ran, before.ran_seconds)
        );
    }

    #[test]
    fn a_version_1_database_gets_totals_of_the_runs_it_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = 1; COMMIT;"))
                .unwrap();
            conn.execute_batch(
                "INSERT INTO runs (repo, recipe, pr, requested_by, trigger, stages, state, verdict, created_ms, started_ms, finished_ms)
                 VALUES ('o/r', 'r', 1, 'm', 'webhook', 'install', 'done', 'pass', 0, 1000, 51000),
                        ('o/r', 'r', 2, 'm', 'webhook', 'install', 'done', 'refused', 0, NULL, 10),
                        ('o/r', 'r', 3, 'm', 'webhook', 'install', 'queued', NULL, 0, NULL, NULL);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let stats = store.stats().unwrap();
        assert_eq!(
            stats.by_verdict,
            vec![("pass".into(), 1), ("refused".into(), 1)]
        );
        assert_eq!(stats.duration_buckets.len(), DURATION_BUCKETS.len());
        assert_eq!(stats.duration_buckets[0], (30.0, 0));
        assert_eq!(stats.duration_buckets[1], (60.0, 1));
        assert_eq!((stats.ran, stats.ran_seconds), (1, 50.0));
        // And it counts on from there.
        let queued = store.claim_next(1).unwrap().unwrap();
        store.finish(queued.id, "fail", None).unwrap();
        let stats = store.stats().unwrap();
        assert!(stats.by_verdict.contains(&("fail".into(), 1)));
        assert_eq!(stats.ran, 2);
        // Opening it again changes nothing.
        drop(store);
        assert_eq!(Store::open(&path).unwrap().stats().unwrap(), stats);
    }
}
