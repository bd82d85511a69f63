//! Live logs: a run's plain-text `log` streamed while it grows, as Server-Sent Events (a
//! browser's `EventSource`) or as plain text (curl), and the client side of the same protocol
//! (`ccci logs <url> --follow`).
//!
//! The wire format follows Woodpecker's (reference/forge.md): one SSE event per log line with
//! `id: <line number>` (1-based), so a client that reconnects sends `Last-Event-ID` and gets
//! only the lines after it; a `: ping` comment while nothing happens, so proxies and clients
//! see a live connection; and `event: eof` once the run finished and every line was sent.
//! A browser's `EventSource` reconnects whenever a stream ends, so the page closes it on
//! `eof`.
//!
//! Waiting for the log to grow polls the file (every [`DEFAULT_POLL`]) rather than using
//! inotify: every viewer of every run would hold an inotify instance (128 per user by default,
//! shared with everything else on the host), a poll also sees a log that does not exist yet
//! and the "is the run finished" question (which may be a database look-up in `ccci serve`)
//! has to be polled anyway. A read at end of file costs one syscall per poll per viewer.
//! The log is read incrementally from an offset, one chunk at a time: a viewer costs a
//! fixed amount of memory however large the log is.
//!
//! What this module must never do: hold a whole log in memory, send a line before its newline
//! was written (a line may be half-written; only once the run finished is a last unterminated
//! line sent), or treat a client that went away as an error.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys::cancel::Cancel;

/// How often the log is looked at again while it does not grow.
pub const DEFAULT_POLL: Duration = Duration::from_millis(150);
/// How long an SSE stream may stay silent before a `: ping` comment is sent.
pub const DEFAULT_PING: Duration = Duration::from_secs(30);
/// A line longer than this (without a newline) is sent in pieces of this size, each counted as
/// a line of its own: a viewer's memory stays bounded, and since the cut depends only on the
/// log's bytes, line numbers stay the same for every viewer and every resume.
pub const MAX_LINE: usize = 64 * 1024;
/// How much of the log is read at once.
const CHUNK: usize = 64 * 1024;
/// Written output is handed to the client once it reaches this size, even mid-chunk.
const BATCH: usize = 64 * 1024;

/// What a client gets: SSE for an `EventSource`, plain text for everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Sse,
    Plain,
}

impl Format {
    /// SSE when the request's `Accept` header accepts `text/event-stream` (with a non-zero
    /// quality), plain text otherwise: curl (`*/*`), a browser navigating to the log, no header.
    pub fn for_accept(accept: Option<&str>) -> Format {
        let wants_sse = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case("text/event-stream")
                    && !parts.any(|param| {
                        let param = param.trim();
                        let q = param
                            .strip_prefix("q=")
                            .or_else(|| param.strip_prefix("Q="));
                        q.is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
                    })
            })
        });
        if wants_sse {
            Format::Sse
        } else {
            Format::Plain
        }
    }

    /// The headers of a streamed log response, for the server and the tests alike. Both
    /// formats stream, so both tell caches and reverse proxies (nginx's `X-Accel-Buffering`)
    /// not to hold the body back.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Format::Sse => &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("X-Accel-Buffering", "no"),
            ],
            Format::Plain => &[
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Cache-Control", "no-cache"),
                ("X-Accel-Buffering", "no"),
            ],
        }
    }
}

/// A request for a run's log, read from the HTTP request once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRequest {
    pub format: Format,
    /// Send the lines after this one (0: from the start).
    pub from_line: u64,
    /// Stream until the run finished; `false` sends the log as it is now and ends.
    pub follow: bool,
}

impl LogRequest {
    /// From the `Accept` and `Last-Event-ID` headers and the query string (after `?`):
    /// `from=<line>` resumes like `Last-Event-ID` does (the header wins), `follow=0` asks for
    /// the log so far. Values that do not parse are ignored: a bad resume point means "from
    /// the start", never an error.
    pub fn parse(
        accept: Option<&str>,
        last_event_id: Option<&str>,
        query: Option<&str>,
    ) -> LogRequest {
        let mut request = LogRequest {
            format: Format::for_accept(accept),
            from_line: 0,
            follow: true,
        };
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "from" => request.from_line = resume_from(Some(value)),
                "follow" => request.follow = !matches!(value, "0" | "false" | "no"),
                _ => {}
            }
        }
        if let Some(id) = last_event_id.filter(|id| !id.trim().is_empty()) {
            request.from_line = resume_from(Some(id));
        }
        request
    }
}

/// The line a client has already seen, from a `Last-Event-ID` value; 0 when there is none or
/// it is not a line number.
pub fn resume_from(last_event_id: Option<&str>) -> u64 {
    last_event_id
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or(0)
}

/// How [`stream`] paces itself.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// An SSE stream silent this long gets a `: ping` comment.
    pub ping_every: Duration,
    /// How often the log and the run's state are looked at while nothing happens.
    pub poll: Duration,
    /// Sent first as SSE `retry:`: how long a client waits before it reconnects.
    pub retry: Option<Duration>,
    /// Tripped when the server shuts down: the stream ends without `eof`, so the client
    /// reconnects (and resumes) later instead of believing the run finished.
    pub cancel: Cancel,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            ping_every: DEFAULT_PING,
            poll: DEFAULT_POLL,
            retry: None,
            cancel: Cancel::new(),
        }
    }
}

/// Why a stream ended, and the number of the last line written to the client (`from_line`
/// when none was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The run finished and every line was sent (then `eof`, for SSE).
    Finished { last_line: u64 },
    /// Writing to the client failed: it went away.
    Disconnected { last_line: u64 },
    /// [`StreamOptions::cancel`] was tripped.
    Stopped { last_line: u64 },
}

impl StreamEnd {
    pub fn last_line(self) -> u64 {
        match self {
            StreamEnd::Finished { last_line }
            | StreamEnd::Disconnected { last_line }
            | StreamEnd::Stopped { last_line } => last_line,
        }
    }
}

/// Streams the log at `log` to `out`: the complete lines after `from_line` that are there now,
/// then each line as it is written, until `finished()` says the run is over; then the rest,
/// a last unterminated line included, and for SSE the `eof` event.
///
/// `finished` is asked before each read, so every line written before the run finished is
/// sent. A log that does not exist yet is waited for. Errors are only those of reading the
/// log; a client that goes away ends the stream with [`StreamEnd::Disconnected`].
pub fn stream(
    log: &Path,
    from_line: u64,
    format: Format,
    finished: &dyn Fn() -> bool,
    out: &mut dyn Write,
    opts: &StreamOptions,
) -> io::Result<StreamEnd> {
    let mut tail = Tail::new(log);
    let mut framer = Framer {
        format,
        out,
        buf: Vec::new(),
        last_write: Instant::now(),
        last_line: from_line,
        gone: false,
    };
    if let (Format::Sse, Some(retry)) = (format, opts.retry) {
        framer
            .buf
            .extend_from_slice(format!("retry: {}\n\n", retry.as_millis()).as_bytes());
    }
    if !framer.send() {
        return Ok(StreamEnd::Disconnected {
            last_line: framer.last_line,
        });
    }
    loop {
        if opts.cancel.signal().is_some() {
            return Ok(StreamEnd::Stopped {
                last_line: framer.last_line,
            });
        }
        // Asked before reading: whatever the run wrote before it finished is read below.
        let done = finished();
        let mut grew = false;
        loop {
            let read = tail.read_chunk(&mut |n, line| {
                if n > from_line {
                    framer.line(n, line);
                }
            })?;
            if !framer.send() {
                return Ok(StreamEnd::Disconnected {
                    last_line: framer.last_line,
                });
            }
            if read == 0 {
                break;
            }
            grew = true;
        }
        if done {
            if let Some((n, line)) = tail.take_partial()
                && n > from_line
            {
                framer.line(n, &line);
            }
            if format == Format::Sse {
                framer
                    .buf
                    .extend_from_slice(format!("event: eof\ndata: {}\n\n", tail.lines).as_bytes());
            }
            return Ok(if framer.send() {
                StreamEnd::Finished {
                    last_line: framer.last_line,
                }
            } else {
                StreamEnd::Disconnected {
                    last_line: framer.last_line,
                }
            });
        }
        if !grew {
            if format == Format::Sse && framer.last_write.elapsed() >= opts.ping_every {
                framer.buf.extend_from_slice(b": ping\n\n");
                if !framer.send() {
                    return Ok(StreamEnd::Disconnected {
                        last_line: framer.last_line,
                    });
                }
            }
            std::thread::sleep(opts.poll);
        }
    }
}

/// Answers a log request on a raw HTTP/1.1 connection: the status line and
/// [`Format::headers`], then the log as a chunked body, ended by the last chunk when the run
/// finished or the stream was stopped, so the client can tell a complete answer from a broken
/// connection. Each line is written (and flushed) as it comes, never held in a buffer.
///
/// Without [`LogRequest::follow`], the log as it is now is sent and the response ends.
pub fn respond(
    conn: &mut dyn Write,
    log: &Path,
    request: &LogRequest,
    finished: &dyn Fn() -> bool,
    opts: &StreamOptions,
) -> io::Result<StreamEnd> {
    let disconnected = StreamEnd::Disconnected {
        last_line: request.from_line,
    };
    if conn
        .write_all(http_head(request.format).as_bytes())
        .and_then(|()| conn.flush())
        .is_err()
    {
        return Ok(disconnected);
    }
    let mut body = Chunked::new(conn);
    let now = || true;
    let finished = if request.follow { finished } else { &now };
    let end = stream(
        log,
        request.from_line,
        request.format,
        finished,
        &mut body,
        opts,
    )?;
    match end {
        StreamEnd::Disconnected { .. } => Ok(end),
        _ => Ok(match body.finish() {
            Ok(_) => end,
            Err(_) => StreamEnd::Disconnected {
                last_line: end.last_line(),
            },
        }),
    }
}

/// The status line and headers of a streamed log response with a chunked body.
/// `Connection: close`: serve answers one request per connection (a browser closes its
/// `EventSource` on `eof` anyway).
pub fn http_head(format: Format) -> String {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for (name, value) in format.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    head
}

/// HTTP/1.1 chunked transfer encoding: each `write` is one chunk, sent as it is written.
pub struct Chunked<W: Write> {
    inner: W,
}

impl<W: Write> Chunked<W> {
    pub fn new(inner: W) -> Self {
        Chunked { inner }
    }

    /// Writes the last (empty) chunk, which ends the body, and hands the connection back.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // An empty chunk would end the body.
        if buf.is_empty() {
            return Ok(0);
        }
        self.inner
            .write_all(format!("{:x}\r\n", buf.len()).as_bytes())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The growing log, read from where the last read stopped.
struct Tail {
    path: PathBuf,
    file: Option<File>,
    chunk: Vec<u8>,
    /// The start of a line whose newline has not been read yet.
    partial: Vec<u8>,
    /// Lines read so far (the number of the last complete line).
    lines: u64,
}

impl Tail {
    fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            file: None,
            chunk: vec![0; CHUNK],
            partial: Vec::new(),
            lines: 0,
        }
    }

    /// Reads one chunk of what was appended since the last read and calls `line` with the
    /// number and text (without its line end) of every line it completes. Returns how many
    /// bytes it read: 0 when there is nothing new, or no log yet.
    fn read_chunk(&mut self, line: &mut dyn FnMut(u64, &[u8])) -> io::Result<usize> {
        let Tail {
            path,
            file,
            chunk,
            partial,
            lines,
        } = self;
        let file = match file {
            Some(file) => file,
            None => match File::open(&*path) {
                Ok(opened) => file.insert(opened),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            },
        };
        let n = loop {
            match file.read(chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let (piece, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            rest = &rest[piece.len() + usize::from(ended)..];
            partial.extend_from_slice(piece);
            // Cut where the pending text exceeds MAX_LINE, whatever the chunk boundaries were.
            while partial.len() > MAX_LINE {
                *lines += 1;
                line(*lines, &partial[..MAX_LINE]);
                partial.drain(..MAX_LINE);
            }
            if ended {
                *lines += 1;
                let text = partial.strip_suffix(b"\r").unwrap_or(partial);
                line(*lines, text);
                partial.clear();
            }
        }
        Ok(n)
    }

    /// The last line when it has no newline (the run is over, so it never will): its number
    /// and text.
    fn take_partial(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.partial.is_empty() {
            return None;
        }
        self.lines += 1;
        let mut text = std::mem::take(&mut self.partial);
        if text.last() == Some(&b'\r') {
            text.pop();
        }
        Some((self.lines, text))
    }
}

/// Frames lines for the client and hands them over in batches.
struct Framer<'a> {
    format: Format,
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    last_write: Instant,
    last_line: u64,
    /// A write failed: the client went away.
    gone: bool,
}

impl Framer<'_> {
    fn line(&mut self, n: u64, text: &[u8]) {
        match self.format {
            Format::Sse => sse_line(&mut self.buf, n, text),
            Format::Plain => {
                self.buf.extend_from_slice(text);
                self.buf.push(b'\n');
            }
        }
        self.last_line = n;
        if self.buf.len() >= BATCH {
            // A failed write is remembered; the caller's next `send` reports it.
            let _ = self.write_out();
        }
    }

    /// Writes and flushes what is pending; false when the client is gone.
    fn send(&mut self) -> bool {
        self.write_out().is_ok()
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush());
        self.buf.clear();
        self.last_write = Instant::now();
        self.gone = result.is_err();
        result
    }
}

/// One log line as an SSE event. The text is sent as it is (as UTF-8, invalid bytes
/// replaced), except that a carriage return inside it, which SSE reads as a line end, starts
/// a new `data:` field: the client sees a newline there, and the framing holds.
fn sse_line(buf: &mut Vec<u8>, n: u64, text: &[u8]) {
    buf.extend_from_slice(format!("id: {n}\n").as_bytes());
    let text = String::from_utf8_lossy(text);
    for part in text.split('\r') {
        buf.extend_from_slice(b"data: ");
        buf.extend_from_slice(part.as_bytes());
        buf.push(b'\n');
    }
    buf.push(b'\n');
}

/// The longest SSE line the client reads; a longer one is an error, not unbounded memory.
pub const MAX_SSE_LINE: usize = 1 << 20;
/// The most data one SSE event may carry.
pub const MAX_SSE_EVENT: usize = 4 << 20;

/// One event read from an SSE stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: `message` unless an `event:` field said otherwise.
    pub event: String,
    pub data: String,
    /// The stream's last event id when the event arrived (ids carry over to later events).
    pub id: Option<String>,
}

/// An SSE parser as the HTML standard describes it ("Interpreting an event stream"): fed
/// bytes in any pieces, it yields whole events. Lines end in LF, CRLF or CR; comments
/// (`: ping`) and unknown fields are skipped; `retry:` is remembered; an event without data
/// is not dispatched.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it ends the same line.
    after_cr: bool,
    first_line_done: bool,
    data: String,
    event: String,
    id_buffer: String,
    last_event_id: String,
    retry: Option<Duration>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `bytes` and appends the events they complete to `events`. An over-long line
    /// or event is an `InvalidData` error.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<SseEvent>) -> io::Result<()> {
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(events)?;
                }
                b'\n' => self.end_line(events)?,
                _ => {
                    if self.line.len() >= MAX_SSE_LINE {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("an event-stream line is longer than {MAX_SSE_LINE} bytes"),
                        ));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    /// The id to send as `Last-Event-ID` when reconnecting: the last one an event carried.
    pub fn last_event_id(&self) -> Option<&str> {
        Some(self.last_event_id.as_str()).filter(|id| !id.is_empty())
    }

    /// The reconnection delay the server asked for, if it did.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) -> io::Result<()> {
        let mut line = std::mem::take(&mut self.line);
        if !std::mem::replace(&mut self.first_line_done, true)
            && line.starts_with("\u{feff}".as_bytes())
        {
            line.drain(..3);
        }
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.data.len() + value.len() >= MAX_SSE_EVENT {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("an event-stream event carries more than {MAX_SSE_EVENT} bytes"),
                    ));
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id_buffer = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok().map(Duration::from_millis);
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        self.last_event_id.clone_from(&self.id_buffer);
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        events.push(SseEvent {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data,
            id: self.last_event_id().map(str::to_string),
        });
    }
}

/// Reads SSE events from a byte stream (a response body).
pub struct SseReader<R: Read> {
    inner: R,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    buf: Vec<u8>,
}

impl<R: Read> SseReader<R> {
    pub fn new(inner: R) -> Self {
        SseReader {
            inner,
            parser: SseParser::new(),
            ready: VecDeque::new(),
            buf: vec![0; 8192],
        }
    }

    /// The next event; `None` when the stream ended (an unfinished event at the end is
    /// dropped, as the standard says).
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let n = match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut events = Vec::new();
            self.parser.feed(&self.buf[..n], &mut events)?;
            self.ready.extend(events);
        }
    }

    pub fn parser(&self) -> &SseParser {
        &self.parser
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// A writer the test can read while a stream writes to it from another thread.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn fast() -> StreamOptions {
        StreamOptions {
            poll: Duration::from_millis(2),
            ..StreamOptions::default()
        }
    }

    /// Streams a log that is complete (the run finished) and returns the output.
    fn finished_stream(content: &[u8], from_line: u64, format: Format) -> (String, StreamEnd) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, content).unwrap();
        let mut out = Vec::new();
        let end = stream(&log, from_line, format, &|| true, &mut out, &fast()).unwrap();
        (String::from_utf8(out).unwrap(), end)
    }

    fn parse_all(bytes: &[u8], piece: usize) -> (Vec<SseEvent>, SseParser) {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            parser.feed(chunk, &mut events).unwrap();
        }
        (events, parser)
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn sse_is_chosen_only_when_the_client_accepts_it() {
        for (accept, format) in [
            (None, Format::Plain),
            (Some("*/*"), Format::Plain),
            (
                Some("text/html,application/xhtml+xml,*/*;q=0.8"),
                Format::Plain,
            ),
            (Some("text/event-stream"), Format::Sse),
            (Some("TEXT/Event-Stream"), Format::Sse),
            (
                Some("text/plain;q=0.5, text/event-stream ; q=0.9"),
                Format::Sse,
            ),
            (Some("text/event-stream;q=0"), Format::Plain),
            (Some("text/event-streams"), Format::Plain),
        ] {
            assert_eq!(Format::for_accept(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn headers_say_what_the_body_is_and_that_it_streams() {
        let head = http_head(Format::Sse);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        for line in [
            "Content-Type: text/event-stream\r\n",
            "Cache-Control: no-cache\r\n",
            "X-Accel-Buffering: no\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Connection: close\r\n\r\n",
        ] {
            assert!(head.contains(line), "{line:?} in {head}");
        }
        assert!(http_head(Format::Plain).contains("Content-Type: text/plain; charset=utf-8\r\n"));
    }

    #[test]
    fn each_line_is_an_event_with_its_number_and_the_end_is_eof() {
        let (out, end) = finished_stream(b"one\n two\r\n\nthree", 0, Format::Sse);
        assert_eq!(
            out,
            "id: 1\ndata: one\n\nid: 2\ndata:  two\n\nid: 3\ndata: \n\n\
             id: 4\ndata: three\n\nevent: eof\ndata: 4\n\n"
        );
        assert_eq!(end, StreamEnd::Finished { last_line: 4 });
    }

    #[test]
    fn a_carriage_return_inside_a_line_does_not_break_the_framing() {
        let (out, _) = finished_stream(b"50%\r100%\rdone\n", 0, Format::Sse);
        assert_eq!(
            out,
            "id: 1\ndata: 50%\ndata: 100%\ndata: done\n\nevent: eof\ndata: 1\n\n"
        );
        let (events, _) = parse_all(out.as_bytes(), 3);
        assert_eq!(events[0].data, "50%\n100%\ndone");
        assert_eq!(events[0].id.as_deref(), Some("1"));
    }

    #[test]
    fn what_the_stream_writes_the_parser_reads_back_in_any_pieces() {
        let mut log = Vec::new();
        for i in 1..=50 {
            log.extend_from_slice(format!("line {i}: ünïcödé : data: id: x\n").as_bytes());
        }
        log.extend_from_slice(b"\xff invalid utf-8\n");
        let (out, _) = finished_stream(&log, 0, Format::Sse);
        for piece in [1, 2, 7, 64, 100_000] {
            let (events, parser) = parse_all(out.as_bytes(), piece);
            assert_eq!(events.len(), 52, "piece {piece}");
            for (i, event) in events[..50].iter().enumerate() {
                let n = i + 1;
                assert_eq!(event.event, "message");
                assert_eq!(event.data, format!("line {n}: ünïcödé : data: id: x"));
                assert_eq!(event.id, Some(n.to_string()));
            }
            assert_eq!(events[50].data, "\u{fffd} invalid utf-8");
            assert_eq!(events[51].event, "eof");
            assert_eq!(parser.last_event_id(), Some("51"));
        }
    }

    #[test]
    fn a_resumed_stream_sends_only_the_lines_after_last_event_id() {
        let log = b"a\nb\nc\nd\n";
        let (out, end) = finished_stream(log, 2, Format::Sse);
        assert_eq!(
            out,
            "id: 3\ndata: c\n\nid: 4\ndata: d\n\nevent: eof\ndata: 4\n\n"
        );
        assert_eq!(end.last_line(), 4);
        let (out, end) = finished_stream(log, 4, Format::Sse);
        assert_eq!(out, "event: eof\ndata: 4\n\n");
        assert_eq!(end, StreamEnd::Finished { last_line: 4 });
        let (out, _) = finished_stream(log, 99, Format::Plain);
        assert_eq!(out, "");
        let (out, _) = finished_stream(log, 1, Format::Plain);
        assert_eq!(out, "b\nc\nd\n");
    }

    #[test]
    fn a_request_resumes_from_last_event_id_or_from_the_query() {
        let req = LogRequest::parse(Some("text/event-stream"), Some(" 17 "), Some("from=3"));
        assert_eq!(
            req,
            LogRequest {
                format: Format::Sse,
                from_line: 17,
                follow: true
            }
        );
        let req = LogRequest::parse(None, None, Some("from=3&follow=0"));
        assert_eq!(
            (req.format, req.from_line, req.follow),
            (Format::Plain, 3, false)
        );
        let req = LogRequest::parse(None, Some("garbage"), Some("from=-1&follow"));
        assert_eq!((req.from_line, req.follow), (0, true));
        assert_eq!(resume_from(None), 0);
    }

    #[test]
    fn plain_text_is_the_lines_as_they_are() {
        let (out, end) = finished_stream(b"one\r\ntwo\nlast, unterminated", 0, Format::Plain);
        assert_eq!(out, "one\ntwo\nlast, unterminated\n");
        assert_eq!(end, StreamEnd::Finished { last_line: 3 });
    }

    #[test]
    fn an_over_long_line_is_cut_the_same_way_for_every_reader() {
        let mut log = vec![b'x'; 2 * MAX_LINE + 10];
        log.extend_from_slice(b"\nshort\n");
        let (out, _) = finished_stream(&log, 0, Format::Sse);
        let (events, _) = parse_all(out.as_bytes(), 4096);
        let sizes: Vec<usize> = events.iter().map(|e| e.data.len()).collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10, 5, 1]);
        assert_eq!(events[3].id.as_deref(), Some("4"));
        // Resuming after the second piece finds the same numbering.
        let (out, _) = finished_stream(&log, 2, Format::Sse);
        let (events, _) = parse_all(out.as_bytes(), 4096);
        assert_eq!(events[0].id.as_deref(), Some("3"));
        assert_eq!(events[0].data.len(), 10);
        assert_eq!(events[1].data, "short");
    }

    #[test]
    fn a_growing_log_is_sent_line_by_line_and_never_half_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let done = Arc::new(AtomicBool::new(false));
        let out = Shared::default();
        let streaming = {
            let (log, done, mut out) = (log.clone(), done.clone(), out.clone());
            std::thread::spawn(move || {
                let finished = || done.load(Ordering::SeqCst);
                stream(&log, 0, Format::Sse, &finished, &mut out, &fast()).unwrap()
            })
        };
        // The log does not exist yet: the stream waits for it.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        file.write_all(b"one\ntw").unwrap();
        wait_for("line 1", || out.text().contains("data: one\n"));
        file.write_all(b"o\nthree\n").unwrap();
        wait_for("line 3", || out.text().contains("data: three\n"));
        file.write_all(b"last").unwrap();
        done.store(true, Ordering::SeqCst);
        let end = streaming.join().unwrap();
        assert_eq!(end, StreamEnd::Finished { last_line: 4 });
        assert_eq!(
            out.text(),
            "id: 1\ndata: one\n\nid: 2\ndata: two\n\nid: 3\ndata: three\n\n\
             id: 4\ndata: last\n\nevent: eof\ndata: 4\n\n"
        );
    }

    #[test]
    fn the_lines_written_as_the_run_finishes_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "first\n").unwrap();
        // The run writes its last line and finishes between two looks at the log: the
        // stream must read after it learns the run is over, not before.
        let polls = std::cell::Cell::new(0);
        let finished = || {
            polls.set(polls.get() + 1);
            if polls.get() == 2 {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .unwrap()
                    .write_all(b"last\n")
                    .unwrap();
                return true;
            }
            false
        };
        let mut out = Vec::new();
        let end = stream(&log, 0, Format::Plain, &finished, &mut out, &fast()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "first\nlast\n");
        assert_eq!(end, StreamEnd::Finished { last_line: 2 });
    }

    #[test]
    fn an_idle_stream_is_pinged_and_a_plain_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "only\n").unwrap();
        let opts = StreamOptions {
            ping_every: Duration::from_millis(5),
            retry: Some(Duration::from_millis(1500)),
            ..fast()
        };
        for format in [Format::Sse, Format::Plain] {
            // The run ends after 20 looks at the log, at least 38 ms (19 polls) of idling:
            // several ping intervals.
            let polls = std::cell::Cell::new(0);
            let finished = || {
                polls.set(polls.get() + 1);
                polls.get() > 20
            };
            let mut out = Vec::new();
            stream(&log, 0, format, &finished, &mut out, &opts).unwrap();
            let text = String::from_utf8(out).unwrap();
            if format == Format::Sse {
                assert!(
                    text.starts_with("retry: 1500\n\nid: 1\ndata: only\n\n"),
                    "{text}"
                );
                assert!(text.matches(": ping\n\n").count() >= 2, "{text}");
                let (events, parser) = parse_all(text.as_bytes(), 5);
                assert_eq!(events.len(), 2, "{text}");
                assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
            } else {
                assert_eq!(text, "only\n");
            }
        }
    }

    /// A client that reads `budget` bytes and then goes away.
    struct Leaves {
        budget: usize,
    }

    impl Write for Leaves {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_client_that_goes_away_ends_the_stream_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "a\n".repeat(100_000)).unwrap();
        let opts = StreamOptions {
            ping_every: Duration::from_millis(5),
            ..fast()
        };
        // The whole backlog without the end: the client leaves once it has all of it.
        let (all, _) = finished_stream(&std::fs::read(&log).unwrap(), 0, Format::Sse);
        let backlog = all.len() - "event: eof\ndata: 100000\n\n".len();
        // Mid-backlog, and while idle (found by the ping), with a run that never finishes.
        for budget in [1000, backlog] {
            let (tx, rx) = std::sync::mpsc::channel();
            let (log, opts) = (log.clone(), opts.clone());
            std::thread::spawn(move || {
                let mut out = Leaves { budget };
                let _ = tx.send(stream(&log, 0, Format::Sse, &|| false, &mut out, &opts));
            });
            let end = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("stream ended");
            assert!(matches!(end, Ok(StreamEnd::Disconnected { .. })), "{end:?}");
        }
    }

    #[test]
    fn a_stopped_stream_ends_without_eof() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "a\nb\n").unwrap();
        let opts = fast();
        let out = Shared::default();
        let streaming = {
            let (log, mut out, opts) = (log.clone(), out.clone(), opts.clone());
            std::thread::spawn(move || stream(&log, 0, Format::Sse, &|| false, &mut out, &opts))
        };
        wait_for("both lines", || out.text().contains("data: b\n"));
        opts.cancel.trip(15);
        let end = streaming.join().unwrap().unwrap();
        assert_eq!(end, StreamEnd::Stopped { last_line: 2 });
        assert!(!out.text().contains("eof"), "{}", out.text());
    }

    #[test]
    fn a_finished_run_without_a_log_is_just_eof() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let end = stream(
            &dir.path().join("log"),
            0,
            Format::Sse,
            &|| true,
            &mut out,
            &fast(),
        );
        assert_eq!(end.unwrap(), StreamEnd::Finished { last_line: 0 });
        assert_eq!(out, b"event: eof\ndata: 0\n\n");
    }

    #[test]
    fn respond_frames_the_body_in_chunks_and_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "a\nb\npartial").unwrap();
        let request = LogRequest::parse(Some("text/event-stream"), Some("1"), None);
        let mut conn = Vec::new();
        let end = respond(&mut conn, &log, &request, &|| true, &fast()).unwrap();
        assert_eq!(end, StreamEnd::Finished { last_line: 3 });
        let text = String::from_utf8(conn).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(format!("{head}\r\n\r\n"), http_head(Format::Sse));
        assert_eq!(
            dechunk(body),
            "id: 2\ndata: b\n\nid: 3\ndata: partial\n\nevent: eof\ndata: 3\n\n"
        );
        // Not following: the log so far, even while the run goes on.
        let request = LogRequest::parse(None, None, Some("follow=0"));
        let mut conn = Vec::new();
        respond(&mut conn, &log, &request, &|| false, &fast()).unwrap();
        let text = String::from_utf8(conn).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("Content-Type: text/plain; charset=utf-8"),
            "{head}"
        );
        assert_eq!(dechunk(body), "a\nb\npartial\n");
    }

    /// The payload of a chunked body, which must end with the last chunk and nothing after.
    fn dechunk(mut body: &str) -> String {
        let mut payload = String::new();
        loop {
            let (size, rest) = body.split_once("\r\n").expect("chunk size line");
            let size = usize::from_str_radix(size, 16).expect("hex chunk size");
            assert_eq!(&rest[size..size + 2], "\r\n", "chunk end");
            payload.push_str(&rest[..size]);
            body = &rest[size + 2..];
            if size == 0 {
                assert_eq!(body, "", "bytes after the last chunk");
                return payload;
            }
        }
    }

    #[test]
    fn the_parser_follows_the_event_stream_rules() {
        let stream = "\u{feff}: a comment\r\n\
                      retry: 250\r\n\
                      retry: soon\n\
                      data:no space\n\
                      data:  two spaces\n\
                      ignored-field: x\n\
                      \n\
                      id: 7\rdata\r\r\
                      event: eof\n\
                      id: bad\0id\n\
                      data: x\n\
                      \n\
                      id:\n\
                      event: lonely\n\
                      \n\
                      data: never dispatched";
        for piece in [1, 2, 3, 1000] {
            let (events, parser) = parse_all(stream.as_bytes(), piece);
            assert_eq!(
                events,
                [
                    SseEvent {
                        event: "message".into(),
                        data: "no space\n two spaces".into(),
                        id: None
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "".into(),
                        id: Some("7".into())
                    },
                    SseEvent {
                        event: "eof".into(),
                        data: "x".into(),
                        id: Some("7".into())
                    },
                ],
                "piece {piece}"
            );
            assert_eq!(parser.retry(), Some(Duration::from_millis(250)));
            // `id:` with no value resets the id, even for an event that is not dispatched.
            assert_eq!(parser.last_event_id(), None);
        }
    }

    #[test]
    fn the_parser_refuses_unbounded_input() {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let err = parser
            .feed(&vec![b'x'; MAX_SSE_LINE + 1], &mut events)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut parser = SseParser::new();
        let line = format!("data: {}\n", "x".repeat(MAX_SSE_LINE - 10));
        let err = (0..5)
            .find_map(|_| parser.feed(line.as_bytes(), &mut events).err())
            .expect("an error");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_reader_yields_events_until_the_stream_ends() {
        let bytes = b"id: 1\ndata: a\n\n: ping\n\nid: 2\ndata: b\n\ndata: cut off";
        let mut reader = SseReader::new(&bytes[..]);
        assert_eq!(reader.next_event().unwrap().unwrap().data, "a");
        assert_eq!(reader.next_event().unwrap().unwrap().data, "b");
        assert_eq!(reader.next_event().unwrap(), None);
        assert_eq!(reader.parser().last_event_id(), Some("2"));
    }
}
