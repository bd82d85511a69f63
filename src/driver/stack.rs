//! The `stack` driver: what abra would do, done with the docker CLI. The env file comes from
//! the recipe's `.env.sample`; secrets are created as `<stack>_<name>_<version>`; the deploy is
//! `docker stack deploy` with each `COMPOSE_FILE` entry as its own `-c` (docker does not read
//! that variable) and the env file, `STACK_NAME` and `abra.sh`'s exports in its environment;
//! backups follow the backupbot labels and hooks, kept in the run directory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::{App, Driver, Version};
use crate::docker::Swarm;
use crate::docker::api::{API_VERSION, Engine};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::recipe::compose::Compose;
use crate::recipe::envfile::EnvFile;
use crate::sys::process::{Cmd, Runner};

const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);
const PULL_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_SECRET_LENGTH: usize = 32;
/// One engine request creating a secret.
const SECRET_TIMEOUT: Duration = Duration::from_secs(30);

pub struct StackDriver {
    /// Whether this docker client's `stack deploy` knows `--detach` (newer clients wait for
    /// convergence unless told not to; older ones never wait and refuse the flag).
    detach_flag: OnceLock<bool>,
}

impl StackDriver {
    pub fn new() -> Self {
        StackDriver {
            detach_flag: OnceLock::new(),
        }
    }

    fn knows_detach(&self, runner: &Runner) -> bool {
        *self.detach_flag.get_or_init(|| {
            runner
                .output(&Cmd::new("docker").args(["stack", "deploy", "--help"]))
                .map(|o| o.stdout_str().contains("--detach"))
                .unwrap_or(false)
        })
    }
}

impl Default for StackDriver {
    fn default() -> Self {
        Self::new()
    }
}

/// `export NAME=value` lines of the recipe's `abra.sh`: config versions and the like.
pub fn abra_sh_exports(recipe_dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(recipe_dir.join("abra.sh")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| {
            let v = v.split(" #").next().unwrap_or("").trim();
            (
                k.trim().to_string(),
                v.trim_matches(['"', '\'']).to_string(),
            )
        })
        .collect()
}

/// The variables a deploy interpolates: the env file, `abra.sh`'s exports, `STACK_NAME`.
pub fn deploy_vars(app: &App, env: &EnvFile) -> BTreeMap<String, String> {
    let mut vars = abra_sh_exports(&app.recipe_dir());
    vars.extend(env.vars());
    vars.insert("STACK_NAME".into(), app.stack.to_string());
    vars
}

/// A random alphanumeric secret value.
fn random_secret(length: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; length];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Creates the swarm secret `name` with the stack's and the run's labels, through the engine's
/// API (a docker CLI call would cost its process start).
fn create_secret(app: &App, name: &str, value: &str) -> Result<()> {
    app.runner.check()?;
    let mut labels = BTreeMap::new();
    labels.insert(
        crate::docker::NAMESPACE_LABEL.to_string(),
        app.stack.to_string(),
    );
    for (k, v) in &app.labels {
        labels.insert(k.clone(), v.clone());
    }
    let spec = serde_json::json!({
        "Name": name,
        "Labels": labels,
        "Data": base64(value.as_bytes()),
    })
    .to_string();
    let response = Engine::from_env()?.with_timeout(SECRET_TIMEOUT).request(
        "POST",
        &format!("/{API_VERSION}/secrets/create"),
        Some(spec.as_bytes()),
    )?;
    if response.is_success() {
        Ok(())
    } else {
        Err(Error::Infra(format!(
            "failed to create secret {name}: {}",
            response.message()
        )))
    }
}

/// Standard base64 with padding, as the engine wants a secret's data.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl StackDriver {
    /// Creates every secret the env file declares that does not exist yet.
    fn ensure_secrets(&self, app: &App, env: &EnvFile) -> Result<()> {
        for secret in env.secrets() {
            let name = format!("{}_{}_{}", app.stack, secret.name, secret.version);
            crate::naming::check_swarm_names(
                app.domain,
                [],
                [(secret.name.as_str(), secret.version.as_str())],
            )?;
            if Swarm::new(app.runner.clone()).secret_exists(&name)? {
                continue;
            }
            let value = random_secret(secret.length.unwrap_or(DEFAULT_SECRET_LENGTH))?;
            create_secret(app, &name, &value)?;
        }
        Ok(())
    }

    fn compose(&self, app: &App, env: &EnvFile) -> Result<Compose> {
        Compose::load(
            &app.recipe_dir(),
            &env.compose_files(),
            &deploy_vars(app, env),
        )
    }

    /// Services that declare backups (`backupbot.backup=true`) with the paths to back up.
    fn backup_targets(&self, app: &App) -> Result<Vec<BackupTarget>> {
        let env = EnvFile::read(&app.env_file())?;
        let compose = self.compose(app, &env)?;
        let mut targets = Vec::new();
        for service in compose.services() {
            let label = |k: &str| service.labels.get(k).cloned();
            if label("backupbot.backup").as_deref() != Some("true") {
                continue;
            }
            let paths: Vec<String> = match label("backupbot.backup.path") {
                Some(p) => p
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                None => service
                    .volumes
                    .iter()
                    .filter(|v| {
                        label(&format!("backupbot.backup.volumes.{}", v.source)).as_deref()
                            != Some("false")
                    })
                    .map(
                        |v| match label(&format!("backupbot.backup.volumes.{}.path", v.source)) {
                            Some(sub) => format!("{}/{}", v.target.trim_end_matches('/'), sub),
                            None => v.target.clone(),
                        },
                    )
                    .collect(),
            };
            targets.push(BackupTarget {
                service: service.name.clone(),
                paths,
                backup_pre: label("backupbot.backup.pre-hook"),
                backup_post: label("backupbot.backup.post-hook"),
                restore_pre: label("backupbot.restore.pre-hook"),
                restore_post: label("backupbot.restore.post-hook"),
            });
        }
        if targets.is_empty() {
            return Err(Error::Config(format!(
                "recipe {} declares no backups (no service has the label backupbot.backup=true)",
                app.recipe
            )));
        }
        Ok(targets)
    }

    fn hook(&self, swarm: &Swarm, app: &App, service: &str, hook: &Option<String>) -> Result<()> {
        if let Some(hook) = hook {
            let out = swarm.exec(
                app.stack,
                service,
                &["sh".into(), "-c".into(), hook.clone()],
                None,
            )?;
            if !out.success() {
                return Err(Error::Infra(format!(
                    "backup hook `{hook}` in {service} failed: {}",
                    out.last_error_line()
                )));
            }
        }
        Ok(())
    }
}

struct BackupTarget {
    service: String,
    paths: Vec<String>,
    backup_pre: Option<String>,
    backup_post: Option<String>,
    restore_pre: Option<String>,
    restore_post: Option<String>,
}

impl Driver for StackDriver {
    fn name(&self) -> &'static str {
        "stack"
    }

    fn new_app(&self, app: &App, version: &Version) -> Result<()> {
        let sample = app.recipe_dir().join(".env.sample");
        let mut env = EnvFile::read(&sample).map_err(|_| {
            Error::Config(format!(
                "recipe {} has no .env.sample at {}: is it a Co-op Cloud recipe?",
                app.recipe,
                sample.display()
            ))
        })?;
        let type_value = match version {
            Version::Release(v) => format!("{}:{v}", app.recipe),
            Version::Chaos => app.recipe.to_string(),
        };
        env.set("TYPE", &type_value);
        env.set("DOMAIN", app.domain);
        env.write(&app.env_file())?;
        self.ensure_secrets(app, &env)
    }

    fn deploy(&self, app: &App, version: &Version) -> Result<()> {
        let env_path = app.env_file();
        let mut env = EnvFile::read(&env_path)?;
        // A newer version may need secrets the app was not created with: take their keys
        // from the checked-out `.env.sample`, as an operator upgrading by hand would.
        if let Ok(sample) = EnvFile::read(&app.recipe_dir().join(".env.sample")) {
            let mut changed = false;
            for (key, value) in sample.vars() {
                if key.starts_with("SECRET_") && env.get(&key).is_none() {
                    env.set(&key, &value);
                    changed = true;
                }
            }
            if let Version::Release(v) = version {
                env.set("TYPE", &format!("{}:{v}", app.recipe));
                changed = true;
            }
            if changed {
                env.write(&env_path)?;
            }
        }
        self.ensure_secrets(app, &env)?;
        let compose = self.compose(app, &env)?;
        let services = compose.services();
        crate::naming::check_swarm_names(app.domain, services.iter().map(|s| s.name.as_str()), [])?;
        let swarm = Swarm::new(app.runner.clone());
        for image in compose.images() {
            if swarm.image_present(&image)? {
                continue;
            }
            // Pull first so a registry problem is named clearly; if it fails the swarm will
            // reject the task and the readiness watch reports the swarm's own reason.
            let pull = app.runner.output(
                &Cmd::new("docker")
                    .args(["pull", "--quiet", &image])
                    .timeout(PULL_TIMEOUT),
            );
            if !matches!(pull, Ok(ref o) if o.success()) {
                let why = match pull {
                    Ok(o) => o.last_error_line(),
                    Err(e) => e.to_string(),
                };
                app.sink.event(&Event::Notice {
                    message: format!("image {image} could not be pulled: {why}"),
                });
            }
        }
        let mut cmd =
            Cmd::new("docker").args(["stack", "deploy", "--prune", "--resolve-image", "never"]);
        if self.knows_detach(app.runner) {
            cmd = cmd.arg("--detach=true");
        }
        for file in env.compose_files() {
            cmd = cmd.arg("-c").arg(file);
        }
        let cmd = cmd
            .arg(app.stack)
            .envs(deploy_vars(app, &env))
            .current_dir(app.recipe_dir())
            .timeout(DEPLOY_TIMEOUT)
            .log_output();
        app.runner.run(&cmd)?;
        Ok(())
    }

    fn backup(&self, app: &App) -> Result<()> {
        let swarm = Swarm::new(app.runner.clone());
        std::fs::create_dir_all(app.backups).map_err(|e| Error::io("create", app.backups, e))?;
        for target in self.backup_targets(app)? {
            self.hook(&swarm, app, &target.service, &target.backup_pre)?;
            let mut tar: Vec<String> = vec![
                "tar".into(),
                "-cf".into(),
                "-".into(),
                "-C".into(),
                "/".into(),
            ];
            tar.extend(
                target
                    .paths
                    .iter()
                    .map(|p| p.trim_start_matches('/').to_string()),
            );
            let out = swarm.exec(app.stack, &target.service, &tar, None)?;
            if !out.success() {
                return Err(Error::Infra(format!(
                    "backup of {} failed: {}",
                    target.service,
                    out.last_error_line()
                )));
            }
            let file = app.backups.join(format!("{}.tar", target.service));
            crate::run::record::write_atomic(&file, &out.stdout)?;
            self.hook(&swarm, app, &target.service, &target.backup_post)?;
        }
        Ok(())
    }

    fn restore(&self, app: &App) -> Result<()> {
        let swarm = Swarm::new(app.runner.clone());
        for target in self.backup_targets(app)? {
            let file = app.backups.join(format!("{}.tar", target.service));
            let bytes = std::fs::read(&file).map_err(|_| {
                Error::Usage(format!(
                    "no backup of {} at {}: run `ccci backup` first",
                    target.service,
                    file.display()
                ))
            })?;
            self.hook(&swarm, app, &target.service, &target.restore_pre)?;
            let tar: Vec<String> = ["tar", "-xf", "-", "-C", "/"].map(String::from).to_vec();
            let out = swarm.exec(app.stack, &target.service, &tar, Some(bytes))?;
            if !out.success() {
                return Err(Error::Infra(format!(
                    "restore of {} failed: {}",
                    target.service,
                    out.last_error_line()
                )));
            }
            self.hook(&swarm, app, &target.service, &target.restore_post)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_abra_sh_exports() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("abra.sh"),
            "export ENTRYPOINT_VERSION=v2\nexport NGINX_CONF_VERSION=\"v1\" # why\nfoo() { :; }\n",
        )
        .unwrap();
        let vars = abra_sh_exports(tmp.path());
        assert_eq!(
            vars.get("ENTRYPOINT_VERSION").map(String::as_str),
            Some("v2")
        );
        assert_eq!(
            vars.get("NGINX_CONF_VERSION").map(String::as_str),
            Some("v1")
        );
        assert_eq!(vars.len(), 2);
    }

    #[test]
    fn base64_is_the_standard_padded_one() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn secrets_are_random_and_sized() {
        let a = random_secret(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_secret(32).unwrap());
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
