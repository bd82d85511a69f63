//! `ccci serve` end to end, for real: a throwaway Gitea on loopback, its own signed webhooks,
//! runs of the demo recipe on the real swarm, and the statuses, reaction and summary comment
//! read back from the forge's API. Also the same through polling with no webhook, and a serve
//! killed with SIGKILL mid-run and started again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::forge::{Forge, ForgeUser};
use crate::support::proc::wait_until_for;
use crate::support::sandbox::Sandbox;
use crate::support::serve::{self, ServeProc};

crate::tests! {
    forge + swarm: a_testme_comment_through_the_forges_webhook_runs_the_demo_and_reports_back,
    forge + swarm: with_no_webhook_polling_runs_new_commands_only_and_refuses_outsiders,
    forge + swarm: a_newer_testme_supersedes_a_running_run_and_a_push_cancels_one,
    forge + swarm: serve_killed_mid_run_reports_it_interrupted_leaks_nothing_and_resumes_the_queue,
}

/// How long reports may take to reach the forge after serve logged the verdict.
const REPORTED: Duration = Duration::from_secs(60);

fn sandbox(forge: &Forge, secret: Option<&str>, extra: &str) -> Sandbox {
    let sb = Sandbox::new("");
    sb.config(&serve::config(
        &sb,
        &forge.base_url,
        &forge.bot.token,
        secret,
        &format!("  repos: [{}]\n{extra}", forge.repo),
    ));
    sb
}

/// The commit statuses of `sha`, newest first: (state, description, target_url, context).
fn statuses(forge: &Forge, sha: &str) -> Vec<(String, String, String, String)> {
    let (code, list) = forge.api(
        &forge.admin.token,
        "GET",
        &format!("/repos/{}/statuses/{sha}", forge.repo),
        None,
    );
    assert_eq!(code, 200, "{list}");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                text(&s["status"]),
                text(&s["description"]),
                text(&s["target_url"]),
                text(&s["context"]),
            )
        })
        .collect()
}

fn reactions(forge: &Forge, comment: u64) -> Vec<(String, String)> {
    let (code, list) = forge.api(
        &forge.admin.token,
        "GET",
        &format!("/repos/{}/issues/comments/{comment}/reactions", forge.repo),
        None,
    );
    if code == 404 || list.is_null() {
        return Vec::new();
    }
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["content"].as_str().unwrap_or_default().to_string(),
                r["user"]["login"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The bodies of the bot's summary comments on pull request `pr`.
fn summaries(forge: &Forge, pr: u64) -> Vec<String> {
    let (code, list) = forge.api(
        &forge.admin.token,
        "GET",
        &format!("/repos/{}/issues/{pr}/comments", forge.repo),
        None,
    );
    assert_eq!(code, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .filter(|c| c["user"]["login"] == forge.bot.username)
        .map(|c| c["body"].as_str().unwrap_or_default().to_string())
        .filter(|b| b.contains("<!-- ccci:summary -->"))
        .collect()
}

fn comment(forge: &Forge, user: &ForgeUser, pr: u64, body: &str) -> u64 {
    forge.comment_on(user, pr, body)["id"]
        .as_u64()
        .expect("comment id")
}

fn a_testme_comment_through_the_forges_webhook_runs_the_demo_and_reports_back() {
    let forge = Forge::start();
    let sb = sandbox(&forge, Some("hook-s3cret"), "  poll_interval: off\n");
    let mut serve = ServeProc::start(&sb);
    forge.add_webhook(&format!("{}/hook", serve.url), "hook-s3cret");
    let sha = forge.pr.head_sha.clone();

    let asked = comment(&forge, &forge.maintainer, 1, "!testme install");
    serve.line(
        "run 1: !testme on coop-cloud/demo#1 by maintainer (via webhook)",
        1,
    );
    serve.line(&format!("run 1: queued at {sha}"), 1);
    let run_dir = serve.run_dir_of(1);
    serve.line("run 1: pass", 1);
    wait_until_for(REPORTED, "the success status and the summary", &mut || {
        statuses(&forge, &sha).iter().any(|s| s.0 == "success") && summaries(&forge, 1).len() == 1
    });
    let all = statuses(&forge, &sha);
    let run_page = format!("{}/runs/1", serve.url);
    let pending = all
        .iter()
        .find(|s| s.0 == "pending")
        .expect("a pending status");
    assert_eq!(
        (pending.2.as_str(), pending.3.as_str()),
        (run_page.as_str(), "ccci")
    );
    assert!(pending.1.contains("testing demo: install"), "{pending:?}");
    let success = all.iter().find(|s| s.0 == "success").unwrap();
    assert_eq!(
        (success.1.as_str(), success.2.as_str()),
        ("pass", run_page.as_str())
    );
    assert_eq!(
        reactions(&forge, asked),
        [("eyes".to_string(), forge.bot.username.clone())]
    );
    let summary = &summaries(&forge, 1)[0];
    for part in [
        "`demo`",
        "**pass**",
        "| install | ✅ passed |",
        "@maintainer",
        "via webhook",
    ] {
        assert!(
            summary.contains(part),
            "`{part}` not in the summary:\n{summary}"
        );
    }
    let record = sb.record(&run_dir);
    assert_eq!(
        record.commit.as_deref(),
        Some(sha.as_str()),
        "the PR head was tested"
    );
    sb.assert_nothing_left(&record);

    // Again: a second run, and the same summary comment edited in place.
    comment(&forge, &forge.maintainer, 1, "!testme install");
    serve.line("run 2: pass", 1);
    wait_until_for(REPORTED, "the summary naming run 1 as earlier", &mut || {
        summaries(&forge, 1)
            .first()
            .is_some_and(|s| s.contains("[run 2]") && s.contains("Earlier runs"))
    });
    assert_eq!(summaries(&forge, 1).len(), 1, "one summary comment per PR");
    // A forged copy of a delivery is refused, and runs nothing.
    let forged = serve.post(
        "/hook",
        &[
            ("X-Gitea-Event", "issue_comment"),
            ("X-Gitea-Signature", "00ff"),
        ],
        b"{}",
    );
    assert_eq!(forged.0, 401, "{forged:?}");
    let (_, page) = serve.get("/");
    assert!(page.contains("webhook") && page.contains("demo"), "{page}");
    let (_, metrics) = serve.get("/metrics");
    assert!(
        metrics.contains("ccci_runs_finished_total{verdict=\"pass\"} 2"),
        "{metrics}"
    );
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(!out.stderr.contains("hook-s3cret") && !out.stderr.contains(&forge.bot.token));
}

fn with_no_webhook_polling_runs_new_commands_only_and_refuses_outsiders() {
    let forge = Forge::start();
    // Asked for before serve watched the repository: never run.
    comment(&forge, &forge.maintainer, 1, "!testme install");
    let sb = sandbox(
        &forge,
        None,
        "  poll_interval: 1s\n  authorize: org_member\n",
    );
    let mut serve = ServeProc::start(&sb);
    serve.line(
        "watching coop-cloud/demo: 1 existing comment(s) marked seen",
        1,
    );

    let outsider = comment(&forge, &forge.outsider, 1, "!testme install");
    serve.line("by outsider (via poll)", 1);
    let refused = serve.line(": refused: outsider may not ask for runs", 1);
    assert!(
        refused.contains("404") || refused.contains("not a member"),
        "{refused}"
    );
    let asked = comment(&forge, &forge.maintainer, 1, "!testme install");
    let recorded = serve.line("by maintainer (via poll)", 1);
    let run: u64 = recorded
        .split("run ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run id in `{recorded}`"));
    serve.line(&format!("run {run}: pass"), 1);
    let sha = forge.pr.head_sha.clone();
    wait_until_for(REPORTED, "the success status", &mut || {
        statuses(&forge, &sha).iter().any(|s| s.0 == "success")
    });
    assert_eq!(reactions(&forge, asked).len(), 1);
    assert!(
        reactions(&forge, outsider).is_empty(),
        "nothing is said to someone who may not ask"
    );
    // Two commands were recorded; the old comment was not.
    assert_eq!(serve.get("/runs/3").0, 404);
    let (_, page) = serve.get("/?state=done");
    assert!(page.contains("refused") && page.contains("poll"), "{page}");
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
}

/// A second pull request, from a new branch with a commit of its own; its number and head.
fn second_pull_request(forge: &Forge) -> (u64, String) {
    let (code, created) = forge.api(
        &forge.admin.token,
        "POST",
        &format!("/repos/{}/contents/NOTES.md", forge.repo),
        Some(&json!({
            "content": "bm90ZXMK",
            "message": "notes",
            "branch": forge.pr.head_ref,
            "new_branch": "second-change",
        })),
    );
    assert_eq!(code, 201, "{created}");
    let mut pr = (0, String::new());
    // Pushed branches are recorded from a queue: the pull request can be opened a moment later.
    wait_until_for(
        Duration::from_secs(30),
        "the second pull request to open",
        &mut || {
            let (code, opened) = forge.api(
                &forge.admin.token,
                "POST",
                &format!("/repos/{}/pulls", forge.repo),
                Some(&json!({"head": "second-change", "base": "main", "title": "second"})),
            );
            if code == 201 {
                pr = (
                    opened["number"].as_u64().unwrap(),
                    opened["head"]["sha"].as_str().unwrap().to_string(),
                );
            }
            code == 201
        },
    );
    pr
}

fn serve_killed_mid_run_reports_it_interrupted_leaks_nothing_and_resumes_the_queue() {
    let forge = Forge::start();
    let (second, second_sha) = second_pull_request(&forge);
    let sb = sandbox(
        &forge,
        Some("hook-s3cret"),
        "  poll_interval: 2s\n  concurrency: 1\n",
    );
    let mut serve = ServeProc::start(&sb);
    forge.add_webhook(&format!("{}/hook", serve.url), "hook-s3cret");
    comment(&forge, &forge.maintainer, 1, "!testme install");
    let first = serve.run_dir_of(1);
    comment(&forge, &forge.maintainer, second, "!testme install");
    serve.line("run 2: queued", 1);
    let log = sb.run_dir(&first).join("log");
    serve.proc.wait_until("run 1 to deploy", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("deploy done"))
    });
    let killed = serve.kill();
    assert_eq!(killed.code(), None, "SIGKILL: {killed}");

    let mut serve = ServeProc::start(&sb);
    let recovered = serve.line("recovered:", 1);
    assert!(
        recovered.contains("1 run(s) interrupted") && recovered.contains("1 waiting"),
        "{recovered}"
    );
    let second_dir = serve.run_dir_of(2);
    serve.line("run 2: pass", 1);
    let sha = forge.pr.head_sha.clone();
    wait_until_for(REPORTED, "run 1 reported as an error", &mut || {
        statuses(&forge, &sha).iter().any(|s| s.0 == "error")
    });
    let error = statuses(&forge, &sha)
        .into_iter()
        .find(|s| s.0 == "error")
        .unwrap();
    assert!(error.1.contains("interrupted"), "{error:?}");
    wait_until_for(REPORTED, "run 2's success status", &mut || {
        statuses(&forge, &second_sha)
            .iter()
            .any(|s| s.0 == "success")
    });
    // Run 1's own child tore down on its parent's death; nothing of it may be left.
    let record_path = sb.run_dir(&first).join("run.json");
    wait_until_for(
        Duration::from_secs(120),
        "run 1's child to finish its teardown",
        &mut || {
            ccci::run::record::RunRecord::read(&record_path).is_ok_and(|r| r.finished_at.is_some())
        },
    );
    sb.assert_nothing_left(&sb.record(&first));
    sb.assert_nothing_left(&sb.record(&second_dir));
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
}

fn a_newer_testme_supersedes_a_running_run_and_a_push_cancels_one() {
    let forge = Forge::start();
    let sb = sandbox(&forge, Some("hook-s3cret"), "  poll_interval: off\n");
    let mut serve = ServeProc::start(&sb);
    forge.add_webhook(&format!("{}/hook", serve.url), "hook-s3cret");
    let deployed = |sb: &Sandbox, run_dir: &str| {
        std::fs::read_to_string(sb.run_dir(run_dir).join("log"))
            .is_ok_and(|l| l.contains("deploy done"))
    };

    comment(&forge, &forge.maintainer, 1, "!testme install");
    let first = serve.run_dir_of(1);
    serve
        .proc
        .wait_until("run 1 to deploy", || deployed(&sb, &first));
    // Every stage: long enough for a push to arrive while it runs.
    comment(&forge, &forge.maintainer, 1, "!testme");
    let superseded = serve.line("run 1: superseded", 1);
    assert!(superseded.contains("superseded by run 2"), "{superseded}");
    let second = serve.run_dir_of(2);
    serve
        .proc
        .wait_until("run 2 to deploy", || deployed(&sb, &second));

    // New commits on the pull request: its running run is cancelled.
    let (code, pushed) = forge.api(
        &forge.admin.token,
        "POST",
        &format!("/repos/{}/contents/PUSHED.md", forge.repo),
        Some(&json!({"content": "cHVzaGVkCg==", "message": "more", "branch": forge.pr.head_ref})),
    );
    assert_eq!(code, 201, "{pushed}");
    let cancelled = serve.line("run 2: cancelled", 1);
    assert!(cancelled.contains("new commits"), "{cancelled}");
    for run_dir in [&first, &second] {
        let record = sb.record(run_dir);
        assert!(record.torn_down, "{run_dir} was torn down");
        sb.assert_nothing_left(&record);
    }
    let sha = forge.pr.head_sha.clone();
    wait_until_for(
        REPORTED,
        "run 2's cancellation on the old head",
        &mut || {
            statuses(&forge, &sha)
                .iter()
                .any(|s| s.0 == "error" && s.1.contains("cancelled"))
        },
    );
    assert!(
        !statuses(&forge, &sha)
            .iter()
            .any(|s| s.1.contains("superseded")),
        "a superseded run leaves the status to the run that replaced it"
    );
    wait_until_for(REPORTED, "the summary of run 2", &mut || {
        summaries(&forge, 1)
            .first()
            .is_some_and(|s| s.contains("[run 2]") && s.contains("cancelled"))
    });
    let out = serve.stop();
    assert_eq!(out.code(), Some(0), "{out}");
}
