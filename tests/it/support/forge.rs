//! A real forge for the service-mode tests: a throwaway Gitea on loopback (scripts/forge.sh,
//! binary from scripts/build-forge.sh), and a webhook receiver.
//!
//! `Forge::start()` sets up a fresh instance in its own temporary directory: org `coop-cloud`,
//! repo `coop-cloud/demo` from the demo recipe, pull request #1, and four users (site admin,
//! `ccci-bot` and `maintainer` in the org with write access, `outsider` in nothing). Dropping the
//! `Forge` stops the server; a watchdog stops it too if the test binary dies first. Setting one
//! up takes about 6 s (the API answers after about 0.6 s; users, tokens and the pushed recipe
//! take the rest), so each `forge` test starts one of its own.
//! docs/forge-facts.md lists what this Gitea was seen to answer.
//!
//! Tests that need it are registered as `forge` (see [`super::harness`]): listed as ignored when
//! this machine has no built Gitea ([`absence`]), and failing, never passing, when one runs
//! without it ([`require`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `None` when this machine has the pinned Gitea built; otherwise why not.
pub fn absence() -> Option<String> {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/build-forge.sh"))
        .arg("--check")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("scripts/build-forge.sh --check failed")
                .trim()
                .to_string(),
        ),
        Err(e) => Some(format!("cannot run scripts/build-forge.sh: {e}")),
    }
}

/// Fails the calling test, saying what to do, unless the Gitea is built. Every forge test makes
/// this check first: one that runs without it fails rather than building it for minutes.
pub fn require() {
    if let Some(reason) = absence() {
        panic!("this test needs the test forge: {reason}");
    }
}

/// One account on the forge.
#[derive(Debug, Clone)]
pub struct ForgeUser {
    pub username: String,
    pub token: String,
}

/// The pull request set up with the instance.
#[derive(Debug, Clone)]
pub struct ForgePr {
    pub number: u64,
    pub head_sha: String,
    pub head_ref: String,
}

/// A running throwaway Gitea. Stopped on drop.
pub struct Forge {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    /// Gitea's process, the leader of its own process group.
    pid: i32,
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
    /// Sets up and starts a fresh instance. Panics with the script's output when that fails.
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
            .stdin(Stdio::null())
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
                token: text(&u["token"]),
            }
        };
        let pr = &info["pr"];
        Forge {
            base_url: text(&info["base_url"]),
            pid: info["pid"].as_i64().expect("pid in forge.json") as i32,
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

    /// One REST call as the token's owner: `path` is relative to /api/v1. Returns the status and
    /// the body as JSON (`Value::Null` when empty or not JSON). Never follows redirects. For
    /// setting things up and reading them back independently of the client under test.
    pub fn api(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.base_url);
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
        self.comment_on(user, self.pr.number, body)
    }

    /// Posts `body` as a comment on issue or pull request `number` as `user`.
    pub fn comment_on(&self, user: &ForgeUser, number: u64, body: &str) -> Value {
        let (status, comment) = self.api(
            &user.token,
            "POST",
            &format!("/repos/{}/issues/{number}/comments", self.repo),
            Some(&serde_json::json!({ "body": body })),
        );
        assert_eq!(status, 201, "commenting as {}: {comment}", user.username);
        comment
    }

    /// Stops the instance with scripts/forge.sh. Gitea and the watchdog were re-parented to
    /// this test process (a subreaper, see `support::proc::init`) when the start script
    /// exited, so they stay zombies until reaped here; the script waits for their process
    /// groups to be gone, so they are reaped while it waits.
    fn stop(&self) -> Result<(), String> {
        let watchdog = std::fs::read_to_string(self.dir.path().join("watchdog.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        let groups: Vec<i32> = std::iter::once(self.pid).chain(watchdog).collect();
        let mut child = Command::new("bash")
            .arg(repo_root().join("scripts/forge.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        // forge.sh gives Gitea 20 s after SIGTERM, then kills it.
        let until = Instant::now() + Duration::from_secs(40);
        let status = loop {
            reap_zombies_in(&groups);
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return Err("scripts/forge.sh stop did not finish within 40s".to_string());
            }
            std::thread::sleep(super::proc::POLL);
        };
        reap_zombies_in(&groups);
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        if status.success() {
            Ok(())
        } else {
            Err(stderr)
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

/// Reaps the zombie children of this process whose process group is one of `groups`.
fn reap_zombies_in(groups: &[i32]) {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces: split after the last ')'.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let parsed = |i: usize| fields.get(i).and_then(|f| f.parse::<i32>().ok());
        if fields.first() == Some(&"Z")
            && parsed(1) == Some(me)
            && parsed(2).is_some_and(|g| groups.contains(&g))
        {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
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

    /// The first delivery for which `matches` holds, skipping others, waiting at most `within`
    /// in all.
    pub fn wait_for(
        &self,
        within: Duration,
        matches: impl Fn(&Delivery) -> bool,
    ) -> Option<Delivery> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
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
