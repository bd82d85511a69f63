//! [`ServeProc`]: the real `ccci serve` binary in a [`Sandbox`], listening on a free loopback
//! port, followed through its stderr lines; and a small HTTP client for its routes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::ccci::{Ccci, Output, Running};
use super::sandbox::Sandbox;

/// How long a serve test may take end to end.
const LIMIT: Duration = Duration::from_secs(280);

pub struct ServeProc {
    pub proc: Running,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

/// The `serve:` section a test runs with: the forge, the token (in a file), the webhook secret,
/// and whatever else `extra` adds (YAML lines, two-space indented).
pub fn config(
    sb: &Sandbox,
    forge_url: &str,
    token: &str,
    secret: Option<&str>,
    extra: &str,
) -> String {
    std::fs::write(sb.path("forge-token"), token).unwrap();
    let secrets = match secret {
        Some(secret) => {
            std::fs::write(sb.path("hook-secret"), secret).unwrap();
            format!(
                "  webhook_secrets: [{{file: {}}}]\n",
                sb.path("hook-secret").display()
            )
        }
        None => String::new(),
    };
    format!(
        "serve:\n  listen: 127.0.0.1:0\n  forge:\n    url: {forge_url}\n    token: {{file: {}}}\n{secrets}  state_dir: {}\n{extra}",
        sb.path("forge-token").display(),
        sb.path("state").display(),
    )
}

impl ServeProc {
    /// Starts `ccci serve` with the sandbox's config file and waits until it listens.
    pub fn start(sb: &Sandbox) -> ServeProc {
        ServeProc::start_with(sb.ccci())
    }

    /// Starts `ccci serve` as `ccci` says (a sandbox's, with more in its environment), and
    /// waits until it listens. Serve's runs inherit that environment.
    pub fn start_with(ccci: Ccci) -> ServeProc {
        let mut proc = ccci.arg("serve").timeout(LIMIT).spawn();
        let line = proc.wait_for_line("listening on ", 1);
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_string();
        ServeProc {
            proc,
            url: format!("http://{addr}"),
        }
    }

    /// Waits for serve's `nth` stderr line containing `text`.
    pub fn line(&mut self, text: &str, nth: usize) -> String {
        self.proc.wait_for_line(text, nth)
    }

    /// Waits until run `run` started, and returns its run directory's name (its run id).
    pub fn run_dir_of(&mut self, run: i64) -> String {
        let line = self.line(&format!("run {run}: started (pid "), 1);
        line.split("run dir ")
            .nth(1)
            .map(|rest| rest.trim_end_matches(')').to_string())
            .unwrap_or_else(|| panic!("no run dir in `{line}`"))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        request(&self.url, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        request(&self.url, "POST", path, headers, body)
    }

    /// SIGKILL: serve gets no chance to stop anything.
    pub fn kill(self) -> Output {
        self.proc.signal(Signal::SIGKILL);
        self.proc.wait()
    }

    /// SIGTERM, and its exit.
    pub fn stop(self) -> Output {
        self.proc.signal(Signal::SIGTERM);
        self.proc.wait()
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect to serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    // A server that answers before reading a whole oversized body may reset the connection
    // after its answer; what arrived is the answer.
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
