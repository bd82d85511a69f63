//! `ccci logs` and the live log: a local log followed while it grows, a served log followed
//! over SSE from a tiny_http server in the test (the same `livelog::respond` the service mode
//! calls) with a dropped stream resumed by `Last-Event-ID`, the SSE framing read off a raw
//! socket, the plain-text answer, and the errors.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ccci::run::record::RunRecord;
use ccci::serve::livelog::{
    self, Format, LogRequest, SseEvent, SseParser, StreamEnd, StreamOptions,
};
use ccci::serve::logs::run_finished;
use ccci::sys::cancel::Cancel;

use crate::support::proc::wait_until;
use crate::support::sandbox::Sandbox;

crate::tests! {
    local: follows_a_growing_local_log_until_the_run_finishes,
    local: prints_the_log_so_far_and_exits,
    local: an_unknown_run_is_a_usage_error,
    local: follows_a_served_log_and_resumes_after_the_stream_drops,
    local: the_sse_framing_holds_over_a_real_socket,
    local: prints_a_served_log_so_far_as_plain_text,
    local: gives_up_after_bounded_reconnects,
    local: output_into_a_closed_pipe_ends_quietly,
}

/// A run in the sandbox that has started and not finished, with `log` as its log so far.
fn start_run(sb: &Sandbox, id: &str, log: &str) -> PathBuf {
    let dir = sb.run_dir(id);
    std::fs::create_dir_all(&dir).unwrap();
    RunRecord::new(id, "demo", "/src", "stack")
        .write(&dir.join("run.json"))
        .unwrap();
    std::fs::write(dir.join("log"), log).unwrap();
    dir
}

fn append(run: &Path, text: &str) {
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("log"))
        .unwrap();
    log.write_all(text.as_bytes()).unwrap();
}

/// Writes run.json as a run does when it ends.
fn finish(run: &Path) {
    let path = run.join("run.json");
    let mut record = RunRecord::read(&path).unwrap();
    record.finished_at = Some(ccci::run::record::now_rfc3339());
    record.write(&path).unwrap();
}

fn lines(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(|i| format!("line {i}\n")).collect()
}

fn follows_a_growing_local_log_until_the_run_finishes() {
    let sb = Sandbox::new("");
    let run = start_run(&sb, "r1", &lines(1..=2));
    let mut logs = sb.ccci().args(["logs", "r1", "--follow"]).spawn();
    logs.wait_for_stdout("line 2\n");
    // In lockstep: each line shows up while the run goes on.
    for i in 3..=5 {
        append(&run, &format!("line {i}\n"));
        logs.wait_for_stdout(&format!("line {i}\n"));
    }
    // Then a burst that ends with an unterminated line and the run's end right after it:
    // every line written before the run finished is printed, once.
    let writer = {
        let run = run.clone();
        std::thread::spawn(move || {
            for i in 6..=300 {
                append(&run, &format!("line {i}\n"));
            }
            append(&run, "the end, unterminated");
            finish(&run);
        })
    };
    writer.join().unwrap();
    let out = logs.wait();
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout == format!("{}the end, unterminated\n", lines(1..=300)),
        "{out}"
    );
}

fn prints_the_log_so_far_and_exits() {
    let sb = Sandbox::new("");
    let run = start_run(&sb, "r1", "a\nb\r\nhalf a li");
    // The run goes on; without --follow the command does not wait for it.
    for arg in ["r1".to_string(), run.display().to_string()] {
        let out = sb.ccci().args(["logs", &arg]).run();
        assert_eq!(out.code(), Some(0), "{out}");
        assert_eq!(out.stdout, "a\nb\nhalf a li\n", "{arg}: {out}");
        assert_eq!(out.stderr, "", "{arg}: {out}");
    }
}

fn an_unknown_run_is_a_usage_error() {
    let sb = Sandbox::new("");
    start_run(&sb, "r1", "x\n");
    let out = sb.ccci().args(["logs", "nope", "--follow"]).run();
    assert_eq!(out.code(), Some(2), "{out}");
    let runs = sb.path("runs").display().to_string();
    let errors = out.error_lines();
    assert!(
        errors.len() == 1 && errors[0].contains("no run `nope`") && errors[0].contains(&runs),
        "{out}"
    );
    assert_eq!(out.stdout, "");

    let out = sb
        .ccci()
        .args(["logs", "http://127.0.0.1:9/dashboard"])
        .run();
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.error_lines()[0].contains("…/runs/<id>"), "{out}");

    let server = LogServer::start(sb.path("runs"), StreamOptions::default());
    let url = format!("{}/runs/nope", server.url);
    let out = sb.ccci().args(["logs", &url, "--follow"]).run();
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.error_lines()[0].contains("404"), "{out}");

    // Nothing listens there: one line, at once, no retries.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/runs/r1");
    let out = sb.ccci().args(["logs", &url, "--follow"]).run();
    assert_eq!(out.code(), Some(3), "{out}");
    assert_eq!(out.error_lines().len(), 1, "{out}");
    assert!(out.stderr.contains("cannot reach"), "{out}");
    assert!(!out.stderr.contains("reconnecting"), "{out}");
}

fn follows_a_served_log_and_resumes_after_the_stream_drops() {
    let sb = Sandbox::new("");
    let run = start_run(&sb, "r1", &lines(1..=3));
    let server = LogServer::start(
        sb.path("runs"),
        StreamOptions {
            retry: Some(Duration::from_millis(50)),
            poll: Duration::from_millis(20),
            ..StreamOptions::default()
        },
    );
    let url = format!("{}/runs/r1", server.url);
    let mut logs = sb.ccci().args(["logs", &url, "--follow"]).spawn();
    logs.wait_for_stdout("line 3\n");
    // The server ends the stream without `eof` (as a proxy timing out or a restart does).
    server.drop_streams();
    wait_until("the first stream to end", || server.ends().len() == 1);
    assert_eq!(server.ends()[0], StreamEnd::Stopped { last_line: 3 });
    append(&run, &lines(4..=4));
    logs.wait_for_stdout("line 4\n");
    logs.wait_for_line("reconnecting in 50ms", 1);
    append(&run, &lines(5..=20));
    finish(&run);
    let out = logs.wait();
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout == lines(1..=20),
        "every line once, in order: {out}"
    );
    let seen = server.seen();
    let asked: Vec<_> = seen
        .iter()
        .map(|s| {
            (
                s.path.as_str(),
                s.last_event_id.as_deref(),
                s.accept.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        asked,
        [
            ("/runs/r1/log", None, Some("text/event-stream")),
            ("/runs/r1/log", Some("3"), Some("text/event-stream")),
        ],
        "{out}"
    );
    // The client can be gone before the server's thread records how its stream ended.
    wait_until("the second stream to end", || server.ends().len() == 2);
    assert_eq!(server.ends()[1], StreamEnd::Finished { last_line: 20 });
}

fn the_sse_framing_holds_over_a_real_socket() {
    let sb = Sandbox::new("");
    let run = start_run(&sb, "r1", &lines(1..=5));
    let server = LogServer::start(
        sb.path("runs"),
        StreamOptions {
            ping_every: Duration::from_millis(20),
            poll: Duration::from_millis(5),
            ..StreamOptions::default()
        },
    );
    let mut conn = Raw::get(
        &server,
        "/runs/r1/log",
        &[("Accept", "text/event-stream"), ("Last-Event-ID", "2")],
    );
    assert_eq!(conn.status, "HTTP/1.1 200 OK");
    for (name, value) in Format::Sse.headers() {
        assert_eq!(
            conn.header(name),
            Some(*value),
            "{name}: {:?}",
            conn.headers
        );
    }
    assert_eq!(conn.header("transfer-encoding"), Some("chunked"));

    // Resumed after line 2; then idle, so pinged.
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = Vec::new();
    let mut raw = String::new();
    while events.len() < 3 || !raw.contains("\n\n: ping\n\n") {
        let chunk = conn.chunk().expect("the stream goes on while the run does");
        raw.push_str(&chunk);
        parser.feed(chunk.as_bytes(), &mut events).unwrap();
    }
    append(&run, "line 6\nand a last line without its newline");
    finish(&run);
    while let Some(chunk) = conn.chunk() {
        raw.push_str(&chunk);
        parser.feed(chunk.as_bytes(), &mut events).unwrap();
    }
    // The last chunk ends the body, and the connection closes after it.
    assert_eq!(conn.rest(), "", "bytes after the last chunk");
    let ids: Vec<_> = events
        .iter()
        .map(|e| e.id.as_deref().unwrap_or("-"))
        .collect();
    assert_eq!(ids, ["3", "4", "5", "6", "7", "7"], "{raw}");
    let data: Vec<_> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(
        data,
        [
            "line 3",
            "line 4",
            "line 5",
            "line 6",
            "and a last line without its newline",
            "7"
        ]
    );
    let kinds: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        ["message", "message", "message", "message", "message", "eof"]
    );
    // Each line is one event: `id:` then `data:` then a blank line, in order.
    assert!(
        raw.contains("id: 3\ndata: line 3\n\nid: 4\ndata: line 4\n\nid: 5\ndata: line 5\n\n"),
        "{raw}"
    );
    assert!(raw.ends_with("event: eof\ndata: 7\n\n"), "{raw}");

    // Resuming at the end of a finished run: only `eof`.
    let mut conn = Raw::get(
        &server,
        "/runs/r1/log",
        &[("Accept", "text/event-stream"), ("Last-Event-ID", "7")],
    );
    assert_eq!(conn.body(), "event: eof\ndata: 7\n\n");

    // curl's `Accept: */*` gets plain text.
    let mut conn = Raw::get(&server, "/runs/r1/log", &[("Accept", "*/*")]);
    for (name, value) in Format::Plain.headers() {
        assert_eq!(
            conn.header(name),
            Some(*value),
            "{name}: {:?}",
            conn.headers
        );
    }
    assert_eq!(
        conn.body(),
        format!("{}and a last line without its newline\n", lines(1..=6))
    );
}

fn prints_a_served_log_so_far_as_plain_text() {
    let sb = Sandbox::new("");
    start_run(&sb, "r1", "one\ntwo\nthr");
    let server = LogServer::start(sb.path("runs"), StreamOptions::default());
    let url = format!("{}/runs/r1/log", server.url);
    let out = sb.ccci().args(["logs", &url]).run();
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stdout, "one\ntwo\nthr\n");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].query.as_deref(), Some("follow=0"));
    assert_eq!(seen[0].accept.as_deref(), Some("text/plain"));
    wait_until("the stream to end", || !server.ends().is_empty());
    assert_eq!(server.ends(), [StreamEnd::Finished { last_line: 3 }]);
}

fn gives_up_after_bounded_reconnects() {
    let sb = Sandbox::new("");
    start_run(&sb, "r1", &lines(1..=2));
    let mut server = LogServer::start(
        sb.path("runs"),
        StreamOptions {
            retry: Some(Duration::from_millis(20)),
            poll: Duration::from_millis(20),
            ..StreamOptions::default()
        },
    );
    let url = format!("{}/runs/r1/log", server.url);
    let mut logs = sb.ccci().args(["logs", &url, "--follow"]).spawn();
    logs.wait_for_stdout("line 2\n");
    // The server goes away for good: no more connections, then its stream ends.
    let streams = server.stop();
    streams.trip(15);
    let out = logs.wait();
    assert_eq!(out.code(), Some(3), "{out}");
    assert_eq!(out.stdout, lines(1..=2));
    let errors = out.error_lines();
    assert!(
        errors.len() == 1 && errors[0].contains("gave up after 10 reconnects"),
        "{out}"
    );
    assert_eq!(
        out.stderr.matches("reconnecting in 20ms").count(),
        10,
        "{out}"
    );
}

fn output_into_a_closed_pipe_ends_quietly() {
    let sb = Sandbox::new("");
    // Long enough that `head` is gone before ccci has written it all.
    let run = start_run(&sb, "r1", &lines(1..=200_000));
    let runs = sb.path("runs").display().to_string();
    let config = sb.path("config.yml").display().to_string();
    let env = [
        ("CCCI_RUNS_DIR", runs.as_str()),
        ("CCCI_CONFIG", config.as_str()),
    ];
    assert_eq!(crate::cli::into_head("logs r1", &env), (0, String::new()));
    finish(&run);
    assert_eq!(
        crate::cli::into_head("logs r1 --follow", &env),
        (0, String::new())
    );
}

/// One request as the test server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: Option<String>,
    accept: Option<String>,
    last_event_id: Option<String>,
}

/// A tiny_http server that answers `GET /runs/<id>/log` from a runs directory with
/// `livelog::respond`, each request on a thread of its own, as `ccci serve` will. The run is
/// finished when its run.json says so.
struct LogServer {
    url: String,
    server: Option<Arc<tiny_http::Server>>,
    accepting: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    ends: Arc<Mutex<Vec<StreamEnd>>>,
    /// The token of the streams open now: tripping it ends them without `eof`.
    streams: Arc<Mutex<Cancel>>,
}

impl LogServer {
    fn start(runs: PathBuf, opts: StreamOptions) -> LogServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ends = Arc::new(Mutex::new(Vec::new()));
        let streams = Arc::new(Mutex::new(Cancel::new()));
        let accepting = {
            let (server, seen, ends, streams) =
                (server.clone(), seen.clone(), ends.clone(), streams.clone());
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let (runs, seen, ends) = (runs.clone(), seen.clone(), ends.clone());
                    let opts = StreamOptions {
                        cancel: streams.lock().unwrap().clone(),
                        ..opts.clone()
                    };
                    std::thread::spawn(move || serve(request, &runs, &opts, &seen, &ends));
                }
            })
        };
        LogServer {
            url: format!("http://{addr}"),
            server: Some(server),
            accepting: Some(accepting),
            seen,
            ends,
            streams,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn ends(&self) -> Vec<StreamEnd> {
        self.ends.lock().unwrap().clone()
    }

    /// Ends the streams open now without `eof`; later requests get fresh streams.
    fn drop_streams(&self) {
        std::mem::take(&mut *self.streams.lock().unwrap()).trip(15);
    }

    /// Stops accepting connections (the listening socket closes) and returns the token of
    /// the streams still open.
    fn stop(&mut self) -> Cancel {
        if let Some(server) = self.server.take() {
            server.unblock();
            if let Some(accepting) = self.accepting.take() {
                accepting.join().unwrap();
            }
            // The last reference: dropping it closes the listening socket.
            drop(server);
        }
        self.streams.lock().unwrap().clone()
    }
}

impl Drop for LogServer {
    fn drop(&mut self) {
        self.stop().trip(15);
    }
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string())
}

fn serve(
    request: tiny_http::Request,
    runs: &Path,
    opts: &StreamOptions,
    seen: &Mutex<Vec<Seen>>,
    ends: &Mutex<Vec<StreamEnd>>,
) {
    let url = request.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (url, None),
    };
    let accept = header(&request, "Accept");
    let last_event_id = header(&request, "Last-Event-ID");
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        query: query.clone(),
        accept: accept.clone(),
        last_event_id: last_event_id.clone(),
    });
    let run = path
        .strip_prefix("/runs/")
        .and_then(|rest| rest.strip_suffix("/log"))
        .map(|id| runs.join(id))
        .filter(|dir| dir.is_dir());
    let Some(run) = run else {
        let _ = request.respond(tiny_http::Response::empty(404));
        return;
    };
    let log_request = LogRequest::parse(
        accept.as_deref(),
        last_event_id.as_deref(),
        query.as_deref(),
    );
    let mut conn = request.into_writer();
    let end = livelog::respond(
        &mut *conn,
        &run.join("log"),
        &log_request,
        &|| run_finished(&run),
        opts,
    )
    .expect("read the log");
    ends.lock().unwrap().push(end);
}

/// One HTTP/1.1 request on a raw socket, and its answer read by hand: the status line, the
/// headers, and the chunked body one chunk at a time.
struct Raw {
    reader: BufReader<TcpStream>,
    status: String,
    headers: BTreeMap<String, String>,
}

impl Raw {
    fn get(server: &LogServer, path: &str, headers: &[(&str, &str)]) -> Raw {
        let addr = server.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        // A broken server fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let status = Self::line(&mut reader);
        let mut map = BTreeMap::new();
        loop {
            let line = Self::line(&mut reader);
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header line");
            map.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
        Raw {
            reader,
            status,
            headers: map,
        }
    }

    fn line(reader: &mut BufReader<TcpStream>) -> String {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read from the server");
        line.strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("a line must end in CRLF: {line:?}"))
            .to_string()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The next chunk of the body; `None` at the last (empty) chunk.
    fn chunk(&mut self) -> Option<String> {
        let size = Self::line(&mut self.reader);
        let size = usize::from_str_radix(&size, 16).expect("a hex chunk size");
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).expect("a whole chunk");
        assert_eq!(&data[size..], b"\r\n", "a chunk ends in CRLF");
        data.truncate(size);
        (size > 0).then(|| String::from_utf8(data).expect("UTF-8"))
    }

    /// The whole body, through its last chunk, which must also end the connection.
    fn body(&mut self) -> String {
        let mut body = String::new();
        while let Some(chunk) = self.chunk() {
            body.push_str(&chunk);
        }
        assert_eq!(self.rest(), "", "bytes after the last chunk");
        body
    }

    /// What comes after the body until the server closes the connection.
    fn rest(&mut self) -> String {
        let mut rest = String::new();
        self.reader
            .read_to_string(&mut rest)
            .expect("the server closes the connection");
        rest
    }
}
