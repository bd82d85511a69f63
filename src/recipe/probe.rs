//! Readiness probes of the app itself, after the swarm says it is ready: an HTTP request from
//! the ccci host, or a command run in a service's container. A probe is retried until it
//! passes or its time is up; the last failure is the reason.

use std::time::{Duration, Instant};

use crate::docker::Swarm;
use crate::error::{Error, Result};
use crate::recipe::suite::Probe;
use crate::sys::process::Runner;

/// One attempt's outcome: `Ok` or why not.
pub type Attempt = std::result::Result<(), String>;

/// Runs `probe` once.
pub fn attempt(probe: &Probe, swarm: &Swarm, stack: &str, domain: &str) -> Attempt {
    match probe {
        Probe::Http {
            url,
            codes,
            timeout,
        } => http_once(&url.replace("{domain}", domain), codes, *timeout),
        Probe::Command { service, run } => match swarm.exec_short(stack, service, run) {
            Ok(out) if out.success() => Ok(()),
            Ok(out) => Err(format!(
                "`{}` in {service} exited with {}: {}",
                run.join(" "),
                out.code.map_or("a signal".to_string(), |c| c.to_string()),
                out.last_error_line()
            )),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Retries `probe` until it passes, `within` passes, or the run is cancelled.
pub fn wait(
    probe: &Probe,
    swarm: &Swarm,
    runner: &Runner,
    stack: &str,
    domain: &str,
    within: Duration,
) -> Result<()> {
    let until = Instant::now() + within;
    let mut pause = Duration::from_millis(200);
    loop {
        runner.check()?;
        let last = match attempt(probe, swarm, stack, domain) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() + pause >= until {
            return Err(Error::Failed(format!(
                "probe did not pass within {}: {last}",
                crate::config::format_duration(within)
            )));
        }
        // Back off, but stay responsive to cancellation.
        let wake = Instant::now() + pause;
        while Instant::now() < wake {
            runner.check()?;
            std::thread::sleep(Duration::from_millis(50).min(wake - Instant::now()));
        }
        pause = (pause * 2).min(Duration::from_secs(3));
    }
}

/// One GET; the status must be in `codes`. Redirects are not followed, so a login redirect is
/// only accepted when the recipe says 302 is fine.
fn http_once(url: &str, codes: &[u16], timeout: Duration) -> Attempt {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(response) => {
            let status = response.status().as_u16();
            if codes.contains(&status) {
                Ok(())
            } else {
                Err(format!(
                    "GET {url} answered {status}, expected {}",
                    codes
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            }
        }
        Err(e) => Err(format!("GET {url} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-request HTTP server on loopback answering `status`.
    fn serve_once(status: u16) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        format!("http://{addr}/health")
    }

    #[test]
    fn http_probe_accepts_only_the_listed_codes() {
        let t = Duration::from_secs(5);
        assert_eq!(http_once(&serve_once(200), &[200], t), Ok(()));
        let err = http_once(&serve_once(404), &[200, 302], t).unwrap_err();
        assert!(err.contains("answered 404, expected 200 or 302"), "{err}");
        let err = http_once("http://127.0.0.1:1/", &[200], t).unwrap_err();
        assert!(err.contains("failed"), "{err}");
    }
}
