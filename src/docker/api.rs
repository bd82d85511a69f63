//! A small synchronous client for the Docker Engine API over its unix socket: enough HTTP/1.1
//! to list swarm resources by label.
//!
//! Why not the docker CLI: each CLI start costs about 40 ms, and the janitor, run from a timer
//! on every CI host, must sweep an idle host in well under 20 ms; one request here costs about
//! a millisecond. This module owns that connection and the parsing of its answers; which engine
//! it connects to is [`super::endpoint`]'s to say, the same one the CLI calls are pinned to. It
//! must never change anything on the engine by itself (callers choose the method), never follow
//! a TCP endpoint (plain-text TCP to a daemon is not something to do quietly), and never read
//! an unbounded answer into memory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::endpoint::Endpoint;
use crate::error::{Error, Result};

/// The API version every request names; Docker 20.10 speaks it, and newer engines still do.
pub const API_VERSION: &str = "v1.41";
/// Larger answers than this are refused rather than buffered.
const MAX_BODY: usize = 64 << 20;
const MAX_HEADER_LINE: usize = 16 << 10;

/// Where the engine listens and how long a request may take.
#[derive(Clone, Debug)]
pub struct Engine {
    socket: PathBuf,
    timeout: Duration,
}

/// A status and body, whatever the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The engine's own error text (`{"message": …}`), or the body as text.
    pub fn message(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }
}

/// The kinds of swarm resources a stack leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Service,
    Container,
    Volume,
    Secret,
    Config,
    Network,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Service,
        Kind::Container,
        Kind::Volume,
        Kind::Secret,
        Kind::Config,
        Kind::Network,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Container => "container",
            Kind::Volume => "volume",
            Kind::Secret => "secret",
            Kind::Config => "config",
            Kind::Network => "network",
        }
    }

    /// The list endpoint, without the API version.
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Container => "containers/json",
            Kind::Volume => "volumes",
            Kind::Secret => "secrets",
            Kind::Config => "configs",
            Kind::Network => "networks",
        }
    }
}

/// One listed resource, reduced to what the janitor and teardown need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resource {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// When the engine created it; `None` when the engine did not say.
    #[serde(skip)]
    pub created: Option<SystemTime>,
}

impl Resource {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

impl Engine {
    /// An engine listening on the unix socket at `socket`.
    pub fn at(socket: impl Into<PathBuf>) -> Self {
        Engine {
            socket: socket.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The engine of this process's [`super::endpoint::current`]: the one every docker CLI
    /// call of ccci's talks to as well. Fails for an endpoint that is not a unix socket.
    pub fn from_env() -> Result<Self> {
        Self::for_endpoint(super::endpoint::current()?)
    }

    /// The engine at `endpoint`, which must be a `unix://` socket.
    pub fn for_endpoint(endpoint: &Endpoint) -> Result<Self> {
        endpoint.unix_socket().map(Self::at)
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request (`path` starts with `/`, e.g. `/v1.41/info`) on a fresh connection
    /// and returns the answer, whatever its status.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Response> {
        let fail = |what: &str, e: std::io::Error| {
            Error::Infra(format!(
                "failed to {what} the docker engine at {}: {e}",
                self.socket.display()
            ))
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| fail("reach", e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| fail("configure the connection to", e))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: ccci\r\nConnection: close\r\n"
        );
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        stream
            .write_all(&request)
            .map_err(|e| fail("send a request to", e))?;
        read_response(&mut BufReader::new(stream)).map_err(|e| match e {
            HttpError::Io(e) => fail("read an answer from", e),
            HttpError::Malformed(why) => Error::Infra(format!(
                "the docker engine at {} sent a malformed answer: {why}",
                self.socket.display()
            )),
        })
    }

    /// GET `path` and parse the JSON answer; a non-2xx status is an error carrying the
    /// engine's message.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.request("GET", path, None)?;
        if !response.is_success() {
            return Err(Error::Infra(format!(
                "docker engine answered {} to GET {path}: {}",
                response.status,
                response.message()
            )));
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| Error::Infra(format!("docker engine sent invalid JSON for {path}: {e}")))
    }

    /// Lists resources of `kind` carrying every label in `labels` (`key` or `key=value`), like
    /// `docker <kind> ls --filter label=…`. Containers include stopped ones.
    pub fn list(&self, kind: Kind, labels: &[&str]) -> Result<Vec<Resource>> {
        let filters = serde_json::json!({ "label": labels }).to_string();
        let mut path = format!(
            "/{API_VERSION}/{}?filters={}",
            kind.endpoint(),
            url_encode(&filters)
        );
        if kind == Kind::Container {
            path.push_str("&all=true");
        }
        let value = self.get_json(&path)?;
        let items = match kind {
            // The volume list is wrapped: {"Volumes": [...], "Warnings": [...]}.
            Kind::Volume => value.get("Volumes").cloned().unwrap_or(Value::Null),
            _ => value,
        };
        let items = match items {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => {
                return Err(Error::Infra(format!(
                    "docker engine listed {} as {}, not a list",
                    kind.endpoint(),
                    type_name(&other)
                )));
            }
        };
        Ok(items.iter().map(|item| resource(kind, item)).collect())
    }

    /// [`Engine::list`] over every kind, services first.
    pub fn list_all(&self, labels: &[&str]) -> Result<Vec<Resource>> {
        let mut all = Vec::new();
        for kind in Kind::ALL {
            all.extend(self.list(kind, labels)?);
        }
        Ok(all)
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads the fields of one listed item; the engine's shapes differ by kind.
fn resource(kind: Kind, item: &Value) -> Resource {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let spec = item.get("Spec");
    let (name, labels, created) = match kind {
        Kind::Service | Kind::Secret | Kind::Config => (
            text(spec.and_then(|s| s.get("Name"))),
            spec.and_then(|s| s.get("Labels")),
            item.get("CreatedAt")
                .and_then(Value::as_str)
                .and_then(parse_time),
        ),
        Kind::Container => (
            item.get("Names")
                .and_then(Value::as_array)
                .and_then(|names| names.first())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            item.get("Labels"),
            item.get("Created")
                .and_then(Value::as_u64)
                .map(|secs| UNIX_EPOCH + Duration::from_secs(secs)),
        ),
        Kind::Volume => (
            text(item.get("Name")),
            item.get("Labels"),
            item.get("CreatedAt")
                .and_then(Value::as_str)
                .and_then(parse_time),
        ),
        Kind::Network => (
            text(item.get("Name")),
            item.get("Labels"),
            item.get("Created")
                .and_then(Value::as_str)
                .and_then(parse_time),
        ),
    };
    let labels = labels
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let id = match kind {
        // Volumes have no id; their name is their identity.
        Kind::Volume => name.clone(),
        _ => text(item.get("ID").or_else(|| item.get("Id"))),
    };
    Resource {
        kind,
        id,
        name,
        labels,
        created,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Parses the engine's timestamps: RFC 3339 with optional fraction, `Z` or a `±hh:mm` offset
/// (volumes and networks are stamped in the daemon's local time).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, fraction),
        None => (clock, ""),
    };
    let mut hms = hms.splitn(3, ':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let second: i64 = hms.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction
            .chars()
            .chain("000000000".chars())
            .take(9)
            .collect();
        digits.parse().ok()?
    };
    let offset_secs: i64 = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[derive(Debug)]
enum HttpError {
    Io(std::io::Error),
    Malformed(String),
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e)
    }
}

fn malformed(why: impl Into<String>) -> HttpError {
    HttpError::Malformed(why.into())
}

/// Reads one HTTP/1.1 response: status line, headers, then a body framed by Content-Length,
/// by chunked transfer coding, or by the end of the connection.
fn read_response(reader: &mut impl BufRead) -> Result<Response, HttpError> {
    let status_line = read_line(reader)?.ok_or_else(|| malformed("empty answer"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(format!("status line `{status_line}`")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(format!("status line `{status_line}`")))?;
    let mut content_length = None;
    let mut chunked = false;
    loop {
        let line = read_line(reader)?.ok_or_else(|| malformed("answer ends inside its headers"))?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed(format!("header line `{line}`")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value
                .parse()
                .map_err(|_| malformed(format!("content-length `{value}`")))?;
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    // No body for these, whatever the headers say (RFC 9112 §6.3).
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Response {
            status,
            body: Vec::new(),
        });
    }
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(length) = content_length {
        if length > MAX_BODY {
            return Err(malformed(format!("a body of {length} bytes is too large")));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
        if body.len() > MAX_BODY {
            return Err(malformed("the body is too large"));
        }
        body
    };
    Ok(Response { status, body })
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| malformed("answer ends inside a chunk"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| malformed(format!("chunk size `{line}`")))?;
        if size == 0 {
            // Trailers, if any, end with an empty line; a closed connection ends them too.
            while let Some(trailer) = read_line(reader)? {
                if trailer.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(malformed("the body is too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(malformed("chunk not followed by CRLF"));
        }
    }
}

/// One line without its CRLF (a bare LF is accepted); `None` at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, HttpError> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_HEADER_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(malformed("line too long or cut short"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| malformed("header is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn parse(raw: &[u8]) -> Result<Response, HttpError> {
        read_response(&mut BufReader::new(raw))
    }

    #[test]
    fn content_length_body() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello trailing").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.body, b"Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn body_until_close_and_no_body_statuses() {
        let r = parse(b"HTTP/1.0 200 OK\nX: y\n\nall of it").unwrap();
        assert_eq!(r.body, b"all of it");
        let r = parse(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for raw in [
            &b""[..],
            b"garbage\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            assert!(parse(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }

    /// Serves one canned answer on a unix socket and hands back the request it received.
    fn serve_once(
        answer: &'static [u8],
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                request.push_str(&line);
            }
            // Answer in two writes so the client has to read across them.
            let mut stream = stream;
            let (a, b) = answer.split_at(answer.len() / 2);
            stream.write_all(a).unwrap();
            stream.flush().unwrap();
            stream.write_all(b).unwrap();
            request
        });
        (dir, socket, handle)
    }

    #[test]
    fn lists_over_a_unix_socket_with_a_chunked_answer() {
        let (_dir, socket, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
1d\r\n{\"Volumes\":[{\"Name\":\"s_data\",\r\n\
48\r\n\"Labels\":{\"ccci.run-id\":\"r1\"},\"CreatedAt\":\"2024-01-02T03:04:05+01:00\"}]}\r\n\
0\r\n\r\n",
        );
        let engine = Engine::at(&socket);
        let volumes = engine.list(Kind::Volume, &["ccci.run-id=r1"]).unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /v1.41/volumes?filters=%7B%22label%22%3A%5B%22ccci.run-id%3Dr1%22%5D%7D HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Connection: close"), "{request}");
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name, "s_data");
        assert_eq!(volumes[0].label("ccci.run-id"), Some("r1"));
        assert_eq!(volumes[0].created, parse_time("2024-01-02T02:04:05Z"));
    }

    #[test]
    fn engine_errors_carry_its_message() {
        let (_dir, socket, server) = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 51\r\n\r\n{\"message\":\"This node is not a swarm manager. Use\"}",
        );
        let err = Engine::at(&socket)
            .list(Kind::Service, &[])
            .unwrap_err()
            .to_string();
        server.join().unwrap();
        assert!(
            err.contains("503") && err.contains("not a swarm manager"),
            "{err}"
        );
        let err = Engine::at("/nonexistent/docker.sock")
            .list(Kind::Service, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("failed to reach the docker engine"), "{err}");
    }

    #[test]
    fn the_endpoint_must_be_a_unix_socket() {
        let default = Endpoint::from_host(super::super::endpoint::DEFAULT_HOST);
        assert_eq!(
            Engine::for_endpoint(&default).unwrap().socket(),
            Path::new("/var/run/docker.sock")
        );
        assert_eq!(
            Engine::for_endpoint(&Endpoint::from_host("unix:///run/d.sock"))
                .unwrap()
                .socket(),
            Path::new("/run/d.sock")
        );
        assert!(Engine::for_endpoint(&Endpoint::from_host("tcp://1.2.3.4:2375")).is_err());
    }

    #[test]
    fn timestamps_from_every_kind() {
        let t = |s| parse_time(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            t("2026-11-22T00:08:19.961123785Z"),
            Some(Duration::new(1_795_306_099, 961_123_785))
        );
        assert_eq!(
            t("2000-03-01T01:00:00+01:00"),
            Some(Duration::from_secs(951_868_800))
        );
        assert_eq!(
            t("2000-02-29T23:30:00-00:30"),
            Some(Duration::from_secs(951_868_800))
        );
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "x-y-zT",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_each_kind_in_its_own_shape() {
        let labels = serde_json::json!({"ccci.run-id": "r", "n": 1});
        let spec = serde_json::json!({"ID": "i1", "CreatedAt": "2024-01-01T00:00:00.5Z",
            "Spec": {"Name": "s_app", "Labels": labels}});
        for kind in [Kind::Service, Kind::Secret, Kind::Config] {
            let r = resource(kind, &spec);
            assert_eq!((r.id.as_str(), r.name.as_str()), ("i1", "s_app"));
            // Non-string label values are dropped rather than failing the listing.
            assert_eq!(r.labels.len(), 1);
            assert!(r.created.is_some());
        }
        let container = serde_json::json!({"Id": "c1", "Names": ["/s_app.1.x"],
            "Created": 1_700_000_000u64, "Labels": labels});
        let r = resource(Kind::Container, &container);
        assert_eq!((r.id.as_str(), r.name.as_str()), ("c1", "s_app.1.x"));
        assert_eq!(
            r.created,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let network = serde_json::json!({"Id": "n1", "Name": "s_default", "Labels": null,
            "Created": "2024-01-01T00:00:00+00:00"});
        let r = resource(Kind::Network, &network);
        assert_eq!((r.name.as_str(), r.labels.len()), ("s_default", 0));
        // Whatever the engine sends, reading it never panics.
        for kind in Kind::ALL {
            let _ = resource(kind, &serde_json::json!([1, "x", null]));
        }
    }
}
