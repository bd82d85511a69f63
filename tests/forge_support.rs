//! A real forge for the service-mode tests: a throwaway Gitea on loopback (scripts/forge.sh,
//! binary from scripts/build-forge.sh), a webhook receiver, and an independent HMAC check.
//!
//! `Forge::start()` sets up a fresh instance in its own temporary directory: org `coop-cloud`,
//! repo `coop-cloud/demo` from the demo recipe, pull request #1, and four users (site admin,
//! `ccci-bot` and `maintainer` in the org with write access, `outsider` in nothing). Dropping the
//! `Forge` stops the server; a watchdog stops it too if the test binary dies first.
//! docs/forge-facts.md lists what this Gitea was seen to answer.
//!
//! Self-contained on purpose (std, serde_json, sha2, tempfile, ureq), so it can move into the
//! shared test-support module as it is. Its own smoke test sits at the bottom.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One account on the forge.
#[derive(Debug, Clone)]
pub struct ForgeUser {
    pub username: String,
    pub password: String,
    pub token: String,
}

/// The pull request set up with the instance.
#[derive(Debug, Clone)]
pub struct ForgePr {
    pub number: u64,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
}

/// A running throwaway Gitea. Stopped on drop.
pub struct Forge {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    /// Gitea's own version string, e.g. `1.26.0`.
    pub version: String,
    /// Site admin and owner of the org.
    pub admin: ForgeUser,
    /// The service mode's account: org member (team with write access), token scopes
    /// write:issue, write:repository, read:organization, read:user.
    pub bot: ForgeUser,
    /// An org member with write access: the trusted `!testme` commenter.
    pub maintainer: ForgeUser,
    /// Not a member of anything; can still comment on the public repo.
    pub outsider: ForgeUser,
    /// `coop-cloud`
    pub org: String,
    /// `coop-cloud/demo`
    pub repo: String,
    pub clone_url: String,
    pub pr: ForgePr,
    agent: ureq::Agent,
}

impl Forge {
    /// Sets up and starts a fresh instance; builds the pinned Gitea first if this machine has
    /// none yet (minutes, once). Panics with the script's output when that fails.
    pub fn start() -> Forge {
        let dir = tempfile::Builder::new()
            .prefix("ccci-forge-")
            .tempdir()
            .expect("temporary directory for the forge");
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/forge.sh"))
            .arg("start")
            .arg(dir.path())
            .env("FORGE_OWNER_PID", std::process::id().to_string())
            .output()
            .expect("running scripts/forge.sh");
        assert!(
            out.status.success(),
            "scripts/forge.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("forge.json")).expect("forge.json"),
        )
        .expect("forge.json is JSON");
        let text = |v: &Value| v.as_str().expect("a string in forge.json").to_string();
        let user = |key: &str| {
            let u = &info["users"][key];
            ForgeUser {
                username: text(&u["username"]),
                password: text(&u["password"]),
                token: text(&u["token"]),
            }
        };
        let pr = &info["pr"];
        Forge {
            base_url: text(&info["base_url"]),
            version: text(&info["version"]),
            admin: user("admin"),
            bot: user("bot"),
            maintainer: user("maintainer"),
            outsider: user("outsider"),
            org: text(&info["org"]),
            repo: text(&info["repo"]),
            clone_url: text(&info["clone_url"]),
            pr: ForgePr {
                number: pr["number"].as_u64().expect("pr.number"),
                head_sha: text(&pr["head_sha"]),
                head_ref: text(&pr["head_ref"]),
                base_ref: text(&pr["base_ref"]),
            },
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                // A 303 from the membership check is an answer, not something to follow.
                .max_redirects(0)
                .build()
                .into(),
            dir,
        }
    }

    /// The instance's directory (app.ini, database, logs under log/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<base_url>/api/v1`
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.base_url)
    }

    /// One REST call as the token's owner: `path` is relative to /api/v1. Returns the status and
    /// the body as JSON (`Value::Null` when empty or not JSON). Never follows redirects.
    pub fn api(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.api_url());
        let auth = format!("token {token}");
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            (m, b) => {
                let payload = b.map(Value::to_string).unwrap_or_default();
                let req = match m {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    "PUT" => self.agent.put(&url),
                    other => panic!("unsupported method {other}"),
                };
                req.header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(payload)
            }
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Registers a repo webhook of type gitea (JSON body, signed with `secret`) for
    /// `issue_comment` and `pull_request` events; returns its id.
    pub fn add_webhook(&self, url: &str, secret: &str) -> u64 {
        let (status, hook) = self.api(
            &self.admin.token,
            "POST",
            &format!("/repos/{}/hooks", self.repo),
            Some(&serde_json::json!({
                "type": "gitea",
                "active": true,
                "events": ["issue_comment", "pull_request"],
                "config": {"url": url, "content_type": "json", "secret": secret},
            })),
        );
        assert_eq!(status, 201, "creating the webhook: {hook}");
        hook["id"].as_u64().expect("hook id")
    }

    /// Posts `body` as a comment on the set-up pull request as `user`; returns the comment.
    pub fn comment_on_pr(&self, user: &ForgeUser, body: &str) -> Value {
        let (status, comment) = self.api(
            &user.token,
            "POST",
            &format!("/repos/{}/issues/{}/comments", self.repo, self.pr.number),
            Some(&serde_json::json!({ "body": body })),
        );
        assert_eq!(status, 201, "commenting as {}: {comment}", user.username);
        comment
    }

    fn stop(&self) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/forge.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            // Panicking in drop would abort a test that is already unwinding.
            eprintln!(
                "stopping the test forge in {}: {e}",
                self.dir.path().display()
            );
        }
    }
}

/// One request the receiver got: headers in arrival order, the raw body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("delivery body is JSON")
    }
}

/// A webhook endpoint on a free loopback port that answers every POST with 200 and hands the
/// request to the test.
pub struct HookReceiver {
    port: u16,
    deliveries: Receiver<Delivery>,
    stop: Arc<AtomicBool>,
}

impl HookReceiver {
    pub fn start() -> HookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().unwrap().port();
        let (tx, deliveries) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Some(d) = read_request(conn) {
                    if tx.send(d).is_err() {
                        break;
                    }
                }
            }
        });
        HookReceiver {
            port,
            deliveries,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>/hook`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The next delivery, waiting at most `within`.
    pub fn next(&self, within: Duration) -> Option<Delivery> {
        self.deliveries.recv_timeout(within).ok()
    }

    /// The first delivery for which `matches` holds, skipping others, waiting at most `within`
    /// in all.
    pub fn wait_for(
        &self,
        within: Duration,
        matches: impl Fn(&Delivery) -> bool,
    ) -> Option<Delivery> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let d = self.deliveries.recv_timeout(left).ok()?;
            if matches(&d) {
                return Some(d);
            }
        }
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_request(conn: TcpStream) -> Option<Delivery> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let mut conn = reader.into_inner();
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some(Delivery {
        path,
        headers,
        body,
    })
}

/// HMAC-SHA256 (RFC 2104) as lowercase hex: what Gitea puts in X-Gitea-Signature. Written out
/// here so the tests check the service mode's verification against an independent one.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hmac_matches_rfc_4231_test_cases() {
    // Test case 2 (short key) and 6 (key longer than the block).
    assert_eq!(
        hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hmac_sha256_hex(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        ),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

/// The forge this module provides delivers what the service mode relies on: a signed
/// `issue_comment` webhook for a PR comment, and membership answers for the bot's token.
#[test]
fn forge_delivers_a_signed_pr_comment_and_answers_membership() {
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
    let mac = hmac_sha256_hex(secret.as_bytes(), &d.body);
    assert_eq!(d.header("X-Gitea-Signature"), Some(mac.as_str()));
    assert_eq!(
        d.header("X-Hub-Signature-256"),
        Some(format!("sha256={mac}").as_str())
    );
    let payload = d.json();
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["is_pull"], true);
    assert_eq!(payload["issue"]["number"], forge.pr.number);
    assert_eq!(payload["comment"]["body"], "!testme");
    assert_eq!(payload["sender"]["login"], "maintainer");
    assert_eq!(payload["repository"]["full_name"], forge.repo.as_str());

    let member = |user: &str| {
        forge
            .api(
                &forge.bot.token,
                "GET",
                &format!("/orgs/{}/members/{user}", forge.org),
                None,
            )
            .0
    };
    assert_eq!(member("maintainer"), 204);
    assert_eq!(member("outsider"), 404);

    let (status, pr) = forge.api(
        &forge.bot.token,
        "GET",
        &format!("/repos/{}/pulls/{}", forge.repo, forge.pr.number),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(pr["head"]["sha"], forge.pr.head_sha.as_str());
}
