//! The `stack` driver: what abra would do, done with the docker CLI. The env file comes from
//! the recipe's `.env.sample`; secrets are created as `<stack>_<name>_<version>`; the deploy is
//! `docker stack deploy` with each `COMPOSE_FILE` entry as its own `-c` (docker does not read
//! that variable) and the env file, `STACK_NAME` and `abra.sh`'s exports in its environment
//! (docker refusing those files is the recipe's fault); backups follow the backupbot labels and
//! hooks, streamed between the service's container and files in the run directory, never held
//! in memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::{App, Driver, Version};
use crate::docker::api::{API_VERSION, Engine};
use crate::docker::cli;
use crate::docker::{ExecIo, Swarm};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::recipe::backup::BackupTarget;
use crate::recipe::compose::Compose;
use crate::recipe::envfile::EnvFile;
use crate::sys::process::Runner;

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
            cli::cmd(["stack", "deploy", "--help"])
                .and_then(|cmd| cli::output(runner, &cmd))
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

/// The secrets an app needs, with the length of each: what abra's `secret generate --all`
/// makes for every `SECRET_<NAME>_VERSION` of the env file (`<stack>_<name>_<version>`), and,
/// named exactly as the compose files name them, every external secret they declare (a recipe
/// may name a secret otherwise). Every name is checked against swarm's limit first.
fn secret_names(app: &App, env: &EnvFile, compose: &Compose) -> Result<Vec<(String, usize)>> {
    let specs = env.secrets();
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut add = |name: String, length: usize| {
        if !names.iter().any(|(n, _)| *n == name) {
            names.push((name, length));
        }
    };
    for secret in &specs {
        crate::naming::check_swarm_names(
            app.domain,
            [],
            [(secret.name.as_str(), secret.version.as_str())],
        )?;
        add(
            format!("{}_{}_{}", app.stack, secret.name, secret.version),
            secret.length.unwrap_or(DEFAULT_SECRET_LENGTH),
        );
    }
    let declared = compose
        .value()
        .get("secrets")
        .and_then(crate::yaml::Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    for (key, spec) in &declared {
        let external = spec.get("external").is_some_and(|e| {
            !matches!(
                e,
                crate::yaml::Value::Bool(false) | crate::yaml::Value::Null
            )
        });
        let (Some(key), Some(name), true) = (
            key.as_str(),
            spec.get("name").and_then(crate::yaml::Value::as_str),
            external,
        ) else {
            continue;
        };
        if name.len() > crate::naming::MAX_SECRET_NAME {
            return Err(Error::Usage(format!(
                "secret `{key}` of recipe {} would be named `{name}`, {} characters; swarm allows {}: use a shorter --domain",
                app.recipe,
                name.len(),
                crate::naming::MAX_SECRET_NAME
            )));
        }
        let length = specs
            .iter()
            .find(|s| s.name == key.to_ascii_lowercase())
            .and_then(|s| s.length)
            .unwrap_or(DEFAULT_SECRET_LENGTH);
        add(name.to_string(), length);
    }
    Ok(names)
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
        for (name, length) in secret_names(app, env, &self.compose(app, env)?)? {
            if Swarm::new(app.runner.clone()).secret_exists(&name)? {
                continue;
            }
            let value = random_secret(length)?;
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
        let targets = crate::recipe::backup::targets(&compose);
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
            let out = swarm.exec_with(
                app.stack,
                service,
                &["sh".into(), "-c".into(), hook.clone()],
                crate::docker::ExecIo {
                    log_output: true,
                    ..Default::default()
                },
            )?;
            if !out.success() {
                return Err(Error::Failed(format!(
                    "backup hook `{hook}` in {service} failed: {}",
                    out.last_error_line()
                )));
            }
        }
        Ok(())
    }
}

impl Driver for StackDriver {
    fn name(&self) -> &'static str {
        "stack"
    }

    fn new_app(&self, app: &App, version: &Version) -> Result<()> {
        let sample = app.recipe_dir().join(".env.sample");
        if !sample.is_file() {
            return Err(Error::Config(format!(
                "recipe {} has no .env.sample at {}: is it a Co-op Cloud recipe?",
                app.recipe,
                sample.display()
            )));
        }
        // A sample that cannot be read is named with its line, not taken for a missing one.
        let mut env = EnvFile::read(&sample)?;
        let type_value = match version {
            Version::Release(v) => format!("{}:{v}", app.recipe),
            Version::Chaos => app.recipe.to_string(),
        };
        env.set("TYPE", &type_value)?;
        env.set("DOMAIN", app.domain)?;
        env.write(&app.env_file())?;
        self.ensure_secrets(app, &env)
    }

    fn deploy(&self, app: &App, version: &Version) -> Result<()> {
        let env_path = app.env_file();
        let mut env = EnvFile::read(&env_path)?;
        // A newer version may need secrets the app was not created with: take their keys
        // from the checked-out `.env.sample`, as an operator upgrading by hand would.
        let sample_path = app.recipe_dir().join(".env.sample");
        if sample_path.is_file() {
            let sample = EnvFile::read(&sample_path)?;
            let mut changed = false;
            for key in sample.vars().into_keys() {
                if key.starts_with("SECRET_") {
                    changed |= env.adopt(&sample, &key);
                }
            }
            if let Version::Release(v) = version {
                env.set("TYPE", &format!("{}:{v}", app.recipe))?;
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
            let pull = cli::cmd(["pull", "--quiet", &image])
                .and_then(|cmd| cli::output(app.runner, &cmd.timeout(PULL_TIMEOUT)));
            if let Err(Error::Interrupted(signal)) = pull {
                return Err(Error::Interrupted(signal));
            }
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
        let mut cmd = cli::cmd(["stack", "deploy", "--prune", "--resolve-image", "never"])?;
        if self.knows_detach(app.runner) {
            cmd = cmd.arg("--detach=true");
        }
        for file in env.compose_files() {
            cmd = cmd.arg("-c").arg(file);
        }
        let cmd = cmd
            .arg(app.stack)
            .envs(cli::without_engine_vars(deploy_vars(app, &env)))
            .current_dir(app.recipe_dir())
            .timeout(DEPLOY_TIMEOUT)
            .log_output();
        let out = cli::output(app.runner, &cmd)?;
        if !out.success() {
            return Err(super::deploy_failed("docker stack deploy", &out));
        }
        Ok(())
    }

    fn backup(&self, app: &App) -> Result<()> {
        let swarm = Swarm::new(app.runner.clone());
        std::fs::create_dir_all(app.backups).map_err(|e| Error::io("create", app.backups, e))?;
        for target in self.backup_targets(app)? {
            self.hook(&swarm, app, &target.service, &target.backup_pre)?;
            let file = backup_file(app, &target.service);
            // Streamed into a file beside the backup and renamed over it once tar succeeded:
            // a failed backup leaves the last good one, never a truncated one.
            let partial = tempfile::Builder::new()
                .prefix(&format!(".{}.tar.", target.service))
                .tempfile_in(app.backups)
                .map_err(|e| Error::io("create a file in", app.backups, e))?;
            let io = ExecIo {
                stdout_file: Some(partial.path().to_path_buf()),
                ..ExecIo::default()
            };
            let out =
                swarm.exec_with(app.stack, &target.service, &tar_create(&target.paths), io)?;
            if !out.success() {
                return Err(Error::Failed(format!(
                    "backup of {} failed: {}",
                    target.service,
                    out.last_error_line()
                )));
            }
            partial
                .persist(&file)
                .map_err(|e| Error::io("rename into place", &file, e.error))?;
            self.hook(&swarm, app, &target.service, &target.backup_post)?;
        }
        Ok(())
    }

    fn restore(&self, app: &App) -> Result<()> {
        let swarm = Swarm::new(app.runner.clone());
        for target in self.backup_targets(app)? {
            let file = backup_file(app, &target.service);
            if !file.is_file() {
                return Err(Error::Usage(format!(
                    "no backup of {} at {}: run `ccci backup` first",
                    target.service,
                    file.display()
                )));
            }
            self.hook(&swarm, app, &target.service, &target.restore_pre)?;
            let io = ExecIo {
                stdin_file: Some(file),
                ..ExecIo::default()
            };
            let out = swarm.exec_with(app.stack, &target.service, &tar_extract(), io)?;
            if !out.success() {
                return Err(Error::Failed(format!(
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

/// Where the backup of `service` is kept.
fn backup_file(app: &App, service: &str) -> PathBuf {
    app.backups.join(format!("{service}.tar"))
}

/// `tar` writing `paths` (absolute in the container) to its stdout.
fn tar_create(paths: &[String]) -> Vec<String> {
    let mut tar: Vec<String> = ["tar", "-cf", "-", "-C", "/"].map(String::from).to_vec();
    tar.extend(paths.iter().map(|p| p.trim_start_matches('/').to_string()));
    tar
}

/// `tar` unpacking its stdin at the container's root.
fn tar_extract() -> Vec<String> {
    ["tar", "-xf", "-", "-C", "/"].map(String::from).to_vec()
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
