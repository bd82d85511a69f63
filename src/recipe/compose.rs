//! Reading the compose files an app really uses: the files `COMPOSE_FILE` lists, read from the
//! recipe tree in order, `${VAR}`-interpolated the way docker does it, and merged the way
//! `docker stack deploy -c a -c b` layers them. Everything else in ccci that needs to know a
//! service's image, healthcheck, labels or volumes asks this module.
//!
//! This module only reads: it never writes into the recipe tree and never talks to docker.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::yaml::{self, Mapping, Value};

/// The app's compose model: the files listed in the env file's `COMPOSE_FILE`, read from the
/// recipe dir in order and merged (later files override earlier ones, mappings merge key by
/// key), with `${VAR}`, `${VAR:-default}` and `$VAR` interpolated from the given variables.
#[derive(Clone, Debug, PartialEq)]
pub struct Compose {
    value: Value,
}

/// One service as ccci needs to see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub image: Option<String>,
    /// `None` when the compose files declare no healthcheck (the image may still have one).
    pub healthcheck: Option<Healthcheck>,
    /// `deploy.labels`, from either the list or the mapping form.
    pub labels: BTreeMap<String, String>,
    /// Named volumes only: bind mounts and anonymous volumes hold nothing a run must clean up.
    pub volumes: Vec<VolumeMount>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Healthcheck {
    pub start_period: Option<Duration>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    /// `disable: true` or `test: ["NONE"]`.
    pub disabled: bool,
}

impl Healthcheck {
    pub fn enabled(&self) -> bool {
        !self.disabled
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: String,
    pub target: String,
}

impl Compose {
    /// Reads `files` (as listed in `COMPOSE_FILE`) from `recipe_dir`, interpolates each with
    /// `vars` and merges them in order.
    pub fn load(
        recipe_dir: &Path,
        files: &[String],
        vars: &BTreeMap<String, String>,
    ) -> Result<Compose> {
        let listed = files.join(":");
        let mut merged = Value::Mapping(Mapping::new());
        for file in files {
            let path = recipe_dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::Config(format!(
                        "compose file {file} listed in COMPOSE_FILE={listed} does not exist in {}: \
                         fix COMPOSE_FILE in the app env file or add the file to the recipe",
                        recipe_dir.display()
                    )));
                }
                Err(e) => return Err(Error::io("read compose file", path, e)),
            };
            let value = parse_file(&text, vars)
                .map_err(|e| Error::Config(format!("compose file {}: {e}", path.display())))?;
            yaml::merge(&mut merged, value);
        }
        Ok(Compose { value: merged })
    }

    /// Every service, sorted by name.
    pub fn services(&self) -> Vec<ServiceSpec> {
        let mut out: Vec<ServiceSpec> = self
            .services_mapping()
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(name, spec)| Some(service_spec(name.as_str()?, spec)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn service(&self, name: &str) -> Option<ServiceSpec> {
        let spec = self.services_mapping()?.get(name)?;
        Some(service_spec(name, spec))
    }

    /// The images of all services, sorted, without duplicates.
    pub fn images(&self) -> Vec<String> {
        let mut images: Vec<String> = self
            .services()
            .into_iter()
            .filter_map(|s| s.image)
            .collect();
        images.sort();
        images.dedup();
        images
    }

    /// The merged model, for what the typed accessors do not cover.
    pub fn value(&self) -> &Value {
        &self.value
    }

    fn services_mapping(&self) -> Option<&Mapping> {
        self.value.get("services")?.as_mapping()
    }
}

/// One file: parse, resolve `<<` merge keys, interpolate, and turn the list forms of labels and
/// environment into mappings, so that a later file's mapping merges into an earlier file's
/// list instead of replacing it (docker normalises both forms before merging too).
fn parse_file(text: &str, vars: &BTreeMap<String, String>) -> Result<Value, String> {
    let mut value: Value = yaml::from_str(text).map_err(|e| format!("invalid yaml: {e}"))?;
    if value.is_null() {
        // An empty file is a valid (if useless) compose file.
        return Ok(Value::Mapping(Mapping::new()));
    }
    if !value.is_mapping() {
        return Err(
            "the top level is not a mapping: a compose file starts with keys like `services:`"
                .into(),
        );
    }
    resolve_merge_keys(&mut value);
    interpolate_value(&mut value, vars)?;
    normalize(&mut value);
    Ok(value)
}

/// YAML merge keys (`<<: *anchor`) are common in recipes for shared healthchecks and
/// deploy blocks; serde_yaml keeps them as a literal `<<` key, so apply them here. Keys already
/// in the mapping win over merged ones, as YAML specifies.
fn resolve_merge_keys(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            for (_, v) in map.iter_mut() {
                resolve_merge_keys(v);
            }
            if let Some(merged) = map.remove("<<") {
                let sources = match merged {
                    Value::Sequence(seq) => seq,
                    other => vec![other],
                };
                for source in sources {
                    if let Value::Mapping(source) = source {
                        for (k, v) in source {
                            if !map.contains_key(&k) {
                                map.insert(k, v);
                            }
                        }
                    }
                }
            }
        }
        Value::Sequence(seq) => seq.iter_mut().for_each(resolve_merge_keys),
        Value::Tagged(tagged) => resolve_merge_keys(&mut tagged.value),
        _ => {}
    }
}

/// Interpolates every string value (not keys: docker does not interpolate keys either).
fn interpolate_value(value: &mut Value, vars: &BTreeMap<String, String>) -> Result<(), String> {
    match value {
        Value::String(s) if s.contains('$') => *s = interpolate(s, vars)?,
        Value::Mapping(map) => {
            for (_, v) in map.iter_mut() {
                interpolate_value(v, vars)?;
            }
        }
        Value::Sequence(seq) => {
            for v in seq {
                interpolate_value(v, vars)?;
            }
        }
        Value::Tagged(tagged) => interpolate_value(&mut tagged.value, vars)?,
        _ => {}
    }
    Ok(())
}

/// Docker's interpolation: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
/// (unset), `${VAR:?err}` / `${VAR?err}` (required), `${VAR:+alt}` / `${VAR+alt}`, and `$$` for a
/// literal `$`. Unknown variables become the empty string, as docker does. Defaults may nest.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body).ok_or_else(|| {
                format!(
                    "`${{{body}` has no closing brace: close it or write `$$` for a literal `$`"
                )
            })?;
            out.push_str(&expand(&body[..end], vars)?);
            rest = &body[end + 1..];
        } else {
            let len = var_name_len(after);
            if len == 0 {
                // docker refuses a lone `$`; keep it, and let the deploy report it in its own words.
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..len]).map(String::as_str).unwrap_or(""));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, counting nested `${…}` in defaults.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn var_name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// The inside of one `${…}`.
fn expand(body: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let len = var_name_len(body);
    let (name, op) = body.split_at(len);
    if name.is_empty() {
        return Err(format!(
            "`${{{body}}}` is not a valid variable reference: write it as `${{NAME}}`"
        ));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let value = value.cloned().unwrap_or_default();
    let (check, arg) = if let Some(arg) = op.strip_prefix(":-") {
        ("default", (non_empty, arg))
    } else if let Some(arg) = op.strip_prefix('-') {
        ("default", (set, arg))
    } else if let Some(arg) = op.strip_prefix(":?") {
        ("required", (non_empty, arg))
    } else if let Some(arg) = op.strip_prefix('?') {
        ("required", (set, arg))
    } else if let Some(arg) = op.strip_prefix(":+") {
        ("alternative", (non_empty, arg))
    } else if let Some(arg) = op.strip_prefix('+') {
        ("alternative", (set, arg))
    } else if op.is_empty() {
        return Ok(value);
    } else {
        return Err(format!(
            "`${{{body}}}` is not a valid variable reference: use `:-`, `-`, `:?`, `?`, `:+` or `+` after the name"
        ));
    };
    let (present, arg) = arg;
    match check {
        "default" if present => Ok(value),
        "default" => interpolate(arg, vars),
        "required" if present => Ok(value),
        "required" => {
            let why = interpolate(arg, vars)?;
            Err(format!(
                "required variable {name} is missing a value: {why}; set it in the app env file"
            ))
        }
        _ if present => interpolate(arg, vars),
        _ => Ok(String::new()),
    }
}

/// List forms to mappings where docker accepts both, so merging works key by key.
fn normalize(value: &mut Value) {
    if let Some(services) = value.get_mut("services").and_then(Value::as_mapping_mut) {
        for (_, service) in services.iter_mut() {
            list_to_mapping(service.get_mut("labels"));
            list_to_mapping(service.get_mut("environment"));
            list_to_mapping(service.get_mut("deploy").and_then(|d| d.get_mut("labels")));
        }
    }
    for section in ["volumes", "networks"] {
        if let Some(items) = value.get_mut(section).and_then(Value::as_mapping_mut) {
            for (_, item) in items.iter_mut() {
                list_to_mapping(item.get_mut("labels"));
            }
        }
    }
}

/// `["k=v", "k2"]` → `{k: v, k2: null}`.
fn list_to_mapping(value: Option<&mut Value>) {
    let Some(value) = value else { return };
    let Value::Sequence(items) = value else {
        return;
    };
    let mut map = Mapping::new();
    for item in items.iter() {
        let Some(text) = scalar_string(item) else {
            continue;
        };
        match text.split_once('=') {
            Some((k, v)) => map.insert(Value::String(k.to_owned()), Value::String(v.to_owned())),
            None => map.insert(Value::String(text), Value::Null),
        };
    }
    *value = Value::Mapping(map);
}

/// A scalar as the string docker would see.
fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn service_spec(name: &str, spec: &Value) -> ServiceSpec {
    let image = spec
        .get("image")
        .and_then(scalar_string)
        .filter(|s| !s.is_empty());
    let healthcheck = spec.get("healthcheck").map(healthcheck);
    let mut labels = BTreeMap::new();
    match spec.get("deploy").and_then(|d| d.get("labels")) {
        Some(Value::Mapping(map)) => {
            for (k, v) in map {
                if let (Some(k), Some(v)) = (scalar_string(k), scalar_string(v)) {
                    labels.insert(k, v);
                }
            }
        }
        Some(Value::Sequence(items)) => {
            for item in items.iter().filter_map(scalar_string) {
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                labels.insert(k.to_owned(), v.to_owned());
            }
        }
        _ => {}
    }
    let volumes = spec
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(volume_mount)
        .collect();
    ServiceSpec {
        name: name.to_owned(),
        image,
        healthcheck,
        labels,
        volumes,
    }
}

fn healthcheck(value: &Value) -> Healthcheck {
    let duration = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| parse_go_duration(s).ok())
    };
    let disabled_flag = value.get("disable").is_some_and(|v| match v {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    });
    let test_none = match value.get("test") {
        Some(Value::Sequence(items)) => items.first().and_then(Value::as_str) == Some("NONE"),
        Some(Value::String(s)) => s == "NONE",
        _ => false,
    };
    Healthcheck {
        start_period: duration("start_period"),
        interval: duration("interval"),
        timeout: duration("timeout"),
        retries: value
            .get("retries")
            .and_then(scalar_string)
            .and_then(|s| s.trim().parse().ok()),
        disabled: disabled_flag || test_none,
    }
}

/// `data:/var/lib/x[:ro]` or `{type: volume, source: data, target: /var/lib/x}`; bind mounts
/// (paths) and anonymous volumes (no source) are not named volumes.
fn volume_mount(value: &Value) -> Option<VolumeMount> {
    match value {
        Value::String(s) => {
            let mut parts = s.splitn(3, ':');
            let source = parts.next()?;
            let target = parts.next()?;
            is_volume_name(source).then(|| VolumeMount {
                source: source.to_owned(),
                target: target.to_owned(),
            })
        }
        Value::Mapping(_) => {
            let kind = value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("volume");
            let source = value.get("source").and_then(Value::as_str)?;
            let target = value.get("target").and_then(Value::as_str)?;
            (kind == "volume" && is_volume_name(source)).then(|| VolumeMount {
                source: source.to_owned(),
                target: target.to_owned(),
            })
        }
        _ => None,
    }
}

fn is_volume_name(source: &str) -> bool {
    !source.is_empty() && !source.starts_with(['/', '.', '~', '$'])
}

/// Parses a Go duration (`1m30s`, `10s`, `500ms`, `1.5h`, `0`), the syntax compose files and
/// docker use for healthcheck timings.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration: write it like 30s, 1m30s or 500ms");
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Renders a duration the way Go's `time.Duration.String` does (`15m0s`, `1h0m0s`, `1m30s`,
/// `500ms`), which every docker tool parses back.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit, per) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, per));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `value / per` with its fractional digits, trailing zeros trimmed.
fn fraction(value: u128, per: u128) -> String {
    let whole = value / per;
    let frac = value % per;
    if frac == 0 {
        return whole.to_string();
    }
    let width = per.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn interpolates_like_docker() {
        let v = vars(&[("A", "a"), ("EMPTY", ""), ("STACK_NAME", "app_example_org")]);
        let cases = [
            ("${A}", "a"),
            ("$A/x", "a/x"),
            ("${MISSING}", ""),
            ("$MISSING-x", "-x"),
            ("${MISSING:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${MISSING-def}", "def"),
            ("${A:-def}", "a"),
            ("${A:+alt}", "alt"),
            ("${MISSING:+alt}", ""),
            ("${MISSING:-${A}}", "a"),
            ("$${A}", "${A}"),
            ("cost $$5", "cost $5"),
            ("${STACK_NAME}_db_${A}", "app_example_org_db_a"),
            ("a $ b", "a $ b"),
        ];
        for (input, want) in cases {
            assert_eq!(interpolate(input, &v).unwrap(), want, "{input}");
        }
        let err = interpolate("${MISSING:?needs a value}", &v).unwrap_err();
        assert!(
            err.contains("MISSING") && err.contains("needs a value"),
            "{err}"
        );
        assert!(interpolate("${A", &v).is_err());
    }

    #[test]
    fn merges_compose_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "compose.yml",
            "version: \"3.8\"\nservices:\n  app:\n    image: nginx:${NGINX_VERSION:-1.25}\n    deploy:\n      labels:\n        - traefik.enable=true\n        - backupbot.backup=true\n    volumes:\n      - data:/var/lib/app\n      - /etc/hosts:/etc/hosts:ro\n      - type: volume\n        source: conf\n        target: /etc/app\n      - /anonymous\nvolumes:\n  data:\n  conf:\n",
        );
        write(
            dir.path(),
            "compose.b.yml",
            "services:\n  app:\n    image: nginx:b\n    deploy:\n      labels:\n        traefik.enable: \"false\"\n        extra: \"1\"\n  db:\n    image: postgres:${PG}\n",
        );
        write(
            dir.path(),
            "compose.c.yml",
            "services:\n  db:\n    image: postgres:c\n",
        );
        let v = vars(&[("PG", "16")]);

        let one = Compose::load(dir.path(), &["compose.yml".into()], &v).unwrap();
        assert_eq!(one.images(), vec!["nginx:1.25"]);

        let files: Vec<String> = ["compose.yml", "compose.b.yml"].map(String::from).into();
        let c = Compose::load(dir.path(), &files, &v).unwrap();
        let names: Vec<String> = c.services().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["app", "db"]);
        assert_eq!(c.images(), vec!["nginx:b", "postgres:16"]);
        let app = c.service("app").unwrap();
        assert_eq!(
            app.labels.get("traefik.enable").map(String::as_str),
            Some("false")
        );
        assert_eq!(
            app.labels.get("backupbot.backup").map(String::as_str),
            Some("true")
        );
        assert_eq!(app.labels.get("extra").map(String::as_str), Some("1"));
        assert_eq!(
            app.volumes,
            vec![
                VolumeMount {
                    source: "data".into(),
                    target: "/var/lib/app".into()
                },
                VolumeMount {
                    source: "conf".into(),
                    target: "/etc/app".into()
                },
            ]
        );

        let files: Vec<String> = ["compose.yml", "compose.c.yml", "compose.b.yml"]
            .map(String::from)
            .into();
        let c = Compose::load(dir.path(), &files, &v).unwrap();
        assert_eq!(
            c.service("db").unwrap().image.as_deref(),
            Some("postgres:16")
        );
        let files: Vec<String> = ["compose.yml", "compose.b.yml", "compose.c.yml"]
            .map(String::from)
            .into();
        let c = Compose::load(dir.path(), &files, &v).unwrap();
        assert_eq!(
            c.service("db").unwrap().image.as_deref(),
            Some("postgres:c")
        );
        assert!(c.service("nope").is_none());
    }

    #[test]
    fn reads_healthchecks() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "compose.yml",
            "x-health: &health\n  interval: 10s\n  retries: 5\nservices:\n  a:\n    image: a\n    healthcheck:\n      <<: *health\n      test: [\"CMD\", \"true\"]\n      start_period: 1m30s\n      timeout: 500ms\n  b:\n    image: b\n    healthcheck:\n      disable: true\n  c:\n    image: c\n    healthcheck:\n      test: [\"NONE\"]\n  d:\n    image: d\n",
        );
        let c = Compose::load(dir.path(), &["compose.yml".into()], &BTreeMap::new()).unwrap();
        let a = c.service("a").unwrap().healthcheck.unwrap();
        assert_eq!(
            a,
            Healthcheck {
                start_period: Some(Duration::from_secs(90)),
                interval: Some(Duration::from_secs(10)),
                timeout: Some(Duration::from_millis(500)),
                retries: Some(5),
                disabled: false,
            }
        );
        assert!(c.service("b").unwrap().healthcheck.unwrap().disabled);
        assert!(c.service("c").unwrap().healthcheck.unwrap().disabled);
        assert_eq!(c.service("d").unwrap().healthcheck, None);
    }

    #[test]
    fn missing_file_and_bad_yaml_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "compose.yml", "services: {}\n");
        let files: Vec<String> = ["compose.yml", "compose.smtp.yml"].map(String::from).into();
        let err = Compose::load(dir.path(), &files, &BTreeMap::new()).unwrap_err();
        let Error::Config(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains("compose.smtp.yml")
                && msg.contains("COMPOSE_FILE=compose.yml:compose.smtp.yml"),
            "{msg}"
        );

        write(
            dir.path(),
            "compose.yml",
            "services:\n  a:\n    image: [unclosed\n",
        );
        let err = Compose::load(dir.path(), &["compose.yml".into()], &BTreeMap::new()).unwrap_err();
        let Error::Config(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("compose.yml") && msg.contains("line"), "{msg}");

        write(dir.path(), "compose.yml", "- a list\n");
        assert!(matches!(
            Compose::load(dir.path(), &["compose.yml".into()], &BTreeMap::new()),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn go_durations_parse_and_format() {
        for (text, secs_ms) in [
            ("1m30s", 90_000),
            ("10s", 10_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("1.5h", 5_400_000),
            ("0", 0),
            ("2h3m4s", 7_384_000),
        ] {
            assert_eq!(
                parse_go_duration(text).unwrap(),
                Duration::from_millis(secs_ms),
                "{text}"
            );
        }
        for bad in ["", "10", "1x", "s", "-1s", "1m30"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        for (d, want) in [
            (Duration::from_secs(900), "15m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_go_duration(d), want);
            assert_eq!(parse_go_duration(want).unwrap(), d);
        }
    }
}
