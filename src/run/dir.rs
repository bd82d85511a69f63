//! Run directories: `<runs_dir>/<run-id>/` holds the run's abra home, `run.json`, the plain
//! text `log` that grows while the run runs, `junit.xml`, `diagnostics/` and the teardown
//! marker. The log is written line by line and flushed, so `tail -f` follows a live run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, IoContext, Result};
use crate::event::{Event, EventSink};

#[derive(Clone, Debug)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

impl RunDir {
    /// The id of a run started by hand (A6).
    pub fn manual_id() -> String {
        format!("manual-{}", std::process::id())
    }

    /// Checks a run id given on the command line: one path component.
    pub fn validate_id(id: &str) -> Result<()> {
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !id.starts_with('.');
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "invalid run id `{id}`: use letters, digits, `-`, `_` and `.`"
            )))
        }
    }

    /// Creates `<runs_dir>/<id>/`. An existing directory is reused only when it is empty or
    /// `reuse` is set (a replayed step of the same run).
    pub fn create(runs_dir: &Path, id: &str, reuse: bool) -> Result<RunDir> {
        Self::validate_id(id)?;
        let path = runs_dir.join(id);
        if path.join("run.json").exists() && !reuse {
            return Err(Error::Usage(format!(
                "run directory {} already holds a run: pick another --run-id or remove it",
                path.display()
            )));
        }
        std::fs::create_dir_all(&path).at("create run directory", &path)?;
        Ok(RunDir {
            id: id.to_string(),
            path,
        })
    }

    /// Creates the directory of a run started by hand: `manual-<pid>`, or `manual-<pid>.<n>`
    /// when a run of an earlier process with the same pid left its directory (pids are
    /// reused). Creating the directory is the claim, so two processes never share one.
    pub fn create_manual(runs_dir: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(runs_dir).at("create runs directory", runs_dir)?;
        let base = Self::manual_id();
        for n in 1..1000 {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let path = runs_dir.join(&id);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { id, path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create run directory", &path, e)),
            }
        }
        Err(Error::Usage(format!(
            "{} holds 999 runs named {base}: remove old ones or pass --run-id",
            runs_dir.display()
        )))
    }

    /// An existing run's directory, for the step subcommands.
    pub fn open(runs_dir: &Path, id: &str) -> Result<RunDir> {
        Self::validate_id(id)?;
        let path = runs_dir.join(id);
        if !path.is_dir() {
            return Err(Error::Usage(format!(
                "no run `{id}` in {}: start it with `ccci prepare` or `ccci test`",
                runs_dir.display()
            )));
        }
        Ok(RunDir {
            id: id.to_string(),
            path,
        })
    }

    pub fn run_json(&self) -> PathBuf {
        self.path.join("run.json")
    }

    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }

    pub fn junit(&self) -> PathBuf {
        self.path.join("junit.xml")
    }

    pub fn diagnostics(&self) -> PathBuf {
        self.path.join("diagnostics")
    }

    pub fn backups(&self) -> PathBuf {
        self.path.join("backups")
    }

    /// Written when teardown finished; says what was left, if anything.
    pub fn teardown_marker(&self) -> PathBuf {
        self.path.join("torn-down")
    }

    /// Writes the teardown marker: `clean`, or what was left for the janitor.
    pub fn mark_torn_down(&self, leftovers: &[String]) -> Result<()> {
        let marker = if leftovers.is_empty() {
            "clean\n".to_string()
        } else {
            format!("left for the janitor:\n{}\n", leftovers.join("\n"))
        };
        crate::files::write_atomic(&self.teardown_marker(), marker.as_bytes())
    }
}

/// The run's plain-text log: an [`EventSink`] that writes each event as one timestamped line,
/// and a line sink for the output of the commands the run starts.
#[derive(Clone)]
pub struct RunLog {
    file: Arc<Mutex<File>>,
}

impl RunLog {
    pub fn open(path: &Path) -> Result<RunLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .at("open run log", path)?;
        Ok(RunLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Appends one line with a timestamp. Errors are dropped: a full disk must not turn a
    /// verdict into a crash, and run.json still records the outcome.
    pub fn line(&self, text: &str) {
        let stamp = crate::timestamp::now_rfc3339();
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        for line in text.lines() {
            let _ = writeln!(file, "{stamp} {line}");
        }
    }

    /// A sink for child output, indented under the event that started it.
    pub fn output_sink(&self) -> crate::sys::process::LineSink {
        let log = self.clone();
        Arc::new(move |line: &str| log.line(&format!("  | {line}")))
    }
}

impl EventSink for RunLog {
    fn event(&self, event: &Event) {
        self.line(&event.to_line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_a_reused_pid_gets_a_run_directory_of_its_own() {
        let runs = tempfile::tempdir().unwrap();
        let first = RunDir::create_manual(runs.path()).unwrap();
        assert_eq!(first.id, RunDir::manual_id());
        std::fs::write(first.run_json(), "{}").unwrap();
        // The same pid again (as after pid reuse): a new directory, the old run untouched.
        let second = RunDir::create_manual(runs.path()).unwrap();
        assert_ne!(second.id, first.id);
        assert!(second.id.starts_with(&format!("{}.", first.id)));
        assert!(first.run_json().exists());
        let third = RunDir::create_manual(runs.path()).unwrap();
        assert_ne!(third.id, second.id);
    }

    #[test]
    fn run_ids_are_single_path_components() {
        assert!(RunDir::validate_id("manual-12").is_ok());
        assert!(RunDir::validate_id("pr-7.3").is_ok());
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(RunDir::validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_existing_run_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), "r1", false).unwrap();
        std::fs::write(run.run_json(), "{}").unwrap();
        let err = RunDir::create(tmp.path(), "r1", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already holds a run"), "{err}");
        assert!(RunDir::create(tmp.path(), "r1", true).is_ok());
    }

    #[test]
    fn log_grows_line_by_line() {
        let tmp = tempfile::tempdir().unwrap();
        let log = RunLog::open(&tmp.path().join("log")).unwrap();
        log.event(&Event::Notice {
            message: "first".into(),
        });
        (log.output_sink())("child said\nsomething");
        let text = std::fs::read_to_string(tmp.path().join("log")).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("note: first"));
        assert!(lines[1].ends_with("  | child said"));
    }
}
