//! Removing everything a run deployed, whatever deployed it: the stack's services, its
//! containers (killed, not stopped: the data is disposable and a graceful stop waits out each
//! container's stop grace period), volumes, secrets, configs and networks, all found by the
//! label `com.docker.stack.namespace=<stack>`, then the app's env file.
//!
//! Teardown is idempotent (what is already gone counts as removed), never panics and never
//! fails: what it cannot remove within the runner's budget is reported as a leftover for the
//! janitor. It must never touch anything that does not carry the stack's label.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::docker::NAMESPACE_LABEL;
use crate::docker::api::{Engine, Kind};
use crate::docker::cli;
use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::sys::process::{Output, Runner};

/// Waiting loops look again this often (containers going, volumes freed, networks gone).
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Without a budget on the runner, no single waiting step takes longer than this.
const STEP_LIMIT: Duration = Duration::from_secs(60);
/// One engine request of teardown's (the runner's budget bounds the waiting loops).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to tear down.
#[derive(Clone, Debug)]
pub struct Target {
    pub domain: String,
    pub stack: String,
    /// The app's env file (abra's `<server>/<domain>.env`), deleted last.
    pub env_file: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// What was removed, e.g. `service s_app`, `container s_app.1.x`, `volume s_data`.
    pub removed: Vec<String>,
    /// What is still there, with why, for the janitor.
    pub leftovers: Vec<String>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn is_clean(&self) -> bool {
        self.leftovers.is_empty()
    }
}

/// How many tasks of `services` in a `GET /tasks` answer may still create a container: those
/// the node has not prepared yet. Tasks past that point already have their container, which
/// the container step kills; waiting for them to stop would wait out their graceful stop.
fn tasks_before_their_container(tasks: &serde_json::Value, services: &[String]) -> usize {
    const BEFORE_CONTAINER: [&str; 6] = [
        "new",
        "allocated",
        "pending",
        "assigned",
        "accepted",
        "preparing",
    ];
    tasks
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|t| {
                    t["ServiceID"]
                        .as_str()
                        .is_some_and(|id| services.iter().any(|s| s == id))
                })
                .filter(|t| {
                    t["Status"]["State"]
                        .as_str()
                        .is_some_and(|s| BEFORE_CONTAINER.contains(&s))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Docker CLI arguments per kind of stack object; the kinds themselves are the engine's.
/// `docker … ls` listing the names of this kind's objects of `stack`.
fn list_args(kind: Kind, stack: &str) -> Vec<String> {
    let filter = format!("label={NAMESPACE_LABEL}={stack}");
    let (base, format): (&[&str], &str) = match kind {
        Kind::Service => (&["service", "ls"], "{{.Name}}"),
        Kind::Container => (&["ps", "-a"], "{{.Names}}"),
        Kind::Volume => (&["volume", "ls"], "{{.Name}}"),
        Kind::Secret => (&["secret", "ls"], "{{.Name}}"),
        Kind::Config => (&["config", "ls"], "{{.Name}}"),
        Kind::Network => (&["network", "ls"], "{{.Name}}"),
    };
    base.iter()
        .map(|s| s.to_string())
        .chain([
            "--filter".to_string(),
            filter,
            "--format".to_string(),
            format.to_string(),
        ])
        .collect()
}

/// `docker … rm` for names of this kind. Containers are removed by force, which kills
/// them first, and with their anonymous volumes.
fn remove_args(kind: Kind, names: &[String]) -> Vec<String> {
    let base: &[&str] = match kind {
        Kind::Service => &["service", "rm"],
        Kind::Container => &["rm", "--force", "--volumes"],
        Kind::Volume => &["volume", "rm"],
        Kind::Secret => &["secret", "rm"],
        Kind::Config => &["config", "rm"],
        Kind::Network => &["network", "rm"],
    };
    base.iter()
        .map(|s| s.to_string())
        .chain(names.iter().cloned())
        .collect()
}

/// Removes everything of `target`. `runner` should be bounded by the teardown budget
/// ([`Runner::with_budget`]) and not cancellable, so an interrupted run still cleans up but
/// cannot hang doing it.
pub fn teardown(runner: &Runner, target: &Target, sink: &dyn EventSink) -> Outcome {
    let started = Instant::now();
    let mut run = Teardown {
        runner,
        stack: &target.stack,
        sink,
        outcome: Outcome::default(),
    };
    let services = run.service_ids();
    run.stack_rm();
    run.tasks_ended(&services);
    run.containers();
    run.volumes();
    run.simple(Kind::Secret);
    run.simple(Kind::Config);
    run.networks();
    run.env_file(target.env_file.as_ref());
    run.outcome.elapsed = started.elapsed();
    run.outcome
}

/// What of `stack` is still on the engine (services, containers, volumes, secrets, configs,
/// networks carrying its label), as `<kind> <name>`. Empty when the stack is gone.
pub fn remaining(runner: &Runner, stack: &str) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for kind in Kind::ALL {
        for name in list(runner, kind, stack)? {
            left.push(format!("{} {name}", kind.as_str()));
        }
    }
    Ok(left)
}

/// Marks the stack's services as kept until `until` (unix seconds), for the janitor (J11).
/// Service labels live outside the task template, so adding one restarts no task.
pub fn keep_until(runner: &Runner, stack: &str, until: u64) -> Result<()> {
    let label = format!("{}={until}", crate::labels::KEEP_UNTIL);
    for service in list(runner, Kind::Service, stack)? {
        let out = cli::output(
            runner,
            &cli::cmd([
                "service",
                "update",
                "--detach",
                "--label-add",
                &label,
                &service,
            ])?,
        )?;
        if !out.success() {
            return Err(cli::failed(&format!("label service {service}"), &out));
        }
    }
    Ok(())
}

fn list(runner: &Runner, kind: Kind, stack: &str) -> Result<Vec<String>> {
    let what = format!("list the stack's {}s", kind.as_str());
    cli::lines(runner, &list_args(kind, stack), &what)
}

struct Teardown<'a> {
    runner: &'a Runner,
    stack: &'a str,
    sink: &'a dyn EventSink,
    outcome: Outcome,
}

impl Teardown<'_> {
    fn removed(&mut self, what: &str, names: &[String]) {
        let detail = if names.is_empty() {
            "nothing left".to_string()
        } else {
            names.join(", ")
        };
        self.outcome.removed.extend(names.iter().cloned());
        self.sink.event(&Event::TeardownStep {
            what: what.to_string(),
            ok: true,
            detail,
        });
    }

    fn failed(&mut self, what: &str, leftovers: Vec<String>, why: &str) {
        let detail = if leftovers.is_empty() {
            why.to_string()
        } else {
            format!("{}: {why}", leftovers.join(", "))
        };
        if leftovers.is_empty() {
            self.outcome.leftovers.push(format!("{what}: {why}"));
        } else {
            self.outcome
                .leftovers
                .extend(leftovers.into_iter().map(|l| format!("{l}: {why}")));
        }
        self.sink.event(&Event::TeardownStep {
            what: what.to_string(),
            ok: false,
            detail,
        });
    }

    fn docker(&self, args: &[String]) -> Result<Output> {
        let mut cmd = cli::cmd(args)?;
        if let Some(left) = self.runner.remaining() {
            // Never let one call eat the budget the later steps need more than it does.
            cmd = cmd.timeout(left.max(Duration::from_millis(100)));
        }
        cli::output(self.runner, &cmd)
    }

    /// The time a waiting step may take: the budget, or [`STEP_LIMIT`] without one.
    fn step_deadline(&self) -> Instant {
        Instant::now()
            + self
                .runner
                .remaining()
                .unwrap_or(STEP_LIMIT)
                .min(STEP_LIMIT)
    }

    fn out_of_time(&self, deadline: Instant) -> bool {
        Instant::now() >= deadline || self.runner.check().is_err()
    }

    /// The ids of the stack's services, taken before they are removed: afterwards only their
    /// tasks still name them.
    fn service_ids(&self) -> Vec<String> {
        let namespace = format!("{NAMESPACE_LABEL}={}", self.stack);
        Engine::from_env()
            .and_then(|e| {
                e.with_timeout(ENGINE_TIMEOUT)
                    .list(Kind::Service, &[&namespace])
            })
            .map(|services| services.into_iter().map(|s| s.id).collect())
            .unwrap_or_default()
    }

    /// Waits until no task of the removed `services` can still create a container. A task the
    /// node was still preparing when its service went creates its container, and with it the
    /// stack's volumes, after the container and volume steps have looked: a volume would be
    /// left behind. When the engine cannot be asked, the steps after this one still do what
    /// they can.
    fn tasks_ended(&mut self, services: &[String]) {
        if services.is_empty() {
            return;
        }
        let Ok(engine) = Engine::from_env() else {
            return;
        };
        let engine = engine.with_timeout(ENGINE_TIMEOUT);
        let deadline = self.step_deadline();
        loop {
            let pending = match engine.get_json("/v1.41/tasks") {
                Ok(tasks) => tasks_before_their_container(&tasks, services),
                Err(_) => return,
            };
            if pending == 0 || self.out_of_time(deadline) {
                return;
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// `docker stack rm`: removes services, and the secrets, configs and networks the stack
    /// file declared. Returns at once; the containers go on stopping in the background.
    fn stack_rm(&mut self) {
        let what = format!("stack {}", self.stack);
        let args = vec!["stack".into(), "rm".into(), self.stack.to_string()];
        match self.docker(&args) {
            Ok(out) if out.success() => {
                let names = stack_rm_removed(&out.stdout_str());
                self.removed(&what, &names);
            }
            Ok(out) => {
                let why = cli::failed("remove the stack", &out).to_string();
                // Services are the one thing only `stack rm` (or `service rm`) removes; try
                // them one by one so containers stop being replaced.
                self.remove_services(&what, &why);
            }
            Err(e) => self.failed(&what, Vec::new(), &e.to_string()),
        }
    }

    fn remove_services(&mut self, what: &str, why: &str) {
        let names = match list(self.runner, Kind::Service, self.stack) {
            Ok(names) => names,
            Err(e) => return self.failed(what, Vec::new(), &format!("{why}; {e}")),
        };
        if names.is_empty() {
            return self.removed(what, &[]);
        }
        let _ = self.docker(&remove_args(Kind::Service, &names));
        match list(self.runner, Kind::Service, self.stack) {
            Ok(left) if left.is_empty() => {
                let removed: Vec<String> = names.iter().map(|n| format!("service {n}")).collect();
                self.removed(what, &removed);
            }
            Ok(left) => {
                let left = left.iter().map(|n| format!("service {n}")).collect();
                self.failed(what, left, why);
            }
            Err(e) => self.failed(what, Vec::new(), &format!("{why}; {e}")),
        }
    }

    /// Kills and removes the stack's containers until none is left: the swarm may still be
    /// stopping some, or start one more for a task it had already scheduled.
    fn containers(&mut self) {
        let deadline = self.step_deadline();
        let mut removed = Vec::new();
        loop {
            let names = match list(self.runner, Kind::Container, self.stack) {
                Ok(names) => names,
                Err(e) => return self.failed("containers", Vec::new(), &e.to_string()),
            };
            if names.is_empty() {
                return self.removed("containers", &removed);
            }
            if self.out_of_time(deadline) {
                let left = names.iter().map(|n| format!("container {n}")).collect();
                return self.failed("containers", left, "still there when the budget ran out");
            }
            if let Ok(out) = self.docker(&remove_args(Kind::Container, &names)) {
                // Each name removed is printed back; the rest are already gone, or being
                // removed by the swarm itself (the next look tells).
                for line in out.stdout_str().lines().map(str::trim) {
                    if names.iter().any(|n| n == line) {
                        removed.push(format!("container {line}"));
                    }
                }
                if out.success() {
                    continue;
                }
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// Removes the stack's volumes; a volume stays "in use" until its last container is really
    /// gone, so containers are swept again between tries.
    fn volumes(&mut self) {
        let deadline = self.step_deadline();
        let mut removed = Vec::new();
        loop {
            let names = match list(self.runner, Kind::Volume, self.stack) {
                Ok(names) => names,
                Err(e) => return self.failed("volumes", Vec::new(), &e.to_string()),
            };
            if names.is_empty() {
                return self.removed("volumes", &removed);
            }
            let why = match self.docker(&remove_args(Kind::Volume, &names)) {
                Ok(out) => {
                    for line in out.stdout_str().lines().map(str::trim) {
                        if names.iter().any(|n| n == line) {
                            removed.push(format!("volume {line}"));
                        }
                    }
                    if out.success() {
                        continue;
                    }
                    out.last_error_line()
                }
                Err(e) => e.to_string(),
            };
            if self.out_of_time(deadline) {
                let left = names.iter().map(|n| format!("volume {n}")).collect();
                return self.failed("volumes", left, &why);
            }
            if why.contains("in use") {
                self.kill_stragglers();
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// One more sweep of containers, quietly: the container step already reported.
    fn kill_stragglers(&mut self) {
        if let Ok(names) = list(self.runner, Kind::Container, self.stack)
            && !names.is_empty()
        {
            let _ = self.docker(&remove_args(Kind::Container, &names));
        }
    }

    /// Secrets and configs: `stack rm` removes those the stack file declared; this removes the
    /// rest that carry the label (ccci creates some itself).
    fn simple(&mut self, kind: Kind) {
        let what = format!("{}s", kind.as_str());
        let names = match list(self.runner, kind, self.stack) {
            Ok(names) => names,
            Err(e) => return self.failed(&what, Vec::new(), &e.to_string()),
        };
        if names.is_empty() {
            return self.removed(&what, &[]);
        }
        let why = match self.docker(&remove_args(kind, &names)) {
            Ok(out) if out.success() => String::new(),
            Ok(out) => out.last_error_line(),
            Err(e) => e.to_string(),
        };
        match list(self.runner, kind, self.stack) {
            Ok(left) => {
                let gone: Vec<String> = names
                    .iter()
                    .filter(|n| !left.contains(n))
                    .map(|n| format!("{} {n}", kind.as_str()))
                    .collect();
                if left.is_empty() {
                    self.removed(&what, &gone);
                } else {
                    self.outcome.removed.extend(gone);
                    let left = left
                        .iter()
                        .map(|n| format!("{} {n}", kind.as_str()))
                        .collect();
                    self.failed(&what, left, &why);
                }
            }
            Err(e) => self.failed(&what, Vec::new(), &e.to_string()),
        }
    }

    /// Networks: `stack rm` asked for their removal already; the engine lets them go once the
    /// last endpoint left. Removes what is left and waits until none is listed.
    fn networks(&mut self) {
        let deadline = self.step_deadline();
        let mut removed = Vec::new();
        let mut why = String::new();
        loop {
            let names = match list(self.runner, Kind::Network, self.stack) {
                Ok(names) => names,
                Err(e) => return self.failed("networks", Vec::new(), &e.to_string()),
            };
            if names.is_empty() {
                return self.removed("networks", &removed);
            }
            if self.out_of_time(deadline) {
                let left = names.iter().map(|n| format!("network {n}")).collect();
                let why = if why.is_empty() {
                    "still there when the budget ran out".to_string()
                } else {
                    why
                };
                return self.failed("networks", left, &why);
            }
            match self.docker(&remove_args(Kind::Network, &names)) {
                Ok(out) => {
                    for line in out.stdout_str().lines().map(str::trim) {
                        if names.iter().any(|n| n == line) {
                            removed.push(format!("network {line}"));
                        }
                    }
                    if out.success() {
                        continue;
                    }
                    if !cli::is_no_such(&out.stderr_str()) {
                        why = out.last_error_line();
                    }
                }
                Err(e) => why = e.to_string(),
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    fn env_file(&mut self, path: Option<&PathBuf>) {
        let Some(path) = path else { return };
        let what = format!("env file {}", path.display());
        match std::fs::remove_file(path) {
            Ok(()) => self.removed(&what, std::slice::from_ref(&what)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.removed(&what, &[]),
            Err(e) => {
                let e = Error::io("remove", path, e);
                self.failed(&what, vec![what.clone()], &e.to_string());
            }
        }
    }
}

/// What `docker stack rm` says it removed: `Removing service s_app` → `service s_app`.
fn stack_rm_removed(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Removing "))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_tasks_of_the_removed_services_that_have_no_container_yet() {
        let tasks = serde_json::json!([
            {"ServiceID": "a", "Status": {"State": "preparing"}},
            {"ServiceID": "a", "Status": {"State": "shutdown"}},
            {"ServiceID": "b", "Status": {"State": "assigned"}},
            {"ServiceID": "b", "Status": {"State": "running"}},
            {"ServiceID": "other", "Status": {"State": "pending"}},
            {"ServiceID": "b", "Status": {"State": "failed"}},
        ]);
        let removed = ["a".to_string(), "b".to_string()];
        assert_eq!(tasks_before_their_container(&tasks, &removed), 2);
        assert_eq!(tasks_before_their_container(&tasks, &["c".to_string()]), 0);
        let error = serde_json::json!({"message": "x"});
        assert_eq!(tasks_before_their_container(&error, &removed), 0);
    }

    #[test]
    fn stack_rm_output_names_what_went() {
        let out =
            "Removing service capt_app\nRemoving service capt_bad\nRemoving network capt_default\n";
        assert_eq!(
            stack_rm_removed(out),
            vec![
                "service capt_app",
                "service capt_bad",
                "network capt_default"
            ]
        );
        assert!(stack_rm_removed("Nothing found in stack: x\n").is_empty());
    }

    #[test]
    fn listing_is_by_the_stack_label_only() {
        for kind in [
            Kind::Service,
            Kind::Container,
            Kind::Volume,
            Kind::Secret,
            Kind::Config,
            Kind::Network,
        ] {
            let args = list_args(kind, "capt");
            assert!(
                args.contains(&"label=com.docker.stack.namespace=capt".to_string()),
                "{args:?}"
            );
        }
        assert_eq!(
            remove_args(Kind::Container, &["a".into()]),
            vec!["rm", "--force", "--volumes", "a"]
        );
    }

    #[test]
    fn a_missing_env_file_counts_as_removed() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = crate::event::Recorder::default();
        let runner = Runner::new(crate::sys::cancel::Cancel::new());
        let mut run = Teardown {
            runner: &runner,
            stack: "none",
            sink: &recorder,
            outcome: Outcome::default(),
        };
        let path = dir.path().join("app.example.org.env");
        std::fs::write(&path, "TYPE=app\n").unwrap();
        run.env_file(Some(&path));
        run.env_file(Some(&path));
        assert!(!path.exists());
        assert!(run.outcome.leftovers.is_empty());
        assert_eq!(run.outcome.removed.len(), 1);
        assert!(
            recorder
                .events()
                .iter()
                .all(|e| matches!(e, Event::TeardownStep { ok: true, .. }))
        );
    }
}
