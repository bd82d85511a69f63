//! The labels ccci stamps on what a run deploys, and the ones it reads from recipes: one
//! definition shared by the code that writes them (the overlay, the stack driver's secrets)
//! and the code that reads them (the janitor, the chaos-version proof).
//!
//! A run's resources say which run they belong to, which app domain, which ccci setup (the
//! lock directory the run's lock lives in: two setups on one host never take each other's
//! apps for orphans, J10), when the run must be over, and, for an app kept on purpose, until
//! when it is kept (J11).

use std::path::Path;

/// The run id (`ccci.run-id`): every resource of a run has it; the janitor lists by it.
pub const RUN_ID: &str = "ccci.run-id";
/// The app domain the run deployed.
pub const DOMAIN: &str = "ccci.domain";
/// The recipe, on services.
pub const RECIPE: &str = "ccci.recipe";
/// Unix seconds the run must be over by, or `none`.
pub const DEADLINE: &str = "ccci.deadline";
/// The ccci setup that deployed the app: a short hash of its lock directory.
pub const SETUP: &str = "ccci.setup";
/// Unix seconds until which an app kept on purpose is left alone.
pub const KEEP_UNTIL: &str = "ccci.keep-until";

/// The env file line that names the setup of the run that created the app, for apps that
/// have no swarm resources (yet) to carry [`SETUP`].
pub const ENV_SETUP: &str = "CCCI_SETUP";

/// The labels every resource of one run carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLabels {
    pub run_id: String,
    pub domain: String,
    pub setup: String,
    pub deadline_unix: Option<u64>,
    pub keep_until: Option<u64>,
}

impl RunLabels {
    /// As `key=value` pairs, in a fixed order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            (RUN_ID.to_string(), self.run_id.clone()),
            (DOMAIN.to_string(), self.domain.clone()),
            (SETUP.to_string(), self.setup.clone()),
            (
                DEADLINE.to_string(),
                self.deadline_unix
                    .map_or_else(|| "none".to_string(), |d| d.to_string()),
            ),
        ];
        if let Some(until) = self.keep_until {
            pairs.push((KEEP_UNTIL.to_string(), until.to_string()));
        }
        pairs
    }
}

/// The setup id of a lock directory: 8 hex digits of a stable hash of its canonical path (links
/// and `..` resolved, so `/var/run/ccci/locks` and `/run/ccci/locks` are one setup), so every
/// process of one setup computes the same id and another setup a different one. A directory
/// that does not exist yet is resolved through its nearest existing ancestor.
pub fn setup_id(lock_dir: &Path) -> String {
    let absolute = canonical(lock_dir);
    // FNV-1a: stable across Rust versions and platforms, unlike std's DefaultHasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in absolute.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash as u32 ^ (hash >> 32) as u32)
}

fn canonical(path: &Path) -> std::path::PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// `coop-cloud.<stack>.chaos`: set on a chaos deploy.
pub fn chaos(stack: &str) -> String {
    format!("coop-cloud.{stack}.chaos")
}

/// `coop-cloud.<stack>.chaos-version`: the short commit a chaos deploy runs.
pub fn chaos_version(stack: &str) -> String {
    format!("coop-cloud.{stack}.chaos-version")
}

/// `coop-cloud.<stack>.timeout`: how long abra waits for the deploy to converge, in seconds.
pub fn timeout(stack: &str) -> String {
    format!("coop-cloud.{stack}.timeout")
}

/// `coop-cloud.<stack>.version`: the release a recipe's main service says it runs.
pub fn version(stack: &str) -> String {
    format!("coop-cloud.{stack}.version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_id_is_stable_and_tells_lock_dirs_apart() {
        let a = setup_id(Path::new("/run/ccci/locks"));
        assert_eq!(a, setup_id(Path::new("/run/ccci/locks")));
        assert_eq!(a.len(), 8);
        assert_ne!(a, setup_id(Path::new("/tmp/other/locks")));
    }

    #[test]
    fn regression_one_lock_dir_spelt_two_ways_was_two_setups() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("run/ccci/locks");
        std::fs::create_dir_all(&real).unwrap();
        let link = tmp.path().join("var-run");
        std::os::unix::fs::symlink(tmp.path().join("run"), &link).unwrap();
        let id = setup_id(&real);
        assert_eq!(setup_id(&link.join("ccci/locks")), id);
        assert_eq!(setup_id(&tmp.path().join("run/ccci/../ccci/locks")), id);
        // Not created yet: resolved through what exists.
        assert_eq!(
            setup_id(&link.join("ccci/new")),
            setup_id(&real.parent().unwrap().join("new"))
        );
    }

    #[test]
    fn run_labels_carry_keep_only_when_kept() {
        let mut labels = RunLabels {
            run_id: "r1".into(),
            domain: "dem-abc123.ccci.localhost".into(),
            setup: "0123abcd".into(),
            deadline_unix: None,
            keep_until: None,
        };
        let pairs = labels.pairs();
        assert!(pairs.contains(&(DEADLINE.into(), "none".into())));
        assert!(!pairs.iter().any(|(k, _)| k == KEEP_UNTIL));
        labels.keep_until = Some(42);
        assert!(labels.pairs().contains(&(KEEP_UNTIL.into(), "42".into())));
    }
}
