//! The Gitea/Forgejo REST client of the service mode: who the bot is, a pull request's head,
//! commit statuses, the `eyes` reaction that acknowledges a command, the one summary comment
//! per pull request, the polled comment listing, and the authorization questions (org
//! membership, repo permission).
//!
//! Synchronous (ureq), one bounded timeout per call, redirects never followed: the membership
//! check answers 303 to the *public* members list when the bot may not see the org's members,
//! and that means "cannot tell", never "yes" (docs/forge-facts.md). The calls that report back
//! (status, reaction, summary) retry transient failures with exponential backoff; nothing
//! retries a 4xx. The token goes into the `Authorization` header and nowhere else: errors,
//! `Debug` output and reasons never hold it.
//!
//! Authorization fails closed: any error, timeout or unexpected answer is "not allowed", and
//! the reason says which call answered what.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The longest commit-status description sent, in characters: what GitHub accepts, and what
/// a forge's status list shows without cutting it.
pub const MAX_STATUS_DESCRIPTION: usize = 140;

/// Items asked for per page when listing: Gitea's default maximum (`MAX_RESPONSE_ITEMS`).
const PAGE_SIZE: usize = 50;

/// A listing that has not ended after this many pages is not a listing of comments.
const MAX_PAGES: usize = 200;

/// How much of an error answer's body an error keeps.
const EXCERPT_CHARS: usize = 200;

/// What went wrong with a call to the forge. `call` is the method and the path under
/// `/api/v1` (`GET /repos/o/r/pulls/1`), never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// The forge answered, with a status the call does not accept.
    #[error("{call} answered {code}{}", if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") })]
    Status {
        call: String,
        code: u16,
        /// The start of the answer's body (Gitea's `message` when it sent one), one line.
        excerpt: String,
    },
    /// No (complete) answer within the client's timeout.
    #[error("{call} timed out after {}", humantime::format_duration(Duration::from_millis(after.as_millis() as u64)))]
    Timeout { call: String, after: Duration },
    /// No answer: connection refused, reset, DNS, TLS.
    #[error("{call} failed: {reason}")]
    Transport { call: String, reason: String },
    /// An answer the client cannot read (not JSON, fields missing).
    #[error("{call} gave an unexpected answer: {reason}")]
    Decode { call: String, reason: String },
    /// An argument that cannot be part of a forge API path (an owner, repo or user name, a
    /// commit id, a marker); nothing was sent.
    #[error("{0}")]
    Invalid(String),
}

impl ForgeError {
    /// Whether trying the same call again later may succeed: a 5xx, a timeout, no connection.
    /// A 4xx (or 3xx) will answer the same again.
    pub fn is_transient(&self) -> bool {
        match self {
            ForgeError::Status { code, .. } => *code >= 500,
            ForgeError::Timeout { .. } | ForgeError::Transport { .. } => true,
            ForgeError::Decode { .. } | ForgeError::Invalid(_) => false,
        }
    }

    /// The HTTP status the forge answered, if it answered with an unexpected one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = ForgeError> = std::result::Result<T, E>;

/// How the reporting calls retry transient failures: `attempts` in all, pausing `first_pause`,
/// then twice as long each time up to `max_pause`; no attempt starts after `budget` has passed
/// since the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub first_pause: Duration,
    pub max_pause: Duration,
    pub budget: Duration,
}

impl Default for Retry {
    /// 0.5 s, 1 s, 2 s, 4 s: five attempts within about 8 s, short enough that a worker's
    /// report does not hold up the next run for long when the forge is down.
    fn default() -> Retry {
        Retry {
            attempts: 5,
            first_pause: Duration::from_millis(500),
            max_pause: Duration::from_secs(8),
            budget: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// One attempt, no retry.
    pub const NONE: Retry = Retry {
        attempts: 1,
        first_pause: Duration::ZERO,
        max_pause: Duration::ZERO,
        budget: Duration::ZERO,
    };

    /// Runs `op` until it succeeds, fails with an error that is not transient, or the attempts
    /// or the time budget are spent; returns its last result.
    pub fn run<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let mut pause = self.first_pause;
        let mut attempt = 1;
        loop {
            match op() {
                Ok(value) => return Ok(value),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => {
                    if attempt >= self.attempts || started.elapsed() + pause > self.budget {
                        return Err(e);
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.max_pause);
                    attempt += 1;
                }
            }
        }
    }
}

/// A pull request as the service mode needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub head_sha: String,
    /// The branch, in the head repository (which may be a fork).
    pub head_ref: String,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub html_url: String,
    /// The clone URL of the repository the pull request targets; its head is fetchable there
    /// as `refs/pull/<number>/head` even when it comes from a fork.
    pub base_clone_url: String,
    /// The clone URL of the head repository; `None` when the fork is gone.
    pub head_clone_url: Option<String>,
}

/// The states ccci reports. Gitea stores any string it is sent (docs/forge-facts.md), so
/// only these are ever sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// One commit status; a forge keeps the newest per `context`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub state: StatusState,
    /// Where the run's page is (the dashboard), if there is one.
    pub target_url: Option<String>,
    /// Cut to [`MAX_STATUS_DESCRIPTION`] characters when sent.
    pub description: String,
    /// `ccci/<stage>` or similar: what this status is about.
    pub context: String,
}

/// A comment from the repo-wide listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolledComment {
    pub id: u64,
    pub body: String,
    /// The author; empty when the forge lost the account.
    pub login: String,
    /// RFC 3339, as the forge wrote it.
    pub created_at: String,
    pub updated_at: String,
    /// The pull request it was made on; `None` for a comment on a plain issue.
    pub pr_number: Option<u64>,
    pub html_url: String,
}

/// Who may start a run with a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthRule {
    /// A member of the org (`GET /orgs/{org}/members/{user}` answers 204). Needs the bot's
    /// account to be an org member.
    OrgMember,
    /// Repo permission owner, admin or write. Needs an admin token; a team member whose
    /// write access comes from the team's units reads as `read` (docs/forge-facts.md).
    Write,
    /// Either of the two.
    Either,
}

/// What [`authorize`] decided, and why, in words for the log and the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
    /// The calls that failed on the way (`membership`, `permission`), for the forge-error
    /// metric: a "no" the forge answered is not among them, one it could not give is.
    pub failed_calls: Vec<&'static str>,
}

/// The forge's REST API as one account (the token's owner) sees it.
pub struct ForgeClient {
    /// `<base>/api/v1`
    api: String,
    token: String,
    timeout: Duration,
    retry: Retry,
    agent: ureq::Agent,
    /// The token's login, learnt once (the summary comment is found by its author).
    login: OnceLock<String>,
}

impl std::fmt::Debug for ForgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeClient")
            .field("api", &self.api)
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One answer, read in full.
struct Answer {
    call: String,
    code: u16,
    body: String,
    location: Option<String>,
    total_count: Option<usize>,
}

/// The parts of a comment the client reads.
#[derive(Deserialize)]
struct RawComment {
    id: u64,
    #[serde(default)]
    body: String,
    #[serde(default)]
    user: Option<RawUser>,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    updated_at: String,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    pull_request_url: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
}

impl RawComment {
    fn login(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.login.as_str())
    }

    fn into_polled(self) -> PolledComment {
        // Gitea sets `pull_request_url` on PR comments and `issue_url` (only) on issue
        // comments; an older forge without the field still links PR comments to `/pulls/N`.
        let pr_number = self
            .pull_request_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .and_then(pr_number_in)
            .or_else(|| pr_number_in(&self.html_url));
        PolledComment {
            login: self.login().to_string(),
            id: self.id,
            body: self.body,
            created_at: self.created_at,
            updated_at: self.updated_at,
            pr_number,
            html_url: self.html_url,
        }
    }
}

/// The number after `/pulls/` in a forge URL (`…/pulls/7`, `…/pulls/7#issuecomment-3`).
fn pr_number_in(url: &str) -> Option<u64> {
    let (_, rest) = url.rsplit_once("/pulls/")?;
    let digits: &str = rest.split(['#', '/', '?']).next()?;
    digits.parse().ok()
}

impl ForgeClient {
    /// A client for the forge at `base_url` (`https://git.coopcloud.tech`; the API is under
    /// `/api/v1`), acting with `token`; every call gives up after `timeout`. Reporting calls
    /// retry with [`Retry::default`].
    pub fn new(base_url: &str, token: String, timeout: Duration) -> ForgeClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("ccci/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        ForgeClient {
            api: format!("{}/api/v1", base_url.trim_end_matches('/')),
            token,
            timeout,
            retry: Retry::default(),
            agent,
            login: OnceLock::new(),
        }
    }

    /// The same client with another retry policy for the reporting calls.
    pub fn with_retry(mut self, retry: Retry) -> ForgeClient {
        self.retry = retry;
        self
    }

    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The login of the token's owner (`GET /user`).
    pub fn whoami(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Me {
            login: String,
        }
        let answer = self.expect(self.send("GET", "/user", &[], None)?, &[200])?;
        Ok(self.decode::<Me>(&answer)?.login)
    }

    /// [`ForgeClient::whoami`], asked once per client.
    fn bot_login(&self) -> Result<&str> {
        if let Some(login) = self.login.get() {
            return Ok(login);
        }
        let login = self.whoami()?;
        Ok(self.login.get_or_init(|| login))
    }

    /// Pull request `number` of `owner_repo` (`GET /repos/{o}/{r}/pulls/{n}`).
    pub fn pull_request(&self, owner_repo: &str, number: u64) -> Result<PullRequest> {
        #[derive(Deserialize)]
        struct Raw {
            number: u64,
            state: String,
            #[serde(default)]
            merged: bool,
            html_url: String,
            head: Branch,
            base: Branch,
        }
        #[derive(Deserialize)]
        struct Branch {
            sha: String,
            #[serde(rename = "ref")]
            reference: String,
            repo: Option<Repo>,
        }
        #[derive(Deserialize)]
        struct Repo {
            clone_url: String,
        }
        let repo = repo_path(owner_repo)?;
        let answer = self.expect(
            self.send("GET", &format!("/repos/{repo}/pulls/{number}"), &[], None)?,
            &[200],
        )?;
        let raw: Raw = self.decode(&answer)?;
        let base_clone_url = raw.base.repo.map(|r| r.clone_url).ok_or_else(|| {
            self.decode_error(&answer, "the pull request's base has no repository")
        })?;
        Ok(PullRequest {
            number: raw.number,
            head_sha: raw.head.sha,
            head_ref: raw.head.reference,
            state: raw.state,
            merged: raw.merged,
            html_url: raw.html_url,
            base_clone_url,
            head_clone_url: raw.head.repo.map(|r| r.clone_url),
        })
    }

    /// Sets a commit status on `sha` (`POST /repos/{o}/{r}/statuses/{sha}`), retrying
    /// transient failures.
    pub fn set_status(&self, owner_repo: &str, sha: &str, status: &CommitStatus) -> Result<()> {
        let repo = repo_path(owner_repo)?;
        if sha.is_empty() || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ForgeError::Invalid(format!(
                "`{sha}` is not a commit id (hex digits)"
            )));
        }
        let mut body = json!({
            "state": status.state.as_str(),
            "description": truncate_chars(&status.description, MAX_STATUS_DESCRIPTION),
            "context": status.context,
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = Value::from(url.as_str());
        }
        let path = format!("/repos/{repo}/statuses/{sha}");
        self.retry.run(|| {
            self.expect(self.send("POST", &path, &[], Some(&body))?, &[200, 201])
                .map(drop)
        })
    }

    /// Adds the reaction `content` (`eyes`) to comment `comment_id`; one that is already
    /// there counts as done. Retries transient failures.
    pub fn react(&self, owner_repo: &str, comment_id: u64, content: &str) -> Result<()> {
        let repo = repo_path(owner_repo)?;
        let path = format!("/repos/{repo}/issues/comments/{comment_id}/reactions");
        let body = json!({ "content": content });
        // 201: added; 200: it was there already.
        self.retry.run(|| {
            self.expect(self.send("POST", &path, &[], Some(&body))?, &[200, 201])
                .map(drop)
        })
    }

    /// Every comment on issues and pull requests of `owner_repo` updated at or after `since`
    /// (RFC 3339; the forge's `since` is inclusive and compares the *update* time, so an
    /// edited old comment comes back), oldest first, over all pages.
    pub fn comments_since(
        &self,
        owner_repo: &str,
        since: Option<&str>,
    ) -> Result<Vec<PolledComment>> {
        let repo = repo_path(owner_repo)?;
        let comments = self.list_comments(&format!("/repos/{repo}/issues/comments"), since)?;
        Ok(comments.into_iter().map(RawComment::into_polled).collect())
    }

    /// Writes the run summary on pull request `pr` and returns its comment id. There is one
    /// summary comment per pull request, edited in place: `known_comment_id` when given and
    /// still there, else the bot's own comment holding `marker` (an HTML comment such as
    /// `<!-- ccci:summary -->`, invisible when rendered), else a new comment. `body` gets the
    /// marker in front unless it holds it already. Retries transient failures (a retry looks
    /// for the comment again, so a create that failed late is not doubled).
    pub fn upsert_summary(
        &self,
        owner_repo: &str,
        pr: u64,
        marker: &str,
        body: &str,
        known_comment_id: Option<u64>,
    ) -> Result<u64> {
        let repo = repo_path(owner_repo)?;
        let marker = marker.trim();
        if !(marker.starts_with("<!--") && marker.ends_with("-->") && marker.len() > 7) {
            return Err(ForgeError::Invalid(format!(
                "the summary marker `{marker}` is not an HTML comment like `<!-- ccci:summary -->`"
            )));
        }
        let text = if body.contains(marker) {
            body.to_string()
        } else {
            format!("{marker}\n{body}")
        };
        let payload = json!({ "body": text });
        self.retry
            .run(|| self.upsert_once(&repo, pr, marker, &payload, known_comment_id))
    }

    fn upsert_once(
        &self,
        repo: &str,
        pr: u64,
        marker: &str,
        payload: &Value,
        known: Option<u64>,
    ) -> Result<u64> {
        if let Some(id) = known {
            match self.edit_comment(repo, id, payload) {
                // Deleted meanwhile: find or write another.
                Err(ForgeError::Status { code: 404, .. }) => {}
                other => return other,
            }
        }
        let login = self.bot_login()?;
        let existing = self
            .list_comments(&format!("/repos/{repo}/issues/{pr}/comments"), None)?
            .into_iter()
            .find(|c| c.login() == login && c.body.contains(marker));
        if let Some(comment) = existing {
            return self.edit_comment(repo, comment.id, payload);
        }
        let answer = self.expect(
            self.send(
                "POST",
                &format!("/repos/{repo}/issues/{pr}/comments"),
                &[],
                Some(payload),
            )?,
            &[201],
        )?;
        Ok(self.decode::<RawComment>(&answer)?.id)
    }

    fn edit_comment(&self, repo: &str, id: u64, payload: &Value) -> Result<u64> {
        let answer = self.expect(
            self.send(
                "PATCH",
                &format!("/repos/{repo}/issues/comments/{id}"),
                &[],
                Some(payload),
            )?,
            &[200],
        )?;
        Ok(self.decode::<RawComment>(&answer)?.id)
    }

    /// Whether `user` is a member of `org` (`GET /orgs/{org}/members/{user}`): 204 yes, 404
    /// no. Anything else is an error, a 303 included: the forge redirects to the public
    /// members list when the token's owner is no member of the org and so cannot tell.
    pub fn is_org_member(&self, org: &str, user: &str) -> Result<bool> {
        let org = segment("org", org)?;
        let user = segment("user", user)?;
        let answer = self.send("GET", &format!("/orgs/{org}/members/{user}"), &[], None)?;
        match answer.code {
            204 => Ok(true),
            404 => Ok(false),
            300..=399 => Err(ForgeError::Status {
                call: answer.call.clone(),
                code: answer.code,
                excerpt: format!(
                    "{}; the forge only tells members of {org} who its members are",
                    self.excerpt(&answer)
                ),
            }),
            _ => Err(self.status_error(&answer)),
        }
    }

    /// `user`'s permission on `owner_repo` (`owner`, `admin`, `write`, `read` or `none`;
    /// `GET /repos/{o}/{r}/collaborators/{user}/permission`). Needs an admin token: the
    /// forge answers 403 otherwise.
    pub fn permission(&self, owner_repo: &str, user: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Raw {
            permission: String,
        }
        let repo = repo_path(owner_repo)?;
        let user = segment("user", user)?;
        let answer = self.expect(
            self.send(
                "GET",
                &format!("/repos/{repo}/collaborators/{user}/permission"),
                &[],
                None,
            )?,
            &[200],
        )?;
        Ok(self.decode::<Raw>(&answer)?.permission)
    }

    /// Every comment at `path` (a comment listing), page after page, oldest first. Stops at
    /// an empty page, once `X-Total-Count` items are in, or at a page that brings nothing new
    /// (a forge that ignores `page`).
    fn list_comments(&self, path: &str, since: Option<&str>) -> Result<Vec<RawComment>> {
        let mut all: Vec<RawComment> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for page in 1..=MAX_PAGES {
            let mut query = Vec::new();
            if let Some(since) = since {
                query.push(("since", since.to_string()));
            }
            query.push(("page", page.to_string()));
            query.push(("limit", PAGE_SIZE.to_string()));
            let answer = self.expect(self.send("GET", path, &query, None)?, &[200])?;
            let items: Vec<RawComment> = self.decode(&answer)?;
            if items.is_empty() {
                return Ok(all);
            }
            let before = all.len();
            all.extend(items.into_iter().filter(|c| seen.insert(c.id)));
            let done =
                all.len() == before || answer.total_count.is_some_and(|total| all.len() >= total);
            if done {
                return Ok(all);
            }
        }
        Err(ForgeError::Decode {
            call: format!("GET {path}"),
            reason: format!("the listing did not end within {MAX_PAGES} pages"),
        })
    }

    /// One request; any answer the forge gives is `Ok`, whatever its status.
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let call = format!("{method} {path}");
        let url = format!("{}{path}", self.api);
        let auth = format!("token {}", self.token);
        let result = match method {
            "GET" | "DELETE" => {
                let mut request = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                for (key, value) in query {
                    request = request.query(key, value);
                }
                request
                    .header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .call()
            }
            _ => {
                let request = match method {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.put(&url),
                };
                let payload = body.map(Value::to_string).unwrap_or_default();
                request
                    .header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(payload)
            }
        };
        let mut response = result.map_err(|e| self.transport_error(&call, e))?;
        let code = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let total_count = header("x-total-count").and_then(|v| v.trim().parse().ok());
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(&call, e))?;
        Ok(Answer {
            call,
            code,
            body,
            location,
            total_count,
        })
    }

    /// `answer` when its status is one of `codes`, else the error that says what came.
    fn expect(&self, answer: Answer, codes: &[u16]) -> Result<Answer> {
        if codes.contains(&answer.code) {
            Ok(answer)
        } else {
            Err(self.status_error(&answer))
        }
    }

    fn status_error(&self, answer: &Answer) -> ForgeError {
        ForgeError::Status {
            call: answer.call.clone(),
            code: answer.code,
            excerpt: self.excerpt(answer),
        }
    }

    /// A redirect's target, Gitea's JSON `message`, or the start of the body; one line, short.
    fn excerpt(&self, answer: &Answer) -> String {
        let text = if (300..400).contains(&answer.code) {
            match &answer.location {
                Some(to) => format!("redirect to {to}, not followed"),
                None => "redirect, not followed".to_string(),
            }
        } else {
            serde_json::from_str::<Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| answer.body.clone())
        };
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        self.redact(&truncate_chars(&line, EXCERPT_CHARS))
    }

    fn decode<T: DeserializeOwned>(&self, answer: &Answer) -> Result<T> {
        serde_json::from_str(&answer.body).map_err(|e| self.decode_error(answer, &e.to_string()))
    }

    fn decode_error(&self, answer: &Answer, reason: &str) -> ForgeError {
        ForgeError::Decode {
            call: answer.call.clone(),
            reason: self.redact(&truncate_chars(reason, EXCERPT_CHARS)),
        }
    }

    fn transport_error(&self, call: &str, e: ureq::Error) -> ForgeError {
        let timed_out = match &e {
            ureq::Error::Timeout(_) => true,
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        };
        if timed_out {
            ForgeError::Timeout {
                call: call.to_string(),
                after: self.timeout,
            }
        } else {
            ForgeError::Transport {
                call: call.to_string(),
                reason: self.redact(&e.to_string()),
            }
        }
    }

    /// `text` without the token, should a forge or a library ever echo it.
    fn redact(&self, text: &str) -> String {
        if self.token.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.token, "<token>")
        }
    }
}

/// Whether `user` may start a run on `owner_repo` under `rule`, asking the forge as `client`.
/// Fails closed: an error, a timeout or an unexpected answer is "not allowed", and the reason
/// names the call and what it answered.
pub fn authorize(
    client: &ForgeClient,
    rule: AuthRule,
    org: &str,
    owner_repo: &str,
    user: &str,
) -> Decision {
    match rule {
        AuthRule::OrgMember => member_decision(client, org, user),
        AuthRule::Write => write_decision(client, owner_repo, user),
        AuthRule::Either => {
            let member = member_decision(client, org, user);
            if member.allowed {
                return member;
            }
            let mut write = write_decision(client, owner_repo, user);
            if write.allowed {
                write.failed_calls.splice(0..0, member.failed_calls);
                return write;
            }
            Decision {
                allowed: false,
                reason: format!("{}; {}", member.reason, write.reason),
                failed_calls: [member.failed_calls, write.failed_calls].concat(),
            }
        }
    }
}

fn member_decision(client: &ForgeClient, org: &str, user: &str) -> Decision {
    match client.is_org_member(org, user) {
        Ok(true) => Decision {
            allowed: true,
            reason: format!("{user} is a member of {org}"),
            failed_calls: Vec::new(),
        },
        Ok(false) => Decision {
            allowed: false,
            reason: format!("{user} is not a member of {org}"),
            failed_calls: Vec::new(),
        },
        Err(e) => Decision {
            allowed: false,
            reason: format!("cannot tell whether {user} is a member of {org}: {e}"),
            failed_calls: vec!["membership"],
        },
    }
}

fn write_decision(client: &ForgeClient, owner_repo: &str, user: &str) -> Decision {
    match client.permission(owner_repo, user) {
        Ok(permission) => {
            let allowed = matches!(permission.as_str(), "owner" | "admin" | "write");
            let short = if allowed { "" } else { ", not write" };
            Decision {
                allowed,
                reason: format!("{user} has {permission} permission on {owner_repo}{short}"),
                failed_calls: Vec::new(),
            }
        }
        Err(e) => Decision {
            allowed: false,
            reason: format!("cannot tell {user}'s permission on {owner_repo}: {e}"),
            failed_calls: vec!["permission"],
        },
    }
}

/// `s` cut to at most `max` characters (never inside one), ending in `…` when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One path segment naming an owner, org, repo or user: what Gitea allows in names
/// (letters, digits, `-`, `_`, `.`), so it needs no escaping and cannot leave its place.
fn segment<'a>(what: &str, name: &'a str) -> Result<&'a str> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(ForgeError::Invalid(format!(
            "`{name}` is not a forge {what} name (letters, digits, `-`, `_`, `.`)"
        )))
    }
}

/// `owner/repo`, checked.
fn repo_path(owner_repo: &str) -> Result<String> {
    let Some((owner, repo)) = owner_repo.split_once('/') else {
        return Err(ForgeError::Invalid(format!(
            "`{owner_repo}` is not a repository: expected owner/repo"
        )));
    };
    Ok(format!(
        "{}/{}",
        segment("owner", owner)?,
        segment("repository", repo)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16, body: &str) -> Answer {
        Answer {
            call: "GET /x".to_string(),
            code,
            body: body.to_string(),
            location: None,
            total_count: None,
        }
    }

    #[test]
    fn descriptions_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = truncate_chars(&long, MAX_STATUS_DESCRIPTION);
        assert_eq!(cut.chars().count(), MAX_STATUS_DESCRIPTION);
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
        assert_eq!(truncate_chars("short", 140), "short");
        let exact = "x".repeat(140);
        assert_eq!(truncate_chars(&exact, 140), exact);
    }

    #[test]
    fn pr_numbers_come_from_pull_request_or_html_urls() {
        let comment = |pr_url: Option<&str>, html: &str| RawComment {
            id: 1,
            body: String::new(),
            user: None,
            created_at: String::new(),
            updated_at: String::new(),
            html_url: html.to_string(),
            pull_request_url: pr_url.map(str::to_string),
        };
        let pr = comment(
            Some("http://f/o/r/pulls/7"),
            "http://f/o/r/pulls/7#issuecomment-3",
        );
        assert_eq!(pr.into_polled().pr_number, Some(7));
        let issue = comment(Some(""), "http://f/o/r/issues/8#issuecomment-4");
        assert_eq!(issue.into_polled().pr_number, None);
        let old_forge = comment(None, "http://f/o/r/pulls/9#issuecomment-5");
        let polled = old_forge.into_polled();
        assert_eq!(polled.pr_number, Some(9));
        assert_eq!(polled.login, "");
    }

    #[test]
    fn names_that_could_leave_their_path_segment_are_refused() {
        assert_eq!(repo_path("coop-cloud/demo").unwrap(), "coop-cloud/demo");
        assert_eq!(repo_path("a_b/c.d-1").unwrap(), "a_b/c.d-1");
        for bad in [
            "demo", "/demo", "o/", "o/r/x", "o/..", "o/r?x=1", "o/r#", "ö/r",
        ] {
            let e = repo_path(bad).unwrap_err();
            assert!(matches!(e, ForgeError::Invalid(_)), "{bad}: {e}");
            assert!(!e.is_transient());
        }
        assert!(segment("user", "").is_err());
        assert!(segment("user", "a b").is_err());
    }

    #[test]
    fn only_5xx_timeouts_and_transport_failures_are_transient() {
        let status = |code| ForgeError::Status {
            call: "GET /x".into(),
            code,
            excerpt: String::new(),
        };
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(404).is_transient());
        assert!(!status(429).is_transient());
        assert!(!status(303).is_transient());
        let timeout = ForgeError::Timeout {
            call: "GET /x".into(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_transient());
        assert_eq!(timeout.to_string(), "GET /x timed out after 1s");
        assert!(
            ForgeError::Transport {
                call: "GET /x".into(),
                reason: "refused".into()
            }
            .is_transient()
        );
        assert!(
            !ForgeError::Decode {
                call: "GET /x".into(),
                reason: "eof".into()
            }
            .is_transient()
        );
        assert_eq!(status(404).to_string(), "GET /x answered 404");
    }

    #[test]
    fn retry_repeats_transient_failures_only_within_its_attempts() {
        let fast = Retry {
            attempts: 3,
            first_pause: Duration::from_millis(1),
            max_pause: Duration::from_millis(2),
            budget: Duration::from_secs(5),
        };
        let transient = || ForgeError::Status {
            call: "POST /x".into(),
            code: 502,
            excerpt: String::new(),
        };
        let mut calls = 0;
        let r: Result<u32> = fast.run(|| {
            calls += 1;
            if calls < 3 {
                Err(transient())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r, Ok(3));

        calls = 0;
        let r: Result<()> = fast.run(|| {
            calls += 1;
            Err(transient())
        });
        assert_eq!(r.unwrap_err().status(), Some(502));
        assert_eq!(calls, 3, "gives up after its attempts");

        calls = 0;
        let r: Result<()> = fast.run(|| {
            calls += 1;
            Err(ForgeError::Status {
                call: "POST /x".into(),
                code: 422,
                excerpt: String::new(),
            })
        });
        assert_eq!(r.unwrap_err().status(), Some(422));
        assert_eq!(calls, 1, "a 4xx is never retried");

        // A budget shorter than the first pause allows no second attempt.
        let tight = Retry {
            budget: Duration::from_millis(1),
            first_pause: Duration::from_secs(10),
            ..fast
        };
        calls = 0;
        let started = Instant::now();
        let _ = tight.run(|| -> Result<()> {
            calls += 1;
            Err(transient())
        });
        assert_eq!(calls, 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_token_stays_out_of_debug_output_and_excerpts() {
        let client = ForgeClient::new(
            "http://127.0.0.1:1/",
            "tok-123secret".to_string(),
            Duration::from_secs(1),
        );
        let debug = format!("{client:?}");
        assert!(!debug.contains("tok-123secret"), "{debug}");
        assert!(debug.contains("http://127.0.0.1:1/api/v1"), "{debug}");
        let echoed = answer(401, r#"{"message":"token tok-123secret is invalid"}"#);
        let e = client.status_error(&echoed);
        assert_eq!(
            e.to_string(),
            "GET /x answered 401: token <token> is invalid"
        );
    }

    #[test]
    fn excerpts_are_one_short_line() {
        let client = ForgeClient::new("http://f", "t".repeat(20), Duration::from_secs(1));
        let html = format!("<html>\n  <body>{}</body>\n</html>", "x".repeat(1000));
        let excerpt = client.excerpt(&answer(502, &html));
        assert!(!excerpt.contains('\n'));
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS);
        let mut redirect = answer(303, "");
        redirect.location = Some("http://f/api/v1/orgs/o/public_members/u".into());
        assert_eq!(
            client.excerpt(&redirect),
            "redirect to http://f/api/v1/orgs/o/public_members/u, not followed"
        );
    }

    #[test]
    fn rules_read_as_configured() {
        #[derive(Deserialize)]
        struct C {
            rule: AuthRule,
        }
        let rule =
            |s: &str| serde_json::from_str::<C>(&format!(r#"{{"rule":"{s}"}}"#)).map(|c| c.rule);
        assert_eq!(rule("org_member").unwrap(), AuthRule::OrgMember);
        assert_eq!(rule("write").unwrap(), AuthRule::Write);
        assert_eq!(rule("either").unwrap(), AuthRule::Either);
        assert!(rule("anyone").is_err());
    }

    #[test]
    fn invalid_arguments_send_nothing_and_say_what_to_fix() {
        // Port 1 refuses connections: were anything sent, this would be a transport error.
        let client = ForgeClient::new("http://127.0.0.1:1", "t".into(), Duration::from_secs(1))
            .with_retry(Retry::NONE);
        let status = CommitStatus {
            state: StatusState::Pending,
            target_url: None,
            description: String::new(),
            context: "ccci".into(),
        };
        let e = client.set_status("o/r", "not-a-sha", &status).unwrap_err();
        assert!(matches!(e, ForgeError::Invalid(_)), "{e}");
        let e = client
            .upsert_summary("o/r", 1, "ccci:summary", "hi", None)
            .unwrap_err();
        assert!(e.to_string().contains("not an HTML comment"), "{e}");
        let e = client.is_org_member("o", "a/b").unwrap_err();
        assert!(matches!(e, ForgeError::Invalid(_)), "{e}");
        let decision = authorize(&client, AuthRule::Either, "o", "o/r", "../x");
        assert!(!decision.allowed);
        assert!(
            decision.reason.contains("not a forge user name"),
            "{}",
            decision.reason
        );
    }
}
