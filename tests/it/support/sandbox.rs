//! [`Sandbox`]: one isolated ccci setup for tests that run the binary: its own runs dir, lock
//! dir, abra home and config file in a temporary directory, recipe repositories built from the
//! fixture trees, and the checks that a run left nothing behind. Whatever a test's runs left on
//! the swarm is torn down when the sandbox is dropped, so a failing test leaks nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ccci::docker::teardown::{self, Target};
use ccci::run::record::RunRecord;
use ccci::sys::cancel::Cancel;
use ccci::sys::lock::{AppLock, Holder};
use ccci::sys::process::Runner;

use super::ccci::Ccci;

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn runner() -> Runner {
    Runner::new(Cancel::new())
}

pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A sandbox whose config file holds `config` (YAML; empty for the defaults).
    pub fn new(config: &str) -> Sandbox {
        super::proc::init();
        let sb = Sandbox {
            dir: tempfile::tempdir().unwrap(),
        };
        sb.config(config);
        sb
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the config file.
    pub fn config(&self, text: &str) {
        std::fs::write(self.path("config.yml"), text).unwrap();
    }

    /// `ccci`, set up to use this sandbox.
    pub fn ccci(&self) -> Ccci {
        Ccci::new()
            .env("CCCI_RUNS_DIR", self.path("runs"))
            .env("CCCI_APP_LOCK_DIR", self.path("locks"))
            .env("ABRA_DIR", self.path("abra"))
            .env("CCCI_CONFIG", self.path("config.yml"))
            .env_remove("CCCI_SKIP_FETCH")
    }

    /// A recipe repository built from `fixture` (a directory of versioned trees, relative to
    /// the repository's root) as `<name>.git` in the sandbox.
    pub fn recipe_repo(&self, fixture: &str, name: &str) -> PathBuf {
        let dest = self.path(&format!("{name}.git"));
        let out = Command::new("bash")
            .arg(root().join("scripts/make-recipe-repo.sh"))
            .arg(root().join(fixture))
            .arg(&dest)
            .output()
            .expect("make-recipe-repo.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dest
    }

    /// The bundled demo recipe's repository.
    pub fn demo_repo(&self) -> PathBuf {
        self.recipe_repo("recipes/demo", "demo")
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.path("runs").join(run_id)
    }

    pub fn record(&self, run_id: &str) -> RunRecord {
        RunRecord::read(&self.run_dir(run_id).join("run.json")).unwrap()
    }

    /// The run's log so far (empty before it exists).
    pub fn log(&self, run_id: &str) -> String {
        std::fs::read_to_string(self.run_dir(run_id).join("log")).unwrap_or_default()
    }

    /// The run's teardown marker (`torn-down`), which must be there.
    pub fn teardown_marker(&self, run_id: &str) -> String {
        let path = self.run_dir(run_id).join("torn-down");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no teardown marker {}: {e}", path.display()))
    }

    pub fn env_file(&self, domain: &str) -> PathBuf {
        self.path("abra/servers/default")
            .join(format!("{domain}.env"))
    }

    pub fn lock_file(&self, domain: &str) -> PathBuf {
        self.path("locks").join(format!("{domain}.lock"))
    }

    /// True when nobody holds `domain`'s lock (a missing lock file is a free lock).
    pub fn lock_is_free(&self, domain: &str) -> bool {
        if !self.path("locks").exists() {
            return true;
        }
        AppLock::try_acquire(&self.path("locks"), domain, &Holder::this_process("probe"))
            .unwrap()
            .is_some()
    }

    /// Nothing of the run is left: swarm resources, env file, lock file. The node's copy of a
    /// network the swarm removed, which teardown does not wait for, is given the time
    /// [`teardown::remaining`] gives it to go.
    pub fn assert_nothing_left(&self, record: &RunRecord) {
        let left = teardown::remaining(&runner(), &record.stack).unwrap();
        assert!(left.is_empty(), "left on the swarm: {left:?}");
        let env_file = self.env_file(&record.domain);
        assert!(!env_file.exists(), "env file left: {}", env_file.display());
        let lock = self.lock_file(&record.domain);
        assert!(!lock.exists(), "lock file left: {}", lock.display());
    }

    /// Every run record in the sandbox.
    fn records(&self) -> Vec<RunRecord> {
        std::fs::read_dir(self.path("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| RunRecord::read(&e.path().join("run.json")).ok())
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for record in self.records() {
            if record.stack.is_empty() {
                continue;
            }
            let left = teardown::remaining(&runner(), &record.stack).unwrap_or_default();
            if !left.is_empty() {
                teardown::teardown(
                    &runner().with_budget(Duration::from_secs(120)),
                    &Target {
                        domain: record.domain.clone(),
                        stack: record.stack.clone(),
                        env_file: Some(self.env_file(&record.domain)),
                    },
                    &ccci::event::Discard,
                );
            }
        }
    }
}

/// Files under `dir`, recursively (a missing directory has none).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
