//! `ccci logs`: a run's log, printed as it is or followed until the run finishes, from the
//! run's directory or from a `ccci serve` run page. The binary hands over stdout and renders
//! the notices; finding the run, following it and reconnecting happen here.
//!
//! A local run is finished when its run.json has `finished_at` (the last thing a run writes);
//! a served run is finished when the stream says `eof`. A dropped stream is resumed with
//! `Last-Event-ID`, so no line is printed twice or lost; only a bounded number of reconnects
//! in a row without a line in between is tried before giving up.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::livelog::{self, Format, StreamEnd, StreamOptions};
use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::run::dir::RunDir;

/// Where a run's log is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A run directory on this machine.
    Dir(PathBuf),
    /// The live log of a run on a `ccci serve` (`…/runs/<id>/log`).
    Url(String),
}

impl Source {
    /// Reads the RUN argument: an http(s) URL of a run page (`…/runs/<id>`) or of its log
    /// (`…/runs/<id>/log`); a path (anything with a `/`) to a run directory; else a run id
    /// under `runs_dir`, which is only asked for then (a URL needs no configuration).
    pub fn locate(arg: &str, runs_dir: impl FnOnce() -> Result<PathBuf>) -> Result<Source> {
        let lower = arg.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return log_url(arg).map(Source::Url);
        }
        if arg.contains('/') || arg == "." || arg == ".." {
            let dir = PathBuf::from(arg);
            if !dir.is_dir() {
                return Err(Error::Usage(format!(
                    "{arg} is not a directory: give a run directory, a run id or a `ccci serve` run URL"
                )));
            }
            if !dir.join("log").exists() && !dir.join("run.json").exists() {
                return Err(Error::Usage(format!(
                    "{arg} is not a run directory: it holds neither `log` nor `run.json`"
                )));
            }
            return Ok(Source::Dir(dir));
        }
        RunDir::validate_id(arg)?;
        let runs_dir = runs_dir()?;
        let dir = runs_dir.join(arg);
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "no run `{arg}` in {}: check the id (each run is a directory there), or give a run directory or a `ccci serve` run URL",
                runs_dir.display()
            )));
        }
        Ok(Source::Dir(dir))
    }
}

/// The live-log URL of a run page URL: `…/runs/<id>` gets `/log`, `…/runs/<id>/log` stays;
/// a query or fragment is dropped.
pub fn log_url(url: &str) -> Result<String> {
    let not_a_run = || {
        Error::Usage(format!(
            "{url} is not a run's page: give …/runs/<id> or …/runs/<id>/log of a `ccci serve`"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(not_a_run)?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').ok_or_else(not_a_run)?);
    if authority.is_empty() {
        return Err(not_a_run());
    }
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').collect();
    let valid = |id: &str| RunDir::validate_id(id).is_ok();
    let log_path = match segments[..] {
        [.., "runs", id, "log"] if valid(id) => path.to_string(),
        [.., "runs", id] if valid(id) => format!("{path}/log"),
        _ => return Err(not_a_run()),
    };
    Ok(format!("{scheme}://{authority}{log_path}"))
}

/// True once the run in `run_dir` finished: its run.json has `finished_at`. A run.json that is
/// missing or unreadable is a run still going (a run writes it atomically, so a reader never
/// sees half of one).
pub fn run_finished(run_dir: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Finished {
        finished_at: Option<String>,
    }
    std::fs::read(run_dir.join("run.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Finished>(&bytes).ok())
        .is_some_and(|f| f.finished_at.is_some())
}

/// How `ccci logs` follows.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// How often a local log is looked at while it does not grow.
    pub poll: Duration,
    /// Reconnects in a row, without a line in between, before giving up on a URL.
    pub reconnects: u32,
    /// The wait before reconnecting, unless the server sent its own (SSE `retry:`).
    pub retry: Duration,
    /// The longest wait for a connection and for the answer's headers.
    pub connect_timeout: Duration,
    /// A stream silent this long is taken for dead (the server pings every 30 s).
    pub idle_timeout: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            poll: livelog::DEFAULT_POLL,
            reconnects: 10,
            retry: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(95),
        }
    }
}

/// How printing a log ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Printed {
    /// Followed to the end of the run.
    Finished,
    /// The log as it was, without following.
    SoFar,
    /// The output's reader went away (`ccci logs … | head`): not an error.
    ReaderGone,
}

/// Prints the log of `source` to `out`; with `follow`, until the run finishes. Reconnects
/// are reported to `sink` as notices.
pub fn print(
    source: &Source,
    follow: bool,
    out: &mut dyn Write,
    sink: &dyn EventSink,
    opts: &FollowOptions,
) -> Result<Printed> {
    match source {
        Source::Dir(dir) => print_dir(dir, follow, out, opts),
        Source::Url(url) if follow => follow_url(url, out, sink, opts),
        Source::Url(url) => print_url(url, out, opts),
    }
}

fn print_dir(
    dir: &Path,
    follow: bool,
    out: &mut dyn Write,
    opts: &FollowOptions,
) -> Result<Printed> {
    let log = dir.join("log");
    let stream_opts = StreamOptions {
        poll: opts.poll,
        ..StreamOptions::default()
    };
    let finished = || run_finished(dir);
    let finished: &dyn Fn() -> bool = if follow { &finished } else { &|| true };
    let end = livelog::stream(&log, 0, Format::Plain, finished, out, &stream_opts)
        .map_err(|e| Error::io("read run log", &log, e))?;
    Ok(match end {
        StreamEnd::Disconnected { .. } => Printed::ReaderGone,
        _ if follow => Printed::Finished,
        _ => Printed::SoFar,
    })
}

fn agent(opts: &FollowOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.connect_timeout))
        .timeout_per_read(Some(opts.idle_timeout))
        .build()
        .into()
}

/// Turns an answer that is not a log into the error that says what to do.
fn refused(url: &str, status: u16) -> Error {
    if status == 404 {
        Error::Usage(format!(
            "{url} answered 404: no such run on that server; check the run id in the URL"
        ))
    } else {
        Error::Infra(format!("{url} answered {status}"))
    }
}

/// The log so far: `?follow=0` asks the server to send what there is and end.
fn print_url(url: &str, out: &mut dyn Write, opts: &FollowOptions) -> Result<Printed> {
    let response = agent(opts)
        .get(&format!("{url}?follow=0"))
        .header("Accept", "text/plain")
        .call()
        .map_err(|e| Error::Infra(format!("cannot reach {url}: {e}")))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(refused(url, status));
    }
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(Printed::SoFar),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Infra(format!("failed to read {url}: {e}"))),
        };
        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            return Ok(Printed::ReaderGone);
        }
    }
}

/// Follows the live log over SSE, resuming after the last line printed whenever the stream
/// drops before `eof`.
fn follow_url(
    url: &str,
    out: &mut dyn Write,
    sink: &dyn EventSink,
    opts: &FollowOptions,
) -> Result<Printed> {
    let agent = agent(opts);
    let mut last_id: Option<String> = None;
    let mut retry = opts.retry;
    let mut failures = 0;
    let mut connected = false;
    loop {
        let mut request = agent.get(url).header("Accept", "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let why = match request.call() {
            // A first attempt that fails is a wrong URL or a server that is down: say so now.
            Err(e) if !connected => {
                return Err(Error::Infra(format!("cannot reach {url}: {e}")));
            }
            Err(e) => e.to_string(),
            Ok(response) => {
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if status == 404 || (status != 200 && !connected) {
                    return Err(refused(url, status));
                }
                if status != 200 {
                    format!("the server answered {status}")
                } else if !content_type.starts_with("text/event-stream") {
                    return Err(Error::Usage(format!(
                        "{url} is not a ccci live log: it answered with `{content_type}`"
                    )));
                } else {
                    connected = true;
                    let mut events = livelog::SseReader::new(response.into_body().into_reader());
                    loop {
                        match events.next_event() {
                            Ok(Some(event)) => {
                                if let Some(asked) = events.parser().retry() {
                                    retry = asked;
                                }
                                match event.event.as_str() {
                                    "eof" => return Ok(Printed::Finished),
                                    "message" => {
                                        let line = format!("{}\n", event.data);
                                        if out
                                            .write_all(line.as_bytes())
                                            .and_then(|()| out.flush())
                                            .is_err()
                                        {
                                            return Ok(Printed::ReaderGone);
                                        }
                                        last_id = event.id;
                                        failures = 0;
                                    }
                                    _ => {}
                                }
                            }
                            Ok(None) => break "the stream ended before the run did".to_string(),
                            Err(e) => break e.to_string(),
                        }
                    }
                }
            }
        };
        failures += 1;
        if failures > opts.reconnects {
            return Err(Error::Infra(format!(
                "lost the live log at {url} ({why}) and gave up after {} reconnects",
                opts.reconnects
            )));
        }
        sink.event(&Event::Notice {
            message: format!(
                "live log stream lost ({why}); reconnecting in {} ({failures}/{})",
                humantime::format_duration(Duration::from_millis(retry.as_millis() as u64)),
                opts.reconnects
            ),
        });
        std::thread::sleep(retry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_page_urls_lead_to_their_log() {
        for (given, log) in [
            ("http://h:8080/runs/pr-7.3", "http://h:8080/runs/pr-7.3/log"),
            (
                "https://ci.example/runs/r1/",
                "https://ci.example/runs/r1/log",
            ),
            (
                "https://ci.example/runs/r1/log",
                "https://ci.example/runs/r1/log",
            ),
            (
                "https://ci.example/ccci/runs/r1/log?from=3#end",
                "https://ci.example/ccci/runs/r1/log",
            ),
        ] {
            assert_eq!(log_url(given).unwrap(), log, "{given}");
        }
        for bad in [
            "http://h/",
            "http://h",
            "http:///runs/r1",
            "http://h/runs",
            "http://h/runs/r1/junit.xml",
            "http://h/runs/../log",
            "http://h/other/r1",
        ] {
            let err = log_url(bad).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
            assert!(err.to_string().contains("…/runs/<id>"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_run_is_named_by_id_path_or_url() {
        let runs = tempfile::tempdir().unwrap();
        let run = runs.path().join("r1");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("log"), "x\n").unwrap();
        let runs_dir = || Ok(runs.path().to_path_buf());
        assert_eq!(
            Source::locate("r1", runs_dir).unwrap(),
            Source::Dir(run.clone())
        );
        let path = run.display().to_string();
        // A path needs no configuration.
        let no_config = || -> Result<PathBuf> { panic!("runs_dir asked for") };
        assert_eq!(Source::locate(&path, no_config).unwrap(), Source::Dir(run));
        assert_eq!(
            Source::locate("HTTP://h/runs/r1", no_config).unwrap(),
            Source::Url("HTTP://h/runs/r1/log".into())
        );

        let err = Source::locate("r2", runs_dir).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("no run `r2`") && text.contains(&runs.path().display().to_string()));
        assert!(matches!(
            Source::locate("a b", runs_dir),
            Err(Error::Usage(_))
        ));
        let empty = runs.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = Source::locate(&empty.display().to_string(), runs_dir).unwrap_err();
        assert!(err.to_string().contains("not a run directory"), "{err}");
    }

    #[test]
    fn a_run_is_finished_once_run_json_says_when() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!run_finished(dir.path()));
        let mut record = crate::run::record::RunRecord::new("r1", "demo", "/src", "stack");
        record.write(&dir.path().join("run.json")).unwrap();
        assert!(!run_finished(dir.path()));
        record.finished_at = Some(crate::run::record::now_rfc3339());
        record.write(&dir.path().join("run.json")).unwrap();
        assert!(run_finished(dir.path()));
    }
}
