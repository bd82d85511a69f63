//! The dashboard of the real `ccci serve`, as a person sees it in a real headless Chromium while
//! a real run goes on: the test forge (Gitea) delivers `!testme` comments to serve's webhook,
//! serve runs the demo recipe's install on this machine's swarm, and the browser, driven over
//! the DevTools protocol ([`crate::support::devtools`]), shows the run list, its filter and the
//! recipe's history, and the run page with its log growing live until the verdict.
//!
//! The live log is checked on the DOM: the page embeds the lines the server had (`data-lines`)
//! as one text node and its script appends each line that arrives later as a node of its own,
//! so the nodes tell what was served from what came live. Two run pages are watched: one opened
//! as soon as the run was recorded (before its log existed) and one opened once the log had
//! lines (it asks the stream for the lines after those, `?from=N`). Both must end up showing
//! exactly the run's log file, in order, with no line twice.
//!
//! Polling is off: a comment made while serve's first poll runs would be marked as seen by it,
//! so the webhook alone makes the run start when the test says.
//!
//! Screenshots are kept in `target/artifacts/`: `serve-index.png` (the list after the run),
//! `serve-run-live.png` (the run page while the log grows) and `serve-run.png` (after the run).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::chromium;
use crate::support::devtools::{Browser, Tab};
use crate::support::forge::Forge;
use crate::support::proc::wait_until_for;
use crate::support::sandbox::Sandbox;
use crate::support::serve::{self, ServeProc};

crate::tests! {
    forge + swarm + chromium: a_real_run_watched_in_a_browser,
}

const SECRET: &str = "serve-browser-secret";
/// How long the run may take, deploy and teardown included, on a busy machine.
const RUN_WAIT: Duration = Duration::from_secs(180);
/// How long a page may take to show a live line once the run writes it.
const PAGE_LIMIT: Duration = Duration::from_secs(60);

fn a_real_run_watched_in_a_browser() {
    let forge = Forge::start();
    let second_pr = open_second_pr(&forge);
    let sb = Sandbox::new("");
    sb.config(&serve::config(
        &sb,
        &forge.base_url,
        &forge.bot.token,
        Some(SECRET),
        "  repos: [coop-cloud/demo]\n  poll_interval: \"off\"\n",
    ));
    let mut serve = ServeProc::start(&sb);
    forge.add_webhook(&format!("{}/hook", serve.url), SECRET);
    let browser = Browser::start();

    // Run 1: an outsider asks on the second pull request and is refused; it never runs.
    forge.comment_on(&forge.outsider, second_pr, "!testme");
    serve.line("run 1: refused", 1);
    // Run 2: a maintainer asks for the install stage on the first.
    forge.comment_on_pr(&forge.maintainer, "!testme install");
    serve.line(
        "run 2: !testme on coop-cloud/demo#1 by maintainer (via webhook)",
        1,
    );

    // Readable without JavaScript: the rows are in the HTML, which refreshes itself while a
    // run is on its way.
    let (status, html) = serve.get("/");
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<tr class="run" data-id="2">"#)
            && html.contains(r#"<tr class="run" data-id="1">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<noscript><meta http-equiv="refresh""#),
        "{html}"
    );

    // The run page at once, as someone who follows the forge's link right away sees it.
    let mut early = browser.open(&format!("{}/runs/2", serve.url));
    let mut index = browser.open(&format!("{}/", serve.url));
    the_list_shows_both_runs(&mut index, &forge);

    // A second run page once the log has lines: it embeds them and streams the rest.
    // The run directory of run 2, the maintainer's.
    let run = serve.run_dir_of(2);
    wait_until_for(RUN_WAIT, "the run's first stage in its log", &mut || {
        sb.log(&run).contains("stage install started")
    });
    let mut later = browser.open(&format!("{}/runs/2", serve.url));
    // Its stage table: run.json says the stage runs from before the log says it started.
    let stages = texts(&mut later, "#stages tbody tr");
    let stage_ended = sb.log(&run).contains("stage install passed");
    assert!(
        stages
            .first()
            .is_some_and(|s| s.starts_with("install running"))
            || stage_ended,
        "the stage table of a running run: {stages:?}"
    );

    // Lines appear in the page while the run goes on: the log is live, no verdict yet.
    let live = wait_log(&mut early, "a line appended live", PAGE_LIMIT, |log| {
        !log.appended.is_empty() && log.state == "live"
    });
    assert!(
        !live.lines().iter().any(|l| l.contains("verdict:")),
        "the first live line came with the run already judged: {live:#?}"
    );
    assert!(!live.heading.contains("pass"), "{}", live.heading);
    // The first live line also brings the page's state up to date: a page served before the
    // run started says so no longer.
    early.wait_for(
        "the heading to catch up with the run",
        r##"["running", "pass"].includes(document.querySelector("#heading .badge")?.textContent)"##,
    );
    assert!(
        !texts(&mut early, "#stages")[0].starts_with("Not started yet"),
        "{:?}",
        texts(&mut early, "#stages")
    );
    shoot(&mut early, "serve-run-live.png");

    // The run ends: the stream says `eof`, the page says the log is complete.
    let early_end = wait_log(&mut early, "the end of the log", RUN_WAIT, |log| {
        log.state == "complete"
    });
    serve.line("run 2: pass", 1);
    let file: Vec<String> = sb.log(&run).lines().map(str::to_string).collect();
    assert!(
        file.iter().any(|l| l.ends_with("verdict: pass")),
        "{file:#?}"
    );
    assert_eq!(
        early_end.served, live.served,
        "the served text never changes"
    );
    assert!(
        early_end.appended.len() > live.appended.len()
            && early_end.appended.starts_with(&live.appended),
        "the log grew after the first live line, in order:\nthen {:#?}\nnow {:#?}",
        live.appended,
        early_end.appended
    );
    same_lines(
        &early_end.lines(),
        &file,
        "the page shows the run's log, every line once, in order",
    );

    let later_end = wait_log(&mut later, "the end of the log", RUN_WAIT, |log| {
        log.state == "complete"
    });
    assert!(
        later_end.embedded > 0 && later_end.served.len() == later_end.embedded,
        "the second page embedded the lines written before it was served: {later_end:#?}"
    );
    assert!(
        !later_end.appended.is_empty(),
        "lines reached the second page after it was served: {later_end:#?}"
    );
    same_lines(
        &later_end.lines(),
        &file,
        "embedded and streamed lines join without a gap or a repeat",
    );

    // After the `eof` the page refreshes its heading, summary and stage table.
    for tab in [&mut early, &mut later] {
        the_run_page_shows_the_verdict(tab, &forge.pr.head_sha);
    }
    later.eval("window.scrollTo(0, 0)");
    shoot(&mut later, "serve-run.png");

    // The list refreshes itself too, and the recipe's history counts only the run that ran.
    index.wait_for(
        "run 2 to read pass in the list",
        r#"document.querySelector('#runs tr.run[data-id="2"] .badge')?.textContent === "pass""#,
    );
    let rows = rows(&mut index);
    assert!(
        rows[0][6].ends_with('s') && rows[0][6] != "—",
        "run 2 has a duration: {rows:?}"
    );
    assert_eq!(
        texts(&mut index, "#history tbody tr"),
        ["demo ✓ 1/1 (100%)"],
        "a refused command is not part of the recipe's record"
    );
    shoot(&mut index, "serve-index.png");
    the_filter_narrows_the_list(&mut index, &serve.url);

    // The commit status on the forge links the run page the browser showed.
    let status = ccci_status(&forge);
    assert_eq!(status["status"], "success", "{status}");
    assert_eq!(
        status["target_url"],
        format!("{}/runs/2", serve.url).as_str()
    );

    drop(browser);
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
    sb.assert_nothing_left(&sb.record(&run));
}

/// The run list while run 2 is not done: both runs, newest first, with what a person reads in
/// each column.
fn the_list_shows_both_runs(index: &mut Tab, forge: &Forge) {
    let rows = rows(index);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (run2, run1) = (&rows[0], &rows[1]);
    assert_eq!(
        run2[..5],
        ["2", "demo", "#1 runs", "webhook", "install"],
        "{run2:?}"
    );
    assert!(
        ["received", "queued", "running"].contains(&run2[5].as_str()),
        "run 2 is on its way: {run2:?}"
    );
    assert_eq!(
        run1[..6],
        [
            "1",
            "demo",
            "#2 runs",
            "webhook",
            "install, upgrade, backup",
            "refused"
        ],
        "{run1:?}"
    );
    assert!(
        run1[7].starts_with("outsider may not ask for runs"),
        "the reason: {run1:?}"
    );
    // Each pull request links to the forge, the refused one's too (serve never read it).
    let links = index.eval(
        r##"Array.from(document.querySelectorAll("#runs tr.run td:nth-child(3) a:first-child"), a => a.href)"##,
    );
    let pulls = format!("{}/{}/pulls", forge.base_url, forge.repo);
    assert_eq!(links, json!([format!("{pulls}/1"), format!("{pulls}/2")]));
    assert_eq!(
        index.eval("document.body.dataset.active"),
        "1",
        "a run is active"
    );
}

/// Heading, summary and stage table of run 2 once it passed.
fn the_run_page_shows_the_verdict(tab: &mut Tab, head_sha: &str) {
    tab.wait_for(
        "the heading to read pass",
        r##"document.querySelector("#heading .badge")?.textContent === "pass""##,
    );
    let summary = texts(tab, "#summary");
    let summary = &summary[0];
    for part in [
        "asked by maintainer (webhook)",
        "stages install",
        "state done: pass",
        &format!("commit {}", &head_sha[..10]),
        "teardown done",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary:?}");
    }
    let stages = texts(tab, "#stages tbody tr");
    assert!(
        stages[0].starts_with("install passed") && stages[0].contains(&head_sha[..8]),
        "{stages:?}"
    );
    assert!(
        stages.len() > 1 && stages[1..].iter().all(|c| c.starts_with('✓')),
        "every check passed: {stages:?}"
    );
}

/// The form narrows the list as a person uses it: the pull request, then the state too; a
/// recipe's link shows its record.
fn the_filter_narrows_the_list(index: &mut Tab, base: &str) {
    let submit = |tab: &mut Tab, fields: &str, query: &str| {
        tab.eval(&format!(
            r#"(() => {{ const f = document.querySelector("form.filter"); {fields}; f.requestSubmit(); return true; }})()"#
        ));
        tab.wait_loaded(&format!("{base}/?{query}"));
    };
    submit(index, r#"f.elements.pr.value = "2""#, "recipe=&state=&pr=2");
    assert_eq!(ids(index), [1], "the runs of pull request 2");
    submit(
        index,
        r#"f.elements.pr.value = "1"; f.elements.state.value = "done""#,
        "recipe=&state=done&pr=1",
    );
    assert_eq!(ids(index), [2], "the finished runs of pull request 1");
    submit(
        index,
        r#"f.elements.pr.value = "1"; f.elements.state.value = "running""#,
        "recipe=&state=running&pr=1",
    );
    assert_eq!(ids(index), Vec::<i64>::new());
    assert_eq!(
        texts(index, "p#runs"),
        ["No runs match this filter."],
        "an empty list says so"
    );

    index.eval(r#"document.querySelector("form.filter a").click()"#);
    index.wait_loaded(&format!("{base}/"));
    assert_eq!(ids(index), [2, 1]);
    index.eval(r##"document.querySelector("#history a").click()"##);
    index.wait_loaded(&format!("{base}/?recipe=demo"));
    assert_eq!(
        texts(index, "#summary"),
        ["demo: 1 of 1 finished runs passed (100%) · latest: ✓"]
    );
}

// ---- reading the pages ----

/// The run page's log as the DOM holds it.
#[derive(Debug)]
struct LogView {
    /// `data-lines`: how many lines the server embedded.
    embedded: usize,
    /// The lines of the server's text.
    served: Vec<String>,
    /// The lines the page's script appended, one text node each.
    appended: Vec<String>,
    /// `#log-state`: `N lines so far`, `live`, `reconnecting…`, `complete`.
    state: String,
    heading: String,
}

impl LogView {
    fn lines(&self) -> Vec<String> {
        self.served.iter().chain(&self.appended).cloned().collect()
    }
}

const LOG: &str = r#"(() => {
  const pre = document.getElementById("log");
  return {
    embedded: parseInt(pre.dataset.lines, 10),
    nodes: Array.from(pre.childNodes, n => n.textContent),
    state: document.getElementById("log-state").textContent,
    heading: document.getElementById("heading").innerText,
  };
})()"#;

/// Reads the log from the DOM. The server's text comes first (the parser may keep it in more
/// than one node, never in fewer); it ends after `data-lines` lines.
fn log_view(value: &Value) -> LogView {
    let embedded = value["embedded"].as_u64().expect("data-lines") as usize;
    let nodes: Vec<&str> = value["nodes"]
        .as_array()
        .expect("the log's nodes")
        .iter()
        .map(|n| n.as_str().expect("text"))
        .collect();
    let mut served = String::new();
    let mut rest = nodes.iter();
    while served.matches('\n').count() < embedded {
        match rest.next() {
            Some(node) => served.push_str(node),
            None => panic!("the page shows fewer than the {embedded} lines it embeds: {nodes:?}"),
        }
    }
    assert_eq!(
        served.matches('\n').count(),
        embedded,
        "the embedded text is {embedded} whole lines: {served:?}"
    );
    let appended = rest
        .map(|node| {
            let line = node
                .strip_suffix('\n')
                .unwrap_or_else(|| panic!("an appended node is one whole line: {node:?}"));
            assert!(!line.contains('\n'), "one line per node: {node:?}");
            line.to_string()
        })
        .collect();
    LogView {
        embedded,
        served: served.lines().map(str::to_string).collect(),
        appended,
        state: value["state"].as_str().unwrap_or_default().to_string(),
        heading: value["heading"].as_str().unwrap_or_default().to_string(),
    }
}

/// Fails, showing where they part, unless the page shows the log file's lines exactly.
fn same_lines(shown: &[String], file: &[String], what: &str) {
    if shown == file {
        return;
    }
    let at = shown.iter().zip(file).take_while(|(a, b)| a == b).count();
    panic!(
        "{what}: the page shows {} lines, the log has {}; from line {}:\npage: {:#?}\nlog:  {:#?}",
        shown.len(),
        file.len(),
        at + 1,
        &shown[at..(at + 3).min(shown.len())],
        &file[at..(at + 3).min(file.len())],
    );
}

/// Waits until the page's log satisfies `holds`.
fn wait_log(
    tab: &mut Tab,
    what: &str,
    limit: Duration,
    holds: impl Fn(&LogView) -> bool,
) -> LogView {
    let value = tab.wait_until(what, limit, LOG, |v| holds(&log_view(v)));
    log_view(&value)
}

/// The visible text of each element `selector` finds, spaces collapsed.
fn texts(tab: &mut Tab, selector: &str) -> Vec<String> {
    let selector = Value::from(selector).to_string();
    let value = tab.eval(&format!(
        r#"Array.from(document.querySelectorAll({selector}), e => e.innerText.replace(/\s+/g, " ").trim())"#
    ));
    serde_json::from_value(value).expect("a list of strings")
}

/// The cells of each row of the run list, as text.
fn rows(tab: &mut Tab) -> Vec<Vec<String>> {
    let value = tab.eval(
        r##"Array.from(document.querySelectorAll("#runs tr.run"), r => Array.from(r.cells, c => c.innerText.replace(/\s+/g, " ").trim()))"##,
    );
    serde_json::from_value(value).expect("rows of strings")
}

/// The run ids of the run list, in order.
fn ids(tab: &mut Tab) -> Vec<i64> {
    rows(tab)
        .iter()
        .map(|r| r[0].parse().expect("a run id"))
        .collect()
}

/// A screenshot of what `tab` shows, kept as a build artifact.
fn shoot(tab: &mut Tab, name: &str) {
    let path = chromium::artifact(name);
    tab.screenshot(&path);
    chromium::assert_screenshot(&path);
}

// ---- the forge ----

/// Opens pull request #2 (a new file on a new branch), so the list has two to filter by.
fn open_second_pr(forge: &Forge) -> u64 {
    let token = &forge.maintainer.token;
    let (status, body) = forge.api(
        token,
        "POST",
        &format!("/repos/{}/contents/NOTES.md", forge.repo),
        Some(&json!({
            // "notes\n"
            "content": "bm90ZXMK",
            "message": "Add notes",
            "branch": "main",
            "new_branch": "notes",
        })),
    );
    assert_eq!(status, 201, "creating a branch: {body}");
    let (status, pr) = forge.api(
        token,
        "POST",
        &format!("/repos/{}/pulls", forge.repo),
        Some(&json!({"base": "main", "head": "notes", "title": "Notes"})),
    );
    assert_eq!(status, 201, "opening a pull request: {pr}");
    pr["number"].as_u64().expect("the pull request's number")
}

/// The `ccci` status of the first pull request's head, once it is final.
fn ccci_status(forge: &Forge) -> Value {
    let path = format!("/repos/{}/commits/{}/status", forge.repo, forge.pr.head_sha);
    let mut found = Value::Null;
    wait_until_for(RUN_WAIT, "the final commit status", &mut || {
        let (_, combined) = forge.api(&forge.bot.token, "GET", &path, None);
        found = combined["statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["context"] == "ccci")
            .cloned()
            .unwrap_or(Value::Null);
        !found.is_null() && found["status"] != "pending"
    });
    found
}
