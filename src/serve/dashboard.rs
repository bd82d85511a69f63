//! The dashboard of `ccci serve`: the server-rendered HTML pages (the run list with its filter and
//! per-recipe history, one run's page with its stage table, diagnostics and live log, and the
//! not-found and error pages).
//!
//! It owns the templates (embedded in the binary, HTML-autoescaped) and the small view types the
//! HTTP handlers fill in from the store and the run directory; it never reads the store or the
//! disk itself and never sees a secret, so nothing secret can reach a page.
//!
//! Pages work without JavaScript. Two small inline scripts (no external assets: the network may
//! be closed) add what needs it: the index refreshes its run list while a run is active, and a
//! run page appends the log lines that arrive over SSE after the page was rendered.
//!
//! The live-log contract with the SSE endpoint `/runs/{id}/log`: each event carries `id:` = the
//! 1-based line number and `data:` = the line; `event: eof` ends the log. A run page embeds the
//! first N complete lines and opens `/runs/{id}/log?from=N`, where `from=N` means the same as
//! `Last-Event-ID: N` ("I have lines 1..=N, send the ones after"); on a reconnect the browser
//! also sends `Last-Event-ID` (the server takes the larger of the two). The script skips any
//! event whose id is not above the last line it shows, so a server that replays lines never
//! duplicates one.

use serde::Serialize;

use crate::run::record::RunRecord;

/// The run states the store knows, in the order a run goes through them.
pub const STATES: [&str; 4] = ["received", "queued", "running", "done"];

/// The pages' templates, compiled into the binary.
const TEMPLATES: [(&str, &str); 4] = [
    ("base.html", include_str!("templates/base.html")),
    ("index.html", include_str!("templates/index.html")),
    ("run.html", include_str!("templates/run.html")),
    ("message.html", include_str!("templates/message.html")),
];

/// One run as the pages show it; the HTTP handler fills it in from the store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunView {
    /// The store's id; pages link to `/runs/{id}`.
    pub id: i64,
    /// The run directory's name.
    pub run_id: String,
    /// `owner/name` of the recipe repository.
    pub repo: String,
    pub recipe: String,
    pub pr: u64,
    /// The pull request on the forge; shown as a link only when it is an http(s) URL.
    pub pr_url: Option<String>,
    pub head_sha: Option<String>,
    /// `webhook` or `poll`.
    pub trigger: String,
    pub requested_by: String,
    /// The stages asked for; empty means all of them.
    pub stages: Vec<String>,
    /// One of [`STATES`].
    pub state: String,
    /// pass, fail, base-failed, error, interrupted, superseded, cancelled, refused…
    pub verdict: Option<String>,
    pub reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub seconds: Option<f64>,
}

/// A recipe's recent record, for the history strip and the per-recipe summary line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecipeHistory {
    pub recipe: String,
    /// The latest runs' `(id, verdict)`, newest first (as `ORDER BY id DESC LIMIT n` gives them);
    /// the strip shows them oldest to newest, left to right.
    pub last_verdicts: Vec<(i64, String)>,
    /// How many of the recipe's finished runs passed.
    pub passes: u64,
    /// How many runs of the recipe finished with a verdict (the caller leaves out those that
    /// say nothing about the recipe, such as refused commands).
    pub runs: u64,
}

/// What the run list is narrowed to: the query string of `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Filter {
    pub recipe: Option<String>,
    /// One of [`STATES`].
    pub state: Option<String>,
    pub pr: Option<u64>,
}

impl Filter {
    /// Reads `recipe`, `state` and `pr` from a URL query string (with or without its `?`),
    /// percent-decoded. A later occurrence of a key overrides an earlier one and an empty value
    /// clears it (the form sends `recipe=` for "any"); unknown keys and values that are not a
    /// recipe name, a state or a pull-request number are ignored.
    pub fn from_query(query: &str) -> Filter {
        let mut filter = Filter::default();
        let query = query.strip_prefix('?').unwrap_or(query);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            let value = value.trim();
            match percent_decode(key).as_str() {
                "recipe" if value.is_empty() => filter.recipe = None,
                "recipe" if crate::naming::validate_recipe(value).is_ok() => {
                    filter.recipe = Some(value.to_string());
                }
                "state" if value.is_empty() || value == "any" => filter.state = None,
                "state" if STATES.contains(&value) => filter.state = Some(value.to_string()),
                "pr" if value.is_empty() => filter.pr = None,
                "pr" => {
                    let number = value.strip_prefix('#').unwrap_or(value);
                    if let Ok(pr @ 1..) = number.parse::<u64>() {
                        filter.pr = Some(pr);
                    }
                }
                _ => {}
            }
        }
        filter
    }

    /// The query string that [`Filter::from_query`] reads back into this filter; empty when
    /// nothing is filtered.
    pub fn to_query(&self) -> String {
        let mut pairs = Vec::new();
        if let Some(recipe) = &self.recipe {
            pairs.push(format!("recipe={}", percent_encode(recipe)));
        }
        if let Some(state) = &self.state {
            pairs.push(format!("state={}", percent_encode(state)));
        }
        if let Some(pr) = self.pr {
            pairs.push(format!("pr={pr}"));
        }
        pairs.join("&")
    }

    /// The link to the run list under this filter: `/` or `/?…`.
    pub fn href(&self) -> String {
        match self.to_query() {
            q if q.is_empty() => "/".to_string(),
            q => format!("/?{q}"),
        }
    }

    /// This filter with the recipe set (or cleared); the rest kept.
    pub fn with_recipe(&self, recipe: Option<&str>) -> Filter {
        Filter {
            recipe: recipe.map(str::to_string),
            ..self.clone()
        }
    }

    /// This filter with the state set (or cleared); the rest kept.
    pub fn with_state(&self, state: Option<&str>) -> Filter {
        Filter {
            state: state.map(str::to_string),
            ..self.clone()
        }
    }

    /// This filter with the pull request set (or cleared); the rest kept.
    pub fn with_pr(&self, pr: Option<u64>) -> Filter {
        Filter { pr, ..self.clone() }
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `run` passes this filter, for a caller that filters in memory rather than in SQL.
    pub fn matches(&self, run: &RunView) -> bool {
        self.recipe.as_ref().is_none_or(|r| *r == run.recipe)
            && self.state.as_ref().is_none_or(|s| *s == run.state)
            && self.pr.is_none_or(|pr| pr == run.pr)
    }
}

/// A page could not be rendered: a bug in a template, never bad input.
#[derive(Debug, thiserror::Error)]
#[error("render the {page} page: {source}")]
pub struct RenderError {
    page: &'static str,
    #[source]
    source: minijinja::Error,
}

/// The templates, compiled once; shared by every request (it is `Send + Sync`).
pub struct Dashboard {
    env: minijinja::Environment<'static>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard::new()
    }
}

impl Dashboard {
    pub fn new() -> Dashboard {
        let mut env = minijinja::Environment::new();
        // Every page is HTML, whatever its template is called; a missing variable is a bug that
        // the unit tests must see rather than an empty cell.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            // The templates are part of the binary: a syntax error is caught by the unit tests.
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("dashboard template {name}: {e:#}"));
        }
        Dashboard { env }
    }

    /// The run list (`/`): `runs` are already filtered and sorted newest first by the caller;
    /// `recipes` feed the history strip, or the summary line of the recipe filtered on.
    pub fn index(
        &self,
        runs: &[RunView],
        filter: &Filter,
        recipes: &[RecipeHistory],
    ) -> Result<String, RenderError> {
        let rows: Vec<Row> = runs.iter().map(|run| Row::new(run, filter)).collect();
        let mut options: Vec<&str> = recipes
            .iter()
            .map(|r| r.recipe.as_str())
            .chain(runs.iter().map(|r| r.recipe.as_str()))
            .chain(filter.recipe.as_deref())
            .collect();
        options.sort_unstable();
        options.dedup();
        let history: Vec<History> = recipes.iter().map(|h| History::new(h, filter)).collect();
        let focus = filter
            .recipe
            .as_ref()
            .and_then(|r| history.iter().find(|h| h.recipe == *r));
        let active = runs.iter().any(|r| r.state != "done");
        let page = IndexPage {
            title: match &filter.recipe {
                Some(recipe) => format!("{recipe} · ccci"),
                None => "runs · ccci".to_string(),
            },
            filter,
            filtered: !filter.is_empty(),
            states: STATES,
            options,
            rows: &rows,
            history: &history,
            focus,
            active,
        };
        self.render("index.html", &page)
    }

    /// One run's page (`/runs/{id}`): its summary, the stage table from `record` (run.json, when
    /// the run has written one), links to `diagnostics` (file names under the run's
    /// `diagnostics/`), and the log so far. While the run is not done only complete lines are
    /// embedded (a partial last line arrives whole over SSE), and the page's script appends
    /// the lines after them live.
    pub fn run_page(
        &self,
        run: &RunView,
        record: Option<&RunRecord>,
        diagnostics: &[String],
        log_so_far: &str,
    ) -> Result<String, RenderError> {
        let done = run.state == "done";
        // A run closed before `ccci test` started (refused, cancelled while queued) has no
        // record and no log: the page says so instead of showing an empty log.
        let never_ran = done && record.is_none() && log_so_far.is_empty();
        let log = if done {
            log_so_far
        } else {
            // A line still being written would be embedded cut short and then skipped when it
            // arrives whole, since its number is already shown.
            log_so_far.rfind('\n').map_or("", |end| &log_so_far[..=end])
        };
        let lines = log.lines().count();
        let stages: Vec<StageRow> = record
            .map(|r| r.stages.iter().map(StageRow::new).collect())
            .unwrap_or_default();
        let record_view = record.map(|r| RecordView {
            commit: r.commit.as_deref().map(short_sha),
            base_version: r.base_version.clone(),
            driver: r.driver.clone(),
            domain: r.domain.clone(),
            torn_down: r.torn_down,
            leftovers: r.teardown_leftovers.clone(),
            kept: r.kept.clone(),
        });
        let diagnostics: Vec<Link> = diagnostics
            .iter()
            .map(|name| Link {
                href: format!("/runs/{}/diagnostics/{}", run.id, percent_encode(name)),
                text: name.clone(),
            })
            .collect();
        let page = RunPage {
            title: format!("{} #{} · run {} · ccci", run.recipe, run.pr, run.id),
            row: Row::new(run, &Filter::default()),
            run,
            stages_asked: stages_text(&run.stages),
            head: run.head_sha.as_deref().map(short_sha),
            record: record_view,
            stages,
            diagnostics,
            log,
            lines,
            done,
            never_ran,
            stream: format!("/runs/{}/log", run.id),
        };
        self.render("run.html", &page)
    }

    /// The 404 page: `what` is what was asked for ("run 42", "/nowhere").
    pub fn not_found(&self, what: &str) -> String {
        self.message(404, "Not found", &format!("There is no {what} here."))
    }

    /// The page for any other failure: `status` is the HTTP status answered, `message` one line
    /// saying what went wrong (never a secret or an internal path the caller would not show).
    pub fn error_page(&self, status: u16, message: &str) -> String {
        let title = match status {
            400 => "Bad request",
            403 => "Forbidden",
            404 => "Not found",
            405 => "Method not allowed",
            413 => "Too large",
            503 => "Unavailable",
            500..=599 => "Server error",
            _ => "Error",
        };
        self.message(status, title, message)
    }

    fn message(&self, status: u16, title: &str, message: &str) -> String {
        let page = MessagePage {
            title: format!("{status} {title} · ccci"),
            status,
            heading: title,
            message,
        };
        self.render("message.html", &page).unwrap_or_else(|_| {
            // Only reachable through a broken template; the page must still say something.
            format!(
                "<!doctype html><title>{status}</title><p>{status} {}: {}</p>",
                html_escape(title),
                html_escape(message)
            )
        })
    }

    fn render(&self, page: &'static str, ctx: &impl Serialize) -> Result<String, RenderError> {
        self.env
            .get_template(page)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(ctx))))
            .map_err(|source| RenderError { page, source })
    }
}

/// What `index.html` is given.
#[derive(Serialize)]
struct IndexPage<'a> {
    title: String,
    filter: &'a Filter,
    filtered: bool,
    states: [&'static str; 4],
    /// The recipes the filter form offers.
    options: Vec<&'a str>,
    rows: &'a [Row<'a>],
    history: &'a [History],
    /// The history of the recipe filtered on, for the summary line.
    focus: Option<&'a History>,
    /// Some run is not done yet: the page refreshes its run list.
    active: bool,
}

/// What `run.html` is given.
#[derive(Serialize)]
struct RunPage<'a> {
    title: String,
    run: &'a RunView,
    row: Row<'a>,
    stages_asked: String,
    head: Option<String>,
    record: Option<RecordView>,
    stages: Vec<StageRow>,
    diagnostics: Vec<Link>,
    /// The embedded log: complete lines only while the run goes on.
    log: &'a str,
    /// How many lines `log` holds: the last line number the page shows.
    lines: usize,
    done: bool,
    /// Finished without ever starting: no stages, no log.
    never_ran: bool,
    stream: String,
}

/// What `message.html` is given.
#[derive(Serialize)]
struct MessagePage<'a> {
    title: String,
    status: u16,
    heading: &'a str,
    message: &'a str,
}

/// A run as a row of the list (and the summary of its page): the links and words worked out
/// here, so templates only place them.
#[derive(Serialize)]
struct Row<'a> {
    run: &'a RunView,
    href: String,
    /// The run list narrowed to this run's recipe (the current filter kept).
    recipe_href: String,
    /// The run list narrowed to this recipe's pull request.
    pr_filter_href: String,
    /// The pull request on the forge, when its URL is safe to link.
    pr_link: Option<&'a str>,
    /// The verdict once there is one, else the state.
    status: &'a str,
    tone: &'static str,
    duration: String,
    stages: String,
    created: String,
}

impl<'a> Row<'a> {
    fn new(run: &'a RunView, filter: &Filter) -> Row<'a> {
        let status = match (&run.verdict, run.state.as_str()) {
            (Some(verdict), _) => verdict.as_str(),
            (None, state) => state,
        };
        Row {
            run,
            href: format!("/runs/{}", run.id),
            recipe_href: filter.with_recipe(Some(&run.recipe)).href(),
            pr_filter_href: Filter::default()
                .with_recipe(Some(&run.recipe))
                .with_pr(Some(run.pr))
                .href(),
            pr_link: run.pr_url.as_deref().filter(|u| is_web_url(u)),
            status,
            tone: tone(status),
            duration: run.seconds.map(duration).unwrap_or_default(),
            stages: stages_text(&run.stages),
            created: short_time(&run.created_at),
        }
    }
}

/// A recipe's history strip and summary.
#[derive(Serialize)]
struct History {
    recipe: String,
    href: String,
    cells: Vec<Cell>,
    passes: u64,
    runs: u64,
    /// Whole percent of finished runs that passed; `None` before the first.
    rate: Option<u64>,
}

#[derive(Serialize)]
struct Cell {
    href: String,
    title: String,
    glyph: &'static str,
    tone: &'static str,
}

impl History {
    fn new(h: &RecipeHistory, filter: &Filter) -> History {
        History {
            recipe: h.recipe.clone(),
            href: filter.with_recipe(Some(&h.recipe)).href(),
            cells: h
                .last_verdicts
                .iter()
                .rev()
                .map(|(id, verdict)| Cell {
                    href: format!("/runs/{id}"),
                    title: format!("run {id}: {verdict}"),
                    glyph: glyph(verdict),
                    tone: tone(verdict),
                })
                .collect(),
            passes: h.passes,
            runs: h.runs,
            rate: (h.runs > 0).then(|| (h.passes.min(h.runs) * 100 + h.runs / 2) / h.runs),
        }
    }
}

#[derive(Serialize)]
struct StageRow {
    stage: &'static str,
    status: &'static str,
    tone: &'static str,
    detail: String,
    duration: String,
    reason: Option<String>,
    checks: Vec<CheckRow>,
}

#[derive(Serialize)]
struct CheckRow {
    name: String,
    ok: bool,
    duration: String,
    detail: String,
}

impl StageRow {
    fn new(s: &crate::run::record::StageRecord) -> StageRow {
        StageRow {
            stage: s.stage.as_str(),
            status: s.status.as_str(),
            tone: tone(s.status.as_str()),
            detail: s.detail.clone(),
            duration: s.seconds.map(duration).unwrap_or_default(),
            reason: s.reason.clone(),
            checks: s
                .checks
                .iter()
                .map(|c| CheckRow {
                    name: c.name.clone(),
                    ok: c.ok,
                    duration: duration(c.seconds),
                    detail: c.detail.clone(),
                })
                .collect(),
        }
    }
}

/// What run.json adds to a run page beyond the stage table.
#[derive(Serialize)]
struct RecordView {
    commit: Option<String>,
    base_version: Option<String>,
    driver: String,
    domain: String,
    torn_down: bool,
    leftovers: Vec<String>,
    kept: Option<String>,
}

#[derive(Serialize)]
struct Link {
    href: String,
    text: String,
}

/// A verdict, stage status or run state as a colour class. The badge always shows the word
/// too, so the page reads the same without colour.
fn tone(word: &str) -> &'static str {
    match word {
        "pass" | "passed" => "ok",
        "fail" | "failed" => "bad",
        "base-failed" | "refused" => "warn",
        "error" => "err",
        "running" => "live",
        _ => "idle",
    }
}

/// One character per verdict for the history strip, whose cells are too small for a word
/// (their title has it): readable without colour.
fn glyph(verdict: &str) -> &'static str {
    match verdict {
        "pass" => "✓",
        "fail" => "✗",
        "base-failed" => "B",
        "error" => "E",
        "interrupted" => "I",
        "superseded" => "S",
        "cancelled" => "C",
        "refused" => "R",
        _ => "?",
    }
}

/// A duration as people read it: `0.4s`, `42s`, `1m 12s`, `2h 5m`; empty when unknown.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return String::new();
    }
    if seconds < 9.95 {
        return format!("{seconds:.1}s");
    }
    let total = seconds.round() as u64;
    match total {
        0..60 => format!("{total}s"),
        60..3600 => format!("{}m {}s", total / 60, total % 60),
        _ => format!("{}h {}m", total / 3600, total % 3600 / 60),
    }
}

/// `2025-01-02T03:04:05Z` as `2025-01-02 03:04 UTC`; anything else as it is.
fn short_time(rfc3339: &str) -> String {
    let b = rfc3339.as_bytes();
    if b.len() >= 16 && b[10] == b'T' && rfc3339.is_char_boundary(16) {
        let zone = if rfc3339.ends_with('Z') { " UTC" } else { "" };
        format!("{} {}{zone}", &rfc3339[..10], &rfc3339[11..16])
    } else {
        rfc3339.to_string()
    }
}

fn short_sha(sha: &str) -> String {
    sha.chars().take(10).collect()
}

fn stages_text(stages: &[String]) -> String {
    if stages.is_empty() {
        "all".to_string()
    } else {
        stages.join(", ")
    }
}

/// Only http(s) URLs become links: autoescaping stops markup, not a `javascript:` URL.
fn is_web_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Decodes `%XX` and `+` (a space, in a query); a malformed escape stays as it is, and bytes
/// that are not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Encodes everything but unreserved characters (RFC 3986), for a query value or a path
/// segment.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::record::{CheckRecord, RUN_FORMAT_VERSION, StageRecord, StageStatus};
    use crate::stage::Stage;

    fn run(id: i64, recipe: &str, state: &str, verdict: Option<&str>) -> RunView {
        RunView {
            id,
            run_id: format!("20250102-030405-{recipe}-{id}"),
            repo: format!("coop-cloud/{recipe}"),
            recipe: recipe.to_string(),
            pr: 7,
            pr_url: Some(format!("https://git.example/coop-cloud/{recipe}/pulls/7")),
            head_sha: Some("0123456789abcdef0123456789abcdef01234567".to_string()),
            trigger: "webhook".to_string(),
            requested_by: "alice".to_string(),
            stages: vec!["install".to_string(), "upgrade".to_string()],
            state: state.to_string(),
            verdict: verdict.map(str::to_string),
            reason: None,
            created_at: "2025-01-02T03:04:05Z".to_string(),
            seconds: Some(72.4),
        }
    }

    fn record() -> RunRecord {
        let mut r = RunRecord::new("20250102-030405-ghost-1", "ghost", "/src", "stack");
        r.format_version = RUN_FORMAT_VERSION;
        r.stages = vec![
            StageRecord {
                stage: Stage::Install,
                status: StageStatus::Passed,
                detail: "a1b2c3d".to_string(),
                started_at: None,
                seconds: Some(31.0),
                reason: None,
                checks: vec![CheckRecord {
                    name: "http answers".to_string(),
                    ok: true,
                    seconds: 0.25,
                    detail: String::new(),
                }],
            },
            StageRecord {
                stage: Stage::Upgrade,
                status: StageStatus::Failed,
                detail: "base 1.0.0 → a1b2c3d".to_string(),
                started_at: None,
                seconds: Some(95.0),
                reason: Some("app: task exited <137>".to_string()),
                checks: vec![CheckRecord {
                    name: "data survived".to_string(),
                    ok: false,
                    seconds: 1.5,
                    detail: "marker <gone>".to_string(),
                }],
            },
        ];
        r
    }

    /// Autoescaping writes `/` as `&#x2f;` (harmless: attributes and text are decoded); undone
    /// here so assertions can quote URLs as a browser reads them.
    fn slashes(page: String) -> String {
        page.replace("&#x2f;", "/")
    }

    const EVIL: &str = "<script>alert('x')</script>";

    fn assert_no_raw_markup(html: &str) {
        assert!(!html.contains(EVIL), "unescaped markup in:\n{html}");
        assert!(!html.contains("<img"), "unescaped markup in:\n{html}");
    }

    #[test]
    fn every_template_compiles_and_renders() {
        let d = Dashboard::new();
        let runs = [run(2, "ghost", "running", None)];
        d.index(&runs, &Filter::default(), &[]).unwrap();
        d.run_page(&runs[0], None, &[], "").unwrap();
        assert!(d.not_found("run 42").contains("There is no run 42 here."));
        assert!(
            d.error_page(500, "the store is locked")
                .contains("Server error")
        );
    }

    #[test]
    fn input_is_escaped_everywhere_it_appears() {
        let d = Dashboard::new();
        let mut r = run(3, "ghost", "done", Some("fail"));
        r.reason = Some(EVIL.to_string());
        r.requested_by = "<img src=x onerror=alert(1)>".to_string();
        r.trigger = EVIL.to_string();
        r.stages = vec![EVIL.to_string()];
        r.pr_url = Some("javascript:alert(1)".to_string());
        let history = [RecipeHistory {
            recipe: "ghost".to_string(),
            last_verdicts: vec![(3, EVIL.to_string())],
            passes: 0,
            runs: 1,
        }];
        let index = slashes(d.index(&[r.clone()], &Filter::default(), &history).unwrap());
        assert_no_raw_markup(&index);
        assert!(index.contains("&lt;script&gt;"), "{index}");
        assert!(
            !index.contains("javascript:"),
            "a javascript: URL became a link"
        );

        let mut rec = record();
        rec.stages[1].reason = Some(EVIL.to_string());
        rec.stages[1].checks[0].detail = EVIL.to_string();
        rec.teardown_leftovers = vec![EVIL.to_string()];
        let diagnostics = ["\"><img src=x>.log".to_string()];
        let log = format!("{EVIL}\n</pre><img src=x>\n");
        let page = slashes(d.run_page(&r, Some(&rec), &diagnostics, &log).unwrap());
        assert_no_raw_markup(&page);
        assert!(page.contains("&lt;/pre&gt;&lt;img src=x&gt;"));
        assert!(
            page.contains("/runs/3/diagnostics/%22%3E%3Cimg%20src%3Dx%3E.log"),
            "{page}"
        );
        assert!(!page.contains("javascript:"));

        let missing = d.not_found(EVIL);
        assert_no_raw_markup(&missing);
        assert_no_raw_markup(&d.error_page(400, EVIL));
    }

    #[test]
    fn filters_read_from_queries() {
        let f = Filter::from_query("recipe=ghost&state=running&pr=12");
        assert_eq!(
            f,
            Filter {
                recipe: Some("ghost".into()),
                state: Some("running".into()),
                pr: Some(12)
            }
        );
        // Percent-encoding, a leading `?`, `+` and a `#` before the number.
        let f = Filter::from_query("?recipe=gh%6Fst&pr=%2312&state=+done+");
        assert_eq!(f.recipe.as_deref(), Some("ghost"));
        assert_eq!(f.pr, Some(12));
        assert_eq!(f.state.as_deref(), Some("done"));
        // Empty values are "any"; a later key overrides an earlier one.
        let f = Filter::from_query("recipe=ghost&recipe=&state=queued&state=any&pr=");
        assert_eq!(f, Filter::default());
        assert!(f.is_empty());
    }

    #[test]
    fn junk_in_a_query_is_ignored() {
        for junk in [
            "",
            "?",
            "&&&",
            "=",
            "=x&y",
            "recipe=../etc&state=bogus&pr=-1",
            "recipe=Ghost&pr=0&pr=abc&pr=99999999999999999999999",
            "recipe=%zz&state=%&pr=%2",
            "recipe=%ff%fe&state=%00",
            "recipe=a%2Fb&unknown=1&state[]=done",
            "%%%%=%%%%&\u{0}=\u{0}",
        ] {
            assert_eq!(Filter::from_query(junk), Filter::default(), "{junk:?}");
        }
        // A bad value leaves the good one before it alone.
        let f = Filter::from_query("recipe=ghost&recipe=../x&pr=3&pr=x");
        assert_eq!(f.recipe.as_deref(), Some("ghost"));
        assert_eq!(f.pr, Some(3));
    }

    #[test]
    fn filter_links_keep_and_alter_the_filter() {
        let f = Filter::from_query("state=done&pr=4");
        assert_eq!(f.href(), "/?state=done&pr=4");
        assert_eq!(
            f.with_recipe(Some("ghost")).href(),
            "/?recipe=ghost&state=done&pr=4"
        );
        assert_eq!(f.with_state(None).with_pr(None).href(), "/");
        for f in [
            Filter::default(),
            f.with_recipe(Some("my_recipe-2")),
            f.with_state(Some("running")),
        ] {
            assert_eq!(Filter::from_query(&f.to_query()), f);
        }
        let r = run(1, "ghost", "done", Some("pass"));
        assert!(Filter::from_query("recipe=ghost&pr=7").matches(&r));
        assert!(!Filter::from_query("recipe=ghost&pr=8").matches(&r));
        assert!(!Filter::from_query("state=running").matches(&r));
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(duration(0.0), "0.0s");
        assert_eq!(duration(0.42), "0.4s");
        assert_eq!(duration(9.94), "9.9s");
        assert_eq!(duration(9.96), "10s");
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(59.6), "1m 0s");
        assert_eq!(duration(72.0), "1m 12s");
        assert_eq!(duration(3599.4), "59m 59s");
        assert_eq!(duration(3725.0), "1h 2m");
        assert_eq!(duration(f64::NAN), "");
        assert_eq!(duration(-1.0), "");
        assert_eq!(duration(f64::INFINITY), "");
    }

    #[test]
    fn the_index_shows_runs_history_and_the_filter() {
        let d = Dashboard::new();
        let mut failed = run(2, "ghost", "done", Some("fail"));
        failed.reason = Some("upgrade: data lost".into());
        let runs = [run(3, "ghost", "running", None), failed];
        let history = [
            RecipeHistory {
                recipe: "ghost".into(),
                last_verdicts: vec![(2, "fail".into()), (1, "pass".into())],
                passes: 1,
                runs: 2,
            },
            RecipeHistory {
                recipe: "wordpress".into(),
                last_verdicts: vec![],
                passes: 0,
                runs: 0,
            },
        ];
        let page = slashes(d.index(&runs, &Filter::default(), &history).unwrap());
        assert!(
            page.contains(r#"<span class="badge bad">fail</span>"#),
            "{page}"
        );
        assert!(page.contains(r#"<span class="badge live">running</span>"#));
        assert!(page.contains("1m 12s"));
        assert!(page.contains("upgrade: data lost"));
        assert!(page.contains(r#"href="https://git.example/coop-cloud/ghost/pulls/7""#));
        assert!(page.contains(r#"href="/?recipe=ghost""#));
        assert!(page.contains(r#"<option value="wordpress">wordpress</option>"#));
        // The strip runs oldest to newest.
        let pass = page.find(r#"title="run 1: pass""#).expect("cell of run 1");
        let fail = page.find(r#"title="run 2: fail""#).expect("cell of run 2");
        assert!(pass < fail);
        // A run is active: the list refreshes itself, with or without JavaScript.
        assert!(page.contains("<script>") && page.contains("http-equiv=\"refresh\""));

        let filter = Filter::from_query("recipe=ghost&state=done");
        let page = slashes(d.index(&runs[1..], &filter, &history).unwrap());
        assert!(page.contains("1 of 2 finished runs passed (50%)"), "{page}");
        assert!(page.contains(r#"<option value="ghost" selected>"#));
        assert!(page.contains(r#"<option value="done" selected>"#));
        assert!(!page.contains("<script>") && !page.contains("refresh"));

        let page = slashes(
            d.index(&[], &Filter::from_query("pr=99"), &history)
                .unwrap(),
        );
        assert!(page.contains("No runs match this filter."));
        assert!(page.contains(r#"value="99""#));
    }

    #[test]
    fn a_run_page_with_its_record() {
        let d = Dashboard::new();
        let mut r = run(5, "ghost", "done", Some("fail"));
        r.reason = Some("upgrade: app: task exited".into());
        let diagnostics = ["app.log".to_string(), "tasks.json".to_string()];
        let page = slashes(
            d.run_page(&r, Some(&record()), &diagnostics, "one\ntwo\n")
                .unwrap(),
        );
        assert!(
            page.contains(r#"<span class="badge ok">passed</span>"#),
            "{page}"
        );
        assert!(page.contains(r#"<span class="badge bad">failed</span>"#));
        assert!(page.contains("app: task exited &lt;137&gt;"));
        assert!(page.contains("✓ http answers"));
        assert!(page.contains("✗ data survived"));
        assert!(page.contains("marker &lt;gone&gt;"));
        assert!(page.contains("1m 35s"));
        assert!(page.contains(r#"href="/runs/5/diagnostics/app.log""#));
        assert!(page.contains(r#"href="/runs/5/diagnostics/tasks.json""#));
        assert!(page.contains(
            "<code title=\"0123456789abcdef0123456789abcdef01234567\">0123456789</code>"
        ));
        // Done: the whole log, and no stream.
        assert!(
            page.contains("data-lines=\"2\">\none\ntwo\n</pre>"),
            "{page}"
        );
        assert!(!page.contains("EventSource") && !page.contains("data-stream"));
    }

    #[test]
    fn a_run_page_without_a_record() {
        let d = Dashboard::new();
        let queued = run(6, "ghost", "queued", None);
        let page = slashes(d.run_page(&queued, None, &[], "").unwrap());
        assert!(
            page.contains("Not started yet: the run is queued."),
            "{page}"
        );
        assert!(!page.contains("Diagnostics"));
        assert!(page.contains(r#"data-lines="0" data-stream="/runs/6/log">"#));

        // Running, but `ccci test` has not written its record yet.
        let starting = run(6, "ghost", "running", None);
        let page = slashes(d.run_page(&starting, None, &[], "").unwrap());
        assert!(page.contains("Starting: no stage has begun yet."), "{page}");

        // Done with a log but no record: `ccci test` started and said why it stopped.
        let done = run(6, "ghost", "done", Some("error"));
        let page = slashes(d.run_page(&done, None, &[], "fetch failed\n").unwrap());
        assert!(page.contains("No run record (run.json) for this run."));
        assert!(page.contains("fetch failed"));

        // Refused: it never ran, and the page says so rather than show an empty log.
        let mut refused = run(7, "ghost", "done", Some("refused"));
        refused.reason = Some("mallory may not ask for runs".into());
        let page = slashes(d.run_page(&refused, None, &[], "").unwrap());
        assert!(
            page.contains("The run never started (see the reason above): no stages, no log."),
            "{page}"
        );
        assert!(page.contains("mallory may not ask for runs"));
        assert!(!page.contains("id=\"log\"") && !page.contains("No run record"));
    }

    #[test]
    fn a_live_run_page_embeds_complete_lines_and_streams_the_rest() {
        let d = Dashboard::new();
        let running = run(8, "ghost", "running", None);
        // The first line is empty: the newline after <pre> keeps it. The last is being written.
        let page = slashes(
            d.run_page(&running, Some(&record()), &[], "\nsecond\nthird\nfour")
                .unwrap(),
        );
        assert!(
            page.contains("data-lines=\"3\" data-stream=\"/runs/8/log\">\n\nsecond\nthird\n</pre>"),
            "{page}"
        );
        assert!(!page.contains("four"));
        assert!(page.contains("new EventSource(pre.dataset.stream + \"?from=\" + last)"));
        assert!(page.contains("if (!(n > last)) { return; }"));

        let done = RunView {
            state: "done".into(),
            verdict: Some("pass".into()),
            ..running
        };
        let page = slashes(d.run_page(&done, None, &[], "a\nb").unwrap());
        assert!(page.contains("data-lines=\"2\">\na\nb</pre>"), "{page}");
    }
}
