//! The service mode's forge client (`ccci::serve::forge`): against a real, throwaway Gitea for
//! every call it makes (`forge` tests, one instance each), and against a recording stand-in for
//! what a real forge cannot be made to do on demand: fail with a 5xx, answer too late, redirect
//! (`local` tests).
//!
//! What is read back from the real forge is read with the harness's own REST calls
//! (`Forge::api`), not with the client under test.

use std::time::{Duration, Instant, SystemTime};

use ccci::serve::forge::{
    AuthRule, CommitStatus, ForgeClient, ForgeError, MAX_STATUS_DESCRIPTION, Retry, StatusState,
    authorize,
};
use ccci::serve::webhook;
use serde_json::{Value, json};

use crate::support::forge::{Forge, ForgeUser, HookReceiver};
use crate::support::proc::wait_until;
use crate::support::recording_forge::{RecordingForge, Reply};

crate::tests! {
    forge: pull_request_gives_the_head_and_whoami_the_bot,
    forge: statuses_are_set_and_read_back_per_context,
    forge: the_eyes_reaction_is_idempotent,
    forge: the_summary_comment_is_written_once_then_edited_in_place,
    forge: comments_since_lists_comments_updated_from_the_watermark_on,
    forge: membership_is_yes_for_the_maintainer_no_for_the_outsider,
    forge: authorization_follows_each_rule,
    forge: a_real_pr_comment_delivery_passes_webhook_verification,
    local: a_500_then_success_is_retried,
    local: a_404_is_not_retried,
    local: a_summary_whose_create_failed_late_is_found_not_doubled,
    local: a_slow_answer_is_a_timeout_and_not_allowed,
    local: a_membership_redirect_is_not_followed_and_not_allowed,
    local: a_membership_500_is_not_allowed,
    local: comments_since_reads_every_page,
    local: the_token_is_never_in_an_error,
}

const MARKER: &str = "<!-- ccci:summary -->";

/// Retries fast enough for a test, with the same shape as the default.
const FAST: Retry = Retry {
    attempts: 4,
    first_pause: Duration::from_millis(10),
    max_pause: Duration::from_millis(40),
    budget: Duration::from_secs(5),
};

fn client(forge: &Forge, user: &ForgeUser) -> ForgeClient {
    ForgeClient::new(&forge.base_url, user.token.clone(), Duration::from_secs(15)).with_retry(FAST)
}

fn pull_request_gives_the_head_and_whoami_the_bot() {
    let forge = Forge::start();
    let bot = client(&forge, &forge.bot);
    assert_eq!(bot.whoami().unwrap(), forge.bot.username);
    assert_eq!(
        client(&forge, &forge.maintainer).whoami().unwrap(),
        "maintainer"
    );

    let pr = bot.pull_request(&forge.repo, forge.pr.number).unwrap();
    assert_eq!(pr.number, forge.pr.number);
    assert_eq!(pr.head_sha, forge.pr.head_sha);
    assert_eq!(pr.head_ref, forge.pr.head_ref);
    assert_eq!(pr.state, "open");
    assert!(!pr.merged);
    assert_eq!(
        pr.html_url,
        format!(
            "{}/{}/pulls/{}",
            forge.base_url, forge.repo, forge.pr.number
        )
    );
    assert_eq!(pr.base_clone_url, forge.clone_url);
    assert_eq!(pr.head_clone_url.as_deref(), Some(forge.clone_url.as_str()));

    let e = bot.pull_request(&forge.repo, 999).unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .starts_with(&format!("GET /repos/{}/pulls/999 answered 404", forge.repo)),
        "{e}"
    );
}

fn statuses_are_set_and_read_back_per_context() {
    let forge = Forge::start();
    let bot = client(&forge, &forge.bot);
    let sha = &forge.pr.head_sha;
    let run_url = "http://127.0.0.1:1/runs/7".to_string();
    let status = |state, context: &str, description: &str, target: Option<&String>| CommitStatus {
        state,
        target_url: target.cloned(),
        description: description.to_string(),
        context: context.to_string(),
    };
    bot.set_status(
        &forge.repo,
        sha,
        &status(
            StatusState::Pending,
            "ccci/install",
            "queued",
            Some(&run_url),
        ),
    )
    .unwrap();
    bot.set_status(
        &forge.repo,
        sha,
        &status(
            StatusState::Success,
            "ccci/install",
            "passed in 2m",
            Some(&run_url),
        ),
    )
    .unwrap();
    let long = "ü".repeat(300);
    bot.set_status(
        &forge.repo,
        sha,
        &status(StatusState::Failure, "ccci/upgrade", &long, None),
    )
    .unwrap();
    bot.set_status(
        &forge.repo,
        sha,
        &status(StatusState::Error, "ccci/backup", "no swarm", None),
    )
    .unwrap();

    let (code, combined) = forge.api(
        &forge.bot.token,
        "GET",
        &format!("/repos/{}/commits/{sha}/status", forge.repo),
        None,
    );
    assert_eq!(code, 200, "{combined}");
    assert_eq!(
        combined["total_count"], 3,
        "one entry per context: {combined}"
    );
    let by_context = |context: &str| -> Value {
        combined["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["context"] == context)
            .unwrap_or_else(|| panic!("no status {context}: {combined}"))
            .clone()
    };
    let install = by_context("ccci/install");
    assert_eq!(install["status"], "success", "the newest wins");
    assert_eq!(install["description"], "passed in 2m");
    assert_eq!(install["target_url"], run_url.as_str());
    assert_eq!(install["creator"]["login"], forge.bot.username.as_str());
    let upgrade = by_context("ccci/upgrade");
    assert_eq!(upgrade["status"], "failure");
    let description = upgrade["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), MAX_STATUS_DESCRIPTION);
    assert!(
        description.starts_with("üüü") && description.ends_with('…'),
        "{description}"
    );
    assert_eq!(by_context("ccci/backup")["status"], "error");

    // Every status sent is kept, the replaced pending one included.
    let (code, all) = forge.api(
        &forge.bot.token,
        "GET",
        &format!("/repos/{}/statuses/{sha}", forge.repo),
        None,
    );
    assert_eq!(code, 200);
    let mut states: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["error", "failure", "pending", "success"]);

    // A commit id the forge does not know is its answer to give, not a retry.
    let e = bot
        .set_status(
            "coop-cloud/no-such-repo",
            sha,
            &status(StatusState::Pending, "ccci", "", None),
        )
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}

fn the_eyes_reaction_is_idempotent() {
    let forge = Forge::start();
    let bot = client(&forge, &forge.bot);
    let comment = forge.comment_on_pr(&forge.maintainer, "!testme");
    let id = comment["id"].as_u64().unwrap();
    // 201 the first time, 200 when it is there already: both done.
    bot.react(&forge.repo, id, "eyes").unwrap();
    bot.react(&forge.repo, id, "eyes").unwrap();
    let (code, reactions) = forge.api(
        &forge.admin.token,
        "GET",
        &format!("/repos/{}/issues/comments/{id}/reactions", forge.repo),
        None,
    );
    assert_eq!(code, 200, "{reactions}");
    let reactions = reactions.as_array().unwrap();
    assert_eq!(reactions.len(), 1, "{reactions:?}");
    assert_eq!(reactions[0]["content"], "eyes");
    assert_eq!(reactions[0]["user"]["login"], forge.bot.username.as_str());

    // A reaction the forge does not allow is a 4xx: refused at once, not retried.
    let e = bot.react(&forge.repo, id, "robot").unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(e.to_string().contains("not an allowed reaction"), "{e}");
}

/// The bot's comments on the PR that hold the marker, as (id, body).
fn summaries(forge: &Forge) -> Vec<(u64, String)> {
    let (code, comments) = forge.api(
        &forge.admin.token,
        "GET",
        &format!("/repos/{}/issues/{}/comments", forge.repo, forge.pr.number),
        None,
    );
    assert_eq!(code, 200, "{comments}");
    comments
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["user"]["login"] == forge.bot.username.as_str())
        .filter(|c| c["body"].as_str().unwrap().contains(MARKER))
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["body"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn the_summary_comment_is_written_once_then_edited_in_place() {
    let forge = Forge::start();
    let bot = client(&forge, &forge.bot);
    let (repo, pr) = (&forge.repo, forge.pr.number);
    // Someone quoting the marker: never the bot's comment to edit.
    let quoting = forge.comment_on_pr(&forge.maintainer, &format!("why does it say {MARKER}?"));

    let first = bot
        .upsert_summary(repo, pr, MARKER, "run 1: queued", None)
        .unwrap();
    assert_eq!(
        summaries(&forge),
        [(first, format!("{MARKER}\nrun 1: queued"))]
    );

    // Without the id (a restarted service), the marker finds it.
    let again = bot
        .upsert_summary(repo, pr, MARKER, "run 1: passed", None)
        .unwrap();
    assert_eq!(again, first);
    // With the id; a body that holds the marker already is sent as it is.
    let body = format!("## ccci\n{MARKER}\nrun 2: failed");
    let known = bot
        .upsert_summary(repo, pr, MARKER, &body, Some(first))
        .unwrap();
    assert_eq!(known, first);
    assert_eq!(summaries(&forge), [(first, body)]);
    let (_, untouched) = forge.api(
        &forge.admin.token,
        "GET",
        &format!("/repos/{repo}/issues/comments/{}", quoting["id"]),
        None,
    );
    assert_eq!(untouched["body"], quoting["body"]);

    // Deleted by someone: the known id is gone, and a new summary is written.
    let (code, _) = forge.api(
        &forge.admin.token,
        "DELETE",
        &format!("/repos/{repo}/issues/comments/{first}"),
        None,
    );
    assert_eq!(code, 204);
    let fresh = bot
        .upsert_summary(repo, pr, MARKER, "run 3: queued", Some(first))
        .unwrap();
    assert_ne!(fresh, first);
    assert_eq!(
        summaries(&forge),
        [(fresh, format!("{MARKER}\nrun 3: queued"))]
    );
}

fn comments_since_lists_comments_updated_from_the_watermark_on() {
    let forge = Forge::start();
    let bot = client(&forge, &forge.bot);
    let repo = &forge.repo;
    let testme = forge.comment_on_pr(&forge.maintainer, "!testme");
    let id = testme["id"].as_u64().unwrap();
    let created = testme["created_at"].as_str().unwrap().to_string();
    let (code, issue) = forge.api(
        &forge.maintainer.token,
        "POST",
        &format!("/repos/{repo}/issues"),
        Some(&json!({"title": "a plain issue"})),
    );
    assert_eq!(code, 201, "{issue}");
    let on_issue = forge.comment_on(&forge.outsider, issue["number"].as_u64().unwrap(), "hello");

    let all = bot.comments_since(repo, None).unwrap();
    let seen = all
        .iter()
        .find(|c| c.id == id)
        .expect("the !testme comment");
    assert_eq!(seen.body, "!testme");
    assert_eq!(seen.login, "maintainer");
    assert_eq!(seen.pr_number, Some(forge.pr.number));
    assert_eq!(seen.created_at, created);
    assert_eq!(seen.html_url, testme["html_url"].as_str().unwrap());
    let plain = all
        .iter()
        .find(|c| Some(c.id) == on_issue["id"].as_u64())
        .expect("the comment on the plain issue");
    assert_eq!((plain.pr_number, plain.login.as_str()), (None, "outsider"));

    // `since` is inclusive: a comment made in that very second is listed.
    let at = bot.comments_since(repo, Some(&created)).unwrap();
    assert!(at.iter().any(|c| c.id == id), "{at:?}");
    // A second later, it is not...
    let created_time = humantime::parse_rfc3339(&created).expect("created_at is RFC 3339 UTC");
    let next = humantime::format_rfc3339_seconds(created_time + Duration::from_secs(1)).to_string();
    let later = bot.comments_since(repo, Some(&next)).unwrap();
    assert!(later.iter().all(|c| c.id != id), "{later:?}");
    // ...until it is edited then: `since` compares the update time.
    wait_until("the clock to pass the watermark", || {
        SystemTime::now() >= created_time + Duration::from_secs(1)
    });
    let (code, _) = forge.api(
        &forge.maintainer.token,
        "PATCH",
        &format!("/repos/{repo}/issues/comments/{id}"),
        Some(&json!({"body": "!testme install"})),
    );
    assert_eq!(code, 200);
    let edited = bot.comments_since(repo, Some(&next)).unwrap();
    let edited = edited
        .iter()
        .find(|c| c.id == id)
        .expect("the edited comment");
    assert_eq!(edited.body, "!testme install");
    assert_eq!(edited.created_at, created, "an edit keeps created_at");
    assert!(edited.updated_at.as_str() >= next.as_str(), "{edited:?}");

    // More than a page (the forge gives 50 at most): every comment, once, oldest first.
    for n in 0..50 {
        forge.comment_on_pr(&forge.maintainer, &format!("filler {n}"));
    }
    let many = bot.comments_since(repo, None).unwrap();
    assert_eq!(
        many.len(),
        52,
        "{:?}",
        many.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    assert!(
        many.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first, no repeats"
    );
    assert!(many.iter().any(|c| c.body == "filler 49"));

    let e = bot.comments_since(repo, Some("yesterday")).unwrap_err();
    assert_eq!(e.status(), Some(422), "{e}");
}

fn membership_is_yes_for_the_maintainer_no_for_the_outsider() {
    let forge = Forge::start();
    let bot = client(&forge, &forge.bot);
    assert_eq!(bot.is_org_member(&forge.org, "maintainer"), Ok(true));
    assert_eq!(bot.is_org_member(&forge.org, "outsider"), Ok(false));
    assert_eq!(bot.is_org_member(&forge.org, "ccci-admin"), Ok(true));

    // Asked by a non-member, the forge redirects to the public list: cannot tell.
    let outsider = client(&forge, &forge.outsider);
    let e = outsider
        .is_org_member(&forge.org, "maintainer")
        .unwrap_err();
    assert_eq!(e.status(), Some(303), "{e}");
    assert!(e.to_string().contains("public_members"), "{e}");
    assert!(!e.is_transient());
}

fn authorization_follows_each_rule() {
    let forge = Forge::start();
    let (org, repo) = (forge.org.as_str(), forge.repo.as_str());
    let bot = client(&forge, &forge.bot);
    let admin = client(&forge, &forge.admin);
    let decide = |c: &ForgeClient, rule, user: &str| authorize(c, rule, org, repo, user);

    // org_member, asked by the bot (an org member).
    let d = decide(&bot, AuthRule::OrgMember, "maintainer");
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.reason, "maintainer is a member of coop-cloud");
    let d = decide(&bot, AuthRule::OrgMember, "outsider");
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.reason, "outsider is not a member of coop-cloud");
    // Asked by someone who may not see the members: not allowed, and the reason says why.
    let d = decide(
        &client(&forge, &forge.outsider),
        AuthRule::OrgMember,
        "maintainer",
    );
    assert!(!d.allowed, "{d:?}");
    assert!(d.reason.contains("answered 303"), "{}", d.reason);

    // write: the bot's token cannot ask (not a repo admin).
    let d = decide(&bot, AuthRule::Write, "maintainer");
    assert!(!d.allowed, "{d:?}");
    assert!(
        d.reason.contains(&format!(
            "GET /repos/{repo}/collaborators/maintainer/permission answered 403"
        )),
        "{}",
        d.reason
    );
    // An admin token can: the org owner has `owner`; a team member with unit-level write
    // reads as `read`, so `write` alone refuses the maintainer.
    assert_eq!(admin.permission(repo, "ccci-admin").unwrap(), "owner");
    let d = decide(&admin, AuthRule::Write, "ccci-admin");
    assert!(d.allowed, "{d:?}");
    let d = decide(&admin, AuthRule::Write, "maintainer");
    assert!(!d.allowed, "{d:?}");
    assert_eq!(
        d.reason,
        format!("maintainer has read permission on {repo}, not write")
    );
    // A collaborator given write.
    let (code, answer) = forge.api(
        &forge.admin.token,
        "PUT",
        &format!("/repos/{repo}/collaborators/outsider"),
        Some(&json!({"permission": "write"})),
    );
    assert_eq!(code, 204, "{answer}");
    assert_eq!(admin.permission(repo, "outsider").unwrap(), "write");
    let d = decide(&admin, AuthRule::Write, "outsider");
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.reason, format!("outsider has write permission on {repo}"));

    // either: membership suffices; failing that, write; the reason names both answers.
    let d = decide(&bot, AuthRule::Either, "maintainer");
    assert!(d.allowed, "{d:?}");
    let d = decide(&admin, AuthRule::Either, "outsider");
    assert!(d.allowed, "write without membership: {d:?}");
    let d = decide(&bot, AuthRule::Either, "outsider");
    assert!(!d.allowed, "{d:?}");
    assert!(
        d.reason.starts_with(
            "outsider is not a member of coop-cloud; cannot tell outsider's permission"
        ),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("answered 403"), "{}", d.reason);
    for token in [&forge.bot.token, &forge.admin.token] {
        assert!(!d.reason.contains(token.as_str()));
    }
}

/// The test forge itself: a PR comment arrives as a signed `issue_comment` delivery, and the
/// service mode's verification accepts it with the hook's secret and no other.
fn a_real_pr_comment_delivery_passes_webhook_verification() {
    let forge = Forge::start();
    let hooks = HookReceiver::start();
    let secret = "test-secret";
    forge.add_webhook(&hooks.url(), secret);

    let comment = forge.comment_on_pr(&forge.maintainer, "!testme");
    let id = comment["id"].as_u64().unwrap();
    let d = hooks
        .wait_for(Duration::from_secs(15), |d| {
            d.header("X-Gitea-Event") == Some("issue_comment")
                && d.json()["comment"]["id"].as_u64() == Some(id)
        })
        .expect("a delivery for the comment within 15s");
    assert_eq!(d.path, "/hook");
    assert_eq!(d.header("X-Gitea-Event-Type"), Some("pull_request_comment"));
    let signature = webhook::signature(d.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(signature.is_some(), "signed: {:?}", d.headers);
    assert_eq!(
        webhook::verify(&d.body, signature.as_deref(), &[secret.as_bytes().to_vec()]),
        Ok(())
    );
    assert_eq!(
        webhook::verify(&d.body, signature.as_deref(), &[b"another-secret".to_vec()]),
        Err(webhook::Refusal::BadSignature)
    );
    let event = webhook::parse_comment_event(&d.body).unwrap();
    assert!(event.is_new_pull_request_comment());
    assert_eq!(event.issue.number, forge.pr.number);
    assert_eq!(event.comment.id, id);
    assert_eq!(event.repository.full_name, forge.repo);
}

// --- against the recording stand-in ---

const TOKEN: &str = "tok-SEKRIT-4242";

fn recorded_client(forge: &RecordingForge, timeout: Duration) -> ForgeClient {
    ForgeClient::new(forge.base_url(), TOKEN.to_string(), timeout).with_retry(FAST)
}

fn a_500_then_success_is_retried() {
    let forge = RecordingForge::start();
    forge.on(
        "POST",
        "/repos/o/r/statuses/",
        vec![
            Reply::text(500, "database is locked"),
            Reply::json(201, json!({"id": 1})),
        ],
    );
    let client = recorded_client(&forge, Duration::from_secs(5));
    let status = CommitStatus {
        state: StatusState::Success,
        target_url: Some("http://ci/runs/1".into()),
        description: "passed".into(),
        context: "ccci/install".into(),
    };
    client.set_status("o/r", "abc123", &status).unwrap();
    let sent = forge.requests_to("POST", "/repos/o/r/statuses/abc123");
    assert_eq!(sent.len(), 2, "{sent:?}");
    for request in &sent {
        assert_eq!(
            request.header("Authorization"),
            Some(format!("token {TOKEN}").as_str())
        );
        assert_eq!(
            request.json(),
            json!({"state": "success", "target_url": "http://ci/runs/1", "description": "passed", "context": "ccci/install"})
        );
    }
}

fn a_404_is_not_retried() {
    let forge = RecordingForge::start();
    forge.on(
        "POST",
        "/repos/o/r/issues/comments/",
        vec![Reply::json(
            404,
            json!({"message": "comment does not exist"}),
        )],
    );
    let client = recorded_client(&forge, Duration::from_secs(5));
    let e = client.react("o/r", 5, "eyes").unwrap_err();
    assert_eq!(
        e,
        ForgeError::Status {
            call: "POST /repos/o/r/issues/comments/5/reactions".into(),
            code: 404,
            excerpt: "comment does not exist".into(),
        }
    );
    assert_eq!(forge.requests().len(), 1, "{:?}", forge.requests());
    assert_eq!(forge.requests()[0].json(), json!({"content": "eyes"}));
}

fn a_summary_whose_create_failed_late_is_found_not_doubled() {
    let forge = RecordingForge::start();
    forge.on(
        "GET",
        "/user",
        vec![Reply::json(200, json!({"login": "ccci-bot"}))],
    );
    // The create answers 502, but the comment was made: the retry finds it by its marker.
    let made = json!({"id": 9, "body": format!("{MARKER}\nqueued"), "user": {"login": "ccci-bot"}});
    let quoted = json!({"id": 8, "body": format!("see {MARKER}"), "user": {"login": "someone"}});
    forge.on(
        "GET",
        "/repos/o/r/issues/3/comments",
        vec![
            Reply::json(200, json!([quoted])).header("X-Total-Count", "1"),
            Reply::json(200, json!([quoted, made])).header("X-Total-Count", "2"),
        ],
    );
    forge.on(
        "POST",
        "/repos/o/r/issues/3/comments",
        vec![Reply::status(502)],
    );
    forge.on(
        "PATCH",
        "/repos/o/r/issues/comments/9",
        vec![Reply::json(200, made.clone())],
    );
    let client = recorded_client(&forge, Duration::from_secs(5));
    assert_eq!(
        client.upsert_summary("o/r", 3, MARKER, "passed", None),
        Ok(9)
    );
    assert_eq!(forge.requests_to("POST", "/").len(), 1);
    assert_eq!(
        forge
            .requests_to("GET", "/repos/o/r/issues/3/comments")
            .len(),
        2,
        "looked again"
    );
    let edits = forge.requests_to("PATCH", "/");
    assert_eq!(edits.len(), 1);
    assert_eq!(
        edits[0].json(),
        json!({"body": format!("{MARKER}\npassed")})
    );
    assert!(
        forge
            .requests_to("PATCH", "/repos/o/r/issues/comments/8")
            .is_empty()
    );
}

fn a_slow_answer_is_a_timeout_and_not_allowed() {
    let forge = RecordingForge::start();
    forge.on(
        "GET",
        "/orgs/o/members/",
        vec![Reply::status(204).after(Duration::from_secs(5))],
    );
    let timeout = Duration::from_millis(300);
    let client = recorded_client(&forge, timeout);
    let started = Instant::now();
    let e = client.is_org_member("o", "alice").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up after {:?}",
        started.elapsed()
    );
    assert_eq!(
        e,
        ForgeError::Timeout {
            call: "GET /orgs/o/members/alice".into(),
            after: timeout
        }
    );
    assert!(e.is_transient());
    let d = authorize(&client, AuthRule::OrgMember, "o", "o/r", "alice");
    assert!(!d.allowed, "{d:?}");
    assert_eq!(
        d.reason,
        "cannot tell whether alice is a member of o: GET /orgs/o/members/alice timed out after 300ms"
    );
}

fn a_membership_redirect_is_not_followed_and_not_allowed() {
    let forge = RecordingForge::start();
    let public = format!("{}/api/v1/orgs/o/public_members/alice", forge.base_url());
    forge.on(
        "GET",
        "/orgs/o/members/",
        vec![Reply::status(303).header("Location", &public)],
    );
    // Followed, the redirect would read as a yes.
    forge.on("GET", "/orgs/o/public_members/", vec![Reply::status(204)]);
    let client = recorded_client(&forge, Duration::from_secs(5));
    let e = client.is_org_member("o", "alice").unwrap_err();
    assert_eq!(e.status(), Some(303), "{e}");
    assert!(e.to_string().contains(&public), "{e}");
    let d = authorize(&client, AuthRule::OrgMember, "o", "o/r", "alice");
    assert!(!d.allowed, "{d:?}");
    assert!(
        d.reason.contains("GET /orgs/o/members/alice answered 303"),
        "{}",
        d.reason
    );
    assert_eq!(forge.requests_to("GET", "/orgs/o/members/alice").len(), 2);
    assert!(
        forge
            .requests_to("GET", "/orgs/o/public_members/")
            .is_empty(),
        "{:?}",
        forge.requests()
    );
}

fn a_membership_500_is_not_allowed() {
    let forge = RecordingForge::start();
    forge.on(
        "GET",
        "/orgs/o/members/",
        vec![Reply::text(
            500,
            "<html>\n<h1>Internal Server Error</h1>\n</html>",
        )],
    );
    forge.on(
        "GET",
        "/repos/o/r/collaborators/",
        vec![Reply::json(200, json!({"permission": "write"}))],
    );
    let client = recorded_client(&forge, Duration::from_secs(5));
    let d = authorize(&client, AuthRule::OrgMember, "o", "o/r", "alice");
    assert!(!d.allowed, "{d:?}");
    assert_eq!(
        d.reason,
        "cannot tell whether alice is a member of o: GET /orgs/o/members/alice answered 500: <html> <h1>Internal Server Error</h1> </html>"
    );
    assert_eq!(d.failed_calls, ["membership"], "counted as a forge error");
    // Asked once: only the reporting calls retry.
    assert_eq!(forge.requests().len(), 1);
    // Under `either`, the other path still decides; the failed call still counts.
    let d = authorize(&client, AuthRule::Either, "o", "o/r", "alice");
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.reason, "alice has write permission on o/r");
    assert_eq!(d.failed_calls, ["membership"]);
}

fn comments_since_reads_every_page() {
    let forge = RecordingForge::start();
    let comment = |id: u64| {
        json!({
            "id": id, "body": format!("c{id}"), "user": {"login": "u"},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "html_url": format!("http://f/o/r/pulls/4#issuecomment-{id}"),
            "pull_request_url": "http://f/o/r/pulls/4", "issue_url": "",
        })
    };
    let first: Vec<Value> = (1..=50).map(comment).collect();
    forge.on(
        "GET",
        "/repos/o/r/issues/comments",
        vec![
            Reply::json(200, json!(first)).header("X-Total-Count", "52"),
            Reply::json(200, json!([comment(51), comment(52)])).header("X-Total-Count", "52"),
        ],
    );
    let client = recorded_client(&forge, Duration::from_secs(5));
    let since = "2026-01-01T00:00:00+01:00";
    let comments = client.comments_since("o/r", Some(since)).unwrap();
    assert_eq!(
        comments.iter().map(|c| c.id).collect::<Vec<_>>(),
        (1..=52).collect::<Vec<_>>()
    );
    assert!(
        comments
            .iter()
            .all(|c| c.pr_number == Some(4) && c.login == "u")
    );
    let asked: Vec<String> = forge.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        asked,
        [
            "/repos/o/r/issues/comments?since=2026-01-01T00%3A00%3A00%2B01%3A00&page=1&limit=50",
            "/repos/o/r/issues/comments?since=2026-01-01T00%3A00%3A00%2B01%3A00&page=2&limit=50",
        ]
    );
}

fn the_token_is_never_in_an_error() {
    let forge = RecordingForge::start();
    // A forge that echoes what it was sent, in an error and in an unreadable answer.
    forge.on(
        "GET",
        "/user",
        vec![Reply::json(
            401,
            json!({"message": format!("token {TOKEN} is invalid")}),
        )],
    );
    forge.on(
        "GET",
        "/repos/o/r/pulls/",
        vec![Reply::text(200, &format!("Authorization: token {TOKEN}"))],
    );
    forge.on(
        "GET",
        "/orgs/",
        vec![Reply::status(204).after(Duration::from_secs(5))],
    );
    // Only the membership check is meant to time out: the others get time to answer.
    let client = recorded_client(&forge, Duration::from_secs(5));
    let impatient = recorded_client(&forge, Duration::from_millis(300));
    let closed = {
        // A port nobody listens on any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        ForgeClient::new(
            &format!("http://127.0.0.1:{port}"),
            TOKEN.to_string(),
            Duration::from_secs(2),
        )
        .with_retry(Retry::NONE)
    };
    let errors = [
        client.whoami().unwrap_err(),
        client.pull_request("o/r", 1).unwrap_err(),
        impatient.is_org_member("o", "alice").unwrap_err(),
        closed.whoami().unwrap_err(),
    ];
    assert!(
        matches!(errors[0], ForgeError::Status { code: 401, .. }),
        "{:?}",
        errors[0]
    );
    assert!(
        matches!(errors[1], ForgeError::Decode { .. }),
        "{:?}",
        errors[1]
    );
    assert!(
        matches!(errors[2], ForgeError::Timeout { .. }),
        "{:?}",
        errors[2]
    );
    assert!(
        matches!(errors[3], ForgeError::Transport { .. }),
        "{:?}",
        errors[3]
    );
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(TOKEN), "{text}");
        }
    }
    assert!(
        errors[0].to_string().contains("token <token> is invalid"),
        "{}",
        errors[0]
    );
    let d = authorize(&impatient, AuthRule::Either, "o", "o/r", "alice");
    assert!(!d.allowed && !d.reason.contains(TOKEN), "{d:?}");
    assert!(!format!("{client:?}").contains(TOKEN));
    // It was sent, where it belongs.
    assert!(
        forge
            .requests()
            .iter()
            .all(|r| r.header("Authorization") == Some(format!("token {TOKEN}").as_str()))
    );
}
