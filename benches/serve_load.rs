//! `ccci serve` under load (not a test): the real binary, built in release, against a stand-in
//! forge on loopback, fed 1,000 signed webhook deliveries (250 distinct `!testme` comments,
//! each delivered 4 times, on 250 pull requests with heads of their own) and 1,000 forged ones
//! (a bad signature, no signature, another secret), shuffled together and sent by 4 clients at
//! once, each delivery on a connection of its own as a forge sends them. `GET /hook` requests
//! ride in the same stream: serve's router answers them 405 itself, touching nothing else, so
//! they are the floor of an HTTP round trip to serve under the same load.
//!
//! Measured: the accept latency of each delivery (connect → whole answer read, client side);
//! the time from the first delivery of a comment to its `pending` commit status arriving at
//! the forge; serve's resident memory idle after start and after the load; how long serve takes
//! to exit on SIGTERM with a queue still full. Checked, before any figure counts: every
//! comment became exactly one run (202 once, 200 duplicate three times; the store holds 250
//! runs, one per comment; `/metrics` agrees), every forged delivery got a 401 and recorded
//! nothing, and each head got exactly one `pending` status.
//!
//! Runs stay out of the measurement, as on a CI host, where a run takes minutes: serve runs
//! one at a time, and its `ccci test` finds at `DOCKER_HOST` a stand-in engine that takes the
//! connection and holds it, unanswered, until the figures are taken (then closes it, and the
//! queue drains fast). Runs finishing by the hundred a second would be nothing like a CI
//! host, and their processes and reports would be measured as intake latency.
//! Targets: accept p99 ≤ 5 ms, delivery → pending ≤ 200 ms, idle RSS ≤ 20 MB.
//!
//! Run with `cargo bench --bench serve_load`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const DISTINCT: usize = 250;
const COPIES: usize = 4;
const FORGED: usize = 1000;
/// Floor requests (`GET /hook`) mixed into the load, and sent alone before it.
const FLOOR: usize = 500;
const CLIENTS: usize = 4;
const REPO: &str = "coop-cloud/demo";
const SECRET: &str = "bench-webhook-secret";
const BOT: &str = "ccci-bot";
/// Comment ids of forged deliveries start here; none may ever reach the store.
const FORGED_IDS: u64 = 900_000;
/// How long serve is left alone before its idle memory is read.
const IDLE: Duration = Duration::from_secs(1);
/// How long any wait of the benchmark may take before it gives up.
const WAIT: Duration = Duration::from_secs(60);
/// How long serve may take to exit on SIGTERM before it counts as hung.
const STOP_LIMIT: Duration = Duration::from_secs(30);

const TARGET_ACCEPT_P99: Duration = Duration::from_millis(5);
const TARGET_PENDING: Duration = Duration::from_millis(200);
const TARGET_IDLE_RSS_BYTES: u64 = 20_000_000;

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let load = load_average();
    let dir = tempfile::tempdir().expect("temp dir");
    let forge = Forge::start();
    let engine = Engine::hold(&dir.path().join("engine.sock"));
    let mut serve = Serve::start(dir.path(), &forge.url, &engine.path);

    // Idle: listening, nothing asked of it yet.
    std::thread::sleep(IDLE);
    let idle = serve.memory();

    let quiet: Vec<Sent> = send_all(
        &serve.addr,
        (0..FLOOR).map(|_| Planned::floor(&serve.addr)).collect(),
    );
    let mut plan = Vec::with_capacity(DISTINCT * COPIES + FORGED + FLOOR);
    for comment in 0..DISTINCT {
        for _ in 0..COPIES {
            plan.push(Planned::signed(&serve.addr, &forge.url, comment));
        }
    }
    for n in 0..FORGED {
        plan.push(Planned::forged(&serve.addr, &forge.url, n));
    }
    for _ in 0..FLOOR {
        plan.push(Planned::floor(&serve.addr));
    }
    shuffle(&mut plan, 0x05ee_dcc1);
    let cpu_before = Cpu::read(serve.child.id());
    let started = Instant::now();
    let sent = send_all(&serve.addr, plan);
    let load_took = started.elapsed();
    let cpu = Cpu::read(serve.child.id()).since(&cpu_before);

    // Until every head has its pending status, or the bounded wait ends (the checks say so).
    let until = Instant::now() + WAIT;
    while forge.pending_heads() < DISTINCT && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = serve.memory();
    let metrics = serve.get("/metrics");
    let stored = stored_runs(&dir.path().join("state").join("serve.db"));
    // The held run ends (its engine hangs up) and the next ones start: SIGTERM comes with a
    // run running and the rest queued. (A run whose engine call hangs heeds SIGTERM only once
    // the call times out.)
    engine.release();
    let stop = serve.stop();
    let stderr = serve.stderr();
    let report = Report::new(&sent, &quiet, &forge, &metrics, stored, &stderr);
    forge.stop();
    report.print(load_took, [idle, after], &stop, &load, &stderr);
    cpu.print(load_took);
    if !report.correct() || stop.exited.is_none() {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// What is sent

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A signed delivery of comment `n`.
    Signed(usize),
    Forged(Forgery),
    /// `GET /hook`, answered 405 by the router alone.
    Floor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forgery {
    /// The right secret's signature with one digit changed.
    BadSignature,
    Unsigned,
    /// Signed, with a secret serve does not know.
    WrongSecret,
}

/// One request, ready to write: signing happens before the clock starts.
struct Planned {
    kind: Kind,
    bytes: Vec<u8>,
}

/// One request as it went.
struct Sent {
    kind: Kind,
    /// When its connection was opened.
    at: Instant,
    took: Duration,
    status: u16,
    body: String,
}

fn head_sha(comment: usize) -> String {
    format!("{:040x}", 0xbe7c_0000_u64 + comment as u64)
}

fn pr_of(comment: usize) -> u64 {
    comment as u64 + 1
}

fn comment_event(forge_url: &str, pr: u64, id: u64) -> Vec<u8> {
    serde_json::json!({
        "action": "created",
        "issue": { "number": pr, "pull_request": { "merged": false } },
        "comment": {
            "id": id,
            "body": "!testme install",
            "user": { "login": "maintainer" },
            "html_url": format!("{forge_url}/{REPO}/pulls/{pr}#issuecomment-{id}"),
        },
        "repository": { "full_name": REPO },
        "is_pull": true,
    })
    .to_string()
    .into_bytes()
}

fn sign(secret: &str, body: &[u8]) -> String {
    ccci::serve::webhook::sign(secret.as_bytes(), body)
}

fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

impl Planned {
    fn floor(addr: &str) -> Planned {
        Planned {
            kind: Kind::Floor,
            bytes: http(addr, "GET", "/hook", &[], b""),
        }
    }

    fn hook(addr: &str, kind: Kind, body: &[u8], signature: Option<String>) -> Planned {
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("X-Gitea-Event", "issue_comment".to_string()),
        ];
        if let Some(signature) = signature {
            headers.push(("X-Gitea-Signature", signature));
        }
        Planned {
            kind,
            bytes: http(addr, "POST", "/hook", &headers, body),
        }
    }

    fn signed(addr: &str, forge_url: &str, comment: usize) -> Planned {
        let body = comment_event(forge_url, pr_of(comment), 1_000 + comment as u64);
        let signature = sign(SECRET, &body);
        Planned::hook(addr, Kind::Signed(comment), &body, Some(signature))
    }

    fn forged(addr: &str, forge_url: &str, n: usize) -> Planned {
        let body = comment_event(forge_url, 10_000 + n as u64, FORGED_IDS + n as u64);
        let (forgery, signature) = match n % 3 {
            0 => {
                let mut signature = sign(SECRET, &body).into_bytes();
                signature[7] = if signature[7] == b'0' { b'1' } else { b'0' };
                (
                    Forgery::BadSignature,
                    Some(String::from_utf8(signature).expect("hex")),
                )
            }
            1 => (Forgery::Unsigned, None),
            _ => (Forgery::WrongSecret, Some(sign("not-the-secret", &body))),
        };
        Planned::hook(addr, Kind::Forged(forgery), &body, signature)
    }
}

/// A fixed shuffle (xorshift, Fisher–Yates): the same interleaving every run.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Sends `plan` from [`CLIENTS`] threads at once (request `i` from client `i % CLIENTS`), each
/// request on a new connection, as fast as answers come.
fn send_all(addr: &str, plan: Vec<Planned>) -> Vec<Sent> {
    let mut lanes: Vec<Vec<Planned>> = (0..CLIENTS).map(|_| Vec::new()).collect();
    for (i, planned) in plan.into_iter().enumerate() {
        lanes[i % CLIENTS].push(planned);
    }
    let clients: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                lane.into_iter()
                    .map(|p| send(&addr, p))
                    .collect::<Vec<Sent>>()
            })
        })
        .collect();
    clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread"))
        .collect()
}

fn send(addr: &str, planned: Planned) -> Sent {
    let at = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect to serve");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream.write_all(&planned.bytes).expect("send the request");
    let mut answer = Vec::new();
    // serve closes the connection after its answer (`Connection: close`).
    let _ = stream.read_to_end(&mut answer);
    let took = at.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Sent {
        kind: planned.kind,
        at,
        took,
        status,
        body,
    }
}

// ---------------------------------------------------------------------------------------
// The stand-in forge

/// A forge that answers what serve asks of it for these runs, and notes when each `pending`
/// status arrives. Git (the runs' clone) gets 404.
struct Forge {
    server: Arc<tiny_http::Server>,
    url: String,
    log: Arc<Mutex<ForgeLog>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A docker engine socket that takes connections and answers nothing until released: a run's
/// first question to the engine waits there, as a real run waits minutes on its deploy.
struct Engine {
    path: std::path::PathBuf,
    released: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Engine {
    fn hold(path: &Path) -> Engine {
        let listener = std::os::unix::net::UnixListener::bind(path).expect("an engine socket");
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = released.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                held.extend(stream.ok());
            }
        });
        Engine {
            path: path.to_path_buf(),
            released,
            thread,
        }
    }

    /// Closes every held connection, and every later one at once.
    fn release(self) {
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accepting thread, which sees the release and drops what it held.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        let _ = self.thread.join();
    }
}

#[derive(Default)]
struct ForgeLog {
    /// Head sha → arrival of each `pending` status on it.
    pending: HashMap<String, Vec<Instant>>,
    /// Requests by what they were for.
    calls: HashMap<&'static str, usize>,
    /// Requests this forge has no answer for (other than git).
    unexpected: Vec<String>,
    next_comment: u64,
}

const FORGE_THREADS: usize = 4;

impl Forge {
    fn start() -> Forge {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("a loopback port"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let log = Arc::new(Mutex::new(ForgeLog::default()));
        let threads = (0..FORGE_THREADS)
            .map(|_| {
                let (server, log) = (server.clone(), log.clone());
                std::thread::spawn(move || {
                    while let Ok(request) = server.recv() {
                        answer(request, &log);
                    }
                })
            })
            .collect();
        Forge {
            server,
            url: format!("http://127.0.0.1:{port}"),
            log,
            threads,
        }
    }

    /// How many heads have a `pending` status.
    fn pending_heads(&self) -> usize {
        self.log.lock().expect("forge log").pending.len()
    }

    fn stop(self) {
        for _ in 0..FORGE_THREADS {
            self.server.unblock();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn answer(mut request: tiny_http::Request, log: &Mutex<ForgeLog>) {
    let at = Instant::now();
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let api = path.strip_prefix("/api/v1").unwrap_or("");
    let repo_api = api.strip_prefix(&format!("/repos/{REPO}")).unwrap_or("");
    let segments: Vec<&str> = repo_api.trim_start_matches('/').split('/').collect();
    let (what, status, reply): (&'static str, u16, String) = {
        let mut log = log.lock().expect("forge log");
        match (method.as_str(), segments.as_slice()) {
            _ if api == "/user" => ("user", 200, serde_json::json!({ "login": BOT }).to_string()),
            _ if api.starts_with("/orgs/coop-cloud/members/") => {
                let member = api.ends_with("/maintainer");
                ("membership", if member { 204 } else { 404 }, String::new())
            }
            ("GET", ["pulls", n]) => match n.parse::<usize>() {
                Ok(n) if (1..=DISTINCT).contains(&n) => {
                    ("pull", 200, pull_request(&url_root(&request), n as u64))
                }
                _ => ("pull", 404, "{\"message\":\"not found\"}".into()),
            },
            ("POST", ["statuses", sha]) => {
                let state = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["state"].as_str().map(str::to_string))
                    .unwrap_or_default();
                if state == "pending" {
                    log.pending.entry(sha.to_string()).or_default().push(at);
                }
                ("status", 201, "{}".into())
            }
            ("POST", ["issues", "comments", _, "reactions"]) => ("reaction", 201, "{}".into()),
            ("GET", ["issues", _, "comments"]) => ("comments", 200, "[]".into()),
            ("POST", ["issues", _, "comments"]) | ("PATCH", ["issues", "comments", _]) => {
                log.next_comment += 1;
                let id = 500_000 + log.next_comment;
                (
                    "summary",
                    if method == "POST" { 201 } else { 200 },
                    serde_json::json!({ "id": id, "user": { "login": BOT } }).to_string(),
                )
            }
            _ if path.contains(".git") => ("git", 404, String::new()),
            _ => {
                log.unexpected.push(format!("{method} {url}"));
                ("unexpected", 404, String::new())
            }
        }
    };
    *log.lock()
        .expect("forge log")
        .calls
        .entry(what)
        .or_default() += 1;
    let mut response = tiny_http::Response::from_string(reply).with_status_code(status);
    response.add_header(
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
            .expect("a valid header"),
    );
    let _ = request.respond(response);
}

fn url_root(request: &tiny_http::Request) -> String {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| format!("http://{}", h.value))
        .unwrap_or_default()
}

fn pull_request(root: &str, n: u64) -> String {
    let comment = (n - 1) as usize;
    serde_json::json!({
        "number": n,
        "state": "open",
        "merged": false,
        "html_url": format!("{root}/{REPO}/pulls/{n}"),
        "head": { "sha": head_sha(comment), "ref": format!("pr-{n}"),
                  "repo": { "clone_url": format!("{root}/{REPO}.git") } },
        "base": { "sha": "0".repeat(40), "ref": "main",
                  "repo": { "clone_url": format!("{root}/{REPO}.git") } },
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------
// serve

struct Serve {
    child: Child,
    addr: String,
    /// serve's stderr lines, each with the instant it was read.
    stderr: Arc<Mutex<Vec<(Instant, String)>>>,
}

/// Resident memory, from /proc/<pid>/status.
#[derive(Clone, Copy, Default)]
struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

struct Stopped {
    /// How long serve took to exit after SIGTERM; `None`: not within [`STOP_LIMIT`].
    exited: Option<Duration>,
    code: Option<i32>,
}

impl Serve {
    fn start(dir: &Path, forge_url: &str, engine: &Path) -> Serve {
        let exe = env!("CARGO_BIN_EXE_ccci");
        std::fs::write(dir.join("forge-token"), "bench-token").expect("token file");
        std::fs::write(dir.join("hook-secret"), SECRET).expect("secret file");
        let config = format!(
            "serve:\n  listen: 127.0.0.1:0\n  forge:\n    url: {forge_url}\n    token: {{file: {token}}}\n  webhook_secrets: [{{file: {secret}}}]\n  repos: [{REPO}]\n  authorize: org_member\n  concurrency: 1\n  poll_interval: off\n  driver: stack\n  state_dir: {state}\n",
            token = dir.join("forge-token").display(),
            secret = dir.join("hook-secret").display(),
            state = dir.join("state").display(),
        );
        std::fs::write(dir.join("config.yml"), config).expect("config file");
        let mut child = Command::new(exe)
            .arg("serve")
            .env("CCCI_CONFIG", dir.join("config.yml"))
            .env("CCCI_RUNS_DIR", dir.join("runs"))
            .env("CCCI_APP_LOCK_DIR", dir.join("locks"))
            .env("ABRA_DIR", dir.join("abra"))
            .env("DOCKER_HOST", format!("unix://{}", engine.display()))
            .env_remove("CCCI_STATE_DIR")
            .env_remove("CCCI_SKIP_FETCH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe} serve: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().expect("serve's stderr"));
        let keep = stderr.clone();
        // Drained all along, so serve never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.lines().map_while(|l| l.ok()) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                keep.lock()
                    .expect("stderr lines")
                    .push((Instant::now(), line));
            }
        });
        let addr = match rx.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let said: Vec<String> = stderr
                    .lock()
                    .expect("stderr lines")
                    .iter()
                    .map(|(_, l)| l.clone())
                    .collect();
                let said = said.join("\n");
                panic!("ccci serve did not start listening within {WAIT:?}:\n{said}");
            }
        };
        Serve {
            child,
            addr,
            stderr,
        }
    }

    fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("serve's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in serve's /proc status"))
        };
        Memory {
            rss_kb: field("VmRSS:"),
            hwm_kb: field("VmHWM:"),
        }
    }

    fn get(&self, path: &str) -> String {
        let sent = send(
            &self.addr,
            Planned {
                kind: Kind::Floor,
                bytes: http(&self.addr, "GET", path, &[], b""),
            },
        );
        assert_eq!(sent.status, 200, "GET {path}: {}", sent.body);
        sent.body
    }

    /// SIGTERM, and how long serve takes to exit; SIGKILL after [`STOP_LIMIT`].
    fn stop(&mut self) -> Stopped {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let at = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM serve");
        while at.elapsed() < STOP_LIMIT {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                return Stopped {
                    exited: Some(at.elapsed()),
                    code: status.code(),
                };
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Stopped {
            exited: None,
            code: None,
        }
    }

    fn stderr(&self) -> Vec<(Instant, String)> {
        self.stderr.lock().expect("stderr lines").clone()
    }
}

/// What the store holds: runs, distinct comments among them, runs of forged comments.
struct Stored {
    runs: u64,
    comments: u64,
    forged: u64,
    finished: u64,
}

fn stored_runs(db: &Path) -> Stored {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open serve's database");
    conn.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT comment_id), COUNT(CASE WHEN comment_id >= ?1 THEN 1 END),
                COUNT(CASE WHEN state = 'done' THEN 1 END) FROM runs",
        [FORGED_IDS as i64],
        |r| {
            Ok(Stored {
                runs: r.get::<_, i64>(0)? as u64,
                comments: r.get::<_, i64>(1)? as u64,
                forged: r.get::<_, i64>(2)? as u64,
                finished: r.get::<_, i64>(3)? as u64,
            })
        },
    )
    .expect("count serve's runs")
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------
// Figures and checks

struct Report {
    signed: Vec<Duration>,
    forged: Vec<Duration>,
    floor_load: Vec<Duration>,
    floor_quiet: Vec<Duration>,
    /// First delivery of a comment → its pending status, for each comment that got one.
    pending: Vec<Duration>,
    /// First delivery of a comment → serve's `queued` line (triage done), to tell the
    /// triage's share of the above from the reporter's.
    queued: Vec<Duration>,
    checks: Vec<(String, bool)>,
    forge_calls: String,
}

impl Report {
    fn new(
        sent: &[Sent],
        quiet: &[Sent],
        forge: &Forge,
        metrics: &str,
        stored: Stored,
        stderr: &[(Instant, String)],
    ) -> Report {
        let of = |want: fn(&Kind) -> bool| -> Vec<Duration> {
            sent.iter()
                .filter(|s| want(&s.kind))
                .map(|s| s.took)
                .collect()
        };
        let mut checks = Vec::new();
        let mut check = |what: String, ok: bool| checks.push((what, ok));

        // Each comment: one 202 "run N", three 200 "duplicate".
        let mut first: HashMap<usize, Instant> = HashMap::new();
        let mut accepted = vec![0usize; DISTINCT];
        let mut duplicates = vec![0usize; DISTINCT];
        let mut odd = Vec::new();
        for s in sent {
            match s.kind {
                Kind::Signed(c) => {
                    let at = first.entry(c).or_insert(s.at);
                    *at = (*at).min(s.at);
                    match s.status {
                        202 if s.body.starts_with("run ") => accepted[c] += 1,
                        200 if s.body.starts_with("duplicate") => duplicates[c] += 1,
                        _ => odd.push(format!("signed: {} {}", s.status, s.body)),
                    }
                }
                Kind::Forged(f) if s.status != 401 => {
                    odd.push(format!("forged ({f:?}): {} {}", s.status, s.body))
                }
                Kind::Floor if s.status != 405 => {
                    odd.push(format!("GET /hook: {} {}", s.status, s.body))
                }
                _ => {}
            }
        }
        for q in quiet.iter().filter(|s| s.status != 405) {
            odd.push(format!("GET /hook: {} {}", q.status, q.body));
        }
        let once = accepted.iter().all(|n| *n == 1);
        let dup = duplicates.iter().all(|n| *n == COPIES - 1);
        check(
            format!(
                "answers: {} comments accepted once, {} with {} duplicates, {} odd answers{}",
                accepted.iter().filter(|n| **n == 1).count(),
                duplicates.iter().filter(|n| **n == COPIES - 1).count(),
                COPIES - 1,
                odd.len(),
                odd.first()
                    .map(|o| format!(" (first: {o})"))
                    .unwrap_or_default()
            ),
            once && dup && odd.is_empty(),
        );
        let counter = |name: &str, label: &str| -> u64 {
            let prefix = format!("{name}{{{label}}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let deliveries = "ccci_webhook_deliveries_total";
        let rejections = "ccci_webhook_rejections_total";
        let (m_acc, m_dup) = (
            counter(deliveries, "outcome=\"accepted\""),
            counter(deliveries, "outcome=\"duplicate\""),
        );
        let (m_bad, m_unsigned) = (
            counter(rejections, "cause=\"bad_signature\""),
            counter(rejections, "cause=\"unsigned\""),
        );
        let unsigned = sent
            .iter()
            .filter(|s| s.kind == Kind::Forged(Forgery::Unsigned))
            .count() as u64;
        check(
            format!(
                "/metrics: {m_acc} accepted, {m_dup} duplicate, {} rejected ({m_bad} bad signature, {m_unsigned} unsigned)",
                m_bad + m_unsigned
            ),
            m_acc == DISTINCT as u64
                && m_dup == (DISTINCT * (COPIES - 1)) as u64
                && m_bad == FORGED as u64 - unsigned
                && m_unsigned == unsigned,
        );
        let forge_errors: u64 = metrics
            .lines()
            .filter(|l| l.starts_with("ccci_forge_api_errors_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        check(
            format!("/metrics: {forge_errors} forge API errors"),
            forge_errors == 0,
        );
        check(
            format!(
                "store: {} runs for {} distinct comments, {} from forged deliveries ({} finished by then)",
                stored.runs, stored.comments, stored.forged, stored.finished
            ),
            stored.runs == DISTINCT as u64
                && stored.comments == DISTINCT as u64
                && stored.forged == 0,
        );

        let log = forge.log.lock().expect("forge log");
        let mut pending = Vec::new();
        let mut doubled = 0;
        for c in 0..DISTINCT {
            if let (Some(arrivals), Some(sent_at)) = (log.pending.get(&head_sha(c)), first.get(&c))
            {
                doubled += usize::from(arrivals.len() > 1);
                pending.push(arrivals[0].saturating_duration_since(*sent_at));
            }
        }
        check(
            format!(
                "forge: {} of {DISTINCT} heads got a pending status, {doubled} more than one; {} unexpected requests{}",
                pending.len(),
                log.unexpected.len(),
                log.unexpected
                    .first()
                    .map(|u| format!(" (first: {u})"))
                    .unwrap_or_default()
            ),
            pending.len() == DISTINCT && doubled == 0 && log.unexpected.is_empty(),
        );
        let heads: HashMap<String, usize> = (0..DISTINCT).map(|c| (head_sha(c), c)).collect();
        let queued = stderr
            .iter()
            .filter(|(_, line)| line.contains(": queued at "))
            .filter_map(|(at, line)| {
                let c = heads.get(line.split_whitespace().last()?)?;
                Some(at.saturating_duration_since(*first.get(c)?))
            })
            .collect();
        let mut calls: Vec<_> = log.calls.iter().collect();
        calls.sort();
        let forge_calls = calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        drop(log);

        Report {
            signed: of(|k| matches!(k, Kind::Signed(_))),
            forged: of(|k| matches!(k, Kind::Forged(_))),
            floor_load: of(|k| *k == Kind::Floor),
            floor_quiet: quiet.iter().map(|s| s.took).collect(),
            pending,
            queued,
            checks,
            forge_calls,
        }
    }

    fn correct(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok)
    }

    fn print(
        &self,
        load_took: Duration,
        [idle, after]: [Memory; 2],
        stop: &Stopped,
        load: &str,
        stderr: &[(Instant, String)],
    ) {
        let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
        println!(
            "ccci serve load benchmark: {DISTINCT} comments × {COPIES} signed deliveries, {FORGED} forged, {FLOOR} GET /hook (the floor), shuffled, {CLIENTS} clients, a connection each"
        );
        println!(
            "  machine: {} cores, load average {load} at the start",
            cores()
        );
        println!(
            "  {:<34} {:>9} {:>9} {:>9}",
            "latency (client side)", "p50", "p99", "max"
        );
        let row = |name: &str, times: &[Duration], target: &str| {
            println!(
                "  {name:<34} {:>9} {:>9} {:>9}  {target}",
                ms(pct(times, 0.50)),
                ms(pct(times, 0.99)),
                ms(pct(times, 1.0))
            );
        };
        let accept_p99 = pct(&self.signed, 0.99);
        let pending_p99 = pct(&self.pending, 0.99);
        row(
            &format!("accept, signed ({})", self.signed.len()),
            &self.signed,
            &format!(
                "target p99 ≤ 5 ms: {}",
                verdict(accept_p99 <= TARGET_ACCEPT_P99)
            ),
        );
        row(
            &format!("reject, forged ({})", self.forged.len()),
            &self.forged,
            "",
        );
        row(
            &format!("GET /hook → 405, same load ({})", self.floor_load.len()),
            &self.floor_load,
            "",
        );
        row(
            &format!("GET /hook → 405, quiet ({})", self.floor_quiet.len()),
            &self.floor_quiet,
            "",
        );
        row(
            &format!("delivery → pending ({})", self.pending.len()),
            &self.pending,
            &format!(
                "target p99 ≤ 200 ms: {}",
                verdict(!self.pending.is_empty() && pending_p99 <= TARGET_PENDING)
            ),
        );
        row(
            &format!("  of which → queued ({})", self.queued.len()),
            &self.queued,
            "(serve's `queued` line: triage done)",
        );
        let ratio = |a: &[Duration], b: &[Duration], q: f64| {
            pct(a, q).as_secs_f64() / pct(b, q).as_secs_f64().max(1e-9)
        };
        println!(
            "  ratios to the floor (GET /hook) under the same load: signed accept p50 {:.2}×, p99 {:.2}×; forged p50 {:.2}×, p99 {:.2}×",
            ratio(&self.signed, &self.floor_load, 0.5),
            ratio(&self.signed, &self.floor_load, 0.99),
            ratio(&self.forged, &self.floor_load, 0.5),
            ratio(&self.forged, &self.floor_load, 0.99),
        );
        let total = self.signed.len() + self.forged.len() + self.floor_load.len();
        println!(
            "  intake: {total} requests in {:.2} s ({:.0}/s)",
            load_took.as_secs_f64(),
            total as f64 / load_took.as_secs_f64()
        );
        println!(
            "  serve RSS idle {} (VmHWM {}), target ≤ 20 MB: {}; after the load {} (VmHWM {})",
            mb(idle.rss_kb),
            mb(idle.hwm_kb),
            verdict(idle.rss_kb * 1024 <= TARGET_IDLE_RSS_BYTES),
            mb(after.rss_kb),
            mb(after.hwm_kb)
        );
        match stop.exited {
            Some(took) => println!(
                "  SIGTERM with runs still queued → serve exited in {} (code {})",
                ms(took),
                stop.code.map_or("signal".into(), |c| c.to_string())
            ),
            None => println!(
                "  SIGTERM with runs still queued → serve still running after {STOP_LIMIT:?}: MISS (killed)"
            ),
        }
        println!("  forge calls: {}", self.forge_calls);
        for (what, ok) in &self.checks {
            println!("  {}  {what}", verdict(*ok));
        }
        if !self.correct() {
            println!("  serve's last words:");
            for (_, line) in stderr.iter().rev().take(20).rev() {
                println!("    {line}");
            }
        }
    }
}

/// CPU time spent so far, in clock ticks, from /proc: serve's threads grouped by name (digits
/// dropped: `triage-0` and `triage-1` are `triage-`), the runs it has waited for, and this
/// benchmark's own clients and stand-in forge.
#[derive(Default)]
struct Cpu {
    /// serve's own threads, ended ones too.
    serve: u64,
    threads: std::collections::BTreeMap<String, u64>,
    runs: u64,
    bench: u64,
}

impl Cpu {
    fn read(pid: u32) -> Cpu {
        let mut cpu = Cpu::default();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("serve's threads");
        for task in tasks.flatten() {
            // Threads end while being read (idle connection threads retire): skip those.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (name, times) = stat_times(&stat);
            let group = name
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_string();
            *cpu.threads.entry(group).or_default() += times[0] + times[1];
        }
        let serve = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("serve's stat");
        let times = stat_times(&serve).1;
        cpu.serve = times[0] + times[1];
        cpu.runs = times[2] + times[3];
        let own = std::fs::read_to_string("/proc/self/stat").expect("own stat");
        cpu.bench = stat_times(&own).1[..2].iter().sum();
        cpu
    }

    /// What was spent since `before`; threads that ended meanwhile are lost to the sum.
    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            serve: self.serve.saturating_sub(before.serve),
            threads: self
                .threads
                .iter()
                .map(|(name, t)| {
                    let was = before.threads.get(name).copied().unwrap_or(0);
                    (name.clone(), t.saturating_sub(was))
                })
                .filter(|(_, t)| *t > 0)
                .collect(),
            runs: self.runs.saturating_sub(before.runs),
            bench: self.bench.saturating_sub(before.bench),
        }
    }

    fn print(&self, wall: Duration) {
        let tick = |t: u64| format!("{} ms", t * 1000 / ticks_per_second());
        let threads: Vec<String> = self
            .threads
            .iter()
            .map(|(name, t)| format!("{name} {}", tick(*t)))
            .collect();
        println!(
            "  CPU while the load ran ({} wall on {} cores): serve {} (threads still there after: {}); serve's runs {}; this benchmark (clients, stand-in forge) {}",
            ms(wall),
            cores(),
            tick(self.serve),
            threads.join(", "),
            tick(self.runs),
            tick(self.bench),
        );
    }
}

/// A /proc stat line's command name and its utime, stime, cutime, cstime.
fn stat_times(stat: &str) -> (&str, [u64; 4]) {
    // The name is in parentheses and may hold spaces; the fields after it are plain.
    let open = stat.find('(').unwrap_or(0);
    let close = stat.rfind(')').unwrap_or(stat.len());
    let name = &stat[(open + 1).min(close)..close];
    let fields: Vec<u64> = stat[close + 1..]
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Fields 14–17 of the line; the state (field 3) is the first after the name.
    let at = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
    (name, [at(14), at(15), at(16), at(17)])
}

fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// The `q` quantile (nearest rank) of `times`.
fn pct(times: &[Duration], q: f64) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 * 1024.0 / 1e6)
}
