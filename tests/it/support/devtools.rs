//! A real headless Chromium driven over the DevTools protocol, for tests that watch a page
//! change while it is open (a live log growing), which `--dump-dom` cannot: it captures the
//! page once, at its load event.
//!
//! [`Browser::start`] runs Chromium with the flags of [`super::chromium`], a fresh profile and
//! `--remote-debugging-port=0`; the port it chose is in `DevToolsActivePort` in the profile.
//! [`Browser::open`] opens a tab (`PUT /json/new`) and talks to it over the tab's own WebSocket:
//! a minimal client over a `TcpStream` (RFC 6455: the handshake, masked text frames out,
//! possibly fragmented frames in, pings answered) is all the protocol needs. A [`Tab`] evaluates
//! JavaScript in the page and waits, with a deadline, until an expression holds, so tests wait
//! for what a person would see rather than for a guessed time.
//!
//! The browser runs in a process group of its own, which is killed when the [`Browser`] is
//! dropped, so no helper process outlives the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::proc::{POLL, WAIT};

/// How long a page may take to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);
/// How often a wait looks at the page again: a round trip to the browser, so not too often.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// A running headless Chromium with its DevTools endpoint.
pub struct Browser {
    child: Child,
    port: u16,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium on a blank page and waits until its DevTools endpoint answers.
    pub fn start() -> Browser {
        let bin = super::chromium::binary().unwrap_or_else(|e| panic!("{e}"));
        let profile = tempfile::tempdir().expect("profile dir");
        let mut cmd = Command::new(bin);
        cmd.args(super::chromium::FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args([
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--window-size=1280,900",
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start chromium");
        let mut browser = Browser {
            child,
            port: 0,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(WAIT))
                .build()
                .into(),
            _profile: profile,
        };
        // Chromium writes the port it listens on (first line) once the endpoint is up.
        let file = browser._profile.path().join("DevToolsActivePort");
        let until = Instant::now() + PAGE_WAIT;
        browser.port = loop {
            let port = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u16>().ok());
            if let Some(port) = port {
                break port;
            }
            if let Ok(Some(status)) = browser.child.try_wait() {
                panic!("chromium exited ({status}) before its DevTools endpoint was up");
            }
            assert!(
                Instant::now() < until,
                "chromium wrote no {} within {PAGE_WAIT:?}",
                file.display()
            );
            std::thread::sleep(POLL);
        };
        browser
    }

    /// Opens `url` in a new tab of 1280×900 CSS pixels and waits until it has loaded.
    pub fn open(&self, url: &str) -> Tab {
        let endpoint = format!("http://127.0.0.1:{}/json/new?{url}", self.port);
        let text = self
            .agent
            .put(&endpoint)
            .send_empty()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("PUT {endpoint}: {e}"));
        let target: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("PUT {endpoint} answered no JSON ({e}): {text}"));
        let ws = target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no webSocketDebuggerUrl in {target}"));
        let mut tab = Tab {
            ws: WebSocket::connect(ws),
            next_id: 0,
        };
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        tab.wait_loaded(url);
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser, its zygotes and renderers: the whole group.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One tab of the [`Browser`], driven through its own DevTools connection.
pub struct Tab {
    ws: WebSocket,
    next_id: u64,
}

impl Tab {
    /// Calls a DevTools method and returns its result; a protocol error fails the test.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|error| panic!("{method}: {error}"))
    }

    /// Calls a DevTools method: its result, or the protocol error.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(&message);
        let until = Instant::now() + PAGE_WAIT;
        loop {
            let text = self.ws.receive(until);
            let answer: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("DevTools sent no JSON ({e}): {text}"));
            // Events (no id) and answers to nobody else are none of this call's business.
            if answer["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(error.clone());
            }
            return Ok(answer["result"].clone());
        }
    }

    /// The value of a JavaScript expression in the page (JSON-serialisable); an exception
    /// fails the test.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}\nthrew: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` gives something other than `null`, `false` or nothing, and
    /// returns it; fails the test saying `what` after [`PAGE_WAIT`].
    pub fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        self.wait_until(what, PAGE_WAIT, expression, |value| {
            !matches!(value, Value::Null | Value::Bool(false))
        })
    }

    /// Waits until the value of `expression` satisfies `holds`, and returns it; fails the test
    /// saying `what` after `limit`, with the last value and what the page shows.
    pub fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        expression: &str,
        mut holds: impl FnMut(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + limit;
        loop {
            // The page may be between two documents (a form sent, a refresh): ask again.
            let answer = self.try_call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            );
            let value = match answer {
                Ok(result) if result.get("exceptionDetails").is_none() => {
                    result["result"]["value"].clone()
                }
                Ok(result) => panic!("{expression}\nthrew: {}", result["exceptionDetails"]),
                Err(error) if navigating(&error) => Value::Null,
                Err(error) => panic!("Runtime.evaluate: {error}"),
            };
            if holds(&value) {
                return value;
            }
            if Instant::now() >= until {
                let url = self.eval("location.href");
                let text = self.eval("document.body ? document.body.innerText : ''");
                panic!(
                    "timed out after {limit:?} waiting for {what} on {url}; last value: {value}\nthe page shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(LOOK_EVERY);
        }
    }

    /// Waits until the document at `url` has loaded (the tab may still be on the one before).
    pub fn wait_loaded(&mut self, url: &str) {
        let quoted = Value::from(url).to_string();
        self.wait_for(
            &format!("{url} to load"),
            &format!("location.href === {quoted} && document.readyState === 'complete'"),
        );
    }

    /// A PNG of what the tab shows, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        // A tab in the background draws no frames, so it would never be captured.
        self.call("Page.bringToFront", json!({}));
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = shot["data"].as_str().expect("screenshot data");
        std::fs::write(path, base64_decode(data)).expect("write the screenshot");
    }
}

/// The client end of a WebSocket: text messages only, which is all DevTools sends.
struct WebSocket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl WebSocket {
    /// Connects to `ws://host:port/path` and does the opening handshake.
    fn connect(url: &str) -> WebSocket {
        let rest = url
            .strip_prefix("ws://")
            .unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let writer = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        writer.set_nodelay(true).expect("TCP_NODELAY");
        let mut reader = BufReader::new(writer.try_clone().expect("clone the socket"));
        // The key only proves the server speaks WebSocket; it need not be secret, so it is
        // the RFC's own example.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        (&writer)
            .write_all(request.as_bytes())
            .expect("send the handshake");
        reader
            .get_ref()
            .set_read_timeout(Some(WAIT))
            .expect("read timeout");
        let mut status = String::new();
        reader.read_line(&mut status).expect("handshake answer");
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "{url} refused the WebSocket: {status}"
        );
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("handshake headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        WebSocket { reader, writer }
    }

    /// Sends one text message, in one masked frame (a client must mask).
    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = mask_key();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).expect("send to DevTools");
    }

    /// The next whole text message, before `until`.
    fn receive(&mut self, until: Instant) -> String {
        let mut message = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "DevTools sent nothing within {PAGE_WAIT:?}"
            );
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let mut head = [0u8; 2];
            self.read(&mut head);
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.read(&mut n);
                    u16::from_be_bytes(n) as usize
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.read(&mut n);
                    u64::from_be_bytes(n) as usize
                }
                n => n as usize,
            };
            // A server never masks; the bit is read only to skip a key if one came anyway.
            let mask = if head[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.read(&mut m);
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len];
            self.read(&mut payload);
            if let Some(m) = mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                // Text, or the continuation of a fragmented one.
                0x1 | 0x0 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("DevTools sends UTF-8");
                    }
                }
                0x8 => panic!("DevTools closed the connection"),
                0x9 => self.pong(&payload),
                _ => {}
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) {
        self.reader
            .read_exact(buf)
            .unwrap_or_else(|e| panic!("reading from DevTools: {e}"));
    }

    fn pong(&mut self, payload: &[u8]) {
        let mask = mask_key();
        let mut frame = vec![0x8a, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).expect("answer a ping");
    }
}

/// A frame's masking key: it only keeps proxies from reading frames as HTTP, so any bytes do.
fn mask_key() -> [u8; 4] {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0x5eed)
        .to_le_bytes()
}

/// Standard base64 (with padding), as DevTools sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let bits = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | (d as u32) << (18 - 6 * i));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}

/// A protocol error that only says the page is changing documents.
fn navigating(error: &Value) -> bool {
    let message = error["message"].as_str().unwrap_or_default();
    message.contains("navigated or closed") || message.contains("Cannot find context")
}
