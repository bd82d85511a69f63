//! What serve does with a delivery or a polled comment, before any forge call: verify it,
//! decide whether it is a command for an enrolled repository, and record it once. Answers in
//! well under a second whatever the forge is doing — authorization and reporting happen on
//! other threads ([`super::triage`], [`super::report`]).
//!
//! The answer goes out before anyone else hears of the delivery: the log line and the wake of
//! a triage thread are [`FollowUp`]s, done once the forge has its answer, so a woken thread or
//! a slow reader of the log never stands between a delivery and its answer.

use super::config::stages_of;
use super::service::{ServeEvent, Service};
use super::store::{NewRun, RunRow, Trigger, verdicts};
use super::webhook::{self, Refusal};

/// What the HTTP handler answers, and what serve does once it has.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub then: Vec<FollowUp>,
}

impl Answer {
    fn new(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            body: body.into(),
            then: Vec::new(),
        }
    }

    fn then(mut self, then: Vec<FollowUp>) -> Answer {
        self.then = then;
        self
    }
}

/// Something serve does about a delivery once the delivery is answered.
#[derive(Debug)]
pub enum FollowUp {
    Say(ServeEvent),
    /// A command is waiting for the triage of pull request `pr` of `repo`.
    WakeTriage {
        repo: String,
        pr: u64,
    },
}

/// Does `then`, in order.
pub fn follow_up(service: &Service, then: Vec<FollowUp>) {
    for step in then {
        match step {
            FollowUp::Say(event) => service.emit(event),
            FollowUp::WakeTriage { repo, pr } => service.wake_triage(&repo, pr),
        }
    }
}

/// What follows the recording of `run`: it is said, and its triage woken.
pub fn recorded(run: &RunRow) -> Vec<FollowUp> {
    vec![
        FollowUp::Say(ServeEvent::Recorded {
            run: run.id,
            repo: run.repo.clone(),
            pr: run.pr,
            by: run.requested_by.clone(),
            trigger: run.trigger.clone(),
        }),
        // A command with a mistake is recorded too (so a redelivery stays a duplicate);
        // triage answers it, once the commenter is known to be allowed to ask.
        FollowUp::WakeTriage {
            repo: run.repo.clone(),
            pr: run.pr,
        },
    ]
}

/// A `!testme` found in a comment, from either path.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub repo: String,
    pub pr: u64,
    pub comment_id: u64,
    pub comment_url: Option<String>,
    pub author: String,
    pub body: String,
    pub trigger: Trigger,
}

/// The outcome of looking at one comment.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// Recorded as this run, not yet said nor triaged: see [`recorded`].
    Recorded(Box<RunRow>),
    Duplicate,
    /// Not a command for ccci, and why.
    Ignored(&'static str),
}

/// Handles a POST to /hook: `headers` as received, `body` the raw bytes (the caller reads at
/// most [`webhook::MAX_BODY`] + 1 of them).
pub fn handle_hook<'a>(
    service: &Service,
    headers: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    body: &[u8],
) -> Answer {
    let secrets: Vec<Vec<u8>> = service
        .config
        .webhook_secrets
        .iter()
        .map(|s| s.expose().as_bytes().to_vec())
        .collect();
    let signatures = webhook::signatures(headers.clone());
    if let Err(refusal) = webhook::verify_any(body, &signatures, &secrets) {
        return reject(service, refusal);
    }
    let event = webhook::event_name(headers).unwrap_or_default();
    let (outcome, answer) = match event.as_str() {
        "issue_comment" => match webhook::parse_comment_event(body) {
            Err(refusal) => return reject(service, refusal),
            Ok(e) if !e.is_new_pull_request_comment() => (
                "ignored",
                Answer::new(200, "ignored: not a new pull request comment"),
            ),
            Ok(e) => {
                let sighting = Sighting {
                    repo: e.repository.full_name,
                    pr: e.issue.number,
                    comment_id: e.comment.id,
                    comment_url: e.comment.html_url,
                    author: e.comment.user.login,
                    body: e.comment.body,
                    trigger: Trigger::Webhook,
                };
                match consider(service, &sighting) {
                    Ok(Seen::Recorded(run)) => (
                        "accepted",
                        Answer::new(202, format!("run {}", run.id)).then(recorded(&run)),
                    ),
                    Ok(Seen::Duplicate) => {
                        ("duplicate", Answer::new(200, "duplicate: already seen"))
                    }
                    Ok(Seen::Ignored(why)) => {
                        ("ignored", Answer::new(200, format!("ignored: {why}")))
                    }
                    Err(e) => {
                        // A 5xx tells the forge the delivery did not land; polling finds it.
                        return Answer::new(503, "cannot record the delivery now").then(vec![
                            FollowUp::Say(ServeEvent::Trouble {
                                what: format!("cannot record a delivery: {e}"),
                            }),
                        ]);
                    }
                }
            }
        },
        "pull_request" => match webhook::parse_pull_request_event(body) {
            Err(refusal) => return reject(service, refusal),
            Ok(e) => match pushed(service, &e) {
                Ok(0) => ("ignored", Answer::new(200, "ignored")),
                Ok(n) => (
                    "cancelled",
                    Answer::new(200, format!("cancelled {n} run(s)")),
                ),
                Err(e) => {
                    return Answer::new(503, "cannot record the delivery now").then(vec![
                        FollowUp::Say(ServeEvent::Trouble {
                            what: format!("cannot cancel runs: {e}"),
                        }),
                    ]);
                }
            },
        },
        _ => (
            "ignored",
            Answer::new(200, "ignored: not an event ccci acts on"),
        ),
    };
    service.metrics.delivery(outcome);
    answer
}

fn reject(service: &Service, refusal: Refusal) -> Answer {
    service.metrics.rejection(refusal.cause());
    Answer::new(refusal.status(), refusal.to_string()).then(vec![FollowUp::Say(
        ServeEvent::Rejected {
            cause: refusal.to_string(),
        },
    )])
}

/// Looks at one comment (from a delivery or a poll) and records it when it is a new
/// `!testme` for an enrolled repository. What to test comes from ccci's configuration: the
/// comment only chooses stages among the known ones. A recorded run is for the caller to
/// follow up with [`recorded`].
pub fn consider(service: &Service, s: &Sighting) -> crate::error::Result<Seen> {
    let Some(command) = webhook::parse_command(&s.body) else {
        return Ok(Seen::Ignored("not a !testme command"));
    };
    if s.author.eq_ignore_ascii_case(&service.bot_login) {
        return Ok(Seen::Ignored("ccci's own comment"));
    }
    let Some(enrolled) = service.config.enrolled(&s.repo) else {
        return Ok(Seen::Ignored("repository not enrolled"));
    };
    let stages = stages_of(&command.stages);
    let new = NewRun {
        repo: enrolled.repo.clone(),
        recipe: enrolled.recipe.clone(),
        pr: s.pr,
        comment_id: s.comment_id,
        comment_url: s.comment_url.clone(),
        requested_by: s.author.clone(),
        trigger: s.trigger,
        stages: stages.clone().unwrap_or_default(),
        mistake: stages.err(),
    };
    match service.store.record_command(&new)? {
        Some(run) => Ok(Seen::Recorded(Box::new(run))),
        None => Ok(Seen::Duplicate),
    }
}

/// New commits on a pull request: stop its queued and running runs, when configured.
fn pushed(service: &Service, e: &webhook::PullRequestEvent) -> crate::error::Result<usize> {
    if e.action != "synchronized" && e.action != "synchronize" {
        return Ok(0);
    }
    if !service.config.cancel_on_push {
        return Ok(0);
    }
    let Some(enrolled) = service.config.enrolled(&e.repository.full_name) else {
        return Ok(0);
    };
    let why = "new commits were pushed to the pull request";
    let displaced = service
        .store
        .cancel_pr(&enrolled.repo, e.number, verdicts::CANCELLED, why)?;
    service.stop_runs(&displaced.to_stop, why);
    for closed in &displaced.closed {
        service.closed(closed);
    }
    Ok(displaced.to_stop.len() + displaced.closed.len())
}
