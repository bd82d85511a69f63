//! What the HTTP routes answer with, between the store and the run directories on one side
//! and the dashboard templates and the live-log stream on the other: a store row becomes a
//! [`RunView`], a run's directory gives its record, diagnostics and log.

use std::io::Read;
use std::path::{Component, Path};

use super::dashboard::{Filter, RecipeHistory, RunView};
use super::livelog::{LogRequest, StreamOptions, respond};
use super::service::Service;
use super::store::{ListFilter, RunRow, RunState, now_ms, verdicts};
use crate::run::record::RunRecord;

use super::http::{Page, Request};

/// The most of a log a run page embeds; the live stream brings the rest.
const EMBEDDED_LOG: u64 = 2 << 20;
/// Runs the index lists at most.
const LISTED: usize = 200;

fn error(service: &Service, status: u16, message: &str) -> Page {
    Page::html(status, service.dashboard.error_page(status, message))
}

/// A store row as the pages show it. A run closed before its pull request was read (refused)
/// has no link to it yet: the forge's own address for it is used.
pub fn view(row: &RunRow, forge_url: &str) -> RunView {
    RunView {
        id: row.id,
        run_id: row.run_dir_id(),
        repo: row.repo.clone(),
        recipe: row.recipe.clone(),
        pr: row.pr,
        pr_url: row
            .pr_url
            .clone()
            .or_else(|| Some(format!("{forge_url}/{}/pulls/{}", row.repo, row.pr))),
        head_sha: row.head_sha.clone(),
        trigger: row.trigger.clone(),
        requested_by: row.requested_by.clone(),
        stages: row.stage_names(),
        state: row.state.as_str().to_string(),
        verdict: row.verdict.clone(),
        reason: row.reason.clone(),
        created_at: crate::timestamp::rfc3339_of_unix((row.created_ms.max(0) / 1000) as u64),
        seconds: row.seconds(now_ms()),
    }
}

pub fn index(service: &Service, query: &str) -> Page {
    let filter = Filter::from_query(query);
    let listed = service.store.list(&ListFilter {
        recipe: filter.recipe.clone(),
        state: filter.state.as_deref().and_then(RunState::parse),
        pr: filter.pr,
        limit: LISTED,
        ..ListFilter::default()
    });
    let histories = service.store.recipes().map(|recipes| {
        recipes
            .into_iter()
            .map(|recipe| history(service, recipe))
            .collect::<Vec<_>>()
    });
    let (Ok(rows), Ok(histories)) = (listed, histories) else {
        return error(service, 503, "the run store cannot be read right now");
    };
    let forge_url = &service.config.forge_url;
    let views: Vec<RunView> = rows.iter().map(|row| view(row, forge_url)).collect();
    match service.dashboard.index(&views, &filter, &histories) {
        Ok(page) => Page::html(200, page),
        Err(e) => error(service, 500, &e.to_string()),
    }
}

/// A recipe's record: its finished runs, but for those that say nothing about the recipe (a
/// refused command never ran; a superseded or cancelled run was stopped on purpose), which
/// would otherwise let anyone's `!testme` lower its pass rate.
fn history(service: &Service, recipe: String) -> RecipeHistory {
    let runs: Vec<RunRow> = service
        .store
        .list(&ListFilter {
            recipe: Some(recipe.clone()),
            state: Some(RunState::Done),
            limit: LISTED,
            ..ListFilter::default()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            !matches!(
                r.verdict.as_deref(),
                Some(verdicts::REFUSED | verdicts::SUPERSEDED | verdicts::CANCELLED)
            )
        })
        .collect();
    RecipeHistory {
        last_verdicts: runs
            .iter()
            .take(20)
            .map(|r| (r.id, r.verdict.clone().unwrap_or_default()))
            .collect(),
        passes: runs
            .iter()
            .filter(|r| r.verdict.as_deref() == Some("pass"))
            .count() as u64,
        runs: runs.len() as u64,
        recipe,
    }
}

fn find(service: &Service, id: &str) -> Result<RunRow, Page> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(Page::html(
            404,
            service.dashboard.not_found(&format!("run `{id}`")),
        ));
    };
    match service.store.get(id) {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(Page::html(
            404,
            service.dashboard.not_found(&format!("run {id}")),
        )),
        Err(_) => Err(error(
            service,
            503,
            "the run store cannot be read right now",
        )),
    }
}

pub fn run_page(service: &Service, id: &str) -> Page {
    let row = match find(service, id) {
        Ok(row) => row,
        Err(page) => return page,
    };
    let dir = service.run_dir(&row);
    let record = RunRecord::read(&dir.join("run.json")).ok();
    let mut diagnostics: Vec<String> = std::fs::read_dir(dir.join("diagnostics"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    diagnostics.sort();
    let mut log = String::new();
    if let Ok(file) = std::fs::File::open(dir.join("log")) {
        let mut bytes = Vec::new();
        // A log that cannot be read shows as empty; the live stream says the rest.
        let _ = file.take(EMBEDDED_LOG).read_to_end(&mut bytes);
        log = String::from_utf8_lossy(&bytes).into_owned();
    }
    match service.dashboard.run_page(
        &view(&row, &service.config.forge_url),
        record.as_ref(),
        &diagnostics,
        &log,
    ) {
        Ok(page) => Page::html(200, page),
        Err(e) => error(service, 500, &e.to_string()),
    }
}

pub fn diagnostic(service: &Service, id: &str, file: &str) -> Page {
    let row = match find(service, id) {
        Ok(row) => row,
        Err(page) => return page,
    };
    // One plain file name: never a way out of the run's diagnostics.
    let name = Path::new(file);
    let plain = name.components().count() == 1
        && matches!(name.components().next(), Some(Component::Normal(_)));
    let path = service.run_dir(&row).join("diagnostics").join(name);
    match std::fs::read(&path) {
        Ok(bytes) if plain => Page {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: bytes,
        },
        _ => Page::html(
            404,
            service
                .dashboard
                .not_found(&format!("diagnostic `{file}` for run {}", row.id)),
        ),
    }
}

/// Streams a run's log on the request's connection until the run is done (or the client
/// leaves).
pub fn log(
    service: &Service,
    request: &Request,
    conn: &mut std::net::TcpStream,
    id: &str,
    query: &str,
) {
    let row = match find(service, id) {
        Ok(row) => row,
        Err(page) => {
            let _ = page.write(conn, false);
            return;
        }
    };
    let wanted = LogRequest::parse(
        request.header("Accept"),
        request.header("Last-Event-ID"),
        Some(query),
    );
    let path = service.run_dir(&row).join("log");
    let finished = || {
        service.stopping()
            || match service.store.get(row.id) {
                Ok(Some(r)) => r.state == RunState::Done,
                // Forgotten by retention: nothing more will come.
                Ok(None) => true,
                Err(_) => false,
            }
    };
    // A stream may stay quiet for long between lines: only writes are bounded (a client that
    // stops reading), not the wait for the next line.
    let _ = conn.set_read_timeout(None);
    // A client that left mid-stream is no error of serve's.
    let _ = respond(conn, &path, &wanted, &finished, &StreamOptions::default());
}
