//! `ccci serve`'s intake, end to end: the real binary against the recording forge, for what a
//! real forge cannot be made to do on demand — forged, oversized and replayed deliveries, API
//! errors, timeouts and redirects on the membership check, status calls that take seconds.
//!
//! Every delivery and page request is timed: serve must answer each within a second, whatever
//! the forge is doing (a bound, not a benchmark). Runs that get as far as a child `ccci test`
//! meet a docker that is not there (or a stand-in engine), so they end quickly and never touch
//! this machine's swarm: these tests need nothing but this machine.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::support::ccci::Output;
use crate::support::proc::{wait_until, wait_until_for};
use crate::support::recording_forge::{Recorded, RecordingForge, Reply};
use crate::support::sandbox::Sandbox;
use crate::support::serve::{self, ServeProc};

crate::tests! {
    local: refused_deliveries_record_nothing_and_call_no_forge,
    local: every_configured_secret_is_accepted_while_rotating,
    local: one_comment_runs_once_however_often_it_is_delivered,
    local: one_comment_runs_once_whichever_path_sees_it_first,
    local: talk_about_commands_and_foreign_comments_are_ignored,
    local: authorization_fails_closed_when_the_forge_cannot_say,
    local: the_intake_answers_at_once_while_the_forge_is_slow,
    local: new_commits_cancel_the_pull_requests_queued_and_running_runs,
    local: a_run_interrupted_by_a_stop_is_reported_before_serve_exits,
    local: an_unknown_stage_is_answered_with_its_name_and_only_to_members,
    local: secrets_appear_nowhere_but_the_authorization_header,
    local: retention_forgets_the_oldest_finished_runs_with_their_files,
    local: regression_an_absurd_content_length_aborted_serve,
    local: regression_stalled_connections_froze_the_intake,
    local: regression_a_stalled_reader_of_the_log_held_deliveries_unanswered,
    local: regression_a_connection_over_the_limit_was_reset_rather_than_answered,
    local: a_stop_answers_the_delivery_it_is_receiving_and_gives_up_on_a_stalled_client,
    local: regression_serve_did_not_stop_while_its_stderr_was_unread,
}

/// The forge account serve's token belongs to.
const BOT: &str = "ccci-bot";
const REPO: &str = "coop-cloud/demo";
const TOKEN: &str = "tok-5f2e9a41c7d3b08e6a";
const SECRET: &str = "hook-3b9d7e21a4f6c05d9e";
/// How long serve may take to answer any request.
const PROMPT: Duration = Duration::from_secs(1);
/// Serve's settings in every test but the poll test: no poller, so the forge sees only what
/// the deliveries cause.
const NO_POLL: &str = "  poll_interval: off\n";

// ---------------------------------------------------------------------------------------------
// The recording forge, programmed as a forge with the demo repository and its pull requests.

/// A pull request of the demo repository, as the forge tells it.
struct Pr {
    number: u64,
    state: &'static str,
}

fn open(number: u64) -> Pr {
    Pr {
        number,
        state: "open",
    }
}

fn closed(number: u64) -> Pr {
    Pr {
        number,
        state: "closed",
    }
}

/// The head commit of pull request `n`.
fn head(n: u64) -> String {
    format!("{:0>40}", format!("{n}e{n}"))
}

/// A forge that knows the bot, finds every commenter a member of coop-cloud, serves `prs` and
/// takes statuses, reactions and summary comments.
fn forge(prs: &[Pr]) -> RecordingForge {
    let forge = RecordingForge::start();
    forge.on(
        "GET",
        "/user",
        vec![Reply::json(200, json!({"id": 7, "login": BOT}))],
    );
    forge.on("GET", "/orgs/coop-cloud/members/", vec![Reply::status(204)]);
    for pr in prs {
        let n = pr.number;
        let url = format!("{}/{REPO}/pulls/{n}", forge.base_url());
        let clone = format!("{}/{REPO}.git", forge.base_url());
        forge.on(
            "GET",
            &format!("/repos/{REPO}/pulls/{n}"),
            vec![Reply::json(
                200,
                json!({
                    "number": n, "state": pr.state, "merged": false, "html_url": url,
                    "head": {"sha": head(n), "ref": format!("pr-{n}"), "repo": {"clone_url": clone}},
                    "base": {"sha": head(0), "ref": "main", "repo": {"clone_url": clone}},
                }),
            )],
        );
    }
    forge.on(
        "POST",
        &format!("/repos/{REPO}/statuses/"),
        vec![Reply::json(201, json!({"id": 1}))],
    );
    forge.on(
        "POST",
        &format!("/repos/{REPO}/issues/comments/"),
        vec![Reply::json(201, json!({"content": "eyes"}))],
    );
    // A pull request's comments: none of the bot's yet, so the first summary is a new one.
    forge.on(
        "GET",
        &format!("/repos/{REPO}/issues/"),
        vec![Reply::json(200, json!([]))],
    );
    forge.on(
        "POST",
        &format!("/repos/{REPO}/issues/"),
        vec![Reply::json(201, json!({"id": 9001, "body": ""}))],
    );
    forge.on(
        "PATCH",
        &format!("/repos/{REPO}/issues/comments/"),
        vec![Reply::json(200, json!({"id": 9001, "body": ""}))],
    );
    forge
}

/// Requests other than the one `GET /user` serve makes when it starts.
fn beyond_whoami(forge: &RecordingForge) -> Vec<String> {
    forge
        .requests()
        .iter()
        .filter(|r| !(r.method == "GET" && r.path == "/user"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn statuses(forge: &RecordingForge) -> Vec<Recorded> {
    forge.requests_to("POST", &format!("/repos/{REPO}/statuses/"))
}

/// The summary comments serve wrote (new ones and edits).
fn summaries(forge: &RecordingForge) -> Vec<Recorded> {
    forge
        .requests()
        .into_iter()
        .filter(|r| {
            (r.method == "POST" || r.method == "PATCH")
                && r.path.starts_with(&format!("/repos/{REPO}/issues/"))
                && !r.path.ends_with("/reactions")
        })
        .collect()
}

fn reactions_to(forge: &RecordingForge, comment: u64) -> Vec<Recorded> {
    forge.requests_to(
        "POST",
        &format!("/repos/{REPO}/issues/comments/{comment}/reactions"),
    )
}

// ---------------------------------------------------------------------------------------------
// Serve in a sandbox.

/// A sandbox whose config enrols the demo repository, with the forge, token and webhook
/// secret, and `extra` (two-space indented YAML lines).
fn sandbox(forge: &RecordingForge, secret: Option<&str>, extra: &str) -> Sandbox {
    let sb = Sandbox::new("");
    let extra = format!("  repos: [{REPO}]\n{extra}");
    sb.config(&serve::config(&sb, forge.base_url(), TOKEN, secret, &extra));
    sb
}

/// Serve whose runs find no docker at all: they end at once with an error, whether or not
/// this machine has a swarm.
fn start_without_docker(sb: &Sandbox) -> ServeProc {
    let nowhere = format!("unix://{}", sb.path("no-docker.sock").display());
    ServeProc::start_with(sb.ccci().env("DOCKER_HOST", nowhere))
}

// ---------------------------------------------------------------------------------------------
// Deliveries.

fn sign(secret: &str, body: &[u8]) -> String {
    ccci::serve::webhook::sign(secret.as_bytes(), body)
}

/// A fresh delivery id, as a forge makes one per attempt.
fn delivery_id() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "5c1d0a8e-0000-4000-8000-{:012}",
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A comment event as Gitea sends it, for comment `id` by `author` on pull request `pr`.
fn comment_event(action: &str, pr: u64, id: u64, author: &str, text: &str) -> Value {
    json!({
        "action": action,
        "issue": {"number": pr, "title": "a change", "pull_request": {"merged": false}},
        "comment": {
            "id": id, "body": text, "user": {"login": author},
            "html_url": format!("http://forge.invalid/{REPO}/pulls/{pr}#issuecomment-{id}"),
        },
        "repository": {
            "full_name": REPO, "name": "demo", "owner": {"login": "coop-cloud"},
            "clone_url": format!("http://forge.invalid/{REPO}.git"),
        },
        "sender": {"login": author},
        "is_pull": true,
    })
}

fn pr_comment(pr: u64, id: u64, author: &str, text: &str) -> Vec<u8> {
    body(&comment_event("created", pr, id, author, text))
}

/// A `pull_request` event: `action` on pull request `pr` of `repo`.
fn pr_event(action: &str, repo: &str, pr: u64) -> Vec<u8> {
    body(&json!({
        "action": action,
        "number": pr,
        "pull_request": {"number": pr, "head": {"sha": head(pr + 100)}},
        "repository": {"full_name": repo},
        "sender": {"login": "maintainer"},
    }))
}

/// The exact bytes a forge signs: an indented JSON dump.
fn body(event: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(event).unwrap()
}

/// POSTs `body` to /hook with `headers`, and checks serve answered within [`PROMPT`].
fn post_hook(serve: &ServeProc, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let started = Instant::now();
    let (status, text) = serve.post("/hook", headers, body);
    let took = started.elapsed();
    assert!(
        took < PROMPT,
        "/hook took {took:?} to answer {status} {text:?}"
    );
    (status, text.trim().to_string())
}

/// Delivers `body` as a Gitea webhook of `event`, signed with `secret`, as delivery `id`.
fn deliver_as(
    serve: &ServeProc,
    event: &str,
    body: &[u8],
    secret: &str,
    id: &str,
) -> (u16, String) {
    let signature = sign(secret, body);
    let event_type = if event == "issue_comment" {
        "pull_request_comment"
    } else {
        event
    };
    post_hook(
        serve,
        &[
            ("Content-Type", "application/json"),
            ("X-Gitea-Event", event),
            ("X-Gitea-Event-Type", event_type),
            ("X-Gitea-Delivery", id),
            ("X-Gitea-Signature", &signature),
        ],
        body,
    )
}

/// A new delivery of `body`, signed with the configured secret.
fn deliver(serve: &ServeProc, event: &str, body: &[u8]) -> (u16, String) {
    deliver_as(serve, event, body, SECRET, &delivery_id())
}

/// GETs `path`, and checks serve answered within [`PROMPT`].
fn get(serve: &ServeProc, path: &str) -> (u16, String) {
    let started = Instant::now();
    let answer = serve.get(path);
    let took = started.elapsed();
    assert!(took < PROMPT, "GET {path} took {took:?}");
    answer
}

/// The value of one sample in serve's /metrics (`name{labels}` as written), if there.
fn metric(serve: &ServeProc, sample: &str) -> Option<u64> {
    let (status, text) = get(serve, "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().unwrap())
    })
}

fn lines_with<'a>(out: &'a Output, text: &str) -> Vec<&'a str> {
    out.stderr.lines().filter(|l| l.contains(text)).collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// A delivery serve must refuse: what is wrong with it, the one signature header it carries
/// (or another header, when it carries none), its body, and serve's answer.
struct Refused<'a> {
    what: &'a str,
    header: &'a str,
    value: &'a str,
    body: &'a [u8],
    answer: (u16, &'a str),
}

impl<'a> Refused<'a> {
    fn new(
        what: &'a str,
        header: &'a str,
        value: &'a str,
        body: &'a [u8],
        answer: (u16, &'a str),
    ) -> Refused<'a> {
        Refused {
            what,
            header,
            value,
            body,
            answer,
        }
    }
}

/// Unsigned, forged, tampered, oversized and malformed deliveries are 4xx, each logged and
/// counted by cause; nothing is recorded, nothing is asked of the forge. The very same setup
/// then accepts an authentic delivery, so the refusals were the deliveries' doing.
fn refused_deliveries_record_nothing_and_call_no_forge() {
    let forge = forge(&[closed(1)]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let mut serve = ServeProc::start(&sb);
    assert_eq!(get(&serve, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(&serve, "/hook").0, 405);

    let event = pr_comment(1, 101, "maintainer", "!testme");
    let good = sign(SECRET, &event);
    let tampered = pr_comment(1, 101, "maintainer", "!testme upgrade");
    let mut oversized = comment_event("created", 1, 102, "maintainer", "!testme");
    oversized["comment"]["html_url"] = Value::from("x".repeat((1 << 20) + 10));
    let oversized = body(&oversized);
    let oversized_signature = sign(SECRET, &oversized);
    let not_json = b"action=created&comment=!testme".to_vec();
    let not_json_signature = sign(SECRET, &not_json);
    let incomplete = body(&json!({"action": "created", "comment": {"body": "!testme"}}));
    let incomplete_signature = sign(SECRET, &incomplete);
    let sha1_only = format!("sha1={}", &good[..40]);
    let wrong_secret = sign("hook-guess", &event);
    let not_hex = "zz".repeat(32);
    let delivery = delivery_id();
    let (unsigned, forged, malformed) = (
        (401, "unsigned delivery"),
        (401, "bad signature"),
        (400, "body is not a webhook payload"),
    );
    let cases = [
        Refused::new(
            "no signature",
            "X-Gitea-Delivery",
            &delivery,
            &event,
            unsigned,
        ),
        Refused::new(
            "an empty signature",
            "X-Gitea-Signature",
            "",
            &event,
            unsigned,
        ),
        Refused::new(
            "only SHA-1",
            "X-Hub-Signature",
            &sha1_only,
            &event,
            unsigned,
        ),
        Refused::new(
            "no sha256= prefix",
            "X-Hub-Signature-256",
            &good,
            &event,
            unsigned,
        ),
        Refused::new("not hex", "X-Gitea-Signature", &not_hex, &event, unsigned),
        Refused::new(
            "the wrong secret",
            "X-Gitea-Signature",
            &wrong_secret,
            &event,
            forged,
        ),
        Refused::new(
            "a tampered body",
            "X-Gitea-Signature",
            &good,
            &tampered,
            forged,
        ),
        Refused::new(
            "an oversized body",
            "X-Gitea-Signature",
            &oversized_signature,
            &oversized,
            (413, "body over 1048576 bytes"),
        ),
        Refused::new(
            "not JSON",
            "X-Gitea-Signature",
            &not_json_signature,
            &not_json,
            malformed,
        ),
        Refused::new(
            "a payload without its fields",
            "X-Gitea-Signature",
            &incomplete_signature,
            &incomplete,
            malformed,
        ),
    ];
    for (n, case) in cases.iter().enumerate() {
        let answer = post_hook(
            &serve,
            &[
                ("X-Gitea-Event", "issue_comment"),
                ("X-Gitea-Event-Type", "pull_request_comment"),
                (case.header, case.value),
            ],
            case.body,
        );
        let (status, why) = case.answer;
        assert_eq!(answer, (status, why.to_string()), "{}", case.what);
        let line = serve.line("serve: delivery rejected: ", n + 1);
        assert!(
            line.ends_with(&format!("delivery rejected: {why}")),
            "{}: {line}",
            case.what
        );
    }

    for (cause, n) in [
        ("unsigned", 5),
        ("bad_signature", 2),
        ("too_large", 1),
        ("malformed", 2),
    ] {
        assert_eq!(
            metric(
                &serve,
                &format!("ccci_webhook_rejections_total{{cause=\"{cause}\"}}")
            ),
            Some(n),
            "rejections for {cause}"
        );
    }
    assert_eq!(metric(&serve, "ccci_queue_depth"), Some(0));
    for outcome in ["accepted", "duplicate", "ignored"] {
        let sample = format!("ccci_webhook_deliveries_total{{outcome=\"{outcome}\"}}");
        assert_eq!(metric(&serve, &sample), None, "{sample}");
    }
    assert_eq!(
        get(&serve, "/runs/1").0,
        404,
        "a refused delivery made a run"
    );
    let (_, index) = get(&serve, "/");
    assert!(
        !index.contains("/runs/1\""),
        "the dashboard lists a run:\n{index}"
    );
    assert_eq!(beyond_whoami(&forge), Vec::<String>::new());

    // The refusals were the deliveries' doing: the authentic one is taken.
    assert_eq!(
        deliver(&serve, "issue_comment", &event),
        (202, "run 1".to_string())
    );
    serve.line(
        "serve: run 1: !testme on coop-cloud/demo#1 by maintainer (via webhook)",
        1,
    );
    let out = serve.stop();
    assert_eq!(
        lines_with(&out, "delivery rejected").len(),
        cases.len(),
        "{out}"
    );
}

/// While a secret is rotated, deliveries signed with any configured one are taken, in each of
/// the headers forges sign in; one signed with a secret no longer configured is not.
fn every_configured_secret_is_accepted_while_rotating() {
    let forge = forge(&[closed(1)]);
    let sb = Sandbox::new("");
    std::fs::write(sb.path("old-secret"), "hook-old-71c4e0d2").unwrap();
    std::fs::write(sb.path("new-secret"), "hook-new-8a9b3f56\n").unwrap();
    let secrets = format!(
        "  repos: [{REPO}]\n  webhook_secrets: [{{file: {}}}, {{file: {}}}]\n{NO_POLL}",
        sb.path("old-secret").display(),
        sb.path("new-secret").display()
    );
    sb.config(&serve::config(&sb, forge.base_url(), TOKEN, None, &secrets));
    let mut serve = ServeProc::start(&sb);

    let old = pr_comment(1, 201, "maintainer", "!testme");
    assert_eq!(
        deliver_as(
            &serve,
            "issue_comment",
            &old,
            "hook-old-71c4e0d2",
            &delivery_id()
        ),
        (202, "run 1".to_string())
    );
    let new = pr_comment(1, 202, "maintainer", "!testme");
    let signature = sign("hook-new-8a9b3f56", &new);
    let forgejo = [
        ("X-Forgejo-Event", "issue_comment"),
        ("X-Forgejo-Event-Type", "pull_request_comment"),
        ("X-Forgejo-Delivery", "4e1f2a3b-0000-4000-8000-000000000001"),
        ("X-Forgejo-Signature", signature.as_str()),
    ];
    assert_eq!(
        post_hook(&serve, &forgejo, &new),
        (202, "run 2".to_string())
    );
    let hub = pr_comment(1, 203, "maintainer", "!testme");
    let signature = format!("sha256={}", sign("hook-new-8a9b3f56", &hub));
    let github_style = [
        ("X-GitHub-Event", "issue_comment"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    assert_eq!(
        post_hook(&serve, &github_style, &hub),
        (202, "run 3".to_string())
    );
    let retired = pr_comment(1, 204, "maintainer", "!testme");
    assert_eq!(
        deliver_as(
            &serve,
            "issue_comment",
            &retired,
            "hook-retired-0d3e",
            &delivery_id()
        ),
        (401, "bad signature".to_string())
    );
    for run in 1..=3 {
        serve.line(
            &format!("serve: run {run}: !testme on coop-cloud/demo#1"),
            1,
        );
    }
    // The pull request is closed: each run ends before it runs, saying why.
    let line = serve.line("serve: run 3: error: ", 1);
    assert!(line.ends_with("pull request #1 is closed"), "{line}");
    assert_eq!(get(&serve, "/runs/4").0, 404);
    assert_eq!(
        metric(
            &serve,
            "ccci_webhook_deliveries_total{outcome=\"accepted\"}"
        ),
        Some(3)
    );
}

/// The same delivery three times, redelivered under a new delivery id, and once more after
/// serve was killed and started again: one run, acknowledged once, one pending status.
fn one_comment_runs_once_however_often_it_is_delivered() {
    let forge = forge(&[open(1)]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let mut serve = start_without_docker(&sb);

    let event = pr_comment(1, 301, "maintainer", "!testme");
    let id = delivery_id();
    assert_eq!(
        deliver_as(&serve, "issue_comment", &event, SECRET, &id),
        (202, "run 1".to_string())
    );
    for _ in 0..2 {
        assert_eq!(
            deliver_as(&serve, "issue_comment", &event, SECRET, &id),
            (200, "duplicate: already seen".to_string())
        );
    }
    // A redelivery from the forge's UI: a new delivery id, the same comment.
    assert_eq!(
        deliver(&serve, "issue_comment", &event),
        (200, "duplicate: already seen".to_string())
    );
    serve.line(&format!("serve: run 1: queued at {}", head(1)), 1);
    // No docker: the run ends in an error, and the summary says so.
    serve.line("serve: run 1: error", 1);
    wait_until("the summary comment", || summaries(&forge).len() == 1);
    // Delivered once more while the run is over: still the same comment.
    assert_eq!(
        deliver(&serve, "issue_comment", &event),
        (200, "duplicate: already seen".to_string())
    );

    assert_eq!(reactions_to(&forge, 301).len(), 1);
    assert_eq!(
        reactions_to(&forge, 301)[0].json(),
        json!({"content": "eyes"})
    );
    let states: Vec<String> = statuses(&forge)
        .iter()
        .map(|r| r.json()["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(states, ["pending", "error"]);
    assert!(
        statuses(&forge)
            .iter()
            .all(|r| r.path == format!("/repos/{REPO}/statuses/{}", head(1)))
    );
    assert_eq!(
        metric(
            &serve,
            "ccci_webhook_deliveries_total{outcome=\"duplicate\"}"
        ),
        Some(4)
    );
    assert_eq!(
        metric(&serve, "ccci_runs_finished_total{verdict=\"error\"}"),
        Some(1)
    );
    // Killed once the run's report is recorded as delivered: killed in between, serve would
    // (rightly) report it again after the restart.
    let db = sb.path("state").join("serve.db");
    wait_until("run 1's report recorded as delivered", || {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row("SELECT reported FROM runs WHERE id = 1", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .is_ok_and(|reported| reported == 1)
    });
    let first = serve.kill();
    assert_eq!(lines_with(&first, "!testme on").len(), 1, "{first}");
    assert_eq!(
        lines_with(&first, "serve: run 1: started").len(),
        1,
        "{first}"
    );

    // What was seen survives a crash.
    let mut serve = start_without_docker(&sb);
    serve.line(
        "serve: recovered: 0 run(s) interrupted by the last stop, 0 waiting",
        1,
    );
    assert_eq!(
        deliver(&serve, "issue_comment", &event),
        (200, "duplicate: already seen".to_string())
    );
    assert_eq!(get(&serve, "/runs/2").0, 404);
    assert_eq!(get(&serve, "/runs/1").0, 200);
    let second = serve.stop();
    assert!(lines_with(&second, "!testme on").is_empty(), "{second}");
    assert_eq!(reactions_to(&forge, 301).len(), 1);
    assert_eq!(statuses(&forge).len(), 2);
}

/// The poller and the webhook both see comments; a comment runs once whichever saw it first,
/// and an old comment edited into a `!testme` does not run at all.
fn one_comment_runs_once_whichever_path_sees_it_first() {
    let forge = forge(&[closed(1), closed(2)]);
    let listing = format!("/repos/{REPO}/issues/comments");
    forge.on("GET", &listing, vec![Reply::json(200, json!([]))]);
    let sb = sandbox(&forge, Some(SECRET), "  poll_interval: 1s\n");
    let mut serve = ServeProc::start(&sb);
    // The first poll only notes where the repository's comments are.
    wait_until("the first poll", || {
        !forge.requests_to("GET", &listing).is_empty()
    });

    // The webhook first: comment 403 on #1.
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 403, "maintainer", "!testme")
        ),
        (202, "run 1".to_string())
    );
    // Then the poller sees it too, with a new comment 402 on #2 the webhook missed, and an
    // old comment 401 edited into a command.
    let now = SystemTime::now();
    let at = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let (before, after) = (
        at(now - Duration::from_secs(3600)),
        at(now + Duration::from_secs(3600)),
    );
    let comment = |id: u64, pr: u64, created: &str| {
        json!({
            "id": id, "body": "!testme", "user": {"login": "maintainer"},
            "created_at": created, "updated_at": after,
            "html_url": format!("http://forge.invalid/{REPO}/pulls/{pr}#issuecomment-{id}"),
            "pull_request_url": format!("http://forge.invalid/{REPO}/pulls/{pr}"),
        })
    };
    forge.on(
        "GET",
        &listing,
        vec![Reply::json(
            200,
            json!([
                comment(401, 1, &before),
                comment(402, 2, &after),
                comment(403, 1, &after)
            ]),
        )],
    );
    serve.line("serve: polled coop-cloud/demo: 1 new command(s)", 1);
    serve.line(
        "serve: run 2: !testme on coop-cloud/demo#2 by maintainer (via poll)",
        1,
    );
    // The poller first: the webhook's delivery of 402 is a duplicate.
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(2, 402, "maintainer", "!testme")
        ),
        (200, "duplicate: already seen".to_string())
    );
    // A few more polls see all three again; none runs again.
    let polls = forge.requests_to("GET", &listing).len();
    wait_until("two more polls", || {
        forge.requests_to("GET", &listing).len() >= polls + 2
    });
    assert_eq!(get(&serve, "/runs/3").0, 404);
    let out = serve.stop();
    let recorded = lines_with(&out, "!testme on");
    assert_eq!(recorded.len(), 2, "{out}");
    assert!(
        recorded[0].ends_with("run 1: !testme on coop-cloud/demo#1 by maintainer (via webhook)")
    );
    assert!(recorded[1].ends_with("run 2: !testme on coop-cloud/demo#2 by maintainer (via poll)"));
    assert_eq!(lines_with(&out, "serve: polled ").len(), 1, "{out}");
}

/// Commands quoted, in code, or not first; the bot's own comments; edits and deletions;
/// comments on plain issues; repositories not enrolled; events ccci does not act on: each is
/// answered `ignored` with its reason, and nothing is recorded or asked of the forge.
fn talk_about_commands_and_foreign_comments_are_ignored() {
    let forge = forge(&[closed(1)]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let mut serve = ServeProc::start(&sb);
    let not_a_command = "ignored: not a !testme command";
    let not_new = "ignored: not a new pull request comment";
    let mut issue = comment_event("created", 5, 509, "maintainer", "!testme");
    issue["issue"]["pull_request"] = Value::Null;
    issue["is_pull"] = Value::from(false);
    let mut foreign = comment_event("created", 1, 510, "maintainer", "!testme");
    foreign["repository"]["full_name"] = Value::from("coop-cloud/other");
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "a quote",
            "issue_comment",
            pr_comment(1, 501, "maintainer", "> !testme\n\nshould we?"),
            not_a_command,
        ),
        (
            "a code block",
            "issue_comment",
            pr_comment(1, 502, "maintainer", "```\n!testme\n```"),
            not_a_command,
        ),
        (
            "inline code",
            "issue_comment",
            pr_comment(1, 503, "maintainer", "`!testme` runs the tests"),
            not_a_command,
        ),
        (
            "an indented code block",
            "issue_comment",
            pr_comment(1, 504, "maintainer", "    !testme"),
            not_a_command,
        ),
        (
            "a mention mid-sentence",
            "issue_comment",
            pr_comment(1, 505, "maintainer", "say !testme to test"),
            not_a_command,
        ),
        (
            "the bot's own comment",
            "issue_comment",
            pr_comment(1, 506, BOT, "!testme"),
            "ignored: ccci's own comment",
        ),
        (
            "the bot, capitalised",
            "issue_comment",
            pr_comment(1, 507, "CCCI-Bot", "!testme"),
            "ignored: ccci's own comment",
        ),
        (
            "an edit",
            "issue_comment",
            body(&comment_event("edited", 1, 501, "maintainer", "!testme")),
            not_new,
        ),
        (
            "a deletion",
            "issue_comment",
            body(&comment_event("deleted", 1, 508, "maintainer", "!testme")),
            not_new,
        ),
        (
            "a plain issue's comment",
            "issue_comment",
            body(&issue),
            not_new,
        ),
        (
            "a repository not enrolled",
            "issue_comment",
            body(&foreign),
            "ignored: repository not enrolled",
        ),
        (
            "a push",
            "push",
            body(&json!({"ref": "refs/heads/main"})),
            "ignored: not an event ccci acts on",
        ),
        (
            "an opened pull request",
            "pull_request",
            pr_event("opened", REPO, 1),
            "ignored",
        ),
        (
            "new commits elsewhere",
            "pull_request",
            pr_event("synchronized", "coop-cloud/other", 1),
            "ignored",
        ),
    ];
    for (what, event, payload, answer) in &cases {
        assert_eq!(
            deliver(&serve, event, payload),
            (200, answer.to_string()),
            "{what}"
        );
    }
    assert_eq!(
        metric(&serve, "ccci_webhook_deliveries_total{outcome=\"ignored\"}"),
        Some(cases.len() as u64)
    );
    assert_eq!(
        get(&serve, "/runs/1").0,
        404,
        "an ignored comment made a run"
    );
    assert_eq!(beyond_whoami(&forge), Vec::<String>::new());

    // The edited comment stays ignored when delivered again; a new command is taken.
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &body(&comment_event("edited", 1, 501, "maintainer", "!testme"))
        ),
        (200, not_new.to_string())
    );
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 511, "maintainer", "\n!testme install\nthanks")
        ),
        (202, "run 1".to_string())
    );
    serve.line(
        "serve: run 1: !testme on coop-cloud/demo#1 by maintainer",
        1,
    );
    let out = serve.stop();
    assert_eq!(lines_with(&out, "!testme on").len(), 1, "{out}");
}

/// A forge that errs, times out, redirects or answers something unexpected on the membership
/// check means "no": the run is refused with the failure in the log and on its page, no
/// child starts and nothing is said on the pull request. A member is let through.
fn authorization_fails_closed_when_the_forge_cannot_say() {
    let forge = forge(&[closed(1)]);
    let members = "/orgs/coop-cloud/members";
    forge.on(
        "GET",
        &format!("{members}/alice"),
        vec![Reply::json(500, json!({"message": "database is locked"}))],
    );
    forge.on(
        "GET",
        &format!("{members}/bob"),
        vec![Reply::status(204).after(Duration::from_secs(10))],
    );
    let public = format!(
        "{}/api/v1/orgs/coop-cloud/public_members/carol",
        forge.base_url()
    );
    forge.on(
        "GET",
        &format!("{members}/carol"),
        vec![Reply::status(303).header("Location", &public)],
    );
    forge.on(
        "GET",
        "/orgs/coop-cloud/public_members/",
        vec![Reply::status(204)],
    );
    forge.on("GET", &format!("{members}/dave"), vec![Reply::status(404)]);
    forge.on(
        "GET",
        &format!("{members}/erin"),
        vec![Reply::json(200, json!({"member": true}))],
    );
    let sb = sandbox(
        &forge,
        Some(SECRET),
        &format!("{NO_POLL}  authorize: org_member\n  forge_timeout: 3s\n"),
    );
    let mut serve = ServeProc::start(&sb);

    let users = ["alice", "bob", "carol", "dave", "erin"];
    for (n, user) in users.iter().enumerate() {
        let id = 600 + n as u64;
        assert_eq!(
            deliver(&serve, "issue_comment", &pr_comment(1, id, user, "!testme")),
            (202, format!("run {}", n + 1))
        );
    }
    let expected = [
        "alice may not ask for runs: cannot tell whether alice is a member of coop-cloud: GET /orgs/coop-cloud/members/alice answered 500: database is locked".to_string(),
        "bob may not ask for runs: cannot tell whether bob is a member of coop-cloud: GET /orgs/coop-cloud/members/bob timed out after 3s".to_string(),
        format!("carol may not ask for runs: cannot tell whether carol is a member of coop-cloud: GET /orgs/coop-cloud/members/carol answered 303: redirect to {public}, not followed; the forge only tells members of coop-cloud who its members are"),
        "dave may not ask for runs: dave is not a member of coop-cloud".to_string(),
        "erin may not ask for runs: cannot tell whether erin is a member of coop-cloud: GET /orgs/coop-cloud/members/erin answered 200: {\"member\":true}".to_string(),
    ];
    for (n, reason) in expected.iter().enumerate() {
        let line = serve.line(&format!("serve: run {}: refused: ", n + 1), 1);
        assert!(line.ends_with(reason.as_str()), "run {}: {line}", n + 1);
    }
    let (status, page) = get(&serve, "/runs/2");
    assert_eq!(status, 200);
    assert!(
        page.contains("refused") && page.contains("timed out after 3s"),
        "{page}"
    );
    assert_eq!(
        metric(&serve, "ccci_runs_finished_total{verdict=\"refused\"}"),
        Some(5)
    );
    assert_eq!(
        metric(&serve, "ccci_forge_api_errors_total{call=\"membership\"}"),
        Some(4),
        "the 500, the timeout, the redirect and the 200 are forge errors; the 404 is an answer"
    );
    // Nothing but the membership checks: no pull request read, nothing posted, the redirect
    // not followed.
    let asked: Vec<String> = beyond_whoami(&forge);
    let checks: Vec<String> = users.iter().map(|u| format!("GET {members}/{u}")).collect();
    assert_eq!(asked, checks);

    // A member is let through (and the closed pull request ends the run before it runs).
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 699, "maintainer", "!testme")
        ),
        (202, "run 6".to_string())
    );
    serve.line("serve: run 6: error: pull request #1 is closed", 1);
    assert_eq!(
        forge
            .requests_to("GET", &format!("/repos/{REPO}/pulls/"))
            .len(),
        1
    );
    assert!(statuses(&forge).is_empty());
    assert!(
        forge
            .requests_to("POST", "/repos/coop-cloud/demo/issues/comments/")
            .is_empty()
    );
    let out = serve.stop();
    assert_eq!(lines_with(&out, ": refused: ").len(), 5, "{out}");
    for word in ["queued at", "started (pid"] {
        assert!(lines_with(&out, word).is_empty(), "{out}");
    }
}

/// Status and membership calls that take seconds hold up neither the webhook nor the pages:
/// every answer comes within a second while the reporter and triage wait on the forge, and
/// the work gets done afterwards.
fn the_intake_answers_at_once_while_the_forge_is_slow() {
    let forge = forge(&[open(1), open(2), open(3), open(4), open(5), open(6)]);
    // Long enough that the requests below are all timed while the forge still holds them,
    // even on a busy host.
    let slow = Duration::from_secs(10);
    forge.on(
        "POST",
        &format!("/repos/{REPO}/statuses/"),
        vec![Reply::json(201, json!({"id": 1})).after(slow)],
    );
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let mut serve = start_without_docker(&sb);

    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 701, "maintainer", "!testme")
        ),
        (202, "run 1".to_string())
    );
    // The reporter now waits on the status call; triage too, from now on.
    wait_until("the pending status call", || !statuses(&forge).is_empty());
    let blocked = Instant::now();
    forge.on(
        "GET",
        "/orgs/coop-cloud/members/",
        vec![Reply::status(204).after(slow)],
    );
    for pr in 2..=6 {
        let comment = 700 + pr;
        assert_eq!(
            deliver(
                &serve,
                "issue_comment",
                &pr_comment(pr, comment, "maintainer", "!testme")
            ),
            (202, format!("run {pr}"))
        );
        for page in [
            "/healthz",
            "/metrics",
            "/",
            "/runs/1",
            &format!("/runs/{pr}"),
        ] {
            assert_eq!(get(&serve, page).0, 200, "{page}");
        }
    }
    // Runs 2 to 6 wait for triage, which waits for the forge.
    assert!(metric(&serve, "ccci_queue_depth").unwrap() >= 4);
    assert!(
        blocked.elapsed() < slow,
        "the forge answered before the requests were timed: the test proves nothing"
    );
    assert_eq!(statuses(&forge).len(), 1, "the reporter was not waiting");
    // The work is done after the answers: run 2 is authorized and queued.
    serve.line(&format!("serve: run 2: queued at {}", head(2)), 1);
}

/// New commits on a pull request cancel its runs: a queued one at once, a running one by
/// stopping its child. A stand-in docker engine lets the runs pass preflight without a swarm,
/// and a forge that never serves the repository holds the first run in its clone.
fn new_commits_cancel_the_pull_requests_queued_and_running_runs() {
    let forge = forge(&[open(1), open(2)]);
    // git's first request of the clone: answered only after the test is over.
    forge.on(
        "GET",
        &format!("/{REPO}.git/"),
        vec![Reply::status(404).after(Duration::from_secs(600))],
    );
    let sb = sandbox(
        &forge,
        Some(SECRET),
        &format!("{NO_POLL}  concurrency: 1\n  driver: stack\n"),
    );
    let mut serve = start_with_fake_engine(&sb);

    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 801, "maintainer", "!testme")
        ),
        (202, "run 1".to_string())
    );
    let started = serve.line("serve: run 1: started (pid ", 1);
    let pid: i32 = started
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in `{started}`"));
    wait_until("the run's clone to ask the forge", || {
        !forge
            .requests_to("GET", &format!("/{REPO}.git/"))
            .is_empty()
    });
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(2, 802, "maintainer", "!testme")
        ),
        (202, "run 2".to_string())
    );
    serve.line(&format!("serve: run 2: queued at {}", head(2)), 1);
    assert_eq!(metric(&serve, "ccci_runs_running"), Some(1));

    // New commits on #2: its queued run is closed.
    assert_eq!(
        deliver(&serve, "pull_request", &pr_event("synchronized", REPO, 2)),
        (200, "cancelled 1 run(s)".to_string())
    );
    let reason = "new commits were pushed to the pull request";
    serve.line(&format!("serve: run 2: cancelled: {reason}"), 1);
    // New commits on #1 (GitHub's spelling): its running run is stopped.
    assert_eq!(
        deliver(&serve, "pull_request", &pr_event("synchronize", REPO, 1)),
        (200, "cancelled 1 run(s)".to_string())
    );
    serve.line(&format!("serve: run 1: stopping: {reason}"), 1);
    serve.line(&format!("serve: run 1: cancelled: {reason}"), 1);
    wait_until("the child to be gone", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    wait_until("both final statuses", || statuses(&forge).len() == 4);
    for n in [1, 2] {
        let sent: Vec<Value> = statuses(&forge)
            .iter()
            .filter(|r| r.path.ends_with(&head(n)))
            .map(Recorded::json)
            .collect();
        assert_eq!(sent.len(), 2, "statuses of #{n}: {sent:?}");
        assert_eq!(sent[0]["state"], "pending");
        assert_eq!(sent[1]["state"], "error");
        assert_eq!(sent[1]["description"], format!("cancelled: {reason}"));
        let (_, page) = get(&serve, &format!("/runs/{n}"));
        assert!(
            page.contains("cancelled") && page.contains(reason),
            "{page}"
        );
    }
    assert_eq!(
        metric(&serve, "ccci_runs_finished_total{verdict=\"cancelled\"}"),
        Some(2)
    );
    assert_eq!(metric(&serve, "ccci_runs_running"), Some(0));
    assert_eq!(metric(&serve, "ccci_queue_depth"), Some(0));
    // Another push finds nothing left to cancel.
    assert_eq!(
        deliver(&serve, "pull_request", &pr_event("synchronized", REPO, 1)),
        (200, "ignored".to_string())
    );
    let out = serve.stop();
    assert!(
        lines_with(&out, "serve: run 2: started").is_empty(),
        "{out}"
    );
}

/// Serve whose runs pass their preflight against [`fake_docker_engine`] and then fetch the
/// recipe from the forge (which the caller may keep waiting); any `docker` command fails.
fn start_with_fake_engine(sb: &Sandbox) -> ServeProc {
    let engine = sb.path("docker.sock");
    fake_docker_engine(&engine);
    let bin = sb.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(&docker, "#!/bin/sh\necho 'no docker here' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    ServeProc::start_with(
        sb.ccci()
            .env("DOCKER_HOST", format!("unix://{}", engine.display()))
            .env("PATH", path),
    )
}

/// SIGTERM while a run is running: the run ends, and its final status and summary reach the
/// forge before serve exits, not only when serve starts again (which may be never).
fn a_run_interrupted_by_a_stop_is_reported_before_serve_exits() {
    let forge = forge(&[open(1)]);
    // git's first request of the clone: answered only after the test is over.
    forge.on(
        "GET",
        &format!("/{REPO}.git/"),
        vec![Reply::status(404).after(Duration::from_secs(600))],
    );
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let mut serve = start_with_fake_engine(&sb);
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 811, "maintainer", "!testme")
        ),
        (202, "run 1".to_string())
    );
    serve.line("serve: run 1: started (pid ", 1);
    wait_until("the run's clone to ask the forge", || {
        !forge
            .requests_to("GET", &format!("/{REPO}.git/"))
            .is_empty()
    });
    wait_until("the pending status", || statuses(&forge).len() == 1);
    let out = serve.stop();
    assert!(out.status.success(), "{out}");
    // Stopped while fetching, the child ends before it has a verdict of its own: interrupted,
    // as a run stopped later is.
    assert_eq!(
        lines_with(&out, "serve: run 1: interrupted: interrupted by SIGTERM").len(),
        1,
        "{out}"
    );
    // Serve has exited: what the forge got now is all it gets from this serve.
    let sent: Vec<Value> = statuses(&forge).iter().map(Recorded::json).collect();
    assert_eq!(sent.len(), 2, "{sent:?}\n{out}");
    assert_eq!(sent[0]["state"], "pending");
    assert_eq!(sent[1]["state"], "error");
    assert!(
        sent[1]["description"]
            .as_str()
            .is_some_and(|d| d.contains("interrupted by SIGTERM")),
        "{sent:?}"
    );
    assert_eq!(summaries(&forge).len(), 1, "{out}");
}

/// A Docker Engine stand-in on a unix socket at `path` that tells every caller the swarm is
/// active and this node a manager: enough for a run's preflight.
fn fake_docker_engine(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let info = json!({"Swarm": {"LocalNodeState": "active", "ControlAvailable": true}})
                .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{info}",
                info.len()
            );
        }
    });
}

/// `!testme` with a stage ccci does not know is the commenter's mistake: a member is told in
/// the summary comment, naming it, and nothing runs; an outsider's is refused like any
/// command of theirs, and nothing is said on the pull request.
fn an_unknown_stage_is_answered_with_its_name_and_only_to_members() {
    let forge = forge(&[open(1)]);
    forge.on(
        "GET",
        "/orgs/coop-cloud/members/outsider",
        vec![Reply::status(404)],
    );
    let sb = sandbox(
        &forge,
        Some(SECRET),
        &format!("{NO_POLL}  authorize: org_member\n"),
    );
    let mut serve = ServeProc::start(&sb);

    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 901, "outsider", "!testme bogus")
        ),
        (202, "run 1".to_string())
    );
    serve.line("serve: run 1: refused: outsider may not ask for runs", 1);
    assert_eq!(
        deliver(
            &serve,
            "issue_comment",
            &pr_comment(1, 902, "maintainer", "!testme install nonsense")
        ),
        (202, "run 2".to_string())
    );
    let line = serve.line("serve: run 2: error: ", 1);
    assert!(line.contains("nonsense"), "{line}");
    wait_until("the summary comment", || !summaries(&forge).is_empty());
    let summary = summaries(&forge)[0].json()["body"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        summary.contains("nonsense") && summary.contains("error"),
        "{summary}"
    );
    let (_, page) = get(&serve, "/runs/2");
    assert!(page.contains("nonsense"), "{page}");
    // Nothing ran: no head was read, no status set, no reaction.
    assert!(
        forge
            .requests_to("GET", &format!("/repos/{REPO}/pulls/"))
            .is_empty()
    );
    assert!(statuses(&forge).is_empty());
    assert!(reactions_to(&forge, 902).is_empty());
    let out = serve.stop();
    assert_eq!(
        summaries(&forge).len(),
        1,
        "something was said to the outsider"
    );
    assert!(lines_with(&out, "started (pid").is_empty(), "{out}");
}

/// The token and the webhook secrets appear in no log line, page, metric, run file or
/// request serve sent the forge, except the token in each request's `Authorization` header —
/// even when the forge echoes the token back in an error.
fn secrets_appear_nowhere_but_the_authorization_header() {
    let forge = forge(&[open(1)]);
    forge.on(
        "GET",
        "/orgs/coop-cloud/members/mallory",
        vec![Reply::json(
            500,
            json!({"message": format!("token {TOKEN} is not allowed to list members")}),
        )],
    );
    let sb = Sandbox::new("");
    let (old, new) = ("hook-old-c0ffee7731", "hook-new-d00d9e5512");
    std::fs::write(sb.path("old-secret"), old).unwrap();
    std::fs::write(sb.path("new-secret"), new).unwrap();
    let extra = format!(
        "  repos: [{REPO}]\n  webhook_secrets: [{{file: {}}}, {{file: {}}}]\n  authorize: org_member\n{NO_POLL}",
        sb.path("old-secret").display(),
        sb.path("new-secret").display()
    );
    sb.config(&serve::config(&sb, forge.base_url(), TOKEN, None, &extra));
    let mut serve = start_without_docker(&sb);

    let event = pr_comment(1, 1001, "maintainer", "!testme");
    assert_eq!(
        deliver_as(
            &serve,
            "issue_comment",
            &event,
            "hook-guess",
            &delivery_id()
        )
        .0,
        401
    );
    assert_eq!(
        deliver_as(&serve, "issue_comment", &event, old, &delivery_id()),
        (202, "run 1".to_string())
    );
    let mallory = pr_comment(1, 1002, "mallory", "!testme");
    assert_eq!(
        deliver_as(&serve, "issue_comment", &mallory, new, &delivery_id()),
        (202, "run 2".to_string())
    );
    let refused = serve.line("serve: run 2: refused: ", 1);
    assert!(
        refused.contains("answered 500: token <token> is not allowed"),
        "{refused}"
    );
    serve.line("serve: run 1: error", 1);
    wait_until("the summary comment", || summaries(&forge).len() == 1);
    wait_until("the final status", || statuses(&forge).len() == 2);

    let mut seen: Vec<(String, String)> = Vec::new();
    for page in [
        "/",
        "/runs/1",
        "/runs/2",
        "/runs/1/log",
        "/metrics",
        "/healthz",
        "/?state=done",
    ] {
        let (status, text) = get(&serve, page);
        assert_eq!(status, 200, "{page}");
        seen.push((format!("page {page}"), text));
    }
    let out = serve.stop();
    seen.push(("serve's stderr".into(), out.stderr.clone()));
    for file in crate::support::sandbox::walk(&sb.path("state"))
        .into_iter()
        .chain(crate::support::sandbox::walk(&sb.path("runs")))
    {
        let bytes = std::fs::read(&file).unwrap_or_default();
        seen.push((
            format!("file {}", file.display()),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    let requests = forge.requests();
    assert!(requests.len() >= 7, "{requests:?}");
    for r in &requests {
        assert_eq!(
            r.header("Authorization"),
            Some(format!("token {TOKEN}").as_str()),
            "{} {}",
            r.method,
            r.path
        );
        let headers: Vec<String> = r
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("Authorization"))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        seen.push((
            format!("request {} {}", r.method, r.path),
            format!(
                "{} {}\n{}\n\n{}",
                r.method,
                r.path,
                headers.join("\n"),
                r.body
            ),
        ));
    }
    // What was looked at holds what the runs did, so its silence about secrets means something.
    let all: String = seen.iter().map(|(_, text)| text.as_str()).collect();
    assert!(all.contains("mallory may not ask for runs") && all.contains("\"pending\""));
    for secret in [TOKEN, old, new] {
        for (what, text) in &seen {
            assert!(!text.contains(secret), "{what} holds a secret:\n{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retention.

fn retention_forgets_the_oldest_finished_runs_with_their_files() {
    let forge = forge(&[open(1), open(2), open(3)]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let mut serve = start_without_docker(&sb);
    let mut run_dirs = Vec::new();
    for pr in 1..=3u64 {
        let event = pr_comment(pr, 900 + pr, "maintainer", "!testme install");
        assert_eq!(
            deliver(&serve, "issue_comment", &event),
            (202, format!("run {pr}"))
        );
        run_dirs.push(serve.run_dir_of(pr as i64));
        serve.line(&format!("serve: run {pr}: error"), 1);
    }
    wait_until("every summary", || summaries(&forge).len() == 3);
    let console = |run_dir: &str| {
        sb.path("state")
            .join("console")
            .join(format!("{run_dir}.log"))
    };
    assert!(run_dirs.iter().all(|d| console(d).exists()));
    // A run directory (the child may not have got as far as making one): it must go too.
    std::fs::create_dir_all(sb.run_dir(&run_dirs[0])).unwrap();
    let finished = "ccci_runs_finished_total{verdict=\"error\"}";
    assert_eq!(metric(&serve, finished), Some(3));
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");

    let extra = format!("{NO_POLL}  retention: {{max_runs: 1}}\n");
    sb.config(&serve::config(
        &sb,
        forge.base_url(),
        TOKEN,
        Some(SECRET),
        &format!("  repos: [{REPO}]\n{extra}"),
    ));
    let mut serve = start_without_docker(&sb);
    serve.line("retention: forgot 2 old run(s)", 1);
    assert_eq!(get(&serve, "/runs/1").0, 404);
    assert_eq!(get(&serve, "/runs/2").0, 404);
    assert_eq!(get(&serve, "/runs/3").0, 200);
    assert!(
        !sb.run_dir(&run_dirs[0]).exists(),
        "its run directory went too"
    );
    assert!(!console(&run_dirs[0]).exists() && !console(&run_dirs[1]).exists());
    assert!(console(&run_dirs[2]).exists(), "the newest run is kept");
    // What /metrics counted stays counted: a Prometheus counter never falls.
    assert_eq!(metric(&serve, finished), Some(3));
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Hostile connections.

/// Opens a connection that sends `head` and then nothing.
fn half_request(serve: &ServeProc, head: &str) -> std::net::TcpStream {
    let host = serve.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

fn regression_an_absurd_content_length_aborted_serve() {
    let forge = forge(&[open(1)]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let mut serve = start_without_docker(&sb);
    for target in ["/hook", "/healthz"] {
        let method = if target == "/hook" { "POST" } else { "GET" };
        let mut stream = half_request(
            &serve,
            &format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
            ),
        );
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        // Serve answers and stops reading; what it sent is the answer.
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{target}: {answer:?}");
    }
    assert_eq!(get(&serve, "/healthz").0, 200, "serve lives on");
    assert_eq!(
        metric(&serve, "ccci_webhook_rejections_total{cause=\"too_large\"}"),
        Some(1)
    );
    serve.line("serve: delivery rejected: body over 1048576 bytes", 1);
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
}

fn regression_stalled_connections_froze_the_intake() {
    let forge = forge(&[open(1)]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let serve = start_without_docker(&sb);
    // Bodies announced and never sent, and heads never finished, all at once.
    let mut stalled: Vec<_> = (0..40)
        .map(|n| {
            let head = if n % 2 == 0 {
                "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
            } else {
                "GET /healthz HTTP/1.1\r\nHost: x\r\n"
            };
            half_request(&serve, head)
        })
        .collect();
    // Everyone else is answered at once meanwhile.
    assert_eq!(get(&serve, "/healthz").0, 200);
    let event = pr_comment(1, 4401, "maintainer", "!testme install");
    assert_eq!(deliver(&serve, "issue_comment", &event).0, 202);
    // And a stalled connection is given up after serve's I/O timeout, well before the
    // client's own.
    let stalled = &mut stalled[0];
    stalled
        .set_read_timeout(Some(
            ccci::serve::http::IO_TIMEOUT + Duration::from_secs(10),
        ))
        .unwrap();
    let mut answer = String::new();
    let read = stalled.read_to_string(&mut answer);
    assert!(
        read.is_ok(),
        "serve never gave the stalled delivery up: {read:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
}

/// Regression: a connection over serve's limit was answered 503 and closed with its request
/// unread, so the client often saw the connection reset instead of the answer.
fn regression_a_connection_over_the_limit_was_reset_rather_than_answered() {
    let forge = forge(&[]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let serve = start_without_docker(&sb);
    // Every slot held by a head never finished (each given up after serve's I/O timeout).
    let _held: Vec<_> = (0..ccci::serve::http::MAX_CONNECTIONS)
        .map(|_| half_request(&serve, "GET /healthz HTTP/1.1\r\nHost: x\r\n"))
        .collect();
    // A client's connect can return before serve has the connection to accept (the kernel
    // drops a handshake's last step while serve's queue is full, and the client's data waits
    // for the retry), so the slots are full only once serve itself says it is busy.
    wait_until("serve to hold every connection it may", || {
        serve::request(&serve.url, "GET", "/healthz", &[], b"").0 == 503
    });
    // A delivery with a body too big for the socket's buffers: it is still being sent when
    // serve answers.
    let body = vec![b'x'; 512 << 10];
    let over_the_limit = || {
        let host = serve.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let head = format!(
            "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // Serve may answer before it has all of it: the answer is what counts.
        let _ = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&body));
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
            Err(e) => format!("no answer: {e}"),
        }
    };
    // Every one is answered in full: 503 while serve holds the others; refused as unsigned
    // when it finds a place (a held connection given up after serve's I/O timeout, on a
    // host too loaded to send these within it).
    let answers: Vec<String> = (0..30).map(|_| over_the_limit()).collect();
    for (n, answer) in answers.iter().enumerate() {
        assert!(
            answer.starts_with("HTTP/1.1 503") || answer.starts_with("HTTP/1.1 401"),
            "delivery {n}: {answer:?}"
        );
    }
    let busy = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503"))
        .count();
    assert!(busy >= 20, "{busy} of 30 answered 503: {answers:?}");
}

/// A delivery still arriving when serve is told to stop is read, recorded, answered and said
/// before serve exits, rather than cut off with the process; a client that never finishes
/// is waited for only a few seconds.
fn a_stop_answers_the_delivery_it_is_receiving_and_gives_up_on_a_stalled_client() {
    let forge = forge(&[open(1)]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let serve = start_without_docker(&sb);
    let body = pr_comment(1, 4501, "maintainer", "!testme");
    let head = format!(
        "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Gitea-Event: issue_comment\r\nX-Gitea-Event-Type: pull_request_comment\r\n\
         X-Gitea-Delivery: {}\r\nX-Gitea-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        delivery_id(),
        sign(SECRET, &body),
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    let mut arriving = half_request(&serve, &head);
    arriving.write_all(first).unwrap();
    let _stalled = half_request(&serve, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    // Both taken by serve (the scrape counts itself).
    wait_until("serve to be answering both", || {
        metric(&serve, "ccci_http_connections") == Some(3)
    });
    serve.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let host = serve.url.trim_start_matches("http://").to_string();
    wait_until("serve to stop listening", || {
        std::net::TcpStream::connect(&host).is_err()
    });
    arriving.write_all(rest).unwrap();
    arriving
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let read = arriving.read_to_string(&mut answer);
    assert!(
        read.is_ok() && answer.starts_with("HTTP/1.1 202") && answer.ends_with("run 1\n"),
        "{read:?}: {answer:?}"
    );
    let out = serve.proc.wait();
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(lines_with(&out, "run 1: !testme on").len(), 1, "{out}");
    assert_eq!(
        lines_with(&out, "stopped with connections still open after 3s").len(),
        1,
        "the stalled client was given up: {out}"
    );
    // Recorded: serve started again knows the run.
    let again = start_without_docker(&sb);
    assert_eq!(get(&again, "/runs/1").0, 200);
}

/// Regression: serve wrote its log line about a delivery before it answered the delivery, so
/// a reader of serve's stderr that fell behind (a stalled journal; here a pipe nobody reads,
/// full after 64 KiB) held the forge's deliveries unanswered; and once the answer went first,
/// every connection's thread still waited to say its line, until serve had none left to
/// answer with. Lines now go out from a thread of their own, and the ones a stalled reader
/// has no room for are counted and said to be lost: serve keeps answering.
fn regression_a_stalled_reader_of_the_log_held_deliveries_unanswered() {
    let forge = forge(&[]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let (mut child, mut stderr, url) = serve_with_stderr_unread(&sb);
    // Each forged delivery is a line of about 40 bytes: 10,000 of them fill the pipe's 64 KiB
    // and the printer's backlog, and then some.
    const FORGED: usize = 10_000;
    forge_deliveries(&url, FORGED);
    assert_eq!(serve::request(&url, "GET", "/healthz", &[], b"").0, 200);
    // Once serve's stderr is read again: every rejection said, or counted as lost.
    child.signal(nix::sys::signal::Signal::SIGTERM);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        let _ = tx.send(rest);
    });
    let rest = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve's stderr to end after SIGTERM");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "serve exited {status}");
    let said = rest
        .lines()
        .filter(|l| l.contains("delivery rejected: bad signature"))
        .count();
    let lost: usize = rest
        .lines()
        .filter_map(|l| l.strip_suffix(" log line(s) dropped: stderr was not read fast enough"))
        .map(|head| head.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(lost > 0, "a full backlog drops lines:\n{rest:.2000}");
    assert_eq!(said + lost, FORGED, "every rejection said or counted");
}

/// Regression: with its stderr not read (a stalled journal), serve did not stop on SIGTERM:
/// it waited for ever to print its last lines.
fn regression_serve_did_not_stop_while_its_stderr_was_unread() {
    let forge = forge(&[]);
    let sb = sandbox(&forge, Some(SECRET), NO_POLL);
    let (mut child, _stderr, url) = serve_with_stderr_unread(&sb);
    forge_deliveries(&url, 8_000);
    child.signal(nix::sys::signal::Signal::SIGTERM);
    let mut status = None;
    wait_until_for(
        Duration::from_secs(20),
        "serve to exit with its stderr unread",
        &mut || {
            status = child.0.try_wait().unwrap();
            status.is_some()
        },
    );
    assert!(status.unwrap().success(), "{status:?}");
}

/// `ccci serve` with its stderr read up to the line saying where it listens, and no further:
/// the process, the unread rest, and serve's URL.
fn serve_with_stderr_unread(
    sb: &Sandbox,
) -> (
    KillOnDrop,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    let mut child = KillOnDrop(sb.ccci().arg("serve").command().spawn().unwrap());
    let mut stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "serve ended before it listened");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let url = format!("http://{}", rest.split_whitespace().next().unwrap());
            return (child, stderr, url);
        }
    }
}

/// Sends `n` forged deliveries one after another; each must be refused, and none may hang.
/// The bound is looser than [`PROMPT`]: among thousands of requests on a busy host one can
/// wait a second for the scheduler; the hang these tests guard against never ends.
fn forge_deliveries(url: &str, n: usize) {
    const NO_HANG: Duration = Duration::from_secs(5);
    let event = pr_comment(1, 101, "maintainer", "!testme");
    let forged = sign("hook-guess", &event);
    for k in 0..n {
        let started = Instant::now();
        let (status, text) = serve::request(
            url,
            "POST",
            "/hook",
            &[
                ("X-Gitea-Event", "issue_comment"),
                ("X-Gitea-Signature", &forged),
            ],
            &event,
        );
        assert_eq!(
            (status, text.trim()),
            (401, "bad signature"),
            "delivery {k}"
        );
        let took = started.elapsed();
        assert!(took < NO_HANG, "delivery {k} took {took:?} to answer");
    }
}

/// A process the test started itself: killed if the test ends (or fails) before it does.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn signal(&mut self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), signal).unwrap();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Once waited for, the child is not signalled again: std knows it has exited.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
