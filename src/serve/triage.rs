//! Between recording a command and queueing it: is the commenter allowed to ask (the forge's
//! answer, never the pull request's), and which commit is the pull request's head? Runs on
//! threads of its own so the intake never waits for the forge: [`TRIAGERS`] of them, as each
//! command costs forge round trips, and a burst of commands would otherwise wait in line for
//! them. Also the recovery serve does when it starts: runs the last serve left running are
//! closed as interrupted and reported, their apps reaped through the janitor, and waiting
//! runs resume.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::forge::authorize;
use super::report::Report;
use super::service::{ServeEvent, Service, lane, thread};
use super::store::{Queueing, RunRow, RunState, now_ms, verdicts};
use crate::error::Result;

/// How often waiting runs are looked at even without a wake-up (a forge that failed
/// transiently is asked again).
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// A run whose pull request cannot be read for this long is closed as an error.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Threads triaging commands at once. The commands of one pull request all go to the same
/// thread, oldest first, so a newer command is never looked at before an older one.
pub const TRIAGERS: usize = 4;

/// Starts triage thread `n` (of [`TRIAGERS`]).
pub fn spawn(service: Arc<Service>, n: usize) -> Result<JoinHandle<()>> {
    thread(format!("triage-{n}"), move || {
        let mut wake = service.triage_wake(n).waiter();
        while !service.stopping() {
            match service.store.received() {
                Ok(waiting) => {
                    let mine = waiting
                        .into_iter()
                        .filter(|(_, repo, pr)| lane(repo, *pr, TRIAGERS) == n);
                    for (id, _, _) in mine {
                        if service.stopping() {
                            return;
                        }
                        // Read afresh: a push may have cancelled it since.
                        match service.store.get(id) {
                            Ok(Some(run)) if run.state == RunState::Received => {
                                triage(&service, &run)
                            }
                            Ok(_) => {}
                            Err(e) => service.emit(ServeEvent::Trouble {
                                what: format!("run {id}: {e}"),
                            }),
                        }
                    }
                }
                Err(e) => service.emit(ServeEvent::Trouble {
                    what: format!("cannot read the queue: {e}"),
                }),
            }
            wake.wait(RETRY_EVERY);
        }
    })
}

fn triage(service: &Service, run: &RunRow) {
    let outcome = decide(service, run);
    let result = match outcome {
        Decision::Queue { head, url } => queue(service, run, &head, &url),
        Decision::Close { verdict, reason } => {
            let refused = verdict == verdicts::REFUSED;
            service
                .store
                .close(run.id, verdict, &reason)
                .map(|closed| match closed {
                    // Said once recorded, so whoever reads the line finds the run closed. The
                    // refusal has its own line; its report says nothing on the PR.
                    Some(closed) if refused => {
                        service.emit(ServeEvent::Refused {
                            run: run.id,
                            reason: reason.clone(),
                        });
                        service.report(&closed, Report::Final);
                    }
                    Some(closed) => service.closed(&closed),
                    None => {}
                })
        }
        Decision::Later => Ok(()),
    };
    if let Err(e) = result {
        service.emit(ServeEvent::Trouble {
            what: format!("run {}: {e}", run.id),
        });
    }
}

enum Decision {
    Queue {
        head: String,
        url: String,
    },
    Close {
        verdict: &'static str,
        reason: String,
    },
    /// The forge could not answer now; ask again later.
    Later,
}

fn decide(service: &Service, run: &RunRow) -> Decision {
    let org = service.config.org_of(&run.repo);
    let allowed = authorize(
        &service.forge,
        service.config.authorize,
        org,
        &run.repo,
        &run.requested_by,
    );
    for call in &allowed.failed_calls {
        service.metrics.forge_error(call);
    }
    if !allowed.allowed {
        return Decision::Close {
            verdict: verdicts::REFUSED,
            reason: format!(
                "{} may not ask for runs: {}",
                run.requested_by, allowed.reason
            ),
        };
    }
    // Recorded with the command; told only to someone who may ask.
    if let Some(mistake) = &run.reason {
        return Decision::Close {
            verdict: verdicts::ERROR,
            reason: mistake.clone(),
        };
    }
    match service.forge.pull_request(&run.repo, run.pr) {
        Ok(pr) if pr.state != "open" => Decision::Close {
            verdict: verdicts::ERROR,
            reason: format!("pull request #{} is {}", run.pr, pr.state),
        },
        Ok(pr) => Decision::Queue {
            head: pr.head_sha,
            url: pr.html_url,
        },
        Err(e) => {
            service.metrics.forge_error("pull_request");
            service.emit(ServeEvent::ForgeError {
                call: format!("pull request {}#{}", run.repo, run.pr),
                error: e.to_string(),
            });
            let age = Duration::from_millis((now_ms() - run.created_ms).max(0) as u64);
            if e.is_transient() && age < GIVE_UP_AFTER {
                Decision::Later
            } else {
                Decision::Close {
                    verdict: verdicts::ERROR,
                    reason: format!("cannot read pull request #{}: {e}", run.pr),
                }
            }
        }
    }
}

fn queue(service: &Service, run: &RunRow, head: &str, url: &str) -> Result<()> {
    let displaced = match service.store.queue(run.id, head, Some(url))? {
        Queueing::Queued(displaced) => displaced,
        Queueing::Superseded(closed) => {
            service.report(&closed, Report::Final);
            return Ok(());
        }
        // Cancelled meanwhile (new commits): that was reported already.
        Queueing::NotWaiting => return Ok(()),
    };
    service.emit(ServeEvent::Queued {
        run: run.id,
        head: head.to_string(),
    });
    // The status first: it is what the pull request shows; the reaction only acknowledges.
    service.report(run, Report::Pending);
    service.report(run, Report::Acknowledge);
    service.stop_runs(&displaced.to_stop, &format!("superseded by run {}", run.id));
    for closed in &displaced.closed {
        service.closed(closed);
    }
    service.worker_wake.notify();
    Ok(())
}

/// At start: closes runs the last serve left running as interrupted, reports every finished
/// run whose report did not reach the forge, and reaps what interrupted runs left behind.
pub fn recover(service: &Arc<Service>) -> Result<()> {
    let interrupted = service
        .store
        .recover("ccci serve stopped while the run was running")?;
    for run in service.store.unreported()? {
        service.report(&run, Report::Final);
    }
    let waiting = service.store.in_state(RunState::Received)?.len()
        + service.store.in_state(RunState::Queued)?.len();
    service.emit(ServeEvent::Recovered {
        interrupted: interrupted.len(),
        queued: waiting,
    });
    if !interrupted.is_empty() {
        let service = service.clone();
        thread("reap".into(), move || reap_interrupted(&service))?;
    }
    Ok(())
}

/// The children of interrupted runs got the parent-death signal and tear down on their own,
/// under their locks; the janitor reaps whatever they could not. Sweeps until no live run
/// holds a lock any more, bounded by the teardown budget.
fn reap_interrupted(service: &Service) {
    let runner = crate::sys::process::Runner::new(crate::sys::cancel::Cancel::new());
    let deadline = Instant::now() + service.core.teardown_budget + service.core.kill_grace;
    loop {
        let summary = crate::janitor::sweep(
            &service.core,
            &runner,
            &crate::janitor::SweepOptions::now(false),
            &crate::event::Discard,
        );
        if summary.errors > 0 || summary.reaped > 0 {
            service.emit(ServeEvent::Trouble {
                what: format!("after the restart, {}", summary.line()),
            });
        }
        if summary.skipped_live == 0 || Instant::now() >= deadline || service.stopping() {
            return;
        }
        // A plain pause: nothing signals "a lock was released".
        std::thread::sleep(Duration::from_secs(2));
    }
}
