//! Per-recipe test trees: `tests-recipes/<recipe>/` with `ccci.yml`, hooks and test
//! executables, and the generic suite used when a recipe has no tree.
//!
//! Where trees come from, first match wins for each file: `--tests-dir`, then the config
//! dir's `tests-recipes/`, then the bundled tree. `ccci.yml` from a higher-precedence tree
//! **overrides** the bundled one whole; hooks and the compose template are taken from the
//! first tree that has them; test executables in `<stage>.d/` **extend**: all trees' tests run,
//! a higher tree's file replacing a lower tree's file of the same name.

use std::collections::BTreeMap;
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
    /// replacing a lower tree's file of the same name; in name order.
    pub fn tests(&self, stage: Stage) -> Vec<PathBuf> {
        let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in self.dirs.iter().rev() {
            let Ok(entries) = std::fs::read_dir(dir.join(format!("{stage}.d"))) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if crate::sys::process::is_executable(&path) {
                    by_name.insert(entry.file_name().to_string_lossy().into_owned(), path);
                }
            }
        }
        by_name.into_values().collect()
    }
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
        let tests = trees.tests(Stage::Install);
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
}
