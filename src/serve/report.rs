//! Reporting back on the pull request, on threads of their own so neither the intake nor a
//! worker ever waits for the forge: the 👀 reaction on the comment, the commit status
//! (`pending` → `success` / `failure` / `error`, linking the run page, the one-line reason as
//! description), and one summary comment per pull request, found again by a hidden marker and
//! edited in place. Calls are retried with backoff on 5xx and timeouts; a run is marked
//! reported only once its final report landed, so a restart reports what a stop cut off.
//!
//! [`REPORTERS`] threads, as each report costs forge round trips and a burst of commands
//! would otherwise wait in line for them. A pull request's reports all go to the same thread,
//! in order: a run's `pending` always reaches the forge before its final status, and two
//! threads never write one pull request's summary comment at once.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use super::forge::{CommitStatus, ForgeError, StatusState};
use super::service::{ServeEvent, Service, thread};
use super::store::{RunRow, verdicts};
use crate::error::Result;
use crate::run::record::RunRecord;

/// The hidden marker that finds a pull request's summary comment again.
pub const SUMMARY_MARKER: &str = "<!-- ccci:summary -->";

/// Threads reporting at once.
pub const REPORTERS: usize = 4;

/// What a reporter is asked to do about a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// 👀 on the comment that asked.
    Acknowledge,
    /// The `pending` status on the pull request's head.
    Pending,
    /// The final status and the summary comment.
    Final,
    /// The service is stopping: report what is already asked for, then end.
    Stop,
}

/// Starts reporter `n`, taking `(run id, report)`s from `inbox`.
pub fn spawn(
    service: Arc<Service>,
    n: usize,
    inbox: Receiver<(i64, Report)>,
) -> Result<JoinHandle<()>> {
    thread(format!("reporter-{n}"), move || {
        while let Ok((id, report)) = inbox.recv() {
            if report == Report::Stop {
                // Whatever was asked before the stop is still worth saying.
                for (id, report) in inbox.try_iter() {
                    handle(&service, id, report);
                }
                return;
            }
            handle(&service, id, report);
        }
    })
}

fn handle(service: &Service, id: i64, report: Report) {
    if report == Report::Stop {
        return;
    }
    let run = match service.store.get(id) {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(e) => {
            service.emit(ServeEvent::Trouble {
                what: format!("run {id}: cannot report: {e}"),
            });
            return;
        }
    };
    match report {
        Report::Acknowledge => acknowledge(service, &run),
        Report::Pending => pending(service, &run),
        Report::Final => final_report(service, &run),
        Report::Stop => {}
    }
}

/// Calls the forge (the client retries transient failures itself); counts and reports the
/// failure that stays.
fn checked<T>(
    service: &Service,
    call: &str,
    result: std::result::Result<T, ForgeError>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            service.metrics.forge_error(call);
            service.emit(ServeEvent::ForgeError {
                call: call.to_string(),
                error: e.to_string(),
            });
            None
        }
    }
}

fn acknowledge(service: &Service, run: &RunRow) {
    if let Some(comment) = run.comment_id {
        checked(
            service,
            "reaction",
            service.forge.react(&run.repo, comment, "eyes"),
        );
    }
}

fn pending(service: &Service, run: &RunRow) {
    let Some(sha) = &run.head_sha else { return };
    let status = CommitStatus {
        state: StatusState::Pending,
        target_url: Some(service.run_url(run.id)),
        description: format!(
            "testing {}: {} (run {})",
            run.recipe,
            run.stage_names().join(", "),
            run.id
        ),
        context: service.config.status_context.clone(),
    };
    checked(
        service,
        "status",
        service.forge.set_status(&run.repo, sha, &status),
    );
}

/// The commit status a verdict gives, if any: a refused command says nothing on the pull
/// request, and a superseded run leaves the status to the run that replaced it (same head).
pub fn status_state(verdict: &str) -> Option<StatusState> {
    match verdict {
        "pass" => Some(StatusState::Success),
        "fail" | "base-failed" => Some(StatusState::Failure),
        verdicts::REFUSED | verdicts::SUPERSEDED => None,
        _ => Some(StatusState::Error),
    }
}

fn final_report(service: &Service, run: &RunRow) {
    let verdict = run.verdict.as_deref().unwrap_or(verdicts::ERROR);
    if verdict == verdicts::REFUSED {
        // Nothing is said on the pull request to someone who may not ask.
        mark_reported(service, run);
        return;
    }
    let mut landed = true;
    if let (Some(sha), Some(state)) = (&run.head_sha, status_state(verdict)) {
        let status = CommitStatus {
            state,
            target_url: Some(service.run_url(run.id)),
            description: one_line(verdict, run.reason.as_deref()),
            context: service.config.status_context.clone(),
        };
        landed &= checked(
            service,
            "status",
            service.forge.set_status(&run.repo, sha, &status),
        )
        .is_some();
    }
    let record = RunRecord::read(&service.run_dir(run).join("run.json")).ok();
    let earlier = service
        .store
        .runs_of_pr(&run.repo, run.pr)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.id != run.id)
        .collect::<Vec<_>>();
    let body = summary(service, run, record.as_ref(), &earlier);
    let known = service
        .store
        .summary_comment(&run.repo, run.pr)
        .ok()
        .flatten();
    let upserted = service
        .forge
        .upsert_summary(&run.repo, run.pr, SUMMARY_MARKER, &body, known);
    match checked(service, "summary", upserted) {
        Some(comment) => {
            if let Err(e) = service
                .store
                .set_summary_comment(&run.repo, run.pr, comment)
            {
                service.emit(ServeEvent::Trouble {
                    what: format!("run {}: {e}", run.id),
                });
            }
        }
        None => landed = false,
    }
    if landed {
        mark_reported(service, run);
    }
}

fn mark_reported(service: &Service, run: &RunRow) {
    if let Err(e) = service.store.mark_reported(run.id) {
        service.emit(ServeEvent::Trouble {
            what: format!("run {}: {e}", run.id),
        });
    }
}

/// `verdict: reason`, on one line.
fn one_line(verdict: &str, reason: Option<&str>) -> String {
    let reason = reason.map(|r| r.lines().next().unwrap_or("").trim());
    match reason {
        Some(r) if !r.is_empty() => format!("{verdict}: {r}"),
        _ => verdict.to_string(),
    }
}

fn mark(verdict: &str) -> &'static str {
    match verdict {
        "pass" | "passed" => "✅",
        "fail" | "failed" | "base-failed" => "❌",
        "skipped" => "⏭️",
        verdicts::SUPERSEDED | verdicts::CANCELLED => "⏹️",
        _ => "⚠️",
    }
}

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "–".to_string(),
        Some(s) if s >= 60.0 => format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        Some(s) => format!("{s:.1} s"),
    }
}

/// The summary comment of a pull request: the latest run's stages, and the runs before it.
pub fn summary(
    service: &Service,
    run: &RunRow,
    record: Option<&RunRecord>,
    earlier: &[RunRow],
) -> String {
    let verdict = run.verdict.as_deref().unwrap_or(verdicts::ERROR);
    let at = run
        .head_sha
        .as_deref()
        .map(|s| format!(" at `{}`", &s[..s.len().min(8)]))
        .unwrap_or_default();
    let mut out = format!(
        "{SUMMARY_MARKER}\n**ccci** · `{}`{at} · {} **{verdict}** in {} · [run {}]({})\n",
        run.recipe,
        mark(verdict),
        seconds(run.seconds(super::store::now_ms())),
        run.id,
        service.run_url(run.id)
    );
    if let Some(reason) = run.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        out.push_str(&format!(
            "\n> {}\n",
            reason.lines().next().unwrap_or("").trim()
        ));
    }
    if let Some(record) = record.filter(|r| !r.stages.is_empty()) {
        out.push_str("\n| stage | result | time |\n| --- | --- | --- |\n");
        for stage in &record.stages {
            let status = stage.status.as_str();
            let why = stage
                .reason
                .as_deref()
                .map(|r| format!(" — {}", r.replace('|', "\\|")))
                .unwrap_or_default();
            out.push_str(&format!(
                "| {} | {} {status}{why} | {} |\n",
                stage.stage.as_str(),
                mark(status),
                seconds(stage.seconds)
            ));
        }
    }
    let command = match run.stage_names().join(" ") {
        stages if stages.is_empty() => "!testme".to_string(),
        stages => format!("!testme {stages}"),
    };
    out.push_str(&format!(
        "\n<sub>Asked for by @{} with `{command}` (via {}).",
        run.requested_by, run.trigger
    ));
    if !earlier.is_empty() {
        let list: Vec<String> = earlier
            .iter()
            .take(5)
            .map(|r| {
                format!(
                    "[{}]({}) {}",
                    r.id,
                    service.run_url(r.id),
                    r.verdict.as_deref().unwrap_or(r.state.as_str())
                )
            })
            .collect();
        out.push_str(&format!(" Earlier runs: {}.", list.join(" · ")));
    }
    out.push_str("</sub>\n");
    out
}
