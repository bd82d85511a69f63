//! App env files (`servers/<server>/<domain>.env`): docker env-file syntax, `KEY=value` per
//! line, `#` comments, optional quotes. abra writes them and reads them back; so does ccci.
//! Edits keep every other line, comment and order exactly as they were, because the file is
//! the user's (and abra's) as much as ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// An env file held as its lines, so that edits are surgical.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvFile {
    lines: Vec<String>,
}

impl EnvFile {
    pub fn parse(text: &str) -> Self {
        EnvFile {
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        Ok(Self::parse(
            &std::fs::read_to_string(path).at("read env file", path)?,
        ))
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at("create", dir)?;
        }
        crate::run::record::write_atomic(path, self.to_string().as_bytes())
    }

    /// The value of `key`, the last assignment winning, unquoted. `None` when unset.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lines
            .iter()
            .rev()
            .filter_map(|l| parse_line(l))
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, _)| v)
    }

    /// Sets `key`, replacing its last assignment in place, or appending it.
    pub fn set(&mut self, key: &str, value: &str) {
        let rendered = format!("{key}={}", quote_if_needed(value));
        let position = self
            .lines
            .iter()
            .rposition(|l| parse_line(l).is_some_and(|(k, _, _)| k == key));
        match position {
            Some(i) => self.lines[i] = rendered,
            None => self.lines.push(rendered),
        }
    }

    /// Every assignment in order, later ones overriding earlier ones.
    pub fn vars(&self) -> BTreeMap<String, String> {
        self.lines
            .iter()
            .filter_map(|l| parse_line(l))
            .map(|(k, v, _)| (k.to_owned(), v))
            .collect()
    }

    /// `SECRET_<NAME>_VERSION=<version>` entries as (name lowercased, version, length from a
    /// `# length=N` comment): the secrets an app needs.
    pub fn secrets(&self) -> Vec<SecretSpec> {
        let mut out: Vec<SecretSpec> = Vec::new();
        for (key, value, comment) in self.lines.iter().filter_map(|l| parse_line(l)) {
            let Some(name) = key
                .strip_prefix("SECRET_")
                .and_then(|k| k.strip_suffix("_VERSION"))
            else {
                continue;
            };
            let length = comment.and_then(|c| {
                c.split_whitespace()
                    .find_map(|w| w.strip_prefix("length="))
                    .and_then(|n| n.parse().ok())
            });
            let spec = SecretSpec {
                name: name.to_ascii_lowercase(),
                version: value,
                length,
            };
            match out.iter_mut().find(|s| s.name == spec.name) {
                Some(existing) => *existing = spec,
                None => out.push(spec),
            }
        }
        out
    }

    /// The compose files the app uses: `COMPOSE_FILE`, colon-separated, default `compose.yml`.
    pub fn compose_files(&self) -> Vec<String> {
        match self.get("COMPOSE_FILE") {
            Some(v) if !v.trim().is_empty() => v
                .split(':')
                .map(str::trim)
                .filter(|f| !f.is_empty() && *f != "$COMPOSE_FILE" && *f != "${COMPOSE_FILE}")
                .map(str::to_owned)
                .collect(),
            _ => vec!["compose.yml".to_owned()],
        }
    }

    /// Adds `file` to `COMPOSE_FILE` (after the files already there) unless it is listed.
    pub fn register_compose_file(&mut self, file: &str) {
        let mut files = self.compose_files();
        if !files.iter().any(|f| f == file) {
            files.push(file.to_owned());
        }
        self.set("COMPOSE_FILE", &files.join(":"));
    }
}

impl std::fmt::Display for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A secret an app needs, from its env file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    pub version: String,
    pub length: Option<usize>,
}

/// `KEY=value  # comment` → (key, unquoted value, comment). `export` is tolerated.
fn parse_line(line: &str) -> Option<(&str, String, Option<&str>)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, rest) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let rest = rest.trim();
    let (value, comment) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
            Some(end) => {
                let value = rest[1..1 + end].to_owned();
                let after = rest[2 + end..].trim();
                (value, after.strip_prefix('#').map(str::trim))
            }
            None => (rest.to_owned(), None),
        },
        _ => match rest.find(" #").or_else(|| rest.find("\t#")) {
            Some(i) => (
                rest[..i].trim().to_owned(),
                Some(rest[i..].trim_start().trim_start_matches('#').trim()),
            ),
            None if rest.starts_with('#') => (String::new(), Some(rest[1..].trim())),
            None => (rest.to_owned(), None),
        },
    };
    Some((key, value, comment))
}

fn quote_if_needed(value: &str) -> String {
    if value.contains(|c: char| c.is_whitespace() || c == '#' || c == '"' || c == '\'') {
        format!("\"{}\"", value.replace('"', "\\\""))
    } else {
        value.to_owned()
    }
}

/// The env file of `domain` under an abra home's `servers/<server>/`.
pub fn path_in(abra_dir: &Path, server: &str, domain: &str) -> PathBuf {
    abra_dir
        .join("servers")
        .join(server)
        .join(format!("{domain}.env"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "TYPE=ghost\n# a comment\nDOMAIN=ghost.example.com\nLETS_ENCRYPT_ENV=production\n\nSECRET_DB_PASSWORD_VERSION=v1 # length=32\nSECRET_API_KEY_VERSION=v2\n#COMPOSE_FILE=\"compose.yml:compose.smtp.yml\"\nCOMPOSE_FILE=\"compose.yml:compose.mysql.yml\"\n";

    #[test]
    fn reads_values_secrets_and_compose_files() {
        let env = EnvFile::parse(SAMPLE);
        assert_eq!(env.get("DOMAIN").as_deref(), Some("ghost.example.com"));
        assert_eq!(env.get("NOPE"), None);
        assert_eq!(
            env.secrets(),
            vec![
                SecretSpec {
                    name: "db_password".into(),
                    version: "v1".into(),
                    length: Some(32)
                },
                SecretSpec {
                    name: "api_key".into(),
                    version: "v2".into(),
                    length: None
                },
            ]
        );
        assert_eq!(
            env.compose_files(),
            vec!["compose.yml", "compose.mysql.yml"]
        );
        assert_eq!(EnvFile::parse("A=1").compose_files(), vec!["compose.yml"]);
    }

    #[test]
    fn edits_keep_everything_else_in_place() {
        let mut env = EnvFile::parse(SAMPLE);
        env.set("LETS_ENCRYPT_ENV", "");
        env.set("NEW", "a value");
        env.register_compose_file("compose.ccci.yml");
        env.register_compose_file("compose.ccci.yml");
        let text = env.to_string();
        assert!(text.contains("# a comment\n"));
        assert!(text.contains("\nLETS_ENCRYPT_ENV=\n"));
        assert!(text.contains("NEW=\"a value\""));
        assert!(text.contains("#COMPOSE_FILE=\"compose.yml:compose.smtp.yml\""));
        assert_eq!(
            EnvFile::parse(&text).compose_files(),
            vec!["compose.yml", "compose.mysql.yml", "compose.ccci.yml"]
        );
        assert_eq!(EnvFile::parse(&text).get("NEW").as_deref(), Some("a value"));
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path(), "default", "a.example.org");
        let env = EnvFile::parse(SAMPLE);
        env.write(&path).unwrap();
        assert_eq!(EnvFile::read(&path).unwrap(), env);
    }
}
