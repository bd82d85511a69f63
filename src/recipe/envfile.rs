//! App env files (`servers/<server>/<domain>.env`), read the way abra reads them: with the
//! dotenv rules of Go's `godotenv`. `KEY=value` or `export KEY=value`, `#` comments (whole
//! lines, and after an unquoted value when a space precedes the `#`), blank lines; unquoted and
//! double-quoted values expand `$VAR` and `${VAR}` from the lines above and then from the
//! environment; double quotes know the escapes `\n`, `\r`, `\"`, `\\` and `\$`; single quotes
//! keep their text literal. Published recipes build `COMPOSE_FILE` over several lines
//! (`COMPOSE_FILE="$COMPOSE_FILE:compose.postgres.yml"`), so only the expanded value says which
//! compose files an app uses.
//!
//! Edits keep every other line, comment and their order exactly as they were, because the file
//! is the user's (and abra's) as much as ccci's; whatever ccci writes reads back, by these
//! rules, as exactly the value it was given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

const COMPOSE_FILE: &str = "COMPOSE_FILE";
/// What abra deploys when `COMPOSE_FILE` lists nothing.
pub const DEFAULT_COMPOSE_FILE: &str = "compose.yml";

/// An env file held as its entries (a line, or the lines of a quoted value that spans several),
/// so that edits are surgical.
#[derive(Clone, Debug, Default)]
pub struct EnvFile {
    entries: Vec<Entry>,
    /// Kept so that an untouched file writes back byte for byte.
    final_newline: bool,
    /// What `$VAR` falls back to when no line above assigns `VAR`, as abra falls back to its
    /// process environment.
    environment: BTreeMap<String, String>,
}

/// Two env files are equal when their text is: the environment they expand from is not part
/// of the file.
impl PartialEq for EnvFile {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.final_newline == other.final_newline
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    /// As written, without the final newline.
    text: String,
    assignment: Option<Assignment>,
}

#[derive(Clone, Debug, PartialEq)]
struct Assignment {
    /// Indentation and `export `, kept when the value is replaced.
    prefix: String,
    key: String,
    value: RawValue,
    /// Spacing and comment after the value, kept when the value is replaced.
    suffix: String,
    /// `name=value` words of the comment: abra reads `length=N` on secret versions.
    modifiers: BTreeMap<String, String>,
}

/// A value as written, before expansion.
#[derive(Clone, Debug, PartialEq)]
enum RawValue {
    Unquoted(String),
    /// The text between the quotes (several lines joined by `\n` when it spans them).
    SingleQuoted(String),
    DoubleQuoted(String),
}

impl EnvFile {
    /// Parses env file text; a line that is no assignment, comment or blank is an error naming
    /// its line number. `$VAR` expands from the file alone until [`Self::with_environment`].
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_from(text, None)
    }

    /// Reads an env file; `$VAR` falls back to this process's environment, which abra, run by
    /// ccci, inherits.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at("read env file", path)?;
        Ok(Self::parse_from(&text, Some(path))?.with_environment(process_environment()))
    }

    /// The environment `$VAR` falls back to after the file's own lines.
    pub fn with_environment(mut self, environment: BTreeMap<String, String>) -> Self {
        self.environment = environment;
        self
    }

    fn parse_from(text: &str, origin: Option<&Path>) -> Result<Self> {
        let what = match origin {
            Some(path) => format!("env file {}", path.display()),
            None => "env file".to_owned(),
        };
        let mut lines: Vec<&str> = text.split('\n').collect();
        let final_newline = text.ends_with('\n');
        if final_newline || text.is_empty() {
            lines.pop();
        }
        let mut entries = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let (assignment, consumed) = parse_statement(&lines[i..])
                .and_then(|(a, n)| check_modifiers(a.as_ref()).map(|()| (a, n)))
                .map_err(|why| Error::Config(format!("{what} line {}: {why}", i + 1)))?;
            entries.push(Entry {
                text: lines[i..i + consumed].join("\n"),
                assignment,
            });
            i += consumed;
        }
        Ok(EnvFile {
            entries,
            final_newline,
            environment: BTreeMap::new(),
        })
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at("create", dir)?;
        }
        crate::files::write_atomic(path, self.to_string().as_bytes())
    }

    /// The value of `key` as abra reads it (expanded; the last assignment wins). `None` when
    /// the file does not assign it.
    pub fn get(&self, key: &str) -> Option<String> {
        self.resolved()
            .into_iter()
            .rev()
            .find(|(_, k, _)| *k == key)
            .map(|(_, _, v)| v)
    }

    /// Every key the file assigns, with its final expanded value.
    pub fn vars(&self) -> BTreeMap<String, String> {
        self.resolved()
            .into_iter()
            .map(|(_, k, v)| (k.to_owned(), v))
            .collect()
    }

    /// Sets `key` so that it reads back as exactly `value`: its last assignment is rewritten in
    /// place (keeping its `export` and its comment), or a line is appended. A value is written
    /// bare when it can be, else quoted and escaped.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if key.is_empty() || !key.chars().all(is_key_char) {
            return Err(Error::Config(format!(
                "`{key}` cannot be a key in an env file: use letters, digits and `_`"
            )));
        }
        let existing = self.last_assignment(key);
        let (prefix, suffix) = match existing.and_then(|i| self.entries[i].assignment.as_ref()) {
            Some(a) => (a.prefix.clone(), a.suffix.clone()),
            None => (String::new(), String::new()),
        };
        let entry = value_candidates(value, &suffix)
            .into_iter()
            .filter_map(|rendered| entry_from(format!("{prefix}{key}={rendered}{suffix}")))
            .find(|entry| reads_back_as(entry, value))
            .ok_or_else(|| {
                Error::Config(format!(
                    "the value for {key} cannot be written to an env file so that abra reads it \
                     back unchanged (it ends with a double quote and also holds a single quote, \
                     a backslash or a line break): choose another value"
                ))
            })?;
        match existing {
            Some(i) => self.entries[i] = entry,
            None => self.push(entry),
        }
        Ok(())
    }

    /// Appends `other`'s line for `key` as it is written there, comment and all (a secret
    /// version's `# length=N` must come along), when this file has no `key` yet. `true` when
    /// it appended.
    pub fn adopt(&mut self, other: &EnvFile, key: &str) -> bool {
        if self.last_assignment(key).is_some() {
            return false;
        }
        match other.last_assignment(key) {
            Some(i) => {
                self.push(other.entries[i].clone());
                true
            }
            None => false,
        }
    }

    /// `SECRET_<NAME>_VERSION=<version>` entries as (name lowercased, version, modifiers from
    /// the comment): the secrets an app needs.
    pub fn secrets(&self) -> Vec<SecretSpec> {
        let mut out: Vec<SecretSpec> = Vec::new();
        for (index, key, version) in self.resolved() {
            let Some(name) = secret_name(key) else {
                continue;
            };
            let modifiers = self.entries[index]
                .assignment
                .as_ref()
                .map(|a| a.modifiers.clone())
                .unwrap_or_default();
            let spec = SecretSpec {
                name: name.to_ascii_lowercase(),
                version,
                // Checked when the file was parsed.
                length: modifiers.get("length").and_then(|n| n.parse().ok()),
                modifiers,
            };
            match out.iter_mut().find(|s| s.name == spec.name) {
                Some(existing) => *existing = spec,
                None => out.push(spec),
            }
        }
        out
    }

    /// The compose files the app uses, in order: the expanded `COMPOSE_FILE`, colon-separated;
    /// `compose.yml` when it lists none.
    pub fn compose_files(&self) -> Vec<String> {
        self.listed_compose_files()
            .unwrap_or_else(|| vec![DEFAULT_COMPOSE_FILE.to_owned()])
    }

    fn listed_compose_files(&self) -> Option<Vec<String>> {
        let files: Vec<String> = self
            .get(COMPOSE_FILE)?
            .split(':')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        (!files.is_empty()).then_some(files)
    }

    /// Makes `file` the last entry of `COMPOSE_FILE`, listed once, keeping the chain the recipe
    /// built: a new `COMPOSE_FILE="$COMPOSE_FILE:<file>"` line after the last assignment when
    /// `file` is not listed yet, the whole list written out otherwise. Doing it again changes
    /// nothing.
    pub fn register_compose_file(&mut self, file: &str) -> Result<()> {
        let files = self.compose_files();
        let listed = files.iter().filter(|f| *f == file).count();
        if listed == 1 && files.last().is_some_and(|f| f == file) {
            return Ok(());
        }
        let chain_after = self.last_assignment(COMPOSE_FILE).filter(|_| {
            listed == 0 && self.listed_compose_files().is_some() && file.chars().all(is_bare_char)
        });
        if let Some(i) = chain_after
            && let Some(entry) = entry_from(format!("{COMPOSE_FILE}=\"${COMPOSE_FILE}:{file}\""))
        {
            let at_end = i + 1 == self.entries.len();
            self.entries.insert(i + 1, entry);
            self.final_newline |= at_end;
            return Ok(());
        }
        let mut files: Vec<String> = files.into_iter().filter(|f| f != file).collect();
        files.push(file.to_owned());
        self.set(COMPOSE_FILE, &files.join(":"))
    }

    /// (entry index, key, expanded value) of every assignment, in file order.
    fn resolved(&self) -> Vec<(usize, &str, String)> {
        let mut known: BTreeMap<&str, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let Some(a) = &entry.assignment else {
                continue;
            };
            let value = a.value.resolve(&|name| {
                known
                    .get(name)
                    .or_else(|| self.environment.get(name))
                    .cloned()
            });
            known.insert(&a.key, value.clone());
            out.push((index, a.key.as_str(), value));
        }
        out
    }

    fn last_assignment(&self, key: &str) -> Option<usize> {
        self.entries
            .iter()
            .rposition(|e| e.assignment.as_ref().is_some_and(|a| a.key == key))
    }

    fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
        self.final_newline = true;
    }
}

impl std::fmt::Display for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.entries.len().saturating_sub(1);
        for (i, entry) in self.entries.iter().enumerate() {
            f.write_str(&entry.text)?;
            if i < last || self.final_newline {
                f.write_str("\n")?;
            }
        }
        Ok(())
    }
}

/// A secret an app needs, from its env file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    pub version: String,
    /// `# length=N`: how long a generated value is.
    pub length: Option<usize>,
    /// Every `name=value` word of the line's comment. abra reads `length`; other words
    /// (newer abra versions know e.g. `charset=`) are kept for whoever needs them.
    pub modifiers: BTreeMap<String, String>,
}

fn secret_name(key: &str) -> Option<&str> {
    key.strip_prefix("SECRET_")?.strip_suffix("_VERSION")
}

/// A `length=` that is no positive number would make abra fail at `secret generate`; say so
/// when the file is read.
fn check_modifiers(assignment: Option<&Assignment>) -> Result<(), String> {
    let Some(a) = assignment.filter(|a| secret_name(&a.key).is_some()) else {
        return Ok(());
    };
    match a.modifiers.get("length") {
        Some(n) if !matches!(n.parse::<usize>(), Ok(1..)) => Err(format!(
            "`length={n}` on {} is not a positive whole number: write it like `# length=32`",
            a.key
        )),
        _ => Ok(()),
    }
}

/// Whitespace inside a line, as godotenv counts it (a line break is no space).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Characters a value may hold and still be written bare, as every dotenv reader takes it.
fn is_bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.' | ':' | '/' | ',' | '@' | '+' | '=' | '%')
}

/// One statement starting at `lines[0]`: `None` for a blank or comment line, and how many lines
/// it took (a quoted value may span several).
fn parse_statement(lines: &[&str]) -> Result<(Option<Assignment>, usize), String> {
    let line = lines[0];
    let body = line.trim_start();
    if body.is_empty() || body.starts_with('#') {
        return Ok((None, 1));
    }
    let mut rest = body;
    if let Some(after) = rest.strip_prefix("export")
        && after.starts_with(is_space)
    {
        rest = after.trim_start_matches(is_space);
    }
    let key_len = rest.find(|c| !is_key_char(c)).unwrap_or(rest.len());
    let key = &rest[..key_len];
    let not_assignment = || {
        "this is not a KEY=value assignment: write it as KEY=value (keys use letters, digits \
         and `_`), or start the line with # to make it a comment"
            .to_owned()
    };
    if key.is_empty() {
        return Err(not_assignment());
    }
    let prefix = line[..line.len() - rest.len()].to_owned();
    let after_eq = rest[key_len..]
        .trim_start_matches(is_space)
        .strip_prefix('=')
        .ok_or_else(not_assignment)?;
    let value_text = after_eq.trim_start_matches(is_space);
    let key = key.to_owned();

    let (value, suffix, consumed) = match value_text.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let mut segments: Vec<&str> = Vec::new();
            let mut segment = &value_text[1..];
            let mut index = 0;
            loop {
                if let Some(end) = closing_quote(segment, quote) {
                    segments.push(&segment[..end]);
                    let suffix = &segment[end + 1..];
                    let after = suffix.trim_start_matches(is_space);
                    if !after.is_empty() && !after.starts_with('#') {
                        return Err(format!(
                            "text follows the closing quote of {key}'s value: put `#` before a \
                             comment, or quote the whole value"
                        ));
                    }
                    let content = trim_quotes(&segments.join("\n"), quote);
                    let value = if quote == '"' {
                        RawValue::DoubleQuoted(content)
                    } else {
                        RawValue::SingleQuoted(content)
                    };
                    break (value, suffix.to_owned(), index + 1);
                }
                segments.push(segment);
                index += 1;
                segment = *lines.get(index).ok_or_else(|| {
                    format!(
                        "the value of {key} opens a {} quote that is never closed: close it, \
                         or escape it with a backslash inside double quotes",
                        if quote == '"' { "double" } else { "single" }
                    )
                })?;
            }
        }
        _ => {
            let end_of_line = value_text.find('\r').unwrap_or(value_text.len());
            let region = &value_text[..end_of_line];
            let comment_at = region
                .char_indices()
                .find(|&(i, c)| {
                    c == '#' && (i == 0 || region[..i].chars().next_back().is_some_and(is_space))
                })
                .map_or(region.len(), |(i, _)| i);
            let value = region[..comment_at].trim_matches(is_space);
            // `value_text` starts where the value does.
            let suffix = &line[line.len() - value_text.len() + value.len()..];
            (RawValue::Unquoted(value.to_owned()), suffix.to_owned(), 1)
        }
    };
    let modifiers = suffix
        .trim_start_matches(is_space)
        .strip_prefix('#')
        .map(|comment| {
            comment
                .split_whitespace()
                .filter_map(|word| word.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        Some(Assignment {
            prefix,
            key,
            value,
            suffix,
            modifiers,
        }),
        consumed,
    ))
}

/// The byte index of the quote closing a value: one not escaped by an odd run of backslashes.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let bytes = text.as_bytes();
    text.char_indices().find_map(|(i, c)| {
        let backslashes = bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count();
        (c == quote && backslashes % 2 == 0).then_some(i)
    })
}

/// godotenv strips every quote character from both ends of a quoted value, not just the pair;
/// a value that really ends in an escaped quote loses it. Mirror that, so ccci reads what abra
/// reads (and so the writer never produces such a value).
fn trim_quotes(content: &str, quote: char) -> String {
    let with_opening = format!("{quote}{content}");
    with_opening
        .trim_end_matches(quote)
        .trim_start_matches(quote)
        .to_owned()
}

impl RawValue {
    fn resolve(&self, lookup: &dyn Fn(&str) -> Option<String>) -> String {
        match self {
            RawValue::Unquoted(text) => expand_variables(text, lookup),
            RawValue::SingleQuoted(text) => text.clone(),
            RawValue::DoubleQuoted(text) => expand_variables(&unescape(text), lookup),
        }
    }
}

/// godotenv's double-quote escapes, in its two passes: `\n` and `\r` become line breaks, then
/// a backslash before anything but `$` is dropped; `\$` is left for [`expand_variables`].
fn unescape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut first = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('\\', Some('n')) => {
                first.push('\n');
                i += 2;
            }
            ('\\', Some('r')) => {
                first.push('\r');
                i += 2;
            }
            ('\\', Some(&next)) if next != '\n' => {
                first.push('\\');
                first.push(next);
                i += 2;
            }
            (c, _) => {
                first.push(c);
                i += 1;
            }
        }
    }
    let chars: Vec<char> = first.chars().collect();
    let mut out = String::with_capacity(first.len());
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('\\', Some(&next)) if next != '$' => {
                out.push(next);
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// godotenv's expansion: `$NAME`, `${NAME}` (NAME of `A-Z`, `0-9`, `_`) from the lines above,
/// then the environment, else empty; `\$…` is the same text without the backslash. It knows no
/// `${NAME:-default}`: only `${NAME` is replaced and the rest stays, as abra does it.
fn expand_variables(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let escaped = chars[i] == '\\' && chars.get(i + 1) == Some(&'$');
        if !escaped && chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + if escaped { 2 } else { 1 };
        for optional in ['(', '{'] {
            if chars.get(j) == Some(&optional) {
                j += 1;
            }
        }
        let name_start = j;
        while chars
            .get(j)
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
        {
            j += 1;
        }
        let name: String = chars[name_start..j].iter().collect();
        if chars.get(j) == Some(&'}') {
            j += 1;
        }
        let matched: String = chars[start..j].iter().collect();
        if escaped {
            out.push_str(&matched[1..]);
        } else if !name.is_empty() {
            out.push_str(&lookup(&name).unwrap_or_default());
        } else {
            out.push_str(&matched);
        }
        i = j;
    }
    out
}

/// Ways to write `value`, most readable first; [`EnvFile::set`] takes the first that reads back
/// unchanged.
fn value_candidates(value: &str, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `KEY= # comment` trips godotenv (a `#` right after `=`): quote an empty value there.
    let bare_ok = !value.is_empty() || suffix.trim().is_empty();
    if bare_ok && value.chars().all(is_bare_char) {
        out.push(value.to_owned());
    }
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '$' => escaped.push_str("\\$"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c => escaped.push(c),
        }
    }
    out.push(format!("\"{escaped}\""));
    // godotenv cannot read a double-quoted value that ends in `\"`: try the other forms.
    out.push(value.replace('$', "\\$"));
    out.push(format!("'{value}'"));
    out.retain(|c| !c.contains(['\n', '\r']));
    out
}

fn entry_from(text: String) -> Option<Entry> {
    match parse_statement(&[text.as_str()]) {
        Ok((assignment @ Some(_), 1)) => Some(Entry { text, assignment }),
        _ => None,
    }
}

fn reads_back_as(entry: &Entry, value: &str) -> bool {
    entry
        .assignment
        .as_ref()
        .is_some_and(|a| a.value.resolve(&|_| None) == value && !quote_follows_backslash(&a.value))
}

/// abra's parser takes a quote after a backslash for an escaped one whatever precedes the
/// backslash, so a quoted value whose text ends in a backslash never ends for it: such a
/// rendering would make the whole file unreadable to abra.
fn quote_follows_backslash(value: &RawValue) -> bool {
    match value {
        RawValue::Unquoted(_) => false,
        RawValue::SingleQuoted(text) | RawValue::DoubleQuoted(text) => text.ends_with('\\'),
    }
}

/// The process environment, minus what is not UTF-8 (no env file can refer to that).
fn process_environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
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

    /// A `.env.sample` as published recipes write them.
    const SAMPLE: &str = r#"TYPE=ghost
# a comment
DOMAIN=ghost.example.com

## Domain aliases
#EXTRA_DOMAINS=', `www.ghost.example.com`'
LETS_ENCRYPT_ENV=production

SECRET_DB_PASSWORD_VERSION=v1 # length=32
SECRET_API_KEY_VERSION=v2
SECRET_SMTP_PASSWORD_VERSION=v1 # length=48 charset=special-chars generate=false

COMPOSE_FILE="compose.yml"

#COMPOSE_FILE="$COMPOSE_FILE:compose.smtp.yml"
#SMTP_HOST=mail.example.com

COMPOSE_FILE="$COMPOSE_FILE:compose.mysql.yml"
export DB_NAME=ghost
TITLE="My Ghost blog" # shown on the front page
URL=https://${DOMAIN}/blog
"#;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str) -> EnvFile {
        EnvFile::parse(text).unwrap()
    }

    #[test]
    fn reads_a_published_sample() {
        let env = parse(SAMPLE);
        assert_eq!(env.get("DOMAIN").as_deref(), Some("ghost.example.com"));
        assert_eq!(env.get("DB_NAME").as_deref(), Some("ghost"));
        assert_eq!(env.get("TITLE").as_deref(), Some("My Ghost blog"));
        assert_eq!(
            env.get("URL").as_deref(),
            Some("https://ghost.example.com/blog")
        );
        assert_eq!(env.get("SMTP_HOST"), None);
        assert_eq!(env.get("NOPE"), None);
        assert_eq!(
            env.secrets(),
            vec![
                SecretSpec {
                    name: "db_password".into(),
                    version: "v1".into(),
                    length: Some(32),
                    modifiers: map(&[("length", "32")]),
                },
                SecretSpec {
                    name: "api_key".into(),
                    version: "v2".into(),
                    length: None,
                    modifiers: BTreeMap::new(),
                },
                SecretSpec {
                    name: "smtp_password".into(),
                    version: "v1".into(),
                    length: Some(48),
                    modifiers: map(&[
                        ("length", "48"),
                        ("charset", "special-chars"),
                        ("generate", "false"),
                    ]),
                },
            ]
        );
        assert_eq!(parse("A=1").compose_files(), vec!["compose.yml"]);
        assert_eq!(
            parse("COMPOSE_FILE=\"\"").compose_files(),
            vec!["compose.yml"]
        );
    }

    #[test]
    fn regression_compose_file_chain_read_as_its_last_line() {
        let env = parse(SAMPLE);
        assert_eq!(
            env.compose_files(),
            vec!["compose.yml", "compose.mysql.yml"]
        );
        let three = parse(
            "COMPOSE_FILE=compose.yml\nCOMPOSE_FILE=$COMPOSE_FILE:compose.a.yml\nexport COMPOSE_FILE=\"${COMPOSE_FILE}:compose.b.yml\"\n",
        );
        assert_eq!(
            three.compose_files(),
            vec!["compose.yml", "compose.a.yml", "compose.b.yml"]
        );
    }

    #[test]
    fn expands_like_godotenv() {
        let text = r#"A=1
B=${A}
C=$B
D=${A}${B}x
E=${NOT_DEFINED}
F=${FROM_ENV}
G='$A literal'
H="double $A"
I="escaped \$A and \${A}"
J=unquoted \$A
K=${A:-default}
L=lower $a stays
M="line\nbreak \"quoted\" back\\slash"
A=2
N=$A
"#;
        let env = parse(text).with_environment(map(&[("FROM_ENV", "env"), ("A", "shadowed")]));
        let want = [
            ("B", "1"),
            ("C", "1"),
            ("D", "11x"),
            ("E", ""),
            ("F", "env"),
            ("G", "$A literal"),
            ("H", "double 1"),
            ("I", "escaped $A and ${A}"),
            ("J", "unquoted $A"),
            ("K", "1:-default}"),
            ("L", "lower $a stays"),
            ("M", "line\nbreak \"quoted\" back\\slash"),
            ("A", "2"),
            ("N", "2"),
        ];
        for (key, value) in want {
            assert_eq!(env.get(key).as_deref(), Some(value), "{key}");
        }
        assert_eq!(env.vars().get("A").map(String::as_str), Some("2"));
    }

    #[test]
    fn comments_quotes_and_spacing() {
        let text = "  INDENTED = spaced   \nHASH=a#b # comment\nQ='a # b' # c\nDQ=\"x\"#c\nEMPTY=\nEMPTY_COMMENT= # c\nML=\"one\ntwo\" # after\nCRLF=v\r\n";
        let env = parse(text);
        assert_eq!(env.get("INDENTED").as_deref(), Some("spaced"));
        assert_eq!(env.get("HASH").as_deref(), Some("a#b"));
        assert_eq!(env.get("Q").as_deref(), Some("a # b"));
        assert_eq!(env.get("DQ").as_deref(), Some("x"));
        assert_eq!(env.get("EMPTY").as_deref(), Some(""));
        assert_eq!(env.get("EMPTY_COMMENT").as_deref(), Some(""));
        assert_eq!(env.get("ML").as_deref(), Some("one\ntwo"));
        assert_eq!(env.get("CRLF").as_deref(), Some("v"));
        assert_eq!(env.to_string(), text);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        for (text, line, words) in [
            ("A=1\njust words\n", 2, "not a KEY=value"),
            ("A=1\n\nKEY: value\n", 3, "not a KEY=value"),
            ("=value\n", 1, "not a KEY=value"),
            ("A=\"open\nB=2\n", 1, "never closed"),
            ("A='x' trailing\n", 1, "follows the closing quote"),
            ("SECRET_X_VERSION=v1 # length=abc\n", 1, "length=abc"),
            ("SECRET_X_VERSION=v1 # length=0\n", 1, "length=0"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.example.org.env");
            std::fs::write(&path, text).unwrap();
            let err = EnvFile::read(&path).unwrap_err();
            let Error::Config(msg) = &err else {
                panic!("{err:?}")
            };
            assert!(
                msg.contains(&path.display().to_string())
                    && msg.contains(&format!("line {line}:"))
                    && msg.contains(words)
                    && !msg.contains('\n'),
                "{text:?}: {msg}"
            );
        }
    }

    #[test]
    fn regression_set_then_get_loses_quotes() {
        let values = [
            "a\"b c",
            "plain",
            "",
            "with spaces",
            " leading and trailing ",
            "dollar $HOME and ${HOME} and $$",
            "hash # not a comment",
            "#starts-with-hash",
            "back\\slash",
            "ends with backslash\\",
            "\\$ and \\\\$A",
            "single ' quote",
            "\"starts with a quote",
            "ends with a quote\"",
            "ends with \"both\" 'kinds'\"x",
            "line\nbreak",
            "tab\there",
            "\\n is not a newline",
            "ünïcödé",
        ];
        for value in values {
            let mut env = parse(SAMPLE).with_environment(map(&[("HOME", "/root")]));
            env.set("VALUE", value).unwrap();
            env.set("TITLE", value).unwrap();
            assert_eq!(env.get("VALUE").as_deref(), Some(value), "{value:?}");
            assert_eq!(env.get("TITLE").as_deref(), Some(value), "{value:?}");
            let reread = parse(&env.to_string()).with_environment(map(&[("HOME", "/root")]));
            assert_eq!(reread.get("VALUE").as_deref(), Some(value), "{value:?}");
            assert!(
                env.to_string().contains(" # shown on the front page\n"),
                "the comment stays: {env}"
            );
        }
        // Only a value that ends in `"` and holds every other troublemaker has no form.
        let mut env = parse("A=1\n");
        let err = env.set("A", " it's \"x\"").unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("value for A")),
            "{err}"
        );
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert!(env.set("BAD KEY", "x").is_err());
    }

    #[test]
    fn edits_keep_everything_else_in_place() {
        let mut env = parse(SAMPLE);
        env.set("LETS_ENCRYPT_ENV", "").unwrap();
        env.set("SECRET_DB_PASSWORD_VERSION", "v2").unwrap();
        env.set("DB_NAME", "other").unwrap();
        env.set("NEW", "a value").unwrap();
        let text = env.to_string();
        let want = SAMPLE
            .replace("LETS_ENCRYPT_ENV=production", "LETS_ENCRYPT_ENV=")
            .replace(
                "SECRET_DB_PASSWORD_VERSION=v1 # length=32",
                "SECRET_DB_PASSWORD_VERSION=v2 # length=32",
            )
            .replace("export DB_NAME=ghost", "export DB_NAME=other")
            + "NEW=\"a value\"\n";
        assert_eq!(text, want);
        assert_eq!(parse(&text).get("NEW").as_deref(), Some("a value"));
        assert_eq!(env.secrets()[0].length, Some(32));
    }

    #[test]
    fn registering_a_compose_file_keeps_the_chain() {
        let mut env = parse(SAMPLE);
        env.register_compose_file("compose.ccci.yml").unwrap();
        let once = env.to_string();
        env.register_compose_file("compose.ccci.yml").unwrap();
        assert_eq!(env.to_string(), once, "applied twice changes nothing");
        let want = SAMPLE.replace(
            "COMPOSE_FILE=\"$COMPOSE_FILE:compose.mysql.yml\"\n",
            "COMPOSE_FILE=\"$COMPOSE_FILE:compose.mysql.yml\"\nCOMPOSE_FILE=\"$COMPOSE_FILE:compose.ccci.yml\"\n",
        );
        assert_eq!(once, want);
        assert_eq!(
            parse(&once).compose_files(),
            vec!["compose.yml", "compose.mysql.yml", "compose.ccci.yml"]
        );

        // Listed but not last (or twice): the whole list is written out, once.
        let mut env = parse(
            "COMPOSE_FILE=compose.yml:compose.ccci.yml\nCOMPOSE_FILE=\"$COMPOSE_FILE:compose.extra.yml:compose.ccci.yml\"\n",
        );
        env.register_compose_file("compose.ccci.yml").unwrap();
        assert_eq!(
            env.compose_files(),
            vec!["compose.yml", "compose.extra.yml", "compose.ccci.yml"]
        );

        let mut env = parse("COMPOSE_FILE=compose.yml");
        env.register_compose_file("compose.ccci.yml").unwrap();
        assert_eq!(
            env.to_string(),
            "COMPOSE_FILE=compose.yml\nCOMPOSE_FILE=\"$COMPOSE_FILE:compose.ccci.yml\"\n"
        );

        // Nothing listed: the default stays in front.
        for text in ["TYPE=x", "TYPE=x\nCOMPOSE_FILE=\n"] {
            let mut env = parse(text);
            env.register_compose_file("compose.ccci.yml").unwrap();
            let reread = parse(&env.to_string());
            assert_eq!(
                reread.compose_files(),
                vec!["compose.yml", "compose.ccci.yml"]
            );
            assert!(env.to_string().starts_with("TYPE=x\n"));
        }
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path(), "default", "a.example.org");
        let env = parse(SAMPLE);
        env.write(&path).unwrap();
        assert_eq!(EnvFile::read(&path).unwrap(), env);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SAMPLE);
        let no_newline = parse("A=1\n# end");
        assert_eq!(no_newline.to_string(), "A=1\n# end");
    }

    #[test]
    fn regression_a_secret_taken_from_a_newer_sample_lost_its_length() {
        let sample = EnvFile::parse("SECRET_NEW_KEY_VERSION=v1 # length=64\n").unwrap();
        let mut env = EnvFile::parse("TYPE=app\n").unwrap();
        assert!(env.adopt(&sample, "SECRET_NEW_KEY_VERSION"));
        assert!(!env.adopt(&sample, "SECRET_NEW_KEY_VERSION"), "once only");
        let secrets = env.secrets();
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].length, Some(64));
    }

    #[test]
    fn regression_a_value_ending_in_a_backslash_was_written_so_abra_could_not_read_the_file() {
        let mut env = EnvFile::parse("TYPE=app\n").unwrap();
        // Bare, it reads back unchanged by both parsers.
        env.set("WIN", r"C:\Programs\").unwrap();
        assert_eq!(env.get("WIN").as_deref(), Some(r"C:\Programs\"));
        assert!(!env.to_string().contains(r#"\""#), "{env}");
        // With a space too: still written so that no quote follows a backslash.
        env.set("DIR", r"C:\Program Files\").unwrap();
        assert_eq!(env.get("DIR").as_deref(), Some(r"C:\Program Files\"));
        assert!(!env.to_string().contains(r#"\""#), "{env}");
        assert!(!env.to_string().contains(r"\'"), "{env}");
        // Needing quotes (leading blanks) and ending in a backslash: refused, file unchanged.
        let before = env.to_string();
        let err = env.set("PAD", r"  x\").unwrap_err();
        assert!(err.to_string().contains("cannot be written"), "{err}");
        assert_eq!(env.to_string(), before);
    }
}
