//! The dashboard as a person sees it: its pages rendered by `ccci::serve::dashboard`, served by a
//! tiny HTTP server in the test, loaded in a real headless Chromium (scripts run), checked on
//! the DOM the browser ends up with, and photographed into `target/artifacts/`. Here the test
//! controls what is served, down to a line a stream replays; `serve_browser.rs` watches the
//! same pages served by the real `ccci serve` during a real run.
//!
//! The live log: the run page embeds the log so far and its script appends what arrives over
//! SSE. The test's log stream replays two embedded lines (which the page must skip), sends
//! three new ones, and drops the connection; the browser reconnects with `Last-Event-ID`, which
//! proves it handled those events, and only then does the test let the page finish loading (the
//! moment Chromium dumps it). The second stream never ends, as a live run's does not.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ccci::run::record::{CheckRecord, RunRecord, StageRecord, StageStatus};
use ccci::serve::dashboard::{Dashboard, Filter, RecipeHistory, RunView};
use ccci::stage::Stage;

use crate::support::chromium;
use crate::support::proc::WAIT;

crate::tests! {
    chromium: index_in_a_browser,
    chromium: live_log_in_a_browser,
}

/// The run list, the filtered views and the history as the browser shows them.
fn index_in_a_browser() {
    let runs = Arc::new(runs());
    let site = Site::start({
        let runs = runs.clone();
        move |request| {
            let url = request.url().to_string();
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            if path != "/" {
                return respond(request, 404, &Dashboard::new().not_found(path));
            }
            let filter = Filter::from_query(query);
            let shown: Vec<RunView> = runs.iter().filter(|r| filter.matches(r)).cloned().collect();
            let html = Dashboard::new().index(&shown, &filter, &history(&runs));
            respond(request, 200, &html.expect("index renders"));
        }
    });

    let dom = chromium::dump_dom(&site.url("/"));
    let rows = run_rows(&dom);
    assert_eq!(
        ids(&dom),
        [6, 5, 4, 3, 2, 1],
        "every run, newest first:\n{dom}"
    );
    let text = |id| &rows.iter().find(|(i, _)| *i == id).unwrap().1;
    let shows = |id, what: &str| assert!(text(id).contains(what), "run {id} shows {:?}", text(id));
    shows(6, "6 ghost #12 runs webhook install, upgrade running —");
    shows(
        5,
        "5 wordpress #3 runs poll all fail 1m 12s upgrade: data lost <marker>",
    );
    shows(4, "4 ghost #12 runs webhook install, upgrade pass 42s");
    shows(
        2,
        "2 ghost #11 runs webhook install, upgrade base-failed 42s",
    );
    shows(1, "1 ghost #10 runs webhook install, upgrade error 42s");
    assert!(!dom.contains("<marker>"), "a reason was rendered as markup");
    let history = visible(section(&dom, "<table id=\"history\"", "</table>"));
    assert!(history.contains("ghost E B ✓ 1/3 (33%)"), "{history}");
    assert!(history.contains("wordpress ✓ ✗ 1/2 (50%)"), "{history}");
    // A run is active, so the page keeps its list fresh.
    assert!(dom.contains("data-active=\"1\""));
    screenshot(&site.url("/"), "dashboard-index.png");

    let dom = chromium::dump_dom(&site.url("/?recipe=wordpress"));
    assert_eq!(ids(&dom), [5, 3], "only wordpress runs:\n{dom}");
    let summary = visible(section(&dom, "<p class=\"summary\"", "</p>"));
    assert!(
        summary.starts_with("wordpress: 1 of 2 finished runs passed (50%)"),
        "{summary}"
    );
    assert!(
        dom.contains("<option value=\"wordpress\" selected=\"\">"),
        "{dom}"
    );

    let dom = chromium::dump_dom(&site.url("/?state=running&pr=%2312"));
    assert_eq!(ids(&dom), [6], "the running run of PR 12:\n{dom}");

    // Junk in the query filters nothing and breaks nothing.
    let dom = chromium::dump_dom(&site.url("/?recipe=..%2Fetc&pr=abc&state=%ff&x"));
    assert_eq!(ids(&dom), [6, 5, 4, 3, 2, 1], "{dom}");
}

/// The run page appends live log lines to the ones it embedded, none twice.
fn live_log_in_a_browser() {
    let visit = RunPageVisit::start();
    let dom = chromium::dump_dom(&visit.site.url("/runs/1"));
    let served = visit.log.served.lock().unwrap().clone();
    let streams = visit.log.streams.lock().unwrap().clone();
    assert!(
        served.contains(&html_text(&line(5))),
        "the page embeds the log so far"
    );
    for n in 6..=9 {
        assert!(
            !served.contains(&format!("log line {n}")),
            "line {n} was already in the server-rendered page"
        );
    }
    assert_eq!(
        streams.first(),
        Some(&("/runs/1/log?from=5".to_string(), None)),
        "the page asks for the lines after the 5 it embeds"
    );
    assert_eq!(
        streams.get(1).map(|(_, last)| last.as_deref()),
        Some(Some("8")),
        "the browser resumed after the last line it handled: {streams:?}"
    );

    let shown = log_lines(&dom);
    let expected: Vec<String> = (1..=8).map(line).collect();
    assert!(
        shown.len() >= 8 && shown[..8] == expected[..],
        "lines 1-5 embedded, 6-8 appended live, in order, none twice; shown:\n{shown:#?}"
    );
    // Line 9 arrives on the stream that never ends; the page may or may not have it yet.
    assert!(
        shown.len() == 8 || shown[8..] == [line(9)],
        "nothing else, nothing twice: {:#?}",
        &shown[8..]
    );
    assert!(
        dom.contains("&lt;b&gt;step&lt;/b&gt;"),
        "appended as text, not markup"
    );
    assert!(!dom.contains("<b>step"));
    drop(visit);

    let visit = RunPageVisit::start();
    screenshot(&visit.site.url("/runs/1"), "dashboard-run.png");
    assert_eq!(
        visit.log.streams.lock().unwrap().len(),
        2,
        "the screenshot shows live lines"
    );
}

// ---- the pages' data ----

fn view(id: i64, recipe: &str, pr: u64, state: &str, verdict: Option<&str>) -> RunView {
    RunView {
        id,
        run_id: format!("20250102-0304{id:02}-{recipe}"),
        repo: format!("coop-cloud/{recipe}"),
        recipe: recipe.to_string(),
        pr,
        pr_url: Some(format!(
            "https://git.coopcloud.tech/coop-cloud/{recipe}/pulls/{pr}"
        )),
        head_sha: Some(format!("{id:040x}")),
        trigger: "webhook".to_string(),
        requested_by: "alice".to_string(),
        stages: vec!["install".to_string(), "upgrade".to_string()],
        state: state.to_string(),
        verdict: verdict.map(str::to_string),
        reason: None,
        created_at: format!("2025-01-02T03:04:{id:02}Z"),
        seconds: (state == "done").then_some(42.0),
    }
}

/// Six runs of two recipes, newest first, as the store would list them.
fn runs() -> Vec<RunView> {
    let mut fail = view(5, "wordpress", 3, "done", Some("fail"));
    fail.trigger = "poll".to_string();
    fail.stages = vec![];
    fail.seconds = Some(72.4);
    fail.reason = Some("upgrade: data lost <marker>".to_string());
    vec![
        view(6, "ghost", 12, "running", None),
        fail,
        view(4, "ghost", 12, "done", Some("pass")),
        view(3, "wordpress", 2, "done", Some("pass")),
        view(2, "ghost", 11, "done", Some("base-failed")),
        view(1, "ghost", 10, "done", Some("error")),
    ]
}

/// Each recipe's history, worked out from `runs` the way the store would.
fn history(runs: &[RunView]) -> Vec<RecipeHistory> {
    let mut recipes: Vec<&str> = runs.iter().map(|r| r.recipe.as_str()).collect();
    recipes.sort_unstable();
    recipes.dedup();
    recipes
        .into_iter()
        .map(|recipe| {
            let done: Vec<&RunView> = runs
                .iter()
                .filter(|r| r.recipe == recipe && r.verdict.is_some())
                .collect();
            RecipeHistory {
                recipe: recipe.to_string(),
                last_verdicts: done
                    .iter()
                    .map(|r| (r.id, r.verdict.clone().unwrap()))
                    .collect(),
                passes: done
                    .iter()
                    .filter(|r| r.verdict.as_deref() == Some("pass"))
                    .count() as u64,
                runs: done.len() as u64,
            }
        })
        .collect()
}

/// Line `n` of the test run's log; markup in it must show as text.
fn line(n: usize) -> String {
    format!("log line {n}: <b>step</b> & done")
}

fn run_page() -> String {
    let run = view(1, "ghost", 12, "running", None);
    let mut record = RunRecord::new(&run.run_id, "ghost", "/src", "abra");
    record.stages = vec![
        StageRecord {
            stage: Stage::Install,
            status: StageStatus::Passed,
            detail: "0000000001".to_string(),
            started_at: None,
            seconds: Some(31.2),
            reason: None,
            checks: vec![CheckRecord {
                name: "https answers 200".to_string(),
                ok: true,
                seconds: 0.4,
                detail: String::new(),
            }],
        },
        StageRecord {
            stage: Stage::Upgrade,
            status: StageStatus::Running,
            detail: "base 5.1.0+5.98.0 → 0000000001".to_string(),
            started_at: None,
            seconds: None,
            reason: None,
            checks: vec![],
        },
    ];
    // Five whole lines and the start of a sixth, still being written.
    let mut log: String = (1..=5).map(|n| line(n) + "\n").collect();
    log.push_str(&line(6)[..14]);
    Dashboard::new()
        .run_page(&run, Some(&record), &["tasks.json".to_string()], &log)
        .expect("run page renders")
}

// ---- the run page's live log, served ----

/// What the run page's server saw: the page it sent, and each log stream the browser opened
/// (its URL and `Last-Event-ID`). The page's load is held until a second stream opens.
#[derive(Default)]
struct LiveLog {
    served: Mutex<String>,
    streams: Mutex<Vec<(String, Option<String>)>>,
    released: Mutex<bool>,
    release: Condvar,
}

struct RunPageVisit {
    site: Site,
    log: Arc<LiveLog>,
}

impl RunPageVisit {
    fn start() -> RunPageVisit {
        let log = Arc::new(LiveLog::default());
        let site = Site::start({
            let log = log.clone();
            move |request| match request.url() {
                "/runs/1" => serve_held_page(request, &log),
                url if url.starts_with("/runs/1/log") => serve_log(request, &log),
                url => {
                    let url = url.to_string();
                    respond(request, 404, &Dashboard::new().not_found(&url))
                }
            }
        });
        RunPageVisit { site, log }
    }
}

/// Sends the run page but its last bytes (so its scripts run but it has not loaded), and the
/// rest once the log stream was resumed, or after [`WAIT`].
fn serve_held_page(request: tiny_http::Request, log: &LiveLog) {
    let html = run_page();
    *log.served.lock().unwrap() = html.clone();
    let (body, end) = html.split_at(html.rfind("</html>").expect("a whole page"));
    let mut w = request.into_writer();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        html.len()
    );
    let _ = w.write_all(head.as_bytes());
    let _ = w.write_all(body.as_bytes());
    let _ = w.flush();
    let released = log.released.lock().unwrap();
    drop(
        log.release
            .wait_timeout_while(released, WAIT, |r| !*r)
            .unwrap(),
    );
    let _ = w.write_all(end.as_bytes());
    let _ = w.flush();
}

/// The log stream. First connection: lines 4 and 5 again (the page shows them already), then 6,
/// 7 and 8, then the end of the response. Second: releases the page, sends line 9, and stays
/// open. Chunked, because the end of a response is what makes the browser reconnect, and
/// tiny_http keeps the connection open for the next request whatever this writer does.
fn serve_log(request: tiny_http::Request, log: &LiveLog) {
    let last_event_id = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Last-Event-ID"))
        .map(|h| h.value.to_string());
    let nth = {
        let mut streams = log.streams.lock().unwrap();
        streams.push((request.url().to_string(), last_event_id));
        streams.len()
    };
    let mut w = request.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    let _ = w.write_all(head.as_bytes());
    let mut send = |text: &str| {
        let chunk = format!("{:x}\r\n{text}\r\n", text.len());
        w.write_all(chunk.as_bytes()).and_then(|_| w.flush())
    };
    let event = |n: usize| format!("id: {n}\ndata: {}\n\n", line(n));
    if nth == 1 {
        let _ = send("retry: 100\n\n");
        for n in 4..=8 {
            let _ = send(&event(n));
            // Pacing, not synchronisation: the lines arrive over time, as a run writes them.
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = w.write_all(b"0\r\n\r\n").and_then(|_| w.flush());
        return;
    }
    *log.released.lock().unwrap() = true;
    log.release.notify_all();
    let _ = send(&event(9));
    // Never ends by itself: a comment now and then, until the browser goes away.
    let until = Instant::now() + WAIT;
    while Instant::now() < until && send(": ping\n\n").is_ok() {
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- serving ----

/// An HTTP server on a loopback port for one test: each request is answered on a thread of its
/// own, so a held page and a live stream are served at once.
struct Site {
    server: Arc<tiny_http::Server>,
    accept: Option<JoinHandle<()>>,
}

impl Site {
    fn start(route: impl Fn(tiny_http::Request) + Send + Sync + 'static) -> Site {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listen"));
        let route = Arc::new(route);
        let accept = std::thread::spawn({
            let server = server.clone();
            move || {
                for request in server.incoming_requests() {
                    let route = route.clone();
                    std::thread::spawn(move || route(request));
                }
            }
        });
        Site {
            server,
            accept: Some(accept),
        }
    }

    fn url(&self, path: &str) -> String {
        let addr = self.server.server_addr().to_ip().expect("an IP address");
        format!("http://{addr}{path}")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn respond(request: tiny_http::Request, status: u16, html: &str) {
    let header = tiny_http::Header::from_bytes("Content-Type", "text/html; charset=utf-8")
        .expect("a valid header");
    let response = tiny_http::Response::from_string(html)
        .with_status_code(status)
        .with_header(header);
    let _ = request.respond(response);
}

// ---- reading what the browser shows ----

/// `(run id, visible text)` of each row of the run list, in order.
fn run_rows(dom: &str) -> Vec<(i64, String)> {
    dom.split("<tr class=\"run\" data-id=\"")
        .skip(1)
        .map(|rest| {
            let (id, rest) = rest.split_once('"').expect("a quoted id");
            let row = &rest[..rest.find("</tr>").expect("a whole row")];
            (id.parse().expect("a numeric id"), visible(row))
        })
        .collect()
}

/// The run ids of the run list, in order.
fn ids(dom: &str) -> Vec<i64> {
    run_rows(dom).into_iter().map(|(id, _)| id).collect()
}

/// The part of `dom` from `start` to the next `end`.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in:\n{dom}"));
    let len = dom[from..].find(end).expect("the section's end");
    &dom[from..from + len]
}

/// What a person reads of an HTML fragment: the text, with a space where a box (a cell, a
/// link, a paragraph) begins or ends and none around inline words, spaces collapsed.
fn visible(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let close = rest[open..].find('>').map_or(rest.len(), |c| open + c + 1);
        let name: String = rest[open + 1..close]
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if !matches!(
            name.as_str(),
            "strong" | "b" | "em" | "code" | "span" | "time"
        ) {
            text.push(' ');
        }
        rest = &rest[close..];
    }
    text.push_str(rest);
    unescape(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The lines of the log `<pre>` in the DOM.
fn log_lines(dom: &str) -> Vec<String> {
    let pre = section(dom, "id=\"log\"", "</pre>");
    let text = &pre[pre.find('>').expect("the pre's tag ends") + 1..];
    unescape(text).lines().map(str::to_string).collect()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// `text` as the template writes it into HTML.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('/', "&#x2f;")
}

/// A screenshot of `url` kept as a build artifact, checked to be a real 1280×900 PNG.
fn screenshot(url: &str, name: &str) {
    let path = chromium::artifact(name);
    chromium::screenshot(url, &path);
    chromium::assert_screenshot(&path);
}
