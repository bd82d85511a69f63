//! Recipe sources: clone (or, with `CCCI_SKIP_FETCH=1`, copy the canonically staged clone)
//! into the run's abra home, check out refs by force, and read published versions from
//! release tags.
//!
//! Checkouts are forced because generated files (the overlay) sit in the tree; the overlay is
//! kept out of git's view through `.git/info/exclude` so it never blocks a checkout.

use std::cmp::Ordering;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys::process::{Cmd, Runner};

/// Cloning a large recipe over a slow link can take a while; anything longer is a hang.
const CLONE_TIMEOUT: Duration = Duration::from_secs(300);
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The length of the short commit abra stamps as the chaos version.
pub const SHORT_COMMIT: usize = 8;

/// `--source`, else `<recipe_base_url>/<recipe>.git`.
pub fn source_for(recipe: &str, source: Option<&str>, base_url: &str) -> String {
    match source {
        Some(s) => s.to_string(),
        None => format!("{base_url}/{recipe}.git"),
    }
}

fn git(dir: &Path) -> Cmd {
    // No prompts: a source that wants credentials fails at once instead of hanging the run.
    Cmd::new("git")
        .arg("-C")
        .arg(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .timeout(GIT_TIMEOUT)
}

/// Clones `source` (a git URL or a local path) into `dest`.
pub fn clone(runner: &Runner, source: &str, dest: &Path) -> Result<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| Error::io("remove the old clone", dest, e))?;
    }
    check_local_source(source)?;
    let cmd = Cmd::new("git")
        .args(["clone", "--quiet", "--no-checkout", source])
        .arg(dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .timeout(CLONE_TIMEOUT);
    runner.run(&cmd).map_err(|e| match e {
        crate::sys::process::CommandError::Failed { output, .. } => Error::Infra(format!(
            "cannot clone recipe source `{source}`: {}; check --source and the network",
            output.last_error_line()
        )),
        other => other.into(),
    })?;
    Ok(())
}

/// A source that is a local path must exist; URLs are checked by cloning them.
pub fn check_local_source(source: &str) -> Result<()> {
    if !source.contains("://") && !source.contains('@') && !Path::new(source).exists() {
        return Err(Error::Usage(format!(
            "recipe source `{source}` does not exist: give --source a git URL or a path to a recipe repository"
        )));
    }
    Ok(())
}

/// A4: copies the canonically staged clone instead of fetching.
pub fn copy_staged(runner: &Runner, staged: &Path, dest: &Path) -> Result<()> {
    if !staged.join(".git").exists() {
        return Err(Error::Usage(format!(
            "CCCI_SKIP_FETCH=1 but there is no staged clone at {}: clone the recipe there or unset CCCI_SKIP_FETCH",
            staged.display()
        )));
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| Error::io("remove the old clone", dest, e))?;
    }
    runner.run(&Cmd::new("cp").arg("-a").arg(staged).arg(dest))?;
    Ok(())
}

/// Resolves `git_ref` (commit, tag, branch, or `None` for the default branch's head) to a
/// full commit hash.
pub fn resolve(runner: &Runner, dir: &Path, git_ref: Option<&str>) -> Result<String> {
    let candidates: Vec<String> = match git_ref {
        None => vec!["HEAD".into()],
        Some(r) => vec![
            format!("refs/tags/{r}"),
            format!("refs/remotes/origin/{r}"),
            r.to_string(),
        ],
    };
    if let Some(commit) = first_commit(runner, dir, &candidates)? {
        return Ok(commit);
    }
    // A pull request's head from a fork is in no branch of the recipe: forges keep it under
    // refs/pull/<n>/head, which a clone does not fetch.
    if git_ref.is_some()
        && runner
            .output(&git(dir).args([
                "fetch",
                "--quiet",
                "origin",
                "+refs/pull/*/head:refs/remotes/origin/pull/*",
            ]))?
            .success()
        && let Some(commit) = first_commit(runner, dir, &candidates)?
    {
        return Ok(commit);
    }
    Err(Error::Usage(format!(
        "ref `{}` is not a commit, branch or tag of the recipe: check --ref",
        git_ref.unwrap_or("HEAD")
    )))
}

fn first_commit(runner: &Runner, dir: &Path, candidates: &[String]) -> Result<Option<String>> {
    for candidate in candidates {
        let out = runner.output(&git(dir).args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{candidate}^{{commit}}"),
        ]))?;
        if out.success() {
            return Ok(Some(out.stdout_str().trim().to_string()));
        }
    }
    Ok(None)
}

/// Forced, detached checkout of `commit`: generated files in the tree never block it.
pub fn checkout(runner: &Runner, dir: &Path, commit: &str) -> Result<()> {
    runner.run(&git(dir).args(["checkout", "--quiet", "--force", "--detach", commit]))?;
    Ok(())
}

/// The commit checked out in `dir`.
pub fn head(runner: &Runner, dir: &Path) -> Result<String> {
    Ok(runner
        .stdout(&git(dir).args(["rev-parse", "HEAD"]))?
        .trim()
        .to_string())
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(SHORT_COMMIT)]
}

/// Keeps `file` (relative to the tree) out of git's view in this clone only.
pub fn exclude(dir: &Path, file: &str) -> Result<()> {
    let path = dir.join(".git").join("info").join("exclude");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.lines().any(|l| l.trim() == file) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(file);
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))
}

/// Published versions: release tags that parse as `<semver>[+<upstream>]`, oldest first.
pub fn published_versions(runner: &Runner, dir: &Path) -> Result<Vec<String>> {
    let out = runner.stdout(&git(dir).args(["tag", "--list"]))?;
    Ok(sort_versions(out.lines().map(str::trim)))
}

/// The highest release tag older than `commit`: reachable from it, and not the commit itself.
/// `None` when the recipe has never been published before this change.
pub fn last_published_before(runner: &Runner, dir: &Path, commit: &str) -> Result<Option<String>> {
    let merged = runner.stdout(&git(dir).args(["tag", "--merged", commit]))?;
    let at_commit = runner.stdout(&git(dir).args(["tag", "--points-at", commit]))?;
    let at_commit: Vec<&str> = at_commit.lines().map(str::trim).collect();
    let older = merged
        .lines()
        .map(str::trim)
        .filter(|t| !at_commit.contains(t));
    Ok(sort_versions(older).pop())
}

fn sort_versions<'a>(tags: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut versions: Vec<(Vec<u64>, String)> = tags
        .filter_map(|t| parse_version(t).map(|v| (v, t.to_string())))
        .collect();
    versions.sort_by(|a, b| compare(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
    versions.into_iter().map(|(_, t)| t).collect()
}

/// `1.2.0+5.0.1` → [1, 2, 0, 5, 0, 1]: recipe semver first, then upstream as the tie-break.
/// Pre-releases and anything else that is not a release are not versions.
fn parse_version(tag: &str) -> Option<Vec<u64>> {
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let (recipe, upstream) = tag.split_once('+').unwrap_or((tag, ""));
    let recipe: Vec<u64> = recipe
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if recipe.len() != 3 {
        return None;
    }
    let upstream: Vec<u64> = upstream
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    Some(recipe.into_iter().chain(upstream).collect())
}

fn compare(a: &[u64], b: &[u64]) -> Ordering {
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cancel::Cancel;

    #[test]
    fn versions_sort_by_recipe_then_upstream() {
        let sorted = sort_versions(
            [
                "1.10.0+2.0",
                "1.2.0+5.0.1",
                "latest",
                "1.2.0+5.0.0",
                "0.9.0+1",
                "1.0.0-rc1+1",
            ]
            .into_iter(),
        );
        assert_eq!(
            sorted,
            ["0.9.0+1", "1.2.0+5.0.0", "1.2.0+5.0.1", "1.10.0+2.0"]
        );
    }

    fn sh(dir: &Path, script: &str) {
        let status = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }

    #[test]
    fn a_pull_request_head_from_a_fork_resolves_through_refs_pull() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        // The fork's commit is only under refs/pull/7/head, as a forge keeps it.
        sh(
            &src,
            "git init -q -b main && echo 1 > f && git add f && git commit -qm one \
             && git checkout -q -b fork && echo 2 > f && git commit -qam fork \
             && git update-ref refs/pull/7/head fork && git checkout -q main && git branch -qD fork",
        );
        let fork_head = std::process::Command::new("git")
            .args(["rev-parse", "refs/pull/7/head"])
            .current_dir(&src)
            .output()
            .unwrap();
        let fork_head = String::from_utf8(fork_head.stdout)
            .unwrap()
            .trim()
            .to_string();
        let runner = Runner::new(Cancel::new());
        let dest = tmp.path().join("clone");
        clone(&runner, src.to_str().unwrap(), &dest).unwrap();
        assert_eq!(
            resolve(&runner, &dest, Some(&fork_head)).unwrap(),
            fork_head
        );
        let err = resolve(
            &runner,
            &dest,
            Some("0123456789abcdef0123456789abcdef01234567"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("check --ref"), "{err}");
    }

    #[test]
    fn clone_resolve_and_find_the_base_version() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        sh(
            &src,
            "git init -q -b main && echo 1 > f && git add f && git commit -qm one && git tag -a 0.1.0+1.0 -m r1 \
             && echo 2 > f && git commit -qam two && git tag -a 0.2.0+1.1 -m r2 \
             && echo 3 > f && git commit -qam change && git branch feature",
        );
        let runner = Runner::new(Cancel::new());
        let dest = tmp.path().join("clone");
        clone(&runner, src.to_str().unwrap(), &dest).unwrap();
        let head_commit = resolve(&runner, &dest, None).unwrap();
        assert_eq!(
            resolve(&runner, &dest, Some("feature")).unwrap(),
            head_commit
        );
        let tagged = resolve(&runner, &dest, Some("0.2.0+1.1")).unwrap();
        assert_ne!(tagged, head_commit);
        assert_eq!(
            last_published_before(&runner, &dest, &head_commit)
                .unwrap()
                .as_deref(),
            Some("0.2.0+1.1")
        );
        // Testing a release commit upgrades from the release before it.
        assert_eq!(
            last_published_before(&runner, &dest, &tagged)
                .unwrap()
                .as_deref(),
            Some("0.1.0+1.0")
        );
        checkout(&runner, &dest, &tagged).unwrap();
        std::fs::write(dest.join("compose.ccci.yml"), "x").unwrap();
        exclude(&dest, "compose.ccci.yml").unwrap();
        exclude(&dest, "compose.ccci.yml").unwrap();
        checkout(&runner, &dest, &head_commit).unwrap();
        assert_eq!(head(&runner, &dest).unwrap(), head_commit);
        let status = runner
            .stdout(&git(&dest).args(["status", "--porcelain"]))
            .unwrap();
        assert_eq!(status, "", "the overlay must be invisible to git");
        let err = resolve(&runner, &dest, Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("check --ref"), "{err}");
    }

    #[test]
    fn a_missing_source_is_one_clear_line() {
        let tmp = tempfile::tempdir().unwrap();
        let runner = Runner::new(Cancel::new());
        let err = clone(&runner, "/nonexistent/recipe", &tmp.path().join("d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = clone(
            &runner,
            "file:///nonexistent/recipe.git",
            &tmp.path().join("d"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("cannot clone recipe source"), "{err}");
    }
}
