//! Per-run abra homes (A1–A7).
//!
//! Every run gets `<run dir>/abra/`: `servers/` and `catalogue/` are symlinks into the canonical
//! home, so app env files land where the janitor and teardown find them (A1, A7); `recipes/` is
//! the run's own, so concurrent runs of one recipe at different commits never share a tree
//! (A3). Every abra call gets `ABRA_DIR` in the child's environment through [`AbraHome::apply`];
//! ccci never sets it in its own (A2). The canonical home is `$ABRA_DIR`, else `~/.abra` (A5),
//! resolved once in [`crate::Config`].

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::sys::process::Cmd;

#[derive(Clone, Debug)]
pub struct AbraHome {
    /// The run's home: what `ABRA_DIR` is set to for its children.
    pub dir: PathBuf,
    /// The canonical home the links point into.
    pub canonical: PathBuf,
}

impl AbraHome {
    /// Creates `<run_dir>/abra` linked to `canonical` (A1). The canonical `servers/` and
    /// `catalogue/` are created when missing so the links never dangle.
    pub fn create(run_dir: &Path, canonical: &Path) -> Result<AbraHome> {
        let dir = run_dir.join("abra");
        std::fs::create_dir_all(dir.join("recipes")).at("create", dir.join("recipes"))?;
        for shared in ["servers", "catalogue"] {
            let target = canonical.join(shared);
            std::fs::create_dir_all(&target).at("create", &target)?;
            let link = dir.join(shared);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(&target, &link).at("link", &link)?;
            }
        }
        Ok(AbraHome {
            dir,
            canonical: canonical.to_path_buf(),
        })
    }

    /// Where the run's clone of `recipe` lives (A3).
    pub fn recipe_dir(&self, recipe: &str) -> PathBuf {
        self.dir.join("recipes").join(recipe)
    }

    /// The canonically staged clone of `recipe`, copied by `CCCI_SKIP_FETCH=1` runs (A4).
    pub fn canonical_recipe_dir(&self, recipe: &str) -> PathBuf {
        self.canonical.join("recipes").join(recipe)
    }

    /// The app env file, reached through the run's `servers/` link (A7: the same file the
    /// canonical home sees).
    pub fn env_file(&self, server: &str, domain: &str) -> PathBuf {
        crate::recipe::envfile::path_in(&self.dir, server, domain)
    }

    /// `cmd` with `ABRA_DIR` pointing at this home, in the child's environment only (A2).
    pub fn apply(&self, cmd: Cmd) -> Cmd {
        cmd.env("ABRA_DIR", &self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::envfile::EnvFile;

    #[test]
    fn run_home_links_servers_and_has_its_own_recipes() {
        let tmp = tempfile::tempdir().unwrap();
        let canonical = tmp.path().join("canonical");
        let home = AbraHome::create(&tmp.path().join("run"), &canonical).unwrap();
        assert!(
            home.dir
                .join("servers")
                .symlink_metadata()
                .unwrap()
                .is_symlink()
        );
        assert!(
            home.dir
                .join("catalogue")
                .symlink_metadata()
                .unwrap()
                .is_symlink()
        );
        let recipes = home.dir.join("recipes").symlink_metadata().unwrap();
        assert!(recipes.is_dir() && !recipes.is_symlink());
        // Creating it again (a replayed step) is fine.
        AbraHome::create(&tmp.path().join("run"), &canonical).unwrap();
    }

    #[test]
    fn env_file_through_the_link_is_the_canonical_file() {
        // A7: a key written from either side reads the same from the other.
        let tmp = tempfile::tempdir().unwrap();
        let canonical = tmp.path().join("canonical");
        let home = AbraHome::create(&tmp.path().join("run"), &canonical).unwrap();
        let through_run = home.env_file("default", "a-b.example.org");
        let canonical_file =
            crate::recipe::envfile::path_in(&canonical, "default", "a-b.example.org");
        let mut env = EnvFile::parse("TYPE=demo\n").unwrap();
        env.set("FROM_RUN", "1").unwrap();
        env.write(&through_run).unwrap();
        assert_eq!(
            EnvFile::read(&canonical_file)
                .unwrap()
                .get("FROM_RUN")
                .as_deref(),
            Some("1")
        );
        let mut env = EnvFile::read(&canonical_file).unwrap();
        env.set("FROM_CANONICAL", "2").unwrap();
        env.write(&canonical_file).unwrap();
        assert_eq!(
            EnvFile::read(&through_run)
                .unwrap()
                .get("FROM_CANONICAL")
                .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn abra_dir_is_set_on_the_child_only() {
        let tmp = tempfile::tempdir().unwrap();
        let home = AbraHome::create(tmp.path(), &tmp.path().join("c")).unwrap();
        let before = std::env::var_os("ABRA_DIR");
        let cmd = home.apply(Cmd::new("abra").arg("app"));
        assert_eq!(cmd.get_env("ABRA_DIR"), Some(home.dir.as_os_str()));
        assert_eq!(std::env::var_os("ABRA_DIR"), before);
    }
}
