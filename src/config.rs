//! ccci's configuration: one YAML file, typed, with defaults embedded, unknown keys warned
//! about, and environment overrides for paths. Everything else in the library takes a
//! validated [`Config`] and never reads the environment for these settings itself.
//!
//! Durations are written like `90s`, `15m`, `1h` everywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The settings a run, the janitor and `ccci serve` work with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where run directories go (`CCCI_RUNS_DIR`).
    pub runs_dir: PathBuf,
    /// Where app-domain lock files live; a tmpfs, so a reboot empties it (`CCCI_APP_LOCK_DIR`).
    pub lock_dir: PathBuf,
    /// The canonical abra home (A5: `$ABRA_DIR`, else `~/.abra`).
    pub abra_dir: PathBuf,
    /// The abra server name the test apps are created on (`servers/<server>/`).
    pub server: String,
    /// `--source` defaults to `<recipe_base_url>/<recipe>.git`.
    pub recipe_base_url: String,
    /// The zone generated test domains live under (N3).
    pub domain_zone: String,
    /// A per-host tree of recipe tests that extends or overrides the bundled one.
    pub tests_dir: Option<PathBuf>,
    /// The smallest healthcheck start_period the overlay gives any service.
    pub min_start_period: Duration,
    /// How long a deploy may take to become ready.
    pub deploy_timeout: Duration,
    /// The default deadline of a run (G3); `--deadline` overrides.
    pub deadline: Option<Duration>,
    /// How long teardown may take before it leaves the rest to the janitor (G6).
    pub teardown_budget: Duration,
    /// Grace between SIGTERM and SIGKILL for children (G5).
    pub kill_grace: Duration,
    /// A lock held longer than this is reported as a possible leaked run (J6).
    pub leak_threshold: Duration,
    /// App domains the janitor never touches (J7).
    pub warm_apps: Vec<String>,
    /// How long an app kept with `--keep` (or deployed by a step command) is left alone
    /// before the janitor reaps it (J11); `--keep-for` overrides.
    pub keep_for: Duration,
}

/// The file as written: every key optional, defaults filled in by [`Config::load`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    runs_dir: Option<PathBuf>,
    lock_dir: Option<PathBuf>,
    abra_dir: Option<PathBuf>,
    server: Option<String>,
    recipe_base_url: Option<String>,
    domain_zone: Option<String>,
    tests_dir: Option<PathBuf>,
    min_start_period: Option<String>,
    deploy_timeout: Option<String>,
    deadline: Option<String>,
    teardown_budget: Option<String>,
    kill_grace: Option<String>,
    leak_threshold: Option<String>,
    warm_apps: Vec<String>,
    keep_for: Option<String>,
}

const KNOWN_KEYS: &[&str] = &[
    "runs_dir",
    "lock_dir",
    "abra_dir",
    "server",
    "recipe_base_url",
    "domain_zone",
    "tests_dir",
    "min_start_period",
    "deploy_timeout",
    "deadline",
    "teardown_budget",
    "kill_grace",
    "leak_threshold",
    "warm_apps",
    "keep_for",
    // `ccci serve`'s section, read by `serve::config`.
    "serve",
];

/// The environment ccci reads its overrides from; a map in tests, the process env in `main`.
pub type Env = BTreeMap<String, String>;

/// The process environment as an [`Env`] (non-UTF-8 variables are skipped).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

impl Config {
    /// Where the config file is looked for: `$CCCI_CONFIG`, else
    /// `$XDG_CONFIG_HOME/ccci/config.yml`, else `~/.config/ccci/config.yml`.
    pub fn default_path(env: &Env) -> Option<PathBuf> {
        if let Some(p) = env.get("CCCI_CONFIG") {
            return Some(PathBuf::from(p));
        }
        let base = env
            .get("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".config")))?;
        Some(base.join("ccci").join("config.yml"))
    }

    /// The directory of the config file: where a per-host `tests-recipes/` may live.
    pub fn config_dir(env: &Env) -> Option<PathBuf> {
        Self::default_path(env).and_then(|p| p.parent().map(Path::to_path_buf))
    }

    /// Loads the config file (a missing file is fine: all defaults) and applies environment
    /// overrides. Returns the config and warnings about unknown keys.
    pub fn load(path: Option<&Path>, env: &Env) -> Result<(Config, Vec<String>)> {
        let (raw, warnings) = match path {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                Self::parse_raw(&text, &path.display().to_string())?
            }
            Some(path) if env.contains_key("CCCI_CONFIG") => {
                return Err(Error::Config(format!(
                    "config file {} (from CCCI_CONFIG) does not exist: create it or unset CCCI_CONFIG",
                    path.display()
                )));
            }
            _ => (RawConfig::default(), Vec::new()),
        };
        Ok((Self::resolve(raw, env)?, warnings))
    }

    /// Parses config text; for tests and for `ccci serve`'s configuration check.
    pub fn from_yaml(text: &str, env: &Env) -> Result<(Config, Vec<String>)> {
        let (raw, warnings) = Self::parse_raw(text, "config")?;
        Ok((Self::resolve(raw, env)?, warnings))
    }

    fn parse_raw(text: &str, origin: &str) -> Result<(RawConfig, Vec<String>)> {
        if text.trim().is_empty() {
            return Ok((RawConfig::default(), Vec::new()));
        }
        let value: crate::yaml::Value = crate::yaml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin} is not valid YAML: {e}")))?;
        let mut warnings = Vec::new();
        if let crate::yaml::Value::Mapping(map) = &value {
            for key in map.keys() {
                let key = key.as_str().unwrap_or("?");
                if !KNOWN_KEYS.contains(&key) {
                    warnings.push(format!("{origin}: unknown key `{key}` ignored"));
                }
            }
        } else {
            return Err(Error::Config(format!(
                "{origin} must be a mapping of settings"
            )));
        }
        let raw =
            crate::yaml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        Ok((raw, warnings))
    }

    fn resolve(raw: RawConfig, env: &Env) -> Result<Config> {
        let home = env.get("HOME").map(PathBuf::from);
        let is_root = nix::unistd::geteuid().is_root();
        let abra_dir = env
            .get("ABRA_DIR")
            .map(PathBuf::from)
            .or(raw.abra_dir)
            .or_else(|| home.as_ref().map(|h| h.join(".abra")))
            .ok_or_else(|| {
                Error::Config("cannot find the abra home: set ABRA_DIR or HOME".into())
            })?;
        let runs_dir = env
            .get("CCCI_RUNS_DIR")
            .map(PathBuf::from)
            .or(raw.runs_dir)
            .or_else(|| {
                if is_root {
                    Some(PathBuf::from("/var/lib/ccci/runs"))
                } else {
                    env.get("XDG_STATE_HOME")
                        .map(PathBuf::from)
                        .or_else(|| home.as_ref().map(|h| h.join(".local/state")))
                        .map(|d| d.join("ccci/runs"))
                }
            })
            .ok_or_else(|| Error::Config("cannot choose a runs_dir: set CCCI_RUNS_DIR".into()))?;
        let lock_dir = env
            .get("CCCI_APP_LOCK_DIR")
            .map(PathBuf::from)
            .or(raw.lock_dir)
            .unwrap_or_else(|| default_lock_dir(env, is_root));
        let duration = |key: &str, value: Option<String>, default: &str| -> Result<Duration> {
            parse_duration(value.as_deref().unwrap_or(default))
                .map_err(|e| Error::Config(format!("config key `{key}`: {e}")))
        };
        let deadline = match raw.deadline.as_deref() {
            None => Some(Duration::from_secs(60 * 60)),
            Some("none") | Some("off") => None,
            Some(text) => Some(
                parse_duration(text)
                    .map_err(|e| Error::Config(format!("config key `deadline`: {e}")))?,
            ),
        };
        let domain_zone = raw.domain_zone.unwrap_or_else(|| "ccci.localhost".into());
        crate::naming::validate_domain(&format!("x.{domain_zone}")).map_err(|_| {
            Error::Config(format!(
                "config key `domain_zone`: `{domain_zone}` is not a valid DNS zone"
            ))
        })?;
        Ok(Config {
            runs_dir,
            lock_dir,
            abra_dir,
            server: raw.server.unwrap_or_else(|| "default".into()),
            recipe_base_url: raw
                .recipe_base_url
                .unwrap_or_else(|| "https://git.coopcloud.tech/coop-cloud".into())
                .trim_end_matches('/')
                .to_string(),
            domain_zone,
            tests_dir: raw.tests_dir,
            min_start_period: duration("min_start_period", raw.min_start_period, "15m")?,
            deploy_timeout: duration("deploy_timeout", raw.deploy_timeout, "10m")?,
            deadline,
            teardown_budget: duration("teardown_budget", raw.teardown_budget, "3m")?,
            kill_grace: duration("kill_grace", raw.kill_grace, "5s")?,
            leak_threshold: duration("leak_threshold", raw.leak_threshold, "120m")?,
            warm_apps: raw.warm_apps,
            keep_for: duration("keep_for", raw.keep_for, "4h")?,
        })
    }

    /// The app env file of `domain` in the canonical abra home.
    pub fn env_file(&self, domain: &str) -> PathBuf {
        self.abra_dir
            .join("servers")
            .join(&self.server)
            .join(format!("{domain}.env"))
    }

    /// The lock file of `domain`.
    pub fn lock_file(&self, domain: &str) -> PathBuf {
        self.lock_dir.join(format!("{domain}.lock"))
    }
}

fn default_lock_dir(env: &Env, is_root: bool) -> PathBuf {
    if is_root {
        return PathBuf::from("/run/ccci/locks");
    }
    match env.get("XDG_RUNTIME_DIR") {
        Some(dir) => Path::new(dir).join("ccci/locks"),
        None => PathBuf::from(format!(
            "/tmp/ccci-{}/locks",
            nix::unistd::geteuid().as_raw()
        )),
    }
}

/// Parses `90s`, `15m`, `1h`, `1h30m`, `500ms`. A bare number is refused: the unit is
/// what makes a duration readable.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit: write it like 90s, 15m or 1h"
        ));
    }
    let duration = humantime::parse_duration(text)
        .map_err(|_| format!("`{text}` is not a duration: write it like 90s, 15m or 1h"))?;
    // Every duration ends up added to a clock reading or in alarm(2): bound it here, once,
    // so no later addition can overflow.
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than a year (366d): write a shorter duration"
        ));
    }
    Ok(duration)
}

/// The longest duration ccci accepts anywhere (timeouts, budgets, deadlines, keep).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Renders a duration the way the config file writes it.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn regression_huge_durations_are_refused_not_overflowed() {
        let err = parse_duration("500000000000y").unwrap_err();
        assert!(err.contains("is longer than"), "{err}");
        assert!(parse_duration("367d").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        let e = env(&[("HOME", "/home/x")]);
        let err = Config::from_yaml("keep_for: 99999999999y", &e).unwrap_err();
        assert!(err.to_string().contains("keep_for"), "{err}");
    }

    #[test]
    fn defaults_and_env_overrides() {
        let e = env(&[
            ("HOME", "/home/u"),
            ("CCCI_APP_LOCK_DIR", "/tmp/locks"),
            ("CCCI_RUNS_DIR", "/tmp/runs"),
        ]);
        let (c, warnings) = Config::from_yaml("", &e).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(c.lock_dir, PathBuf::from("/tmp/locks"));
        assert_eq!(c.runs_dir, PathBuf::from("/tmp/runs"));
        assert_eq!(c.abra_dir, PathBuf::from("/home/u/.abra"));
        assert_eq!(c.min_start_period, Duration::from_secs(900));
        assert_eq!(c.leak_threshold, Duration::from_secs(7200));
        let with_abra = env(&[("HOME", "/home/u"), ("ABRA_DIR", "/srv/abra")]);
        let (c, _) = Config::from_yaml("abra_dir: /ignored", &with_abra).unwrap();
        assert_eq!(c.abra_dir, PathBuf::from("/srv/abra"));
    }

    #[test]
    fn unknown_keys_warn_and_bad_values_fail() {
        let e = env(&[("HOME", "/h")]);
        let (_, warnings) = Config::from_yaml("serverr: x\nserver: s", &e).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("serverr"), "{warnings:?}");
        let err = Config::from_yaml("deadline: 45", &e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no unit"), "{err}");
        let err = Config::from_yaml("domain_zone: 'bad zone'", &e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("domain_zone"), "{err}");
        let (c, _) = Config::from_yaml("deadline: off", &e).unwrap();
        assert_eq!(c.deadline, None);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
    }
}
