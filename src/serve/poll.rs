//! The safety net under webhooks: every `poll_interval`, each enrolled repository's comments
//! are read back from the forge and new `!testme`s recorded exactly as a delivery would (the
//! store de-duplicates by comment id, whichever path came first). The first poll of a
//! repository only marks what exists as seen; later ones ask for comments updated since the
//! watermark and act only on those *created* since, because `since` returns edits too.
//!
//! The same thread applies log retention once an hour.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::intake::{Seen, Sighting, consider, follow_up, recorded};
use super::service::{ServeEvent, Service, thread};
use super::store::Trigger;
use crate::error::Result;

const RETENTION_EVERY: Duration = Duration::from_secs(3600);

pub fn spawn(service: Arc<Service>) -> Result<JoinHandle<()>> {
    thread("poller".into(), move || {
        let mut wake = service.poll_wake.waiter();
        let mut retention_due = Instant::now();
        while !service.stopping() {
            if Instant::now() >= retention_due {
                retention(&service);
                retention_due = Instant::now() + RETENTION_EVERY;
            }
            if service.config.poll_interval.is_some() {
                for enrolled in &service.config.repos {
                    if service.stopping() {
                        return;
                    }
                    poll(&service, &enrolled.repo);
                }
            }
            let pause = service.config.poll_interval.unwrap_or(RETENTION_EVERY);
            wake.wait(pause.min(RETENTION_EVERY));
        }
    })
}

/// Polls one repository once; returns how many new commands it recorded.
pub fn poll(service: &Service, repo: &str) -> usize {
    match poll_once(service, repo) {
        Ok(n) => {
            if n > 0 {
                service.emit(ServeEvent::Polled {
                    repo: repo.to_string(),
                    new_commands: n,
                });
            }
            n
        }
        Err(e) => {
            service.emit(ServeEvent::Trouble {
                what: format!("polling {repo}: {e}"),
            });
            0
        }
    }
}

fn poll_once(service: &Service, repo: &str) -> std::result::Result<usize, String> {
    let watermark = service.store.watermark(repo).map_err(|e| e.to_string())?;
    let comments = service
        .forge
        .comments_since(repo, watermark.as_deref())
        .map_err(|e| {
            service.metrics.forge_error("comments");
            e.to_string()
        })?;
    let newest = comments
        .iter()
        .filter_map(|c| unix_of(&c.updated_at).map(|t| (t, c.updated_at.clone())))
        .max_by_key(|(t, _)| *t)
        .map(|(_, text)| text);
    let Some(since) = watermark else {
        // The first poll: what exists was there before ccci watched; none of it runs.
        let ids: Vec<u64> = comments.iter().map(|c| c.id).collect();
        service
            .store
            .mark_seen(repo, &ids)
            .map_err(|e| e.to_string())?;
        let start = newest.unwrap_or_else(crate::timestamp::now_rfc3339);
        service
            .store
            .set_watermark(repo, &start)
            .map_err(|e| e.to_string())?;
        service.emit(ServeEvent::Watching {
            repo: repo.to_string(),
            existing: ids.len(),
        });
        return Ok(0);
    };
    let since_unix = unix_of(&since).unwrap_or(i64::MIN);
    let mut count = 0;
    for c in &comments {
        let (Some(pr), Some(created)) = (c.pr_number, unix_of(&c.created_at)) else {
            continue;
        };
        if created < since_unix {
            continue; // an old comment, edited since
        }
        let sighting = Sighting {
            repo: repo.to_string(),
            pr,
            comment_id: c.id,
            comment_url: Some(c.html_url.clone()),
            author: c.login.clone(),
            body: c.body.clone(),
            trigger: Trigger::Poll,
        };
        if let Seen::Recorded(run) = consider(service, &sighting).map_err(|e| e.to_string())? {
            follow_up(service, recorded(&run));
            count += 1;
        }
    }
    if let Some(newest) = newest.filter(|n| unix_of(n).unwrap_or(i64::MIN) > since_unix) {
        service
            .store
            .set_watermark(repo, &newest)
            .map_err(|e| e.to_string())?;
    }
    Ok(count)
}

/// Unix seconds of an RFC 3339 time with `Z` or a `±hh:mm` offset, as forges write them.
pub fn unix_of(text: &str) -> Option<i64> {
    let text = text.trim();
    let (local, offset) = if let Some(stripped) = text.strip_suffix('Z') {
        (stripped, 0)
    } else {
        let split = text.len().checked_sub(6)?;
        let (local, zone) = (text.get(..split)?, text.get(split..)?);
        let sign = match zone.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours: i64 = zone.get(1..3)?.parse().ok()?;
        let minutes: i64 = zone.get(4..6)?.parse().ok()?;
        (local, sign * (hours * 3600 + minutes * 60))
    };
    let utc = humantime::parse_rfc3339_weak(local).ok()?;
    let secs = utc.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(secs - offset)
}

/// Forgets finished runs past the retention limits, with their run directories and consoles.
pub fn retention(service: &Service) {
    let r = service.config.retention;
    match service.store.prune(r.max_age, r.max_runs) {
        Ok(pruned) => {
            for run in &pruned {
                let dir = service.run_dir(run);
                // Already gone is fine; anything else would only be retried next hour.
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(service.console_file(run));
            }
            if !pruned.is_empty() {
                service.emit(ServeEvent::Pruned { runs: pruned.len() });
            }
        }
        Err(e) => service.emit(ServeEvent::Trouble {
            what: format!("retention: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::unix_of;

    #[test]
    fn forge_times_with_any_offset_compare_as_instants() {
        assert_eq!(unix_of("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(unix_of("1970-01-01T01:01:00+01:00"), Some(60));
        assert_eq!(unix_of("1970-01-01T00:00:00-01:00"), Some(3600));
        assert_eq!(
            unix_of("2026-11-23T17:00:00Z"),
            unix_of("2026-11-23T18:00:00+01:00")
        );
        for junk in [
            "",
            "yesterday",
            "2026-11-23T17:00:00+0100",
            "2026-11-23T17:00:00?01:00",
        ] {
            assert_eq!(unix_of(junk), None, "{junk}");
        }
    }
}
