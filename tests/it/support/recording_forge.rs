//! A stand-in forge for what a real one cannot be made to do on demand: fail with a 500, answer
//! too slowly, redirect. A tiny_http server on a free loopback port answers each request with
//! the replies programmed for its method and path prefix, and records every request (method,
//! path, headers, body) for the test to read back.
//!
//! Paths are written as under the API root: `on("GET", "/orgs/o/members/", …)` answers
//! `GET /api/v1/orgs/o/members/…`, and recorded paths read the same way (query included).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API root every path is under.
const API: &str = "/api/v1";

/// One programmed answer.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
    delay: Duration,
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: String::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with `body` as JSON.
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            body: body.to_string(),
            ..Reply::status(status)
        }
        .header("Content-Type", "application/json")
    }

    /// `status` with `body` as it is.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            body: body.to_string(),
            ..Reply::status(status)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Answers only after `delay` (a slow forge).
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the forge received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Under the API root, query included: `/orgs/o/members/u`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// Replies for one method and path prefix, given in order; the last one repeats.
struct Rule {
    method: String,
    prefix: String,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    requests: Vec<Recorded>,
}

/// The running stand-in. Stops listening on drop.
pub struct RecordingForge {
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    base_url: String,
}

impl RecordingForge {
    pub fn start() -> RecordingForge {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("a loopback port"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let state = Arc::new(Mutex::new(State::default()));
        let (listening, recording) = (Arc::clone(&server), Arc::clone(&state));
        std::thread::spawn(move || {
            for request in listening.incoming_requests() {
                handle(request, &recording);
            }
        });
        RecordingForge {
            server,
            state,
            base_url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `http://127.0.0.1:<port>`: what a client takes as the forge's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Answers `method` requests whose path (under the API root) starts with `prefix` with
    /// `replies`, one per request, the last repeating. The longest matching prefix wins; a
    /// request nothing matches gets 418.
    pub fn on(&self, method: &str, prefix: &str, replies: Vec<Reply>) {
        assert!(
            !replies.is_empty(),
            "at least one reply for {method} {prefix}"
        );
        self.state.lock().unwrap().rules.push(Rule {
            method: method.to_string(),
            prefix: prefix.to_string(),
            replies: replies.into(),
        });
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests so far with that method and a path starting with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }
}

impl Drop for RecordingForge {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn handle(mut request: tiny_http::Request, state: &Mutex<State>) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let url = request.url();
    let recorded = Recorded {
        method: request.method().as_str().to_string(),
        path: url.strip_prefix(API).unwrap_or(url).to_string(),
        headers: request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().as_str().to_string(), h.value.to_string()))
            .collect(),
        body,
    };
    let reply = {
        let mut state = state.lock().unwrap();
        let reply = state
            .rules
            .iter_mut()
            .filter(|r| r.method == recorded.method && recorded.path.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
            .map(|rule| {
                if rule.replies.len() > 1 {
                    rule.replies.pop_front().unwrap()
                } else {
                    rule.replies[0].clone()
                }
            })
            .unwrap_or_else(|| {
                Reply::text(
                    418,
                    &format!(
                        "no reply programmed for {} {}",
                        recorded.method, recorded.path
                    ),
                )
            });
        state.requests.push(recorded);
        reply
    };
    // Each answer on a thread of its own, so a slow one holds up no other request.
    std::thread::spawn(move || {
        std::thread::sleep(reply.delay);
        let mut response =
            tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        for (name, value) in &reply.headers {
            response.add_header(
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                    .expect("a valid header"),
            );
        }
        // The client may have given up (a timeout test): nobody to tell.
        let _ = request.respond(response);
    });
}
