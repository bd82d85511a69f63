//! `ccci serve`'s settings: the `serve:` section of ccci's one config file, typed and checked
//! before anything listens. Secrets (the forge token, webhook secrets) are read from files or
//! environment variables named here, never written in the file itself, and never printed:
//! [`Secret`]'s `Debug` is redacted.
//!
//! ```yaml
//! serve:
//!   listen: 127.0.0.1:8470
//!   public_url: https://ci.example.org
//!   forge:
//!     url: https://git.example.org
//!     token: { file: /run/credentials/ccci-serve.service/forge-token }
//!   webhook_secrets: [{ env: CCCI_WEBHOOK_SECRET }]
//!   repos: [coop-cloud/ghost, { repo: coop-cloud/custom-html, recipe: custom-html }]
//!   authorize: either          # org_member | write | either
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use super::forge::AuthRule;
use crate::config::{Env, parse_duration};
use crate::error::{Error, Result};
use crate::stage::Stage;

/// A secret read from a file or the environment. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One enrolled recipe repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolled {
    /// `owner/name` on the forge.
    pub repo: String,
    /// The recipe it holds: the repository's name unless configured.
    pub recipe: String,
}

/// How long finished runs are kept (their rows, logs and run directories).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_runs: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The dashboard's address as the forge's users reach it: the target of commit statuses.
    pub public_url: String,
    pub forge_url: String,
    pub token: Secret,
    /// The environment variables secrets were read from: runs never inherit them.
    pub secret_envs: Vec<String>,
    /// Every secret a delivery may be signed with (several at once while rotating). Empty:
    /// every delivery is refused and only polling finds commands.
    pub webhook_secrets: Vec<Secret>,
    pub repos: Vec<Enrolled>,
    pub authorize: AuthRule,
    /// The organisation whose members may ask; default: each repository's owner.
    pub org: Option<String>,
    /// How many runs at once.
    pub concurrency: usize,
    /// Where the database lives.
    pub state_dir: PathBuf,
    /// How often enrolled repositories' comments are polled; `None`: never.
    pub poll_interval: Option<Duration>,
    /// New commits on a pull request cancel its queued or running run.
    pub cancel_on_push: bool,
    /// A run's deadline; `None`: the run's own (the config's `deadline`).
    pub run_deadline: Option<Duration>,
    pub retention: Retention,
    /// The commit status context, as the forge shows it.
    pub status_context: String,
    /// How long one forge API call may take.
    pub forge_timeout: Duration,
    /// The deploy driver runs use (`auto`, `abra`, `stack`).
    pub driver: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
    public_url: Option<String>,
    forge: Option<RawForge>,
    webhook_secrets: Vec<RawSecret>,
    repos: Vec<RawRepo>,
    authorize: Option<AuthRule>,
    org: Option<String>,
    concurrency: Option<usize>,
    state_dir: Option<PathBuf>,
    poll_interval: Option<String>,
    cancel_on_push: Option<bool>,
    run_deadline: Option<String>,
    retention: Option<RawRetention>,
    status_context: Option<String>,
    forge_timeout: Option<String>,
    driver: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForge {
    url: String,
    token: RawSecret,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSecret {
    file: Option<PathBuf>,
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRepo {
    Name(String),
    Full {
        repo: String,
        recipe: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRetention {
    max_age: Option<String>,
    max_runs: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct RawFile {
    serve: Option<crate::yaml::Value>,
}

impl ServeConfig {
    /// Reads the `serve:` section of the config file at `path`.
    pub fn load(path: &Path, env: &Env) -> Result<ServeConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read config file {}: {e}; `ccci serve` needs one with a `serve:` section",
                path.display()
            ))
        })?;
        Self::from_yaml(&text, env)
    }

    /// Parses the `serve:` section of config text.
    pub fn from_yaml(text: &str, env: &Env) -> Result<ServeConfig> {
        let file: RawFile = crate::yaml::from_str(text)
            .map_err(|e| Error::Config(format!("config is not valid YAML: {e}")))?;
        let section = file.serve.ok_or_else(|| {
            Error::Config(
                "the config has no `serve:` section: add one (see `ccci serve --help`)".into(),
            )
        })?;
        let raw: RawServe = serde_yaml::from_value(section).map_err(|e| {
            // serde names the type it wanted; the user knows it as the `serve:` section.
            let e = e
                .to_string()
                .replace("struct RawServe", "a mapping of settings");
            Error::Config(format!("config `serve`: {e}"))
        })?;
        Self::resolve(raw, env)
    }

    fn resolve(raw: RawServe, env: &Env) -> Result<ServeConfig> {
        let bad = |key: &str, why: String| Error::Config(format!("config `serve.{key}`: {why}"));
        let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8470".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            bad(
                "listen",
                format!("`{listen_text}` is not an address like 127.0.0.1:8470"),
            )
        })?;
        let public_url = raw
            .public_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        check_url(&public_url).map_err(|why| bad("public_url", why))?;
        let forge = raw.forge.ok_or_else(|| {
            bad(
                "forge",
                "missing: give the forge's `url` and `token`".into(),
            )
        })?;
        let forge_url = forge.url.trim_end_matches('/').to_string();
        check_url(&forge_url).map_err(|why| bad("forge.url", why))?;
        let token = read_secret(&forge.token, env).map_err(|why| bad("forge.token", why))?;
        let webhook_secrets = raw
            .webhook_secrets
            .iter()
            .map(|s| read_secret(s, env))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|why| bad("webhook_secrets", why))?;
        if raw.repos.is_empty() {
            return Err(bad(
                "repos",
                "no repository is enrolled: list `owner/name`s".into(),
            ));
        }
        let mut repos: Vec<Enrolled> = Vec::new();
        for entry in raw.repos {
            let (repo, recipe) = match entry {
                RawRepo::Name(repo) => (repo, None),
                RawRepo::Full { repo, recipe } => (repo, recipe),
            };
            let Some((_, name)) = split_repo(&repo) else {
                return Err(bad("repos", format!("`{repo}` is not `owner/name`")));
            };
            let recipe = recipe.unwrap_or_else(|| name.to_string());
            crate::naming::validate_recipe(&recipe).map_err(|e| bad("repos", e.to_string()))?;
            if repos.iter().any(|r| r.repo.eq_ignore_ascii_case(&repo)) {
                return Err(bad("repos", format!("`{repo}` is listed twice")));
            }
            repos.push(Enrolled { repo, recipe });
        }
        let duration = |key: &str, text: Option<String>, default: &str| -> Result<Duration> {
            parse_duration(text.as_deref().unwrap_or(default)).map_err(|why| bad(key, why))
        };
        let optional =
            |key: &str, text: Option<String>, default: &str| -> Result<Option<Duration>> {
                match text.as_deref().unwrap_or(default) {
                    "off" | "none" => Ok(None),
                    t => parse_duration(t).map(Some).map_err(|why| bad(key, why)),
                }
            };
        let concurrency = raw.concurrency.unwrap_or(1);
        if concurrency == 0 || concurrency > 64 {
            return Err(bad(
                "concurrency",
                format!("{concurrency} is not between 1 and 64"),
            ));
        }
        let retention = raw.retention.unwrap_or_default();
        let retention = Retention {
            max_age: match duration("retention.max_age", retention.max_age, "30d")? {
                Duration::ZERO => {
                    return Err(bad(
                        "retention.max_age",
                        "0 would forget every run as it finishes: give a duration like 30d".into(),
                    ));
                }
                age => age,
            },
            max_runs: retention.max_runs.unwrap_or(1000).max(1),
        };
        let driver = raw.driver.unwrap_or_else(|| "auto".into());
        if !matches!(driver.as_str(), "auto" | "abra" | "stack") {
            return Err(bad(
                "driver",
                format!("`{driver}` is not auto, abra or stack"),
            ));
        }
        let state_dir = env
            .get("CCCI_STATE_DIR")
            .map(PathBuf::from)
            .or(raw.state_dir)
            .or_else(|| default_state_dir(env))
            .ok_or_else(|| {
                bad(
                    "state_dir",
                    "cannot choose one: set it or CCCI_STATE_DIR".into(),
                )
            })?;
        let secret_envs = std::iter::once(&forge.token)
            .chain(&raw.webhook_secrets)
            .filter_map(|s| s.env.clone())
            .collect();
        Ok(ServeConfig {
            secret_envs,
            listen,
            public_url,
            forge_url,
            token,
            webhook_secrets,
            repos,
            authorize: raw.authorize.unwrap_or(AuthRule::Either),
            org: raw.org,
            concurrency,
            state_dir,
            poll_interval: optional("poll_interval", raw.poll_interval, "30s")?,
            cancel_on_push: raw.cancel_on_push.unwrap_or(true),
            run_deadline: optional("run_deadline", raw.run_deadline, "none")?,
            retention,
            status_context: raw.status_context.unwrap_or_else(|| "ccci".into()),
            forge_timeout: duration("forge_timeout", raw.forge_timeout, "10s")?,
            driver,
        })
    }

    /// The enrolled repository `full_name` names, if any (forges keep the owner's case).
    pub fn enrolled(&self, full_name: &str) -> Option<&Enrolled> {
        self.repos
            .iter()
            .find(|r| r.repo.eq_ignore_ascii_case(full_name))
    }

    /// The organisation whose members may ask for runs in `repo`.
    pub fn org_of<'a>(&'a self, repo: &'a str) -> &'a str {
        self.org
            .as_deref()
            .unwrap_or_else(|| split_repo(repo).map_or(repo, |(owner, _)| owner))
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.state_dir.join("serve.db")
    }
}

/// The stages a `!testme` names, checked and in run order (`all`, or nothing, is every
/// stage): an unknown name is the commenter's mistake, answered with this message.
pub fn stages_of(words: &[String]) -> std::result::Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    for word in words {
        for part in word.split(',').filter(|p| !p.is_empty()) {
            stages.extend(Stage::parse_list(&part.to_ascii_lowercase())?);
        }
    }
    Ok(Stage::normalise(stages))
}

/// `owner/name` split in two, both non-empty and free of odd characters.
pub fn split_repo(repo: &str) -> Option<(&str, &str)> {
    let (owner, name) = repo.split_once('/')?;
    let fine = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (fine(owner) && fine(name)).then_some((owner, name))
}

fn check_url(url: &str) -> std::result::Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("`{url}` is not an http(s) URL"))
    }
}

fn read_secret(raw: &RawSecret, env: &Env) -> std::result::Result<Secret, String> {
    let value = match (&raw.file, &raw.env) {
        (Some(file), None) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read secret file {}: {e}", file.display()))?,
        (None, Some(name)) => env
            .get(name)
            .cloned()
            .ok_or_else(|| format!("environment variable {name} is not set"))?,
        _ => return Err("give exactly one of `file:` or `env:`".into()),
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(Secret(value))
}

fn default_state_dir(env: &Env) -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/ccci"));
    }
    env.get("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".local/state")))
        .map(|d| d.join("ccci"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        [
            ("HOME".to_string(), "/home/u".to_string()),
            ("TOKEN".to_string(), "s3cret-token".to_string()),
            ("HOOK".to_string(), "hook-secret".to_string()),
        ]
        .into()
    }

    const GOOD: &str = "serve:\n  forge:\n    url: http://127.0.0.1:3000/\n    token: {env: TOKEN}\n  webhook_secrets: [{env: HOOK}]\n  repos: [coop-cloud/demo, {repo: Coop-Cloud/other, recipe: custom-html}]\n  state_dir: /tmp/s\n";

    #[test]
    fn a_minimal_section_gets_defaults() {
        let c = ServeConfig::from_yaml(GOOD, &env()).unwrap();
        assert_eq!(c.forge_url, "http://127.0.0.1:3000");
        assert_eq!(c.token.expose(), "s3cret-token");
        assert_eq!(c.webhook_secrets, vec![Secret::new("hook-secret")]);
        assert_eq!(c.repos[0].recipe, "demo");
        assert_eq!(
            c.enrolled("coop-cloud/OTHER").unwrap().recipe,
            "custom-html"
        );
        assert_eq!(c.authorize, AuthRule::Either);
        assert_eq!(c.org_of("coop-cloud/demo"), "coop-cloud");
        assert_eq!(c.poll_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.database(), PathBuf::from("/tmp/s/serve.db"));
        assert!(c.cancel_on_push);
        assert_eq!(
            c.secret_envs,
            ["TOKEN", "HOOK"],
            "runs must not inherit these"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = ServeConfig::from_yaml(GOOD, &env()).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret-token") && !shown.contains("hook-secret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_sections_are_one_clear_line() {
        let cases = [
            ("runs_dir: /x\n", "no `serve:` section"),
            ("serve:\n  repos: [a/b]\n", "serve.forge"),
            (
                "serve:\n  forge: {url: ftp://x, token: {env: TOKEN}}\n  repos: [a/b]\n",
                "not an http(s) URL",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: NOPE}}\n  repos: [a/b]\n",
                "NOPE is not set",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: TOKEN, file: /x}}\n  repos: [a/b]\n",
                "exactly one",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: TOKEN}}\n",
                "no repository",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: TOKEN}}\n  repos: [nope]\n",
                "not `owner/name`",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: TOKEN}}\n  repos: [a/b]\n  authorize: anyone\n",
                "serve",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: TOKEN}}\n  repos: [a/b]\n  concurrency: 0\n",
                "concurrency",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: TOKEN}}\n  repos: [a/b]\n  listen: here\n",
                "serve.listen",
            ),
            (
                "serve:\n  forge: {url: http://x, token: {env: TOKEN}}\n  repos: [a/b]\n  typo: 1\n",
                "typo",
            ),
        ];
        for (text, expected) in cases {
            let err = ServeConfig::from_yaml(text, &env())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
            assert!(!err.contains("s3cret-token"), "{err}");
        }
    }

    /// The paths under which systemd hands `ccci-serve.service` its credentials.
    const CREDENTIALS: &str = "/run/credentials/ccci-serve.service/";

    /// The README's example `serve:` section (the one fenced YAML block that starts with it).
    fn readme_example() -> &'static str {
        let readme = include_str!("../../README.md");
        let blocks: Vec<&str> = readme
            .split("```yaml\n")
            .skip(1)
            .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
            .filter(|block| block.starts_with("serve:"))
            .collect();
        assert_eq!(blocks.len(), 1, "README: one `serve:` example expected");
        blocks[0]
    }

    #[test]
    fn the_readme_example_is_a_valid_section_reading_the_units_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let example = readme_example();
        let names: Vec<&str> = example
            .split(CREDENTIALS)
            .skip(1)
            .map(|rest| rest.split(['}', ' ', ',']).next().unwrap())
            .collect();
        assert_eq!(names, ["forge-token", "webhook-secret"]);
        // Each credential the example reads is one the unit loads.
        let unit = include_str!("../../contrib/systemd/ccci-serve.service");
        for name in &names {
            let line = format!("\nLoadCredential={name}:/etc/ccci/{name}\n");
            assert!(unit.contains(&line), "the unit has no `{}`", line.trim());
            std::fs::write(dir.path().join(name), format!("{name}-value\n")).unwrap();
        }
        let here = format!("{}/", dir.path().display());
        let c = ServeConfig::from_yaml(&example.replace(CREDENTIALS, &here), &env()).unwrap();
        assert_eq!(c.token.expose(), "forge-token-value");
        assert_eq!(c.webhook_secrets, vec![Secret::new("webhook-secret-value")]);
        assert_eq!(c.repos.len(), 2);
        assert_eq!(
            c.enrolled("coop-cloud/custom-html").unwrap().recipe,
            "custom-html"
        );
        assert_eq!(c.authorize, AuthRule::OrgMember);
        assert_eq!(c.public_url, "https://ci.example.org");
        // The example shows the defaults of the keys it does not explain otherwise.
        let defaults = ServeConfig::from_yaml(GOOD, &env()).unwrap();
        assert_eq!(c.listen, defaults.listen);
        assert_eq!(c.concurrency, defaults.concurrency);
        assert_eq!(c.poll_interval, defaults.poll_interval);
        assert_eq!(c.cancel_on_push, defaults.cancel_on_push);
        assert_eq!(c.retention, defaults.retention);
        assert_eq!(c.status_context, defaults.status_context);
        assert_eq!(c.forge_timeout, defaults.forge_timeout);
        assert_eq!(c.driver, defaults.driver);
    }

    #[test]
    fn stages_are_checked_and_deduplicated() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(stages_of(&words(&[])).unwrap(), Stage::ALL.to_vec());
        assert_eq!(
            stages_of(&words(&["backup,UPGRADE", "upgrade"])).unwrap(),
            vec![Stage::Upgrade, Stage::Backup]
        );
        assert!(
            stages_of(&words(&["rm -rf"]))
                .unwrap_err()
                .contains("unknown stage")
        );
    }
}
