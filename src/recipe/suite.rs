//! Per-recipe test trees: `tests-recipes/<recipe>/` with `ccci.yml`, hooks and test
//! executables, and the generic suite used when a recipe has no tree.
//!
//! Where trees come from, first match wins for each file: `--tests-dir`, then the config
//! dir's `tests-recipes/`, then the bundled tree. `ccci.yml` from a higher-precedence tree
//! **overrides** the bundled one whole; hooks and the compose template are taken from the
//! first tree that has them; test executables in `<stage>.d/` **extend**: all trees' tests run,
//! a higher tree's file replacing a lower tree's file of the same name.
//!
//! Every file in `<stage>.d/` is a test, except documentation and leftovers: names starting
//! with `.`, `README*` and `*.md` (any case), and editor or merge leftovers (`*~`, `#*#`,
//! `*.bak`, `*.orig`, `*.rej`, `*.swp`); subdirectories are left alone for tests' helpers. A
//! test that is not executable is a configuration error, never a silent skip: a forgotten
//! `chmod +x` must not read as a pass.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::parse_duration;
use crate::error::{Error, Result};
use crate::stage::Stage;

pub const CONFIG_FILE: &str = "ccci.yml";
pub const INSTALL_STEPS: &str = "install_steps.sh";

/// `ccci.yml`, validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecipeTests {
    pub probe: Option<Probe>,
    pub probe_within: Option<Duration>,
    pub deploy_timeout: Option<Duration>,
    /// Stages that apply to this recipe; `None`: all.
    pub stages: Option<Vec<Stage>>,
    pub min_start_period: Option<Duration>,
    pub upgrade_from: Option<String>,
    pub env: BTreeMap<String, String>,
    pub upgrade_env: BTreeMap<String, String>,
    pub marker: Option<Marker>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    Http {
        /// With `{domain}` substituted.
        url: String,
        codes: Vec<u16>,
        timeout: Duration,
    },
    Command {
        service: String,
        run: Vec<String>,
    },
}

/// Where the data marker of the upgrade and backup stages is written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    pub service: String,
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTests {
    probe: Option<RawProbe>,
    timeouts: Option<RawTimeouts>,
    stages: Option<Vec<String>>,
    min_start_period: Option<String>,
    upgrade_from: Option<String>,
    env: BTreeMap<String, String>,
    upgrade_env: BTreeMap<String, String>,
    marker: Option<Marker>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    http: Option<RawHttp>,
    command: Option<RawCommand>,
    within: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: Option<String>,
    path: Option<String>,
    codes: Option<Vec<u16>>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    service: String,
    run: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    deploy: Option<String>,
}

impl RecipeTests {
    pub fn parse(text: &str, origin: &Path) -> Result<RecipeTests> {
        let bad = |msg: String| Error::Config(format!("{}: {msg}", origin.display()));
        if text.trim().is_empty() {
            return Ok(RecipeTests::default());
        }
        let raw: RawTests = crate::yaml::from_str(text).map_err(bad)?;
        let duration = |key: &str, v: &Option<String>| -> Result<Option<Duration>> {
            v.as_deref()
                .map(|t| parse_duration(t).map_err(|e| bad(format!("`{key}`: {e}"))))
                .transpose()
        };
        let (probe, probe_within) = match &raw.probe {
            None => (None, None),
            Some(p) => {
                let within = duration("probe.within", &p.within)?;
                let probe = match (&p.http, &p.command) {
                    (Some(h), None) => {
                        let path = h.path.clone().unwrap_or_else(|| "/".into());
                        Some(Probe::Http {
                            url: h
                                .url
                                .clone()
                                .unwrap_or_else(|| format!("https://{{domain}}{path}")),
                            codes: h.codes.clone().unwrap_or_else(|| vec![200]),
                            timeout: duration("probe.http.timeout", &h.timeout)?
                                .unwrap_or(Duration::from_secs(10)),
                        })
                    }
                    (None, Some(c)) if !c.run.is_empty() => Some(Probe::Command {
                        service: c.service.clone(),
                        run: c.run.clone(),
                    }),
                    (None, Some(_)) => return Err(bad("`probe.command.run` is empty".into())),
                    _ => {
                        return Err(bad(
                            "`probe` needs exactly one of `http` or `command`".into()
                        ));
                    }
                };
                (probe, within)
            }
        };
        let stages = raw
            .stages
            .as_ref()
            .map(|names| -> Result<Vec<Stage>> {
                let mut out = Vec::new();
                for n in names {
                    out.extend(Stage::parse_list(n).map_err(&bad)?);
                }
                Ok(Stage::normalise(out))
            })
            .transpose()?;
        Ok(RecipeTests {
            probe,
            probe_within,
            deploy_timeout: duration(
                "timeouts.deploy",
                &raw.timeouts.as_ref().and_then(|t| t.deploy.clone()),
            )?,
            stages,
            min_start_period: duration("min_start_period", &raw.min_start_period)?,
            upgrade_from: raw.upgrade_from,
            env: raw.env,
            upgrade_env: raw.upgrade_env,
            marker: raw.marker,
        })
    }
}

/// The trees that apply to a recipe, highest precedence first.
#[derive(Clone, Debug, Default)]
pub struct TestTrees {
    pub dirs: Vec<PathBuf>,
}

impl TestTrees {
    /// `roots` are tests-recipes directories, highest precedence first; only those with a
    /// `<recipe>/` directory count.
    pub fn find(recipe: &str, roots: &[PathBuf]) -> TestTrees {
        TestTrees {
            dirs: roots
                .iter()
                .map(|r| r.join(recipe))
                .filter(|d| d.is_dir())
                .collect(),
        }
    }

    /// True when no tree exists: the generic suite runs.
    pub fn is_generic(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The first tree's `ccci.yml` (it overrides lower ones whole).
    pub fn config(&self) -> Result<RecipeTests> {
        for dir in &self.dirs {
            let path = dir.join(CONFIG_FILE);
            if path.is_file() {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
                return RecipeTests::parse(&text, &path);
            }
        }
        Ok(RecipeTests::default())
    }

    /// The first tree's file called `name` (a hook or the compose template).
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        self.dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
    }

    /// The test executables of `stage`, by file name across all trees, a higher tree's file
    /// replacing a lower tree's file of the same name; in name order. Fails when one of them
    /// cannot be run.
    pub fn tests(&self, stage: Stage) -> Result<Vec<PathBuf>> {
        let mut by_name: BTreeMap<OsString, PathBuf> = BTreeMap::new();
        for tree in self.dirs.iter().rev() {
            let dir = tree.join(format!("{stage}.d"));
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("read", &dir, e))?;
                let path = entry.path();
                if is_test_name(&entry.file_name()) && !path.is_dir() {
                    by_name.insert(entry.file_name(), path);
                }
            }
        }
        // Only the files that would run are judged: one shadowed by a higher tree never runs.
        for path in by_name.values() {
            if std::fs::metadata(path).is_err() {
                return Err(Error::Config(format!(
                    "test {} cannot be read (a broken link?): fix or remove it",
                    path.display()
                )));
            }
            if !crate::sys::process::is_executable(path) {
                return Err(Error::Config(format!(
                    "test {0} is not executable: run `chmod +x {0}`",
                    path.display()
                )));
            }
        }
        Ok(by_name.into_values().collect())
    }
}

/// Whether a file in `<stage>.d/` is meant as a test (see the module header).
fn is_test_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    let lower = name.to_ascii_lowercase();
    let leftover = name.ends_with('~')
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || [".bak", ".orig", ".rej", ".swp"]
            .iter()
            .any(|ext| lower.ends_with(ext));
    !(name.starts_with('.') || lower.starts_with("readme") || lower.ends_with(".md") || leftover)
}

/// The tests-recipes roots in precedence order: `--tests-dir`, the config's `tests_dir`, the
/// config dir's `tests-recipes/`, then the bundled tree.
pub fn roots(
    tests_dir: Option<&Path>,
    config: &crate::Config,
    config_dir: Option<&Path>,
    bundled: Option<&Path>,
) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    let candidates = [
        tests_dir.map(Path::to_path_buf),
        config.tests_dir.clone(),
        config_dir.map(|d| d.join("tests-recipes")),
        bundled.map(Path::to_path_buf),
    ];
    for root in candidates.into_iter().flatten() {
        // Absolute: hooks and tests run from their own directory, where a relative path to
        // them (`--tests-dir tests-recipes`) no longer leads anywhere.
        let root = std::path::absolute(&root).unwrap_or(root);
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    roots
}

/// The bundled tree: `CCCI_TESTS_RECIPES`, else `tests-recipes/` next to the source checkout
/// the binary was built from (development), else `<prefix>/share/ccci/tests-recipes`
/// (installed).
pub fn bundled_root(env: &crate::config::Env) -> Option<PathBuf> {
    if let Some(dir) = env.get("CCCI_TESTS_RECIPES") {
        return Some(PathBuf::from(dir));
    }
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-recipes");
    if dev.is_dir() {
        return Some(dev);
    }
    let exe = std::env::current_exe().ok()?;
    let installed = exe.parent()?.parent()?.join("share/ccci/tests-recipes");
    installed.is_dir().then_some(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_ccci_yml() {
        let text = r#"
probe:
  http: {path: /ghost/api/admin/site/, codes: [200, 301]}
  within: 5m
timeouts: {deploy: 20m}
stages: [install, upgrade]
min_start_period: 20m
upgrade_from: "1.2.0+5.0"
env: {A: b}
marker: {service: app, path: /data/m}
"#;
        let t = RecipeTests::parse(text, Path::new("ccci.yml")).unwrap();
        assert_eq!(
            t.probe,
            Some(Probe::Http {
                url: "https://{domain}/ghost/api/admin/site/".into(),
                codes: vec![200, 301],
                timeout: Duration::from_secs(10)
            })
        );
        assert_eq!(t.deploy_timeout, Some(Duration::from_secs(1200)));
        assert_eq!(t.stages, Some(vec![Stage::Install, Stage::Upgrade]));
        assert_eq!(t.env.get("A").map(String::as_str), Some("b"));
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        for (text, want) in [
            ("probe: {}", "exactly one of"),
            ("min_start_period: 15", "no unit"),
            ("stages: [deploy]", "unknown stage"),
            ("prob: {}", "unknown field"),
        ] {
            let err = RecipeTests::parse(text, Path::new("t/ccci.yml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("t/ccci.yml"), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn higher_trees_override_config_and_extend_tests() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let high = tmp.path().join("high");
        let low = tmp.path().join("low");
        let exe = |p: &Path| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        exe(&low.join("demo/install.d/10-a"));
        exe(&low.join("demo/install.d/20-b"));
        exe(&high.join("demo/install.d/20-b"));
        exe(&low.join("demo/pre_install"));
        std::fs::write(low.join("demo/ccci.yml"), "upgrade_from: '1.0.0'").unwrap();
        std::fs::write(high.join("demo/ccci.yml"), "min_start_period: 1m").unwrap();
        let trees = TestTrees::find("demo", &[high.clone(), low.clone()]);
        let tests = trees.tests(Stage::Install).unwrap();
        assert_eq!(
            tests,
            vec![
                low.join("demo/install.d/10-a"),
                high.join("demo/install.d/20-b")
            ]
        );
        let cfg = trees.config().unwrap();
        assert_eq!(cfg.upgrade_from, None, "ccci.yml overrides whole");
        assert_eq!(cfg.min_start_period, Some(Duration::from_secs(60)));
        assert_eq!(
            trees.file("pre_install"),
            Some(low.join("demo/pre_install"))
        );
        assert!(TestTrees::find("other", &[high, low]).is_generic());
    }

    fn write(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn regression_a_test_without_its_executable_bit_was_silently_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("demo/install.d/10-runs"), 0o755);
        let forgotten = tmp.path().join("demo/install.d/20-forgotten");
        write(&forgotten, 0o644);
        let trees = TestTrees::find("demo", &[tmp.path().to_path_buf()]);
        let err = trees.tests(Stage::Install).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "test {0} is not executable: run `chmod +x {0}`",
                forgotten.display()
            )
        );
    }

    #[test]
    fn documentation_and_leftovers_are_not_tests() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo/install.d");
        write(&dir.join("10-runs"), 0o755);
        for name in ["README", "readme.txt", "NOTES.md", ".helper", "#10-runs#"] {
            write(&dir.join(name), 0o644);
        }
        for name in ["10-runs~", "10-runs.bak", "10-runs.orig", "10-runs.rej"] {
            write(&dir.join(name), 0o755);
        }
        std::fs::create_dir(dir.join("lib")).unwrap();
        let trees = TestTrees::find("demo", &[tmp.path().to_path_buf()]);
        assert_eq!(
            trees.tests(Stage::Install).unwrap(),
            vec![dir.join("10-runs")]
        );
        assert_eq!(trees.tests(Stage::Upgrade).unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_non_executable_file_shadowed_by_a_higher_tree_is_not_judged() {
        let tmp = tempfile::tempdir().unwrap();
        let (high, low) = (tmp.path().join("high"), tmp.path().join("low"));
        write(&low.join("demo/install.d/10-check"), 0o644);
        write(&high.join("demo/install.d/10-check"), 0o755);
        let trees = TestTrees::find("demo", &[high.clone(), low]);
        assert_eq!(
            trees.tests(Stage::Install).unwrap(),
            vec![high.join("demo/install.d/10-check")]
        );
    }

    #[test]
    fn regression_a_relative_tests_dir_made_every_test_not_found() {
        let env = crate::config::Env::from([("HOME".to_string(), "/home/x".to_string())]);
        let (config, _) = crate::Config::from_yaml("", &env).unwrap();
        let roots = roots(Some(Path::new("tests-recipes")), &config, None, None);
        assert!(roots[0].is_absolute(), "{roots:?}");
        assert!(roots[0].ends_with("tests-recipes"));
    }
}
