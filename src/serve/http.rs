//! The HTTP side of `ccci serve`: a small HTTP/1.1 server over std's `TcpListener`, with
//! `httparse` reading request heads. A thread per open connection (bounded, each waiting in
//! `accept` for its next one), read and write timeouts on every connection, bodies refused by
//! their declared size before a byte of them is read, and `Connection: close` on every
//! answer. That is all a webhook intake, a few pages and live logs need, and it keeps a
//! hostile client from holding serve: a stalled body is given up after [`IO_TIMEOUT`], an
//! absurd `Content-Length` is answered 413 at once.
//!
//! Routes: `POST /hook`, `GET /` (dashboard), `GET /runs/{id}`, `GET /runs/{id}/log` (SSE or
//! plain text), `GET /runs/{id}/diagnostics/{file}`, `GET /healthz`, `GET /metrics`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::intake::{follow_up, handle_hook};
use super::service::{ServeEvent, Service, thread};
use super::webhook::MAX_BODY;
use crate::error::Result;

/// How long a connection may keep serve waiting for a read or a write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered 503 at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Live-log streams open at once; more are refused with 503 rather than starving the host.
const MAX_STREAMS: usize = 64;
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 16 << 10;
/// How much of a refused body is read and thrown away, so an honest client sending it gets
/// the answer rather than a reset connection.
const MAX_DRAIN: u64 = 8 << 20;

/// Connections answered 503 unread and being drained at once; more are closed at once.
const MAX_DRAINS: usize = 64;

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
/// Connections taken from the listener and not yet done with, refused ones included.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static STREAMS: AtomicUsize = AtomicUsize::new(0);
static DRAINS: AtomicUsize = AtomicUsize::new(0);

/// One of a limited number of places (open connections, live logs, drains), given back when
/// dropped, whatever happens in between (an early return, a panic).
struct Slot(&'static AtomicUsize);

impl Slot {
    fn take(count: &'static AtomicUsize, limit: usize) -> Option<Slot> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(count))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection being served, holding its place among the [`MAX_CONNECTIONS`]. The place is
/// given back before the socket closes (fields drop in order), so a client that connects
/// again the moment it sees the close finds it free.
struct Open {
    _slot: Slot,
    stream: TcpStream,
}

impl std::ops::Deref for Open {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl std::ops::DerefMut for Open {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// A request, read whole: its head and its body.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path and the query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer with a body known in full.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Page {
    pub fn text(status: u16, body: &str) -> Page {
        Page {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n").into_bytes(),
        }
    }

    pub fn html(status: u16, body: String) -> Page {
        Page {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
        }
    }

    /// Writes the answer in one piece (one packet for a small page); the connection closes
    /// after.
    pub fn write(&self, out: &mut impl Write, head_only: bool) -> std::io::Result<()> {
        let mut answer = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            answer.extend_from_slice(&self.body);
        }
        out.write_all(&answer)?;
        out.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Connection threads, each waiting in `accept` itself: the kernel hands a new connection
/// straight to a waiting thread, with no second thread to wake on the way (on a busy host,
/// each wake is a wait for a core). A thread that takes a connection while no other is
/// waiting starts one first, so the next connection never waits behind this one (a stalled
/// client holds its thread up to [`IO_TIMEOUT`]). Done with a connection, a thread goes back
/// to waiting, unless [`SPARE`] others already are.
pub struct Server {
    threads: Arc<Threads>,
}

struct Threads {
    listener: TcpListener,
    service: Arc<Service>,
    /// Threads in `accept`, or about to be.
    waiting: AtomicUsize,
}

/// How many threads may wait for connections once a burst is over.
const SPARE: usize = 4;

/// Listens on `addr` with room in the kernel's queue for as many connections as serve holds.
/// std listens with a queue of 128: a burst beyond that (a forge redelivering a backlog, a
/// client opening connections fast) had handshakes dropped and retried a second or more
/// later, a delay no answer of serve's shows. Linux takes a second `listen` on a listening
/// socket as a new queue length (capped by `net.core.somaxconn`).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    // MAX_CONNECTIONS is a small constant; it fits an i32 and the kernel's bounds.
    let backlog = nix::sys::socket::Backlog::new(MAX_CONNECTIONS as i32)?;
    nix::sys::socket::listen(&listener, backlog)?;
    Ok(listener)
}

/// Starts serving HTTP on `listener`.
pub fn spawn(service: Arc<Service>, listener: TcpListener) -> Result<Server> {
    let threads = Arc::new(Threads {
        listener,
        service,
        waiting: AtomicUsize::new(0),
    });
    threads.start_one()?;
    Ok(Server { threads })
}

impl Server {
    /// Stops accepting, once the service is stopping: every thread waiting in `accept` wakes
    /// and ends, and new connections are refused. Connections being served finish on their
    /// own.
    pub fn stop(&self) {
        // Shutting a listening socket's read side wakes every `accept` on it, with an error
        // (Linux), and later ones fail at once.
        let _ = nix::sys::socket::shutdown(
            self.threads.listener.as_raw_fd(),
            nix::sys::socket::Shutdown::Read,
        );
    }

    /// Once stopped: waits, up to `limit`, for the connections being served to finish, so
    /// that none is cut off mid-answer and each says its log line before serve exits. A
    /// client that stalls is not waited for beyond `limit`.
    pub fn wait_for_connections(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        // Only at stop, and briefly: a look every few milliseconds costs nothing.
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Threads {
    fn start_one(self: &Arc<Threads>) -> Result<()> {
        let threads = self.clone();
        thread("http".into(), move || threads.accept_and_serve()).map(drop)
    }

    fn accept_and_serve(self: &Arc<Threads>) {
        // A new thread always waits; one back from a connection only while fewer than SPARE
        // others do (decided in one step, so a burst's end leaves SPARE waiting, not more).
        self.waiting.fetch_add(1, Ordering::SeqCst);
        loop {
            let taken = self.listener.accept();
            let others_waiting = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
            if self.service.stopping() {
                return;
            }
            match taken {
                Ok((stream, _)) => {
                    let replaced = others_waiting > 0 || {
                        let started = self.start_one();
                        if let Err(e) = &started {
                            self.service.emit(ServeEvent::Trouble {
                                what: e.to_string(),
                            });
                        }
                        started.is_ok()
                    };
                    if replaced {
                        serve(&self.service, stream);
                    } else {
                        // No other thread waits for the next connection and none could be
                        // started (a rare refusal of the OS): this one must wait, so it
                        // answers at once rather than serve what could last (a live log).
                        busy(stream);
                    }
                }
                // Out of file descriptors, a connection reset before it was taken: the
                // listener itself is fine. Pause a moment rather than spin.
                Err(e) => {
                    self.service.emit(ServeEvent::Trouble {
                        what: format!("cannot accept a connection: {e}"),
                    });
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let back = self
                .waiting
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                    (w < SPARE).then_some(w + 1)
                });
            if back.is_err() {
                return;
            }
        }
    }
}

fn serve(service: &Arc<Service>, stream: TcpStream) {
    // Held until everything this connection does is done, its log line included (said
    // after the connection's own place is given back): what a stop waits for.
    let _in_flight = Slot::take(&IN_FLIGHT, usize::MAX);
    // Timeouts first: whatever happens next, nothing waits on this client for ever.
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    match Slot::take(&CONNECTIONS, MAX_CONNECTIONS) {
        Some(slot) => serve_connection(
            service,
            Open {
                _slot: slot,
                stream,
            },
        ),
        None => busy(stream),
    }
}

/// Answers 503 without reading the request.
fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = Page::text(503, "too many connections; try again later").write(&mut stream, false);
    // Each drain holds a thread for a moment; past a few dozen at once (a client opening
    // connections as fast as it can), the rest are closed as they are.
    if let Some(_draining) = Slot::take(&DRAINS, MAX_DRAINS) {
        drain(&mut stream, MAX_HEAD as u64 + MAX_BODY as u64, BUSY_DRAIN);
    }
}

/// How long a connection answered 503 unread is drained before it is closed.
const BUSY_DRAIN: Duration = Duration::from_secs(1);

/// Once an answer is written, reads and throws away what the client still sends, up to
/// `limit` bytes and for `time` at most: closing a socket with bytes unread resets the
/// connection, and the client would see the reset rather than the answer.
fn drain(stream: &mut TcpStream, limit: u64, time: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + time;
    let mut left = limit;
    let mut buf = [0u8; 8192];
    while left > 0 {
        let remaining = until.saturating_duration_since(Instant::now());
        if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        let want = left.min(buf.len() as u64) as usize;
        match stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => left -= n as u64,
        }
    }
}

/// One connection, start to end. A panic (a bug) costs that request alone: the thread goes
/// on serving, and serve with it.
fn serve_connection(service: &Arc<Service>, open: Open) {
    let served =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| connection(service, open)));
    if let Err(panic) = served {
        service.emit(ServeEvent::Trouble {
            what: format!(
                "a request ended in a panic: {}",
                super::service::panic_words(panic.as_ref())
            ),
        });
    }
}

fn connection(service: &Arc<Service>, mut stream: Open) {
    let request = match read_request(&mut stream) {
        Ok(request) => request,
        Err(refusal) => {
            if refusal.hook {
                let cause = if refusal.status == 413 {
                    "too_large"
                } else {
                    "malformed"
                };
                service.metrics.rejection(cause);
            }
            let _ = Page::text(refusal.status, &refusal.message).write(&mut *stream, false);
            if let Some(left) = refusal.unread {
                // Let an honest client finish sending, so it reads the answer, not a reset.
                drain(&mut stream, left.min(MAX_DRAIN), IO_TIMEOUT);
            }
            drop(stream);
            // Said once answered, as every delivery is (see `intake`).
            if refusal.hook {
                service.emit(ServeEvent::Rejected {
                    cause: refusal.message,
                });
            }
            return;
        }
    };
    route(service, request, stream);
}

/// Why a request was not read.
struct Refusal {
    status: u16,
    message: String,
    /// It was meant for /hook (for the rejection metric).
    hook: bool,
    /// Body bytes the client announced and serve did not read.
    unread: Option<u64>,
}

fn refuse(status: u16, message: &str) -> Refusal {
    Refusal {
        status,
        message: message.to_string(),
        hook: false,
        unread: None,
    }
}

fn read_request(stream: &mut TcpStream) -> std::result::Result<Request, Refusal> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(refuse(431, "request head too large"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(refuse(400, "incomplete request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(refuse(408, "request timed out")),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(refuse(400, "malformed request")),
    }
    let method = parsed.method.unwrap_or_default().to_string();
    let target = parsed.path.unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let hook = target.split('?').next() == Some("/hook");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("Transfer-Encoding").is_some() {
        return Err(Refusal {
            hook,
            ..refuse(411, "send the body with a Content-Length")
        });
    }
    let length: u64 = match header("Content-Length") {
        None => 0,
        Some(text) => text.parse().map_err(|_| Refusal {
            hook,
            ..refuse(400, "malformed Content-Length")
        })?,
    };
    if length > MAX_BODY as u64 {
        return Err(Refusal {
            hook,
            unread: Some(length),
            ..refuse(413, &super::webhook::Refusal::TooLarge.to_string())
        });
    }
    let mut body = buf.split_off(head_end);
    let wanted = length as usize;
    if body.len() < wanted {
        let mut rest = vec![0; wanted - body.len()];
        stream.read_exact(&mut rest).map_err(|_| Refusal {
            hook,
            ..refuse(408, "the body did not come in time")
        })?;
        body.extend_from_slice(&rest);
    }
    body.truncate(wanted);
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn route(service: &Arc<Service>, request: Request, mut stream: Open) {
    let target = request.target.clone();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let head_only = request.method == "HEAD";
    let get = request.method == "GET" || head_only;
    let page = match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["hook"]) => {
            let answer = handle_hook(
                service,
                request
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str())),
                &request.body,
            );
            // The forge has its answer, and the connection is closed, before anything else is
            // done about the delivery.
            let _ = Page::text(answer.status, &answer.body).write(&mut *stream, false);
            drop(stream);
            follow_up(service, answer.then);
            return;
        }
        (_, ["hook"]) => Page::text(405, "POST webhook deliveries here"),
        (_, ["healthz"]) if get => match service.store.stats() {
            Ok(_) => Page::text(200, "ok"),
            Err(e) => Page::text(503, &format!("store unavailable: {e}")),
        },
        (_, ["metrics"]) if get => match service.store.stats() {
            Ok(stats) => Page {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: service
                    .metrics
                    .render(
                        &stats,
                        super::metrics::Open {
                            connections: IN_FLIGHT.load(Ordering::SeqCst) as u64,
                            log_streams: STREAMS.load(Ordering::SeqCst) as u64,
                        },
                    )
                    .into_bytes(),
            },
            Err(e) => Page::text(503, &format!("store unavailable: {e}")),
        },
        (_, [""]) if get => super::pages::index(service, query),
        (_, ["runs", id]) if get => super::pages::run_page(service, id),
        ("GET", ["runs", id, "log"]) => match Slot::take(&STREAMS, MAX_STREAMS) {
            None => Page::text(503, "too many live logs open; try again later"),
            Some(_streaming) => {
                super::pages::log(service, &request, &mut stream, id, query);
                return;
            }
        },
        (_, ["runs", id, "diagnostics", file]) if get => {
            super::pages::diagnostic(service, id, file)
        }
        _ if get => Page::html(404, service.dashboard.not_found(&format!("page `{path}`"))),
        _ => Page::text(405, "method not allowed"),
    };
    // The client may have gone; nothing to do about it.
    let _ = page.write(&mut *stream, head_only);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_as_big_as_serve_holds_waits_in_the_queue_unrefused() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts while they connect: every one must be queued by the kernel, not
        // dropped (a dropped handshake is retried after a second, so the connect times out).
        let clients: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|n| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(900))
                    .unwrap_or_else(|e| panic!("connection {n} was not queued: {e}"))
            })
            .collect();
        listener.set_nonblocking(true).unwrap();
        let mut accepted = 0;
        let until = Instant::now() + Duration::from_secs(10);
        while accepted < clients.len() && Instant::now() < until {
            match listener.accept() {
                Ok(_) => accepted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        assert_eq!(
            accepted,
            clients.len(),
            "every queued connection is accepted"
        );
    }

    #[test]
    fn a_slot_is_given_back_however_its_holder_ends() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let first = Slot::take(&COUNT, 2).unwrap();
        let _second = Slot::take(&COUNT, 2).unwrap();
        assert!(Slot::take(&COUNT, 2).is_none(), "no more than the limit");
        drop(first);
        let panicked = std::panic::catch_unwind(|| {
            let _third = Slot::take(&COUNT, 2).unwrap();
            panic!("a bug while holding a slot");
        });
        assert!(panicked.is_err());
        assert_eq!(COUNT.load(Ordering::SeqCst), 1, "given back on the panic");
        assert!(Slot::take(&COUNT, 2).is_some());
    }
}
