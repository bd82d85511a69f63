//! Reaping what killed runs leaked (J1–J11).
//!
//! A sweep gathers candidates from three places: the canonical app env files
//! (`<abra home>/servers/*/<domain>.env`), the swarm resources that carry ccci's
//! `ccci.run-id` label, grouped by stack, and the lock files of test domains (a run killed
//! after taking its lock but before creating its app leaves only that file behind). Only test domains under the configured zone are
//! candidates (N3): a hand-made app is never one, and two ccci setups with different zones on one
//! swarm never reap each other's apps. Each candidate's app-domain lock decides its fate: held
//! means a live run (skipped, and flagged when held for longer than the leak threshold); free or
//! absent means an orphan, reaped by [`crate::docker::teardown`] while the janitor holds the lock, after
//! which the lock file is unlinked.
//!
//! Only apps of this janitor's own setup are candidates (J10): a run's resources carry a
//! `ccci.setup` label (a hash of its lock directory, see [`crate::labels`]) and its env file a
//! `CCCI_SETUP` line, so a second ccci setup on the same host (a developer's runs with their own
//! lock directory, a test suite's temporary ones) is never taken for orphans. An app with no
//! setup mark at all is ours only when our lock directory has its lock file. An app kept on
//! purpose carries `ccci.keep-until` and is left alone until then (J11).
//!
//! This module owns those decisions. It must never steal a held lock, never reap on a guess
//! (an unreadable lock file, env file or lock directory, or a swarm it cannot see, is skipped
//! and reported), never touch warm apps (not even by creating their lock file), never reap what
//! appeared after the sweep started, and never panic or fail as a whole because of one app.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::Config;
use crate::docker::api::{Engine, Kind};
use crate::event::{Event, EventSink};
use crate::labels;
use crate::naming;
use crate::sys::lock::{AppLock, Contents, Holder};
use crate::sys::process::Runner;

/// The label docker puts on everything a stack creates.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// How a sweep runs.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Report what would be reaped; change nothing (not even a lock file).
    pub dry_run: bool,
    /// When the sweep started: nothing created after it is reaped in this sweep (J9).
    pub now: SystemTime,
}

impl SweepOptions {
    /// A sweep starting now.
    pub fn now(dry_run: bool) -> Self {
        SweepOptions {
            dry_run,
            now: SystemTime::now(),
        }
    }
}

/// What the janitor did with one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Torn down under its lock; the lock file is gone.
    Reaped,
    /// A dry run found an orphan it would reap.
    WouldReap,
    /// Its lock is held by a live run (J2).
    SkippedLive,
    /// Its lock has been held for longer than the leak threshold (J6); not stolen.
    FlaggedLeaked,
    /// A configured warm app (J7).
    SkippedWarm,
    /// Created after the sweep started (J9).
    SkippedNew,
    /// Kept on purpose until a time that has not come (J11).
    SkippedKept,
    /// Deployed by another ccci setup on this host (J10).
    SkippedForeign,
    /// Gone by the time the janitor held its lock: another janitor or its own run removed it.
    AlreadyGone,
    /// Could not be judged or not fully removed; the reason says why (J8).
    Error,
}

/// One line of a sweep's report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detail {
    pub action: Action,
    /// The app domain, when the problem is about one app.
    pub domain: Option<String>,
    pub stack: Option<String>,
    pub reason: String,
    /// Who holds the lock, for live and leaked-looking runs.
    pub holder: Option<Holder>,
    /// How long the lock has been held, in seconds, when known.
    pub held_secs: Option<u64>,
    /// What a reap could not remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leftovers: Vec<String>,
    /// Unix seconds a kept app is kept until.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<u64>,
}

/// The result of a sweep; `--json` prints it, the terminal prints [`Summary::line`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    pub reaped: usize,
    /// Orphans a dry run would have reaped.
    pub would_reap: usize,
    pub skipped_live: usize,
    pub flagged_leaked: usize,
    pub errors: usize,
    pub details: Vec<Detail>,
    #[serde(with = "crate::event::secs")]
    pub elapsed: Duration,
}

impl Summary {
    /// "janitor: reaped N, skipped N live, flagged N leaked, N errors".
    pub fn line(&self) -> String {
        let (head, count) = if self.dry_run {
            ("janitor (dry run): would reap", self.would_reap)
        } else {
            ("janitor: reaped", self.reaped)
        };
        format!(
            "{head} {count}, skipped {} live, flagged {} leaked, {} errors",
            self.skipped_live, self.flagged_leaked, self.errors
        )
    }

    /// True when an operator should look: errors, or runs that look leaked
    /// ([`crate::exit_code::JANITOR_ATTENTION`]).
    pub fn needs_attention(&self) -> bool {
        self.errors > 0 || self.flagged_leaked > 0
    }

    fn push(&mut self, sink: &dyn EventSink, detail: Detail) {
        match detail.action {
            Action::Reaped => self.reaped += 1,
            Action::WouldReap => self.would_reap += 1,
            Action::SkippedLive => self.skipped_live += 1,
            Action::FlaggedLeaked => self.flagged_leaked += 1,
            Action::Error => self.errors += 1,
            Action::SkippedWarm
            | Action::SkippedNew
            | Action::SkippedKept
            | Action::SkippedForeign
            | Action::AlreadyGone => {}
        }
        let who = detail
            .domain
            .as_deref()
            .or(detail.stack.as_deref())
            .map(|w| format!("{w}: "))
            .unwrap_or_default();
        sink.event(&Event::Notice {
            message: format!("janitor: {who}{}", detail.reason),
        });
        self.details.push(detail);
    }
}

/// One app the janitor may have to reap, gathered from env files and swarm labels.
#[derive(Clone, Debug, Default)]
struct Candidate {
    domain: Option<String>,
    stack: String,
    env_file: Option<PathBuf>,
    /// `kind name` of each labelled resource, for the report.
    resources: Vec<String>,
    /// The newest creation time seen among its env file and resources.
    newest: Option<SystemTime>,
    /// The `ccci.setup` labels of its resources and the `CCCI_SETUP` of its env file.
    setups: BTreeSet<String>,
    /// The latest `ccci.keep-until` of its resources.
    keep_until: Option<u64>,
    /// Why its env file could not be read, when it could not.
    env_unreadable: Option<String>,
}

impl Candidate {
    fn saw(&mut self, created: Option<SystemTime>) {
        if let Some(created) = created {
            self.newest = Some(self.newest.map_or(created, |n| n.max(created)));
        }
    }
}

/// Sweeps the host once, talking to the engine `DOCKER_HOST` names (or the default socket).
/// Never panics and never fails as a whole: per-app problems are counted in the summary.
pub fn sweep(
    config: &Config,
    runner: &Runner,
    opts: &SweepOptions,
    sink: &dyn EventSink,
) -> Summary {
    let engine = Engine::from_env();
    sweep_with(
        config,
        runner,
        engine.as_ref().map_err(|e| e.to_string()),
        opts,
        sink,
    )
}

/// [`sweep`] against a given engine (`Err` carries why there is none).
pub fn sweep_with(
    config: &Config,
    runner: &Runner,
    engine: std::result::Result<&Engine, String>,
    opts: &SweepOptions,
    sink: &dyn EventSink,
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary {
        dry_run: opts.dry_run,
        ..Summary::default()
    };
    Sweep {
        config,
        runner,
        engine,
        opts,
        sink,
        lock_domains: None,
    }
    .run(&mut summary);
    summary.elapsed = started.elapsed();
    summary
}

struct Sweep<'a> {
    config: &'a Config,
    runner: &'a Runner,
    engine: std::result::Result<&'a Engine, String>,
    opts: &'a SweepOptions,
    sink: &'a dyn EventSink,
    /// Stack name → domain of every lock file, read once when a stack has no domain label.
    lock_domains: Option<BTreeMap<String, String>>,
}

fn problem(domain: Option<&str>, stack: Option<&str>, reason: String) -> Detail {
    Detail {
        action: Action::Error,
        domain: domain.map(str::to_owned),
        stack: stack.map(str::to_owned),
        reason,
        holder: None,
        held_secs: None,
        leftovers: Vec::new(),
        keep_until: None,
    }
}

impl Sweep<'_> {
    fn run(&mut self, summary: &mut Summary) {
        let lock_dir = &self.config.lock_dir;
        // A missing lock directory means no run could have locked anything there: either a
        // run will create it, or runs use another directory than this janitor does. Reaping
        // would then be a guess that every app is an orphan (J8).
        match std::fs::metadata(lock_dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let reason = format!(
                    "lock directory {} is not a directory; nothing swept",
                    lock_dir.display()
                );
                return summary.push(self.sink, problem(None, None, reason));
            }
            Err(e) => {
                let reason = format!(
                    "cannot use the lock directory {}: {e}; nothing swept (runs create it; check CCCI_APP_LOCK_DIR)",
                    lock_dir.display()
                );
                return summary.push(self.sink, problem(None, None, reason));
            }
        }
        let mut candidates = BTreeMap::new();
        self.env_file_candidates(&mut candidates, summary);
        self.lock_file_candidates(&mut candidates);
        let swarm_ok = self.swarm_candidates(&mut candidates, summary);
        self.sink.event(&Event::StepStarted {
            step: "janitor".into(),
            detail: format!("{} candidates", candidates.len()),
        });
        for candidate in candidates.into_values() {
            if let Some(signal) = self.runner.cancel().and_then(|c| c.signal()) {
                let reason = format!(
                    "sweep interrupted by {}",
                    crate::sys::signal::signal_name(signal)
                );
                return summary.push(self.sink, problem(None, None, reason));
            }
            self.judge(candidate, swarm_ok, summary);
        }
    }

    /// Candidates (a): canonical env files of test domains, in any server directory.
    fn env_file_candidates(
        &self,
        candidates: &mut BTreeMap<String, Candidate>,
        summary: &mut Summary,
    ) {
        let servers = self.config.abra_dir.join("servers");
        let entries = match std::fs::read_dir(&servers) {
            Ok(entries) => entries,
            // A host with no app yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                let reason = format!(
                    "cannot read {}: {e}; env files not swept",
                    servers.display()
                );
                return summary.push(self.sink, problem(None, None, reason));
            }
        };
        for server in entries.flatten() {
            let dir = server.path();
            let Ok(files) = std::fs::read_dir(&dir) else {
                // Not a directory (or unreadable): abra keeps only server directories here.
                if dir.is_dir() {
                    let reason = format!("cannot read {}; its env files not swept", dir.display());
                    summary.push(self.sink, problem(None, None, reason));
                }
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(domain) = name.to_str().and_then(|n| n.strip_suffix(".env")) else {
                    continue;
                };
                if !naming::is_test_domain(domain, &self.config.domain_zone) {
                    continue;
                }
                let path = file.path();
                let stack = naming::stack_name(domain);
                let candidate = candidates
                    .entry(stack.clone())
                    .or_insert_with(|| Candidate {
                        stack,
                        ..Candidate::default()
                    });
                candidate.domain = Some(domain.to_string());
                if candidate.env_file.is_none() {
                    candidate.env_file = Some(path.clone());
                }
                // An unreadable file is judged (and refused) when reaped; here it just has no
                // setup mark.
                match crate::recipe::envfile::EnvFile::read(&path) {
                    Ok(env) => {
                        if let Some(setup) = env.get(labels::ENV_SETUP) {
                            candidate.setups.insert(setup.to_string());
                        }
                    }
                    Err(e) => candidate.env_unreadable = Some(e.to_string()),
                }
                // An entry that vanished since the listing is simply not a candidate's creation
                // time; one that is no regular file is judged (and refused) later.
                candidate.saw(std::fs::metadata(&path).and_then(|m| m.modified()).ok());
            }
        }
    }

    /// Candidates (c): lock files of test domains. Most belong to apps already listed; the rest
    /// are either held by a run that has not deployed yet (skipped as live) or stale, and a
    /// stale one is unlinked under its lock like any reaped app's. Other lock files are never
    /// looked at beyond their name.
    fn lock_file_candidates(&self, candidates: &mut BTreeMap<String, Candidate>) {
        // The directory was checked just before; an error here leaves the other candidates.
        let Ok(entries) = std::fs::read_dir(&self.config.lock_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(domain) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
                continue;
            };
            if !naming::is_test_domain(domain, &self.config.domain_zone) {
                continue;
            }
            let stack = naming::stack_name(domain);
            if candidates.contains_key(&stack) {
                continue;
            }
            let mut candidate = Candidate {
                domain: Some(domain.to_string()),
                stack: stack.clone(),
                ..Candidate::default()
            };
            candidate.saw(entry.metadata().and_then(|m| m.modified()).ok());
            candidates.insert(stack, candidate);
        }
    }

    /// Candidates (b): stacks with resources labelled by a ccci run. `false` when the swarm
    /// could not be asked: then nothing is reaped, since a reap could not be checked.
    fn swarm_candidates(
        &mut self,
        candidates: &mut BTreeMap<String, Candidate>,
        summary: &mut Summary,
    ) -> bool {
        let engine = match self.engine {
            Ok(engine) => engine,
            Err(ref why) => {
                let reason = format!("cannot ask the swarm ({why}); nothing reaped");
                summary.push(self.sink, problem(None, None, reason));
                return false;
            }
        };
        let resources = match engine.list_all(&[labels::RUN_ID]) {
            Ok(resources) => resources,
            Err(e) => {
                let reason = format!("cannot list swarm resources ({e}); nothing reaped");
                summary.push(self.sink, problem(None, None, reason));
                return false;
            }
        };
        for resource in resources {
            // Outside a stack there is nothing a stack teardown could remove.
            let Some(stack) = resource.label(STACK_LABEL).filter(|s| !s.is_empty()) else {
                continue;
            };
            let domain = match resource.label(labels::DOMAIN) {
                Some(domain) if naming::stack_name(domain) == stack => domain.to_string(),
                _ => self.domain_of_stack(stack),
            };
            if !naming::is_test_domain(&domain, &self.config.domain_zone) {
                continue;
            }
            let candidate = candidates
                .entry(stack.to_string())
                .or_insert_with(|| Candidate {
                    stack: stack.to_string(),
                    ..Candidate::default()
                });
            candidate.domain = Some(domain);
            candidate
                .resources
                .push(format!("{} {}", resource.kind.as_str(), resource.name));
            if let Some(setup) = resource.label(labels::SETUP) {
                candidate.setups.insert(setup.to_string());
            }
            if let Some(until) = resource
                .label(labels::KEEP_UNTIL)
                .and_then(|u| u.parse::<u64>().ok())
            {
                candidate.keep_until = Some(candidate.keep_until.map_or(until, |k| k.max(until)));
            }
            if made_by_a_run(resource.kind) {
                candidate.saw(resource.created);
            }
        }
        true
    }

    /// The domain of a stack whose resources do not name it: the lock file whose stack name
    /// it is, else the one domain that stack name comes from (domains have no underscores, so
    /// the stack name maps back to exactly one); its lock file is then absent (J5).
    fn domain_of_stack(&mut self, stack: &str) -> String {
        let lock_dir = &self.config.lock_dir;
        let map = self.lock_domains.get_or_insert_with(|| {
            std::fs::read_dir(lock_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let domain = name.strip_suffix(".lock")?.to_string();
                    Some((naming::stack_name(&domain), domain))
                })
                .collect()
        });
        map.get(stack)
            .cloned()
            .unwrap_or_else(|| stack.replace('_', "."))
    }

    fn is_warm(&self, candidate: &Candidate) -> bool {
        self.config.warm_apps.iter().any(|warm| {
            candidate.domain.as_deref() == Some(warm.as_str())
                || naming::stack_name(warm) == candidate.stack
        })
    }

    /// Decides one candidate, and reaps it when it is an orphan.
    fn judge(&self, candidate: Candidate, swarm_ok: bool, summary: &mut Summary) {
        let stack = candidate.stack.clone();
        let Some(domain) = candidate.domain.clone() else {
            let reason = "no domain to lock; left alone".to_string();
            return summary.push(self.sink, problem(None, Some(&stack), reason));
        };
        let detail = |action: Action, reason: String| Detail {
            action,
            domain: Some(domain.clone()),
            stack: Some(stack.clone()),
            reason,
            holder: None,
            held_secs: None,
            leftovers: Vec::new(),
            keep_until: None,
        };
        // J7: before anything touches the lock directory.
        if self.is_warm(&candidate) {
            let d = detail(Action::SkippedWarm, "warm app, never reaped".into());
            return summary.push(self.sink, d);
        }
        let lock_dir = &self.config.lock_dir;
        let path = match crate::sys::lock::lock_path(lock_dir, &domain) {
            Ok(path) => path,
            Err(e) => return summary.push(self.sink, detail(Action::Error, e.to_string())),
        };
        // J10: another setup's app is not ours to judge, whatever our lock directory says.
        let own = labels::setup_id(lock_dir);
        if let (true, Some(why)) = (candidate.setups.is_empty(), &candidate.env_unreadable) {
            let reason =
                format!("unreadable env file ({why}): whose app it is cannot be told; left alone");
            return summary.push(self.sink, detail(Action::Error, reason));
        }
        let ours = if candidate.setups.is_empty() {
            path.exists()
        } else {
            candidate.setups.contains(&own)
        };
        if !ours {
            let whose = if candidate.setups.is_empty() {
                "no setup mark and no lock file here".to_string()
            } else {
                format!(
                    "setup {}",
                    candidate
                        .setups
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let d = detail(
                Action::SkippedForeign,
                format!("not this setup's app ({whose}; this setup is {own}); left alone"),
            );
            return summary.push(self.sink, d);
        }
        // J11: kept on purpose until a time that has not come.
        let now_unix = self
            .opts
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(until) = candidate.keep_until.filter(|u| *u > now_unix) {
            let mut d = detail(
                Action::SkippedKept,
                format!(
                    "kept until {}; remove it sooner with: ccci teardown --domain {domain}",
                    crate::timestamp::rfc3339_of_unix(until)
                ),
            );
            d.keep_until = Some(until);
            return summary.push(self.sink, d);
        }
        // J9.
        if candidate.newest.is_some_and(|t| t > self.opts.now) {
            let d = detail(
                Action::SkippedNew,
                "created after the sweep started; left for the next sweep".into(),
            );
            return summary.push(self.sink, d);
        }
        // J8: a directory (or anything but a file) where the lock file should be.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                let reason = format!(
                    "{} is not a lock file but a {}; left alone",
                    path.display(),
                    if meta.is_dir() {
                        "directory"
                    } else if meta.file_type().is_symlink() {
                        "symbolic link"
                    } else {
                        "special file"
                    }
                );
                return summary.push(self.sink, detail(Action::Error, reason));
            }
            _ => {}
        }
        // A dry run, or a sweep that cannot see the swarm, only looks: it creates no lock file.
        let can_reap = !self.opts.dry_run && swarm_ok;
        let lock_file_exists = path.exists();
        let lock = if !can_reap && !lock_file_exists {
            None
        } else {
            match AppLock::try_acquire_unrecorded(lock_dir, &domain, can_reap) {
                Ok(Some(lock)) => Some(lock),
                Ok(None) if !path.exists() => None,
                Ok(None) => {
                    return self.held(&path, detail(Action::SkippedLive, String::new()), summary);
                }
                Err(e) => {
                    let reason = format!("cannot probe its lock: {e}; left alone");
                    return summary.push(self.sink, detail(Action::Error, reason));
                }
            }
        };
        if lock
            .as_ref()
            .is_some_and(|l| *l.previous() == Contents::Corrupt)
        {
            let reason = format!(
                "lock file {} holds no readable holder record; left alone",
                path.display()
            );
            return summary.push(self.sink, detail(Action::Error, reason));
        }
        let what = describe(&candidate);
        if self.opts.dry_run {
            let d = detail(Action::WouldReap, format!("orphan ({what}); would reap"));
            return summary.push(self.sink, d);
        }
        if !swarm_ok {
            let reason = format!("orphan ({what}) not reaped: the swarm cannot be asked");
            return summary.push(self.sink, detail(Action::Error, reason));
        }
        let Some(lock) = lock else {
            let reason = "lock vanished while probing; left for the next sweep".to_string();
            return summary.push(self.sink, detail(Action::Error, reason));
        };
        self.reap(lock, candidate, &what, detail, summary);
    }

    /// Reports a held lock: live (J2), or possibly leaked (J6). Never takes it.
    fn held(&self, path: &Path, mut detail: Detail, summary: &mut Summary) {
        let domain = detail.domain.clone().unwrap_or_default();
        match crate::sys::lock::read_contents(path) {
            Ok(Contents::Holder(holder)) => {
                let age = holder.age(self.opts.now);
                let who = format!(
                    "run {} (pid {}, since {})",
                    holder.run_id, holder.pid, holder.started_at
                );
                if age.is_some_and(|a| a > self.config.leak_threshold) {
                    detail.action = Action::FlaggedLeaked;
                    detail.reason = format!(
                        "possible leaked run: {domain} locked by {who}, longer than the leak threshold of {}; not stolen",
                        crate::config::format_duration(self.config.leak_threshold)
                    );
                } else {
                    detail.reason = format!("skipped: locked by live {who}");
                }
                detail.held_secs = age.map(|a| a.as_secs());
                detail.holder = Some(holder);
            }
            Ok(Contents::Empty) => detail.reason = "skipped: locked by a live holder".into(),
            Ok(Contents::Corrupt) => {
                detail.reason = "skipped: locked by a live holder whose record is unreadable".into()
            }
            Err(e) => detail.reason = format!("skipped: locked ({e})"),
        }
        summary.push(self.sink, detail);
    }

    /// Tears an orphan down while holding its lock (J1, J3), then unlinks the lock file.
    fn reap(
        &self,
        lock: AppLock,
        candidate: Candidate,
        what: &str,
        detail: impl Fn(Action, String) -> Detail,
        summary: &mut Summary,
    ) {
        let janitor = Holder::this_process(format!("janitor-{}", std::process::id()));
        if let Err(e) = lock.record(&janitor) {
            let reason = format!("cannot claim its lock: {e}; left alone");
            return summary.push(self.sink, detail(Action::Error, reason));
        }
        // Under the lock, look again: another janitor may have reaped it, or its run may have
        // finished its own teardown, since the candidates were listed (J4).
        let listed_nothing = candidate.env_file.is_none() && candidate.resources.is_empty();
        let env_file = candidate.env_file.filter(|p| p.exists());
        if let Some(env_file) = &env_file
            && let Err(e) = crate::recipe::envfile::EnvFile::read(env_file)
        {
            let reason = format!("unreadable env file: {e}; left alone");
            return summary.push(self.sink, detail(Action::Error, reason));
        }
        let namespace = format!("{STACK_LABEL}={}", candidate.stack);
        let resources = match self
            .engine
            .as_ref()
            .map(|e| e.list_all(&[namespace.as_str()]))
        {
            Ok(Ok(resources)) => resources,
            Ok(Err(e)) => {
                let reason = format!("cannot list its resources again ({e}); left alone");
                return summary.push(self.sink, detail(Action::Error, reason));
            }
            Err(why) => {
                let reason = format!("cannot ask the swarm ({why}); left alone");
                return summary.push(self.sink, detail(Action::Error, reason));
            }
        };
        if resources
            .iter()
            .any(|r| made_by_a_run(r.kind) && r.created.is_some_and(|t| t > self.opts.now))
        {
            let d = detail(
                Action::SkippedNew,
                "resources created after the sweep started; left for the next sweep".into(),
            );
            return summary.push(self.sink, d);
        }
        if env_file.is_none() && resources.is_empty() {
            let _ = lock.unlink_held();
            let reason = if listed_nothing {
                "nothing deployed; stale lock file removed"
            } else {
                "already gone"
            };
            let d = detail(Action::AlreadyGone, reason.into());
            return summary.push(self.sink, d);
        }
        let domain = lock.domain().to_string();
        self.sink.event(&Event::StepStarted {
            step: "reap".into(),
            detail: domain.clone(),
        });
        let target = crate::docker::teardown::Target {
            domain: domain.clone(),
            stack: candidate.stack.clone(),
            env_file,
        };
        let budget = self.runner.with_budget(self.config.teardown_budget);
        let outcome = crate::docker::teardown::teardown(&budget, &target, self.sink);
        let ok = outcome.leftovers.is_empty();
        self.sink.event(&Event::StepFinished {
            step: "reap".into(),
            ok,
            detail: domain,
            elapsed: outcome.elapsed,
        });
        if !ok {
            let mut d = detail(
                Action::Error,
                format!(
                    "orphan ({what}) only partly reaped; {} left for the next sweep",
                    outcome.leftovers.len()
                ),
            );
            d.leftovers = outcome.leftovers;
            return summary.push(self.sink, d);
        }
        // Unlink while still holding it: a run waiting for this domain notices and starts on
        // a fresh lock file, after the reap (J3).
        if let Err(e) = lock.unlink_held() {
            let reason = format!("reaped, but its lock file stays: {e}");
            return summary.push(self.sink, detail(Action::Error, reason));
        }
        drop(lock);
        // Nothing was left to remove: what was listed under the lock was only the node's copy
        // of a network the swarm had already removed (teardown does not wait for those to go,
        // see `crate::docker::teardown`), e.g. right after another janitor's reap (J4).
        let d = if outcome.removed.is_empty() {
            detail(Action::AlreadyGone, "already gone".into())
        } else {
            detail(Action::Reaped, format!("orphan ({what}) reaped"))
        };
        summary.push(self.sink, d);
    }
}

/// Whether a resource's creation time says when a run made it (J9). Swarm makes containers
/// and a stack's volumes on its own whenever a task starts, long after the deploy: an orphan
/// whose service restarts would otherwise look new to every sweep and never be reaped. A run
/// that deploys after the sweep started always makes a service, network, secret or config then.
fn made_by_a_run(kind: Kind) -> bool {
    !matches!(kind, Kind::Container | Kind::Volume)
}

/// "env file, 3 swarm resources" for the report.
fn describe(candidate: &Candidate) -> String {
    let mut parts = Vec::new();
    if candidate.env_file.is_some() {
        parts.push("env file".to_string());
    }
    let kinds: BTreeSet<&str> = candidate
        .resources
        .iter()
        .filter_map(|r| r.split(' ').next())
        .collect();
    if !candidate.resources.is_empty() {
        parts.push(format!(
            "{} swarm resources: {}",
            candidate.resources.len(),
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if parts.is_empty() {
        "lock file only".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_reads_like_the_docs() {
        let mut s = Summary {
            reaped: 2,
            skipped_live: 1,
            flagged_leaked: 0,
            errors: 3,
            ..Summary::default()
        };
        assert_eq!(
            s.line(),
            "janitor: reaped 2, skipped 1 live, flagged 0 leaked, 3 errors"
        );
        assert!(s.needs_attention());
        s.dry_run = true;
        s.would_reap = 4;
        assert!(s.line().starts_with("janitor (dry run): would reap 4,"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["would_reap"], 4);
    }

    #[test]
    fn candidate_keeps_the_newest_creation_time() {
        let mut c = Candidate::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        c.saw(Some(t0 + Duration::from_secs(5)));
        c.saw(Some(t0));
        c.saw(None);
        assert_eq!(c.newest, Some(t0 + Duration::from_secs(5)));
    }
}
