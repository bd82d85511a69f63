//! What a run reports while it works. The library never prints: it hands [`Event`]s to an
//! [`EventSink`], and the CLI (terminal), the run log (plain text) and `ccci serve` (dashboard)
//! each render them their own way. Tests assert on them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::stage::Stage;
use crate::verdict::{StageStatus, Verdict};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run has its id, domain and driver and is about to start.
    RunStarted {
        run_id: String,
        recipe: String,
        domain: String,
        driver: String,
        stages: Vec<Stage>,
        run_dir: String,
    },
    /// Something worth telling that changes nothing, e.g. a fallback that was taken.
    Notice {
        message: String,
    },
    /// A step of the run (fetch, deploy, wait, …) began.
    StepStarted {
        step: String,
        detail: String,
    },
    /// A step ended; `ok` false carries the reason in `detail`.
    StepFinished {
        step: String,
        ok: bool,
        detail: String,
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    StageStarted {
        stage: Stage,
        detail: String,
    },
    StageFinished {
        stage: Stage,
        status: StageStatus,
        reason: Option<String>,
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    /// Readiness progress: how many services are ready, and what the rest are waiting for.
    Waiting {
        ready: usize,
        total: usize,
        detail: String,
    },
    /// The swarm killed or rejected a task: the fail-fast signal.
    TaskFailed {
        service: String,
        error: String,
        exit_code: Option<i64>,
    },
    /// A recipe test executable or hook ran.
    TestRan {
        name: String,
        ok: bool,
        detail: String,
    },
    /// One thing teardown removed, or could not.
    TeardownStep {
        what: String,
        ok: bool,
        detail: String,
    },
    /// The run reached its verdict. Teardown may still follow.
    Verdict {
        verdict: Verdict,
        reason: Option<String>,
    },
}

/// Serialises a duration as seconds with millisecond precision, for JSON output.
pub(crate) mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}

impl Event {
    /// One plain-text line: what the run log holds, and what non-terminal output shows.
    pub fn to_line(&self) -> String {
        match self {
            Event::RunStarted {
                run_id,
                recipe,
                domain,
                driver,
                stages,
                ..
            } => format!(
                "run {run_id}: recipe {recipe} on {domain} with the {driver} driver, stages {}",
                stages
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Event::Notice { message } => format!("note: {message}"),
            Event::StepStarted { step, detail } if detail.is_empty() => format!("{step} …"),
            Event::StepStarted { step, detail } => format!("{step}: {detail}"),
            Event::StepFinished {
                step,
                ok,
                detail,
                elapsed,
            } => {
                let mark = if *ok { "done" } else { "FAILED" };
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                };
                format!("{step} {mark} in {:.1}s{detail}", elapsed.as_secs_f64())
            }
            Event::StageStarted { stage, detail } if detail.is_empty() => {
                format!("stage {stage} started")
            }
            Event::StageStarted { stage, detail } => format!("stage {stage} started: {detail}"),
            Event::StageFinished {
                stage,
                status,
                reason,
                elapsed,
            } => {
                let reason = reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                format!(
                    "stage {stage} {} in {:.1}s{reason}",
                    status.as_str(),
                    elapsed.as_secs_f64()
                )
            }
            Event::Waiting {
                ready,
                total,
                detail,
            } => format!("waiting: {ready}/{total} services ready; {detail}"),
            Event::TaskFailed {
                service,
                error,
                exit_code,
            } => match exit_code {
                Some(code) => format!("task of {service} failed (exit {code}): {error}"),
                None => format!("task of {service} failed: {error}"),
            },
            Event::TestRan { name, ok, detail } => {
                let mark = if *ok { "ok" } else { "FAILED" };
                if detail.is_empty() {
                    format!("test {name} {mark}")
                } else {
                    format!("test {name} {mark}: {detail}")
                }
            }
            Event::TeardownStep { what, ok, detail } => {
                let mark = if *ok { "removed" } else { "NOT removed" };
                if detail.is_empty() {
                    format!("teardown: {what} {mark}")
                } else {
                    format!("teardown: {what} {mark}: {detail}")
                }
            }
            Event::Verdict { verdict, reason } => match reason {
                Some(reason) => format!("verdict: {} — {reason}", verdict.as_str()),
                None => format!("verdict: {}", verdict.as_str()),
            },
        }
    }
}

/// Whoever wants to hear about a run.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event);
}

/// A sink that drops everything.
pub struct Discard;

impl EventSink for Discard {
    fn event(&self, _: &Event) {}
}

/// A sink that keeps every event, for tests and for `--json`.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl EventSink for Recorder {
    fn event(&self, event: &Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}

/// Sends each event to several sinks in order.
pub struct Fanout(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn event(&self, event: &Event) {
        for sink in &self.0 {
            sink.event(event);
        }
    }
}
