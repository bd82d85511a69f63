//! Which Docker engine ccci talks to, decided once per process the way the docker CLI decides
//! it: `DOCKER_HOST`; else the context named by `DOCKER_CONTEXT` or by `currentContext` in
//! `$DOCKER_CONFIG/config.json` (default `~/.docker`), whose endpoint is in
//! `$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json`; else the default socket.
//!
//! Both ways ccci reaches the engine take the answer from here: the API client
//! ([`super::api::Engine`]) connects to [`Endpoint::unix_socket`], and every docker CLI call is
//! pinned to it through [`Endpoint::cli_env`]. So the janitor can never list one engine and
//! remove through another. This module only reads files; it never changes the docker
//! configuration, and it never decides that a non-unix endpoint is fine for the API client.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Where the engine listens when nothing says otherwise.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The context that means "no context": `DOCKER_HOST` or the default socket.
const DEFAULT_CONTEXT: &str = "default";

/// The engine's address, and what named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    origin: Origin,
}

/// What chose the endpoint: error messages name it, and the CLI is pinned by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    DockerHost,
    /// A docker context, by name.
    Context(String),
    Default,
}

/// The variables the resolution reads, taken from the environment once (or given by a test).
#[derive(Clone, Debug, Default)]
pub struct Vars {
    pub docker_host: Option<OsString>,
    pub docker_context: Option<OsString>,
    pub docker_config: Option<OsString>,
    pub home: Option<OsString>,
}

impl Vars {
    pub fn from_env() -> Self {
        Vars {
            docker_host: std::env::var_os("DOCKER_HOST"),
            docker_context: std::env::var_os("DOCKER_CONTEXT"),
            docker_config: std::env::var_os("DOCKER_CONFIG"),
            home: std::env::var_os("HOME"),
        }
    }
}

/// The endpoint of this process, resolved on first use from its environment and the docker
/// configuration, and the same for every caller after that.
pub fn current() -> Result<&'static Endpoint> {
    static CURRENT: OnceLock<std::result::Result<Endpoint, String>> = OnceLock::new();
    CURRENT
        .get_or_init(|| resolve(&Vars::from_env()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Infra(e.clone()))
}

/// Resolves the endpoint from `vars` as the docker CLI would. Empty variables count as unset,
/// as they do for the CLI.
pub fn resolve(vars: &Vars) -> Result<Endpoint> {
    let set = |v: &Option<OsString>| {
        v.as_ref()
            .map(|v| v.to_string_lossy().trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(host) = set(&vars.docker_host) {
        return Ok(Endpoint {
            host,
            origin: Origin::DockerHost,
        });
    }
    let config_dir = match set(&vars.docker_config) {
        Some(dir) => PathBuf::from(dir),
        None => match set(&vars.home) {
            Some(home) => Path::new(&home).join(".docker"),
            // No home and no DOCKER_CONFIG: the CLI has no config to read either.
            None => return Ok(Endpoint::default_socket()),
        },
    };
    let (name, from) = match set(&vars.docker_context) {
        Some(name) => (name, "DOCKER_CONTEXT"),
        None => match current_context(&config_dir)? {
            Some(name) => (name, "currentContext in config.json"),
            None => return Ok(Endpoint::default_socket()),
        },
    };
    if name == DEFAULT_CONTEXT {
        return Ok(Endpoint::default_socket());
    }
    let host = context_host(&config_dir, &name, from)?;
    Ok(Endpoint {
        host,
        origin: Origin::Context(name),
    })
}

impl Endpoint {
    fn default_socket() -> Self {
        Endpoint {
            host: DEFAULT_HOST.to_string(),
            origin: Origin::Default,
        }
    }

    /// The endpoint at `host`, as if `DOCKER_HOST` named it.
    pub fn from_host(host: impl Into<String>) -> Self {
        Endpoint {
            host: host.into(),
            origin: Origin::DockerHost,
        }
    }

    /// The address, e.g. `unix:///var/run/docker.sock` or `ssh://user@host`.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The socket path of a `unix://` endpoint. Anything else is an error: the API client
    /// speaks plain HTTP, which over TCP would be unencrypted and unauthenticated, and it
    /// knows neither TLS nor ssh.
    pub fn unix_socket(&self) -> Result<&Path> {
        match self.host.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(Path::new(path)),
            _ => Err(Error::Infra(format!(
                "the docker endpoint `{}` ({}) is not a unix socket: ccci's engine client speaks \
                 only unix://…; run ccci on the swarm manager with DOCKER_HOST=unix:///var/run/docker.sock",
                self.host,
                self.describe_origin()
            ))),
        }
    }

    fn describe_origin(&self) -> String {
        match &self.origin {
            Origin::DockerHost => "from DOCKER_HOST".to_string(),
            Origin::Context(name) => format!("of docker context `{name}`"),
            Origin::Default => "the default".to_string(),
        }
    }

    /// What a docker CLI child's environment gets so that it talks to this endpoint and no
    /// other: `(name, Some(value))` to set, `(name, None)` to remove.
    ///
    /// A unix socket, or whatever `DOCKER_HOST` named, is passed as `DOCKER_HOST`. A context's
    /// tcp or ssh endpoint is pinned by the context's name instead: the context also holds the
    /// TLS material, and a bare `DOCKER_HOST=tcp://…` would drop it.
    pub fn cli_env(&self) -> [(&'static str, Option<&str>); 2] {
        match &self.origin {
            Origin::Context(name) if !self.host.starts_with("unix://") => {
                [("DOCKER_CONTEXT", Some(name)), ("DOCKER_HOST", None)]
            }
            _ => [("DOCKER_HOST", Some(&self.host)), ("DOCKER_CONTEXT", None)],
        }
    }
}

/// `currentContext` of `<config_dir>/config.json`; `None` when the file or the key is absent.
fn current_context(config_dir: &Path) -> Result<Option<String>> {
    let path = config_dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let config: Value = serde_json::from_slice(&text).map_err(|e| {
        Error::Infra(format!(
            "the docker configuration {} is not valid JSON ({e}): fix it, or set DOCKER_HOST",
            path.display()
        ))
    })?;
    Ok(field(&config, "currentContext")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string))
}

/// `Endpoints.docker.Host` of the context `name`.
fn context_host(config_dir: &Path, name: &str, from: &str) -> Result<String> {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let path = config_dir
        .join("contexts")
        .join("meta")
        .join(hex)
        .join("meta.json");
    let missing = |why: String| {
        Error::Infra(format!(
            "docker context `{name}` (from {from}) {why}: check `docker context ls`, or set DOCKER_HOST"
        ))
    };
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(missing("does not exist".to_string()));
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let meta: Value = serde_json::from_slice(&text)
        .map_err(|e| missing(format!("has an unreadable {} ({e})", path.display())))?;
    field(&meta, "Endpoints")
        .and_then(|e| field(e, "docker"))
        .and_then(|d| field(d, "Host"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing("names no docker endpoint".to_string()))
}

/// `object[key]`, matching the key without regard to case as Go's JSON decoder (which wrote
/// and reads these files) does.
fn field<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    let map = object.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A docker configuration directory holding a context `name` whose endpoint is `host`,
    /// laid out as `docker context create` lays it out.
    pub(crate) fn config_with_context(name: &str, host: &str, current: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        // sha256("ctx-x"), computed independently (`printf ctx-x | sha256sum`) for the name
        // the tests use, so the layout is checked against docker's, not against itself.
        let digest = if name == "ctx-x" {
            "6e51f927c5abff8ca2aa3e2fe68cadf29ab872def5401f98de25fd6964db3b01".to_string()
        } else {
            Sha256::digest(name.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let meta = dir.path().join("contexts/meta").join(digest);
        std::fs::create_dir_all(&meta).unwrap();
        let json = serde_json::json!({
            "Name": name,
            "Metadata": {"Description": "test"},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
        });
        std::fs::write(meta.join("meta.json"), json.to_string()).unwrap();
        if current {
            let config = serde_json::json!({"auths": {}, "currentContext": name});
            std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        }
        dir
    }

    pub(crate) fn vars(config: &Path) -> Vars {
        Vars {
            docker_config: Some(config.into()),
            ..Vars::default()
        }
    }

    #[test]
    fn the_current_context_of_config_json_names_the_endpoint() {
        let config = config_with_context("ctx-x", "unix:///run/x/docker.sock", true);
        let endpoint = resolve(&vars(config.path())).unwrap();
        assert_eq!(endpoint.host(), "unix:///run/x/docker.sock");
        assert_eq!(endpoint.origin(), &Origin::Context("ctx-x".into()));
        assert_eq!(
            endpoint.unix_socket().unwrap(),
            Path::new("/run/x/docker.sock")
        );
    }

    #[test]
    fn docker_context_overrides_config_json_and_docker_host_overrides_both() {
        let config = config_with_context("ctx-x", "unix:///run/x.sock", true);
        // A second context, named by DOCKER_CONTEXT.
        let other = Sha256::digest(b"other")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let meta = config.path().join("contexts/meta").join(other);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"other","Endpoints":{"docker":{"Host":"unix:///run/other.sock"}}}"#,
        )
        .unwrap();
        let mut v = vars(config.path());
        v.docker_context = Some("other".into());
        assert_eq!(resolve(&v).unwrap().host(), "unix:///run/other.sock");
        v.docker_context = Some("default".into());
        assert_eq!(resolve(&v).unwrap().host(), DEFAULT_HOST);
        v.docker_host = Some("unix:///run/host.sock".into());
        let endpoint = resolve(&v).unwrap();
        assert_eq!(endpoint.host(), "unix:///run/host.sock");
        assert_eq!(endpoint.origin(), &Origin::DockerHost);
        // Empty means unset, as for the CLI.
        v.docker_host = Some("".into());
        v.docker_context = Some(" ".into());
        assert_eq!(resolve(&v).unwrap().host(), "unix:///run/x.sock");
    }

    #[test]
    fn without_a_context_the_default_socket() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve(&vars(empty.path())).unwrap().host(), DEFAULT_HOST);
        let home = Vars {
            home: Some(empty.path().into()),
            ..Vars::default()
        };
        assert_eq!(resolve(&home).unwrap().origin(), &Origin::Default);
        assert_eq!(resolve(&Vars::default()).unwrap().host(), DEFAULT_HOST);
        // A config.json without currentContext, or naming `default`.
        std::fs::write(empty.path().join("config.json"), r#"{"auths":{}}"#).unwrap();
        assert_eq!(resolve(&vars(empty.path())).unwrap().host(), DEFAULT_HOST);
        std::fs::write(
            empty.path().join("config.json"),
            r#"{"currentContext":"default"}"#,
        )
        .unwrap();
        assert_eq!(resolve(&vars(empty.path())).unwrap().host(), DEFAULT_HOST);
        // ~/.docker is where the config is looked for when DOCKER_CONFIG is unset.
        let config = config_with_context("ctx-x", "unix:///run/home.sock", true);
        let home = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(config.path(), home.path().join(".docker")).unwrap();
        let v = Vars {
            home: Some(home.path().into()),
            ..Vars::default()
        };
        assert_eq!(resolve(&v).unwrap().host(), "unix:///run/home.sock");
    }

    #[test]
    fn bad_configurations_are_one_line_errors_that_say_what_to_do() {
        let config = config_with_context("ctx-x", "unix:///run/x.sock", false);
        let mut v = vars(config.path());
        v.docker_context = Some("nope".into());
        let err = resolve(&v).unwrap_err().to_string();
        assert_eq!(
            err,
            "docker context `nope` (from DOCKER_CONTEXT) does not exist: check `docker context ls`, or set DOCKER_HOST"
        );
        std::fs::write(config.path().join("config.json"), "{not json").unwrap();
        let err = resolve(&vars(config.path())).unwrap_err().to_string();
        assert!(
            err.contains("not valid JSON") && !err.contains('\n'),
            "{err}"
        );
    }

    #[test]
    fn only_unix_sockets_reach_the_api_client() {
        for host in ["tcp://10.0.0.1:2375", "ssh://me@host", "unix://", "fd://"] {
            let err = Endpoint::from_host(host)
                .unix_socket()
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a unix socket"), "{err}");
            assert!(err.contains("DOCKER_HOST=unix://"), "{err}");
        }
    }

    #[test]
    fn the_cli_is_pinned_to_the_endpoint() {
        let unix = Endpoint::from_host("unix:///run/x.sock");
        assert_eq!(
            unix.cli_env(),
            [
                ("DOCKER_HOST", Some("unix:///run/x.sock")),
                ("DOCKER_CONTEXT", None)
            ]
        );
        // A tcp context keeps its TLS material by being named, not by its bare address.
        let config = config_with_context("ctx-x", "tcp://10.0.0.1:2376", true);
        let tcp = resolve(&vars(config.path())).unwrap();
        assert_eq!(
            tcp.cli_env(),
            [("DOCKER_CONTEXT", Some("ctx-x")), ("DOCKER_HOST", None)]
        );
    }
}
