//! The HTTP side of `ccci serve`, over tiny_http: a few acceptor threads answer the short
//! requests themselves (the webhook, /healthz, /metrics, pages) and hand each live-log stream
//! to a thread of its own, so a slow reader never holds up a delivery.
//!
//! Routes: `POST /hook`, `GET /` (dashboard), `GET /runs/{id}`, `GET /runs/{id}/log` (SSE or
//! plain text), `GET /runs/{id}/diagnostics/{file}`, `GET /healthz`, `GET /metrics`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Request, Response, Server};

use super::intake::handle_hook;
use super::service::{ServeEvent, Service, thread};
use super::webhook::MAX_BODY;
use crate::error::Result;

/// Threads taking requests off the socket; deliveries and live logs go on threads of their own.
pub const ACCEPTORS: usize = 4;
/// Live-log streams open at once; more are refused with 503 rather than starving the host.
const MAX_STREAMS: usize = 64;

static STREAMS: AtomicUsize = AtomicUsize::new(0);

pub fn spawn(service: Arc<Service>, server: Arc<Server>, n: usize) -> Result<JoinHandle<()>> {
    thread(format!("http-{n}"), move || {
        loop {
            match server.recv() {
                Ok(request) if service.stopping() => {
                    let _ = request.respond(text(503, "ccci serve is stopping"));
                    break;
                }
                Ok(request) => route(&service, request),
                // An error while not stopping: tiny_http's accept loop has ended (out of file
                // descriptors, say) and will take no connection again. Say so: serve ends, and
                // its supervisor starts it afresh.
                Err(e) if !service.stopping() => {
                    service.http_failed(&e.to_string());
                    break;
                }
                Err(_) => break,
            }
        }
    })
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn text(status: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(format!("{body}\n"))
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn html(status: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
}

fn route(service: &Arc<Service>, request: Request) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let path = path.to_string();
    let query = query.to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    let answer = match (&method, segments.as_slice()) {
        (Method::Post, ["hook"]) => {
            return deliver(service, request);
        }
        (_, ["hook"]) => text(405, "POST webhook deliveries here"),
        (Method::Get, ["healthz"]) => match service.store.stats() {
            Ok(_) => text(200, "ok"),
            Err(e) => text(503, &format!("store unavailable: {e}")),
        },
        (Method::Get, ["metrics"]) => match service.store.stats() {
            Ok(stats) => Response::from_string(service.metrics.render(&stats)).with_header(header(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            )),
            Err(e) => text(503, &format!("store unavailable: {e}")),
        },
        (Method::Get, [""]) => super::pages::index(service, &query),
        (Method::Get, ["runs", id]) => super::pages::run_page(service, id),
        (Method::Get, ["runs", id, "log"]) => {
            return stream_log(service, request, id, &query);
        }
        (Method::Get, ["runs", id, "diagnostics", file]) => {
            super::pages::diagnostic(service, id, file)
        }
        (Method::Get, _) => html(404, service.dashboard.not_found(&format!("page `{path}`"))),
        _ => text(405, "method not allowed"),
    };
    // The client may have gone; nothing to do about it.
    let _ = request.respond(answer);
}

fn hook(service: &Service, request: &mut Request) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut body = Vec::new();
    if let Err(e) = request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
    {
        service.metrics.rejection("unreadable");
        service.emit(ServeEvent::Rejected {
            cause: format!("unreadable body: {e}"),
        });
        return text(400, "unreadable body");
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_string(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let answer = handle_hook(
        service,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        &body,
    );
    text(answer.status, &answer.body)
}

/// Hands a delivery to a thread of its own: its body may be slow to come, or never come, and
/// the acceptors must stay free for everyone else meanwhile. tiny_http sets no socket timeouts
/// (and a listening socket with them would end its accept loop), so such a thread lasts as
/// long as its client keeps the connection open, as tiny_http's own thread for that
/// connection does.
fn deliver(service: &Arc<Service>, request: Request) {
    let reader = service.clone();
    let spawned = thread("hook".into(), move || {
        let mut request = request;
        let answer = hook(&reader, &mut request);
        let _ = request.respond(answer);
    });
    if let Err(e) = spawned {
        // The request went with the closure; its connection closes.
        service.emit(ServeEvent::Trouble {
            what: e.to_string(),
        });
    }
}

/// Hands a live-log request to a thread of its own.
fn stream_log(service: &Arc<Service>, request: Request, id: &str, query: &str) {
    if STREAMS.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        STREAMS.fetch_sub(1, Ordering::SeqCst);
        let _ = request.respond(text(503, "too many live logs open; try again later"));
        return;
    }
    let streamer = service.clone();
    let (id, query) = (id.to_string(), query.to_string());
    let spawned = thread(format!("log-{id}"), move || {
        super::pages::log(&streamer, request, &id, &query);
        STREAMS.fetch_sub(1, Ordering::SeqCst);
    });
    if let Err(e) = spawned {
        // The request went with the closure; its connection closes.
        STREAMS.fetch_sub(1, Ordering::SeqCst);
        service.emit(ServeEvent::Trouble {
            what: e.to_string(),
        });
    }
}
