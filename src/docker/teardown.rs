//! Removing everything a run deployed, whatever deployed it: the stack's services, its
//! containers (killed, not stopped: the data is disposable and a graceful stop waits out each
//! container's stop grace period), volumes, secrets, configs and networks, all found by the
//! label `com.docker.stack.namespace=<stack>`, then the app's env file.
//!
//! Everything goes through the engine's API ([`crate::docker::api`]): a request costs about a
//! millisecond where a docker CLI call costs tens, and the waiting steps look again every
//! [`RETRY_EVERY`]. The order is the fast one: services first (so the swarm starts no
//! replacement), their containers killed at once, in parallel, volumes once the containers are
//! gone, and networks removed by ccci itself once nothing is attached to them.
//!
//! A network counts as removed once the swarm no longer has it: the engine accepted its removal,
//! or says it is not found. The node keeps listing its own copy for a while after that (a few
//! tenths of a second when nothing was attached any more, seconds when `docker stack rm` removed
//! it while its containers were still attached), and drops it by itself; teardown does not wait
//! for that. [`remaining`] gives such a copy that time before it calls it a leftover, and
//! [`clear_networks`] waits for it before a stack of the same name is deployed again, since
//! `docker stack deploy` would take the copy for a network it can use.
//!
//! Teardown is idempotent (what is already gone counts as removed), never panics and never
//! fails: what it cannot remove within the runner's budget is reported as a leftover for the
//! janitor. It must never touch anything that does not carry the stack's label.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::docker::NAMESPACE_LABEL;
use crate::docker::api::{API_VERSION, Engine, Kind, Resource, url_encode};
use crate::docker::cli;
use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::sys::process::Runner;

/// Waiting loops look again this often (containers going, volumes freed, networks gone).
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// Without a budget on the runner, no single waiting step takes longer than this.
const STEP_LIMIT: Duration = Duration::from_secs(60);
/// One engine request of teardown's (the runner's budget bounds the waiting loops).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time a request is given, even with less budget left, so it can answer at all.
const MIN_REQUEST: Duration = Duration::from_millis(100);
/// How long the node may keep listing its copy of a network the swarm has removed before that
/// copy counts as a leftover: seconds at most when the swarm removed it while containers were
/// still attached, more on a loaded host.
pub const NETWORK_LINGER: Duration = Duration::from_secs(15);

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

/// What the engine said to a removal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Removal {
    /// Removed by this request.
    Removed,
    /// Already gone (404): removed meanwhile by someone else, or by the swarm itself.
    Gone,
    /// Still there; the engine's reason (a volume or network in use, …).
    Refused(String),
}

impl Removal {
    /// `id` is the id the removal was asked for.
    fn from_answer(kind: Kind, id: &str, status: u16, message: impl FnOnce() -> String) -> Self {
        match status {
            200..=299 => Removal::Removed,
            404 => Removal::Gone,
            _ => {
                let message = message();
                // The node answers so (with a 500) for its own copy of a network the swarm has
                // already removed, until it drops that copy: gone, as far as the swarm goes.
                // Only that answer, naming this very network: other refusals end in "not
                // found" too (a missing driver plugin) while the network stays.
                if kind == Kind::Network && message == format!("network {id} not found") {
                    Removal::Gone
                } else {
                    Removal::Refused(message)
                }
            }
        }
    }
}

/// `DELETE` path of one resource of `kind`. Containers are removed by force, which kills
/// them first, and with their anonymous volumes.
fn removal_path(kind: Kind, resource: &Resource) -> String {
    let id = url_encode(&resource.id);
    match kind {
        Kind::Service => format!("/{API_VERSION}/services/{id}"),
        Kind::Container => format!("/{API_VERSION}/containers/{id}?force=true&v=true"),
        Kind::Volume => format!("/{API_VERSION}/volumes/{id}"),
        Kind::Secret => format!("/{API_VERSION}/secrets/{id}"),
        Kind::Config => format!("/{API_VERSION}/configs/{id}"),
        Kind::Network => format!("/{API_VERSION}/networks/{id}"),
    }
}

/// The label filter that finds everything of `stack`, and nothing else.
fn namespace(stack: &str) -> String {
    format!("{NAMESPACE_LABEL}={stack}")
}

/// Removes everything of `target`. `runner` should be bounded by the teardown budget
/// ([`Runner::with_budget`]) and not cancellable, so an interrupted run still cleans up but
/// cannot hang doing it.
pub fn teardown(runner: &Runner, target: &Target, sink: &dyn EventSink) -> Outcome {
    let started = Instant::now();
    let mut run = Teardown {
        runner,
        engine: Engine::from_env().map_err(|e| e.to_string()),
        stack: &target.stack,
        sink,
        outcome: Outcome::default(),
    };
    let services = run.services();
    run.tasks_ended(&services);
    run.containers();
    // Asked now, while nothing is attached any more; the networks step retries what was refused.
    let networks = run.request_network_removal();
    run.volumes();
    run.simple(Kind::Secret);
    run.simple(Kind::Config);
    run.networks(networks);
    run.env_file(target.env_file.as_ref());
    run.outcome.elapsed = started.elapsed();
    run.outcome
}

/// What of `stack` is still on the engine (services, containers, volumes, secrets, configs,
/// networks carrying its label), as `<kind> <name>`. Empty when the stack is gone.
///
/// When only networks are listed, they are looked at again until they are gone, for at most
/// [`NETWORK_LINGER`] (less when `runner`'s budget runs out or it is cancelled): the node keeps
/// listing its copy of a network the swarm has removed for a while, and that copy is not a
/// leftover. A network still listed after that is one.
pub fn remaining(runner: &Runner, stack: &str) -> Result<Vec<String>> {
    let engine = Engine::from_env()?.with_timeout(ENGINE_TIMEOUT);
    let label = namespace(stack);
    let deadline = Instant::now()
        + runner
            .remaining()
            .map_or(NETWORK_LINGER, |left| left.min(NETWORK_LINGER));
    loop {
        let left = engine.list_all(&[&label])?;
        let only_networks = left.iter().all(|r| r.kind == Kind::Network);
        if left.is_empty()
            || !only_networks
            || Instant::now() >= deadline
            || runner.check().is_err()
        {
            return Ok(left
                .into_iter()
                .map(|r| format!("{} {}", r.kind.as_str(), r.name))
                .collect());
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

/// Before a fresh deploy of `stack`: removes the networks of it the engine still has, and waits
/// until the node lists none, for at most [`NETWORK_LINGER`]. `docker stack deploy` takes a
/// listed network for one it can use, and its services then fail with "network … not found"
/// while the node still lists its copy of a network the swarm has removed, as it does for a
/// moment after a teardown of the same stack (teardown does not wait for those copies). With
/// nothing listed (every run but a repeat on one domain) this is one request. A stack that still
/// has services is not fresh: its networks are in use, and are left alone. Returns the networks
/// it found; after [`NETWORK_LINGER`] it gives up and the deploy says what it makes of them.
pub fn clear_networks(runner: &Runner, stack: &str) -> Result<Vec<String>> {
    runner.check()?;
    let engine = Engine::from_env()?.with_timeout(ENGINE_TIMEOUT);
    let label = namespace(stack);
    let found = engine.list(Kind::Network, &[&label])?;
    if found.is_empty() || !engine.list(Kind::Service, &[&label])?.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + NETWORK_LINGER;
    let mut listed = found.clone();
    while !listed.is_empty() && Instant::now() < deadline {
        for network in &listed {
            // Whatever the answer, the next look tells: a copy the swarm already removed is
            // refused as not found until the node drops it.
            engine.request("DELETE", &removal_path(Kind::Network, network), None)?;
        }
        std::thread::sleep(RETRY_EVERY);
        runner.check()?;
        listed = engine.list(Kind::Network, &[&label])?;
    }
    Ok(names(Kind::Network, &found))
}

/// Marks the stack's services as kept until `until` (unix seconds), for the janitor (J11).
/// Service labels live outside the task template, so adding one restarts no task.
pub fn keep_until(runner: &Runner, stack: &str, until: u64) -> Result<()> {
    let label = format!("{}={until}", crate::labels::KEEP_UNTIL);
    let services = Engine::from_env()?
        .with_timeout(ENGINE_TIMEOUT)
        .list(Kind::Service, &[&namespace(stack)])?;
    for service in services {
        let out = cli::output(
            runner,
            &cli::cmd([
                "service",
                "update",
                "--detach",
                "--label-add",
                &label,
                &service.name,
            ])?,
        )?;
        if !out.success() {
            return Err(cli::failed(
                &format!("label service {}", service.name),
                &out,
            ));
        }
    }
    Ok(())
}

struct Teardown<'a> {
    runner: &'a Runner,
    /// The engine, or why it cannot be asked (every step then reports that).
    engine: std::result::Result<Engine, String>,
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

    /// The engine for one request, given what is left of the budget (never more than
    /// [`ENGINE_TIMEOUT`]); an error once the budget is spent.
    fn engine(&self) -> Result<Engine> {
        self.runner.check()?;
        let engine = self.engine.clone().map_err(Error::Infra)?;
        let timeout = self.runner.remaining().map_or(ENGINE_TIMEOUT, |left| {
            left.clamp(MIN_REQUEST, ENGINE_TIMEOUT)
        });
        Ok(engine.with_timeout(timeout))
    }

    fn list(&self, kind: Kind) -> Result<Vec<Resource>> {
        self.engine()?.list(kind, &[&namespace(self.stack)])
    }

    fn remove(&self, kind: Kind, resource: &Resource) -> Removal {
        let path = removal_path(kind, resource);
        match self
            .engine()
            .and_then(|engine| engine.request("DELETE", &path, None))
        {
            Ok(response) => {
                Removal::from_answer(kind, &resource.id, response.status, || response.message())
            }
            Err(e) => Removal::Refused(e.to_string()),
        }
    }

    /// Removes each of `resources` at once, one request each in parallel (a forced container
    /// removal waits for the kill), and returns what each answered.
    fn remove_all<'r>(
        &self,
        kind: Kind,
        resources: &'r [Resource],
    ) -> Vec<(&'r Resource, Removal)> {
        if let [only] = resources {
            return vec![(only, self.remove(kind, only))];
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = resources
                .iter()
                .map(|r| (r, scope.spawn(move || self.remove(kind, r))))
                .collect();
            handles
                .into_iter()
                .map(|(r, h)| {
                    let removal = h
                        .join()
                        .unwrap_or_else(|_| Removal::Refused("the removal panicked".into()));
                    (r, removal)
                })
                .collect()
        })
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

    /// The stack's services, removed first so the swarm replaces no container the next step
    /// kills. Returns their ids: afterwards only their tasks still name them.
    fn services(&mut self) -> Vec<String> {
        let what = format!("stack {}", self.stack);
        let services = match self.list(Kind::Service) {
            Ok(services) => services,
            Err(e) => {
                self.failed(&what, Vec::new(), &e.to_string());
                return Vec::new();
            }
        };
        let mut removed = Vec::new();
        let mut left = Vec::new();
        let mut why = String::new();
        for (service, removal) in self.remove_all(Kind::Service, &services) {
            match removal {
                Removal::Removed => removed.push(format!("service {}", service.name)),
                Removal::Gone => {}
                Removal::Refused(reason) => {
                    left.push(format!("service {}", service.name));
                    why = reason;
                }
            }
        }
        if left.is_empty() {
            self.removed(&what, &removed);
        } else {
            self.outcome.removed.extend(removed);
            self.failed(&what, left, &why);
        }
        services.into_iter().map(|s| s.id).collect()
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
        let deadline = self.step_deadline();
        // The removed services can no longer be named in a filter: every task is listed.
        let path = format!("/{API_VERSION}/tasks");
        loop {
            let pending = match self.engine().and_then(|e| e.get_json(&path)) {
                Ok(tasks) => tasks_before_their_container(&tasks, services),
                Err(_) => return,
            };
            if pending == 0 || self.out_of_time(deadline) {
                return;
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// Kills and removes the stack's containers until none is left: the swarm may still be
    /// stopping some, or start one more for a task it had already scheduled.
    fn containers(&mut self) {
        let deadline = self.step_deadline();
        let mut removed = Vec::new();
        loop {
            let containers = match self.list(Kind::Container) {
                Ok(containers) => containers,
                Err(e) => return self.failed("containers", Vec::new(), &e.to_string()),
            };
            if containers.is_empty() {
                return self.removed("containers", &removed);
            }
            if self.out_of_time(deadline) {
                let left = names(Kind::Container, &containers);
                return self.failed("containers", left, "still there when the budget ran out");
            }
            let mut all_removed = true;
            for (container, removal) in self.remove_all(Kind::Container, &containers) {
                match removal {
                    Removal::Removed => removed.push(format!("container {}", container.name)),
                    // Being removed by the swarm itself, or refused for now: the next look
                    // tells, after a pause, so that a removal in progress is not hammered.
                    Removal::Gone | Removal::Refused(_) => all_removed = false,
                }
            }
            if !all_removed {
                std::thread::sleep(RETRY_EVERY);
            }
        }
    }

    /// Removes the stack's volumes; a volume stays "in use" until its last container is really
    /// gone, so containers are swept again between tries.
    fn volumes(&mut self) {
        let deadline = self.step_deadline();
        let mut removed = Vec::new();
        loop {
            let volumes = match self.list(Kind::Volume) {
                Ok(volumes) => volumes,
                Err(e) => return self.failed("volumes", Vec::new(), &e.to_string()),
            };
            if volumes.is_empty() {
                return self.removed("volumes", &removed);
            }
            let mut why = None;
            let mut all_removed = true;
            for (volume, removal) in self.remove_all(Kind::Volume, &volumes) {
                match removal {
                    Removal::Removed => removed.push(format!("volume {}", volume.name)),
                    Removal::Gone => all_removed = false,
                    Removal::Refused(reason) => why = Some(reason),
                }
            }
            if why.is_none() && all_removed {
                continue;
            }
            if self.out_of_time(deadline) {
                let left = names(Kind::Volume, &volumes);
                let why = why.unwrap_or_else(|| "still there when the budget ran out".into());
                return self.failed("volumes", left, &why);
            }
            if why.as_deref().is_some_and(|why| why.contains("in use")) {
                self.kill_stragglers();
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// One more sweep of containers, quietly: the container step already reported.
    fn kill_stragglers(&mut self) {
        if let Ok(containers) = self.list(Kind::Container) {
            self.remove_all(Kind::Container, &containers);
        }
    }

    /// Secrets and configs carrying the label: those the stack file declared and those ccci
    /// created itself.
    fn simple(&mut self, kind: Kind) {
        let what = format!("{}s", kind.as_str());
        let found = match self.list(kind) {
            Ok(found) => found,
            Err(e) => return self.failed(&what, Vec::new(), &e.to_string()),
        };
        let mut removed = Vec::new();
        let mut left = Vec::new();
        let mut why = String::new();
        for (resource, removal) in self.remove_all(kind, &found) {
            match removal {
                Removal::Removed => removed.push(format!("{} {}", kind.as_str(), resource.name)),
                Removal::Gone => {}
                Removal::Refused(reason) => {
                    left.push(format!("{} {}", kind.as_str(), resource.name));
                    why = reason;
                }
            }
        }
        if left.is_empty() {
            self.removed(&what, &removed);
        } else {
            self.outcome.removed.extend(removed);
            self.failed(&what, left, &why);
        }
    }

    /// Asks for the removal of the stack's networks, without waiting. Returns what the networks
    /// step starts from: the ids of those the swarm no longer has, and the names of those this
    /// request removed.
    fn request_network_removal(&mut self) -> (Vec<String>, Vec<String>) {
        let mut gone = Vec::new();
        let mut removed = Vec::new();
        let Ok(networks) = self.list(Kind::Network) else {
            return (gone, removed);
        };
        for (network, removal) in self.remove_all(Kind::Network, &networks) {
            match removal {
                Removal::Removed => {
                    removed.push(format!("network {}", network.name));
                    gone.push(network.id.clone());
                }
                Removal::Gone => gone.push(network.id.clone()),
                Removal::Refused(_) => {}
            }
        }
        (gone, removed)
    }

    /// Networks: the engine lets one go once its last endpoint left. Removes what is left until
    /// the swarm has none: a network counts as removed once its removal was accepted or it is
    /// not found, even while the node still lists its own copy (see the module's header).
    fn networks(&mut self, (mut gone, mut removed): (Vec<String>, Vec<String>)) {
        let deadline = self.step_deadline();
        let mut why = String::new();
        loop {
            let networks: Vec<Resource> = match self.list(Kind::Network) {
                Ok(networks) => networks
                    .into_iter()
                    .filter(|n| !gone.contains(&n.id))
                    .collect(),
                Err(e) => return self.failed("networks", Vec::new(), &e.to_string()),
            };
            if networks.is_empty() {
                return self.removed("networks", &removed);
            }
            if self.out_of_time(deadline) {
                let left = names(Kind::Network, &networks);
                let why = if why.is_empty() {
                    "still there when the budget ran out".to_string()
                } else {
                    why
                };
                return self.failed("networks", left, &why);
            }
            let mut all_gone = true;
            for (network, removal) in self.remove_all(Kind::Network, &networks) {
                match removal {
                    Removal::Removed => {
                        removed.push(format!("network {}", network.name));
                        gone.push(network.id.clone());
                    }
                    Removal::Gone => gone.push(network.id.clone()),
                    Removal::Refused(reason) => {
                        why = reason;
                        all_gone = false;
                    }
                }
            }
            if !all_gone {
                std::thread::sleep(RETRY_EVERY);
            }
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

/// `<kind> <name>` of each resource, as leftovers are named.
fn names(kind: Kind, resources: &[Resource]) -> Vec<String> {
    resources
        .iter()
        .map(|r| format!("{} {}", kind.as_str(), r.name))
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
    fn removals_read_the_engines_answer() {
        assert_eq!(
            Removal::from_answer(Kind::Secret, "abc", 204, String::new),
            Removal::Removed
        );
        assert_eq!(
            Removal::from_answer(Kind::Network, "abc", 200, String::new),
            Removal::Removed
        );
        assert_eq!(
            Removal::from_answer(Kind::Volume, "abc", 404, String::new),
            Removal::Gone
        );
        assert_eq!(
            Removal::from_answer(Kind::Volume, "abc", 409, || "volume is in use".into()),
            Removal::Refused("volume is in use".into())
        );
        // The node's own copy of a network the swarm already removed.
        assert_eq!(
            Removal::from_answer(Kind::Network, "abc", 500, || "network abc not found".into()),
            Removal::Gone
        );
        // Only a network's copy is answered so; anything else not found is refused.
        assert_eq!(
            Removal::from_answer(Kind::Volume, "abc", 500, || "volume abc not found".into()),
            Removal::Refused("volume abc not found".into())
        );
        assert_eq!(
            Removal::from_answer(Kind::Network, "abc", 403, || "network is in use".into()),
            Removal::Refused("network is in use".into())
        );
    }

    #[test]
    fn regression_a_network_refused_with_another_not_found_counted_as_removed() {
        // A network whose driver plugin is missing is refused with a 500 that also ends in
        // "not found", while the network stays: it is a leftover, not the node's copy of a
        // network the swarm removed (whose answer names the network itself).
        let plugin = "error while removing network: could not find plugin weave in v1 plugin \
                      registry: plugin not found";
        assert_eq!(
            Removal::from_answer(Kind::Network, "abc", 500, || plugin.into()),
            Removal::Refused(plugin.into())
        );
        assert_eq!(
            Removal::from_answer(Kind::Network, "abc", 500, || "network xyz not found".into()),
            Removal::Refused("network xyz not found".into())
        );
        assert_eq!(
            Removal::from_answer(Kind::Network, "abc", 500, || "network abc not found".into()),
            Removal::Gone
        );
    }

    #[test]
    fn containers_are_removed_by_force_with_their_volumes_and_only_by_id() {
        let resource = |id: &str| Resource {
            kind: Kind::Container,
            id: id.into(),
            name: "s_app.1.x".into(),
            labels: Default::default(),
            created: None,
        };
        assert_eq!(
            removal_path(Kind::Container, &resource("abc")),
            "/v1.41/containers/abc?force=true&v=true"
        );
        // An id can never reach another endpoint.
        assert_eq!(
            removal_path(Kind::Volume, &resource("../x?y")),
            "/v1.41/volumes/..%2Fx%3Fy"
        );
        assert_eq!(namespace("capt"), "com.docker.stack.namespace=capt");
    }

    #[test]
    fn a_missing_env_file_counts_as_removed() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = crate::event::Recorder::default();
        let runner = Runner::new(crate::sys::cancel::Cancel::new());
        let mut run = Teardown {
            runner: &runner,
            engine: Err("not asked".into()),
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
