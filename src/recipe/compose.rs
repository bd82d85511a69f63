//! Reading the compose files an app really uses: the files `COMPOSE_FILE` lists, read from the
//! recipe tree in order, `${VAR}`-interpolated the way docker does it, and merged the way
//! `docker stack deploy -c a -c b` layers them. Everything else in ccci that needs to know a
//! service's image, healthcheck, labels or volumes asks this module.
//!
//! Merging follows docker's rules rather than a plain deep merge, because recipes rely on them:
//! an overlay that adds one volume must not drop the service's others. Within a service,
//! `volumes` merge by container path, `ports` by (host ip, published, target, protocol),
//! `secrets` and `configs` by source, `networks` by name, and `environment`, `labels` and
//! `deploy.labels` by key whichever of the list or mapping forms each file uses. Any other
//! mapping merges key by key; any other value of a later file replaces the earlier one.
//!
//! This module only reads: it never writes into the recipe tree and never talks to docker.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::yaml::{self, Mapping, Value};

/// The app's compose model: the files listed in the env file's `COMPOSE_FILE`, read from the
/// recipe dir in order and merged by docker's rules (see the module header), with `${VAR}`,
/// `${VAR:-default}` and `$VAR` interpolated from the given variables.
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
            merge_file(&mut merged, value);
        }
        Ok(Compose { value: merged })
    }

    /// Every service, sorted by name. `x-` keys are extension fields, not services.
    pub fn services(&self) -> Vec<ServiceSpec> {
        let mut out: Vec<ServiceSpec> = self
            .services_mapping()
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(name, spec)| Some((name.as_str()?, spec)))
            .filter(|(name, _)| !is_extension(name))
            .map(|(name, spec)| service_spec(name, spec))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn service(&self, name: &str) -> Option<ServiceSpec> {
        if is_extension(name) {
            return None;
        }
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

/// One file: parse, resolve `<<` merge keys, interpolate, and turn the list forms of labels,
/// environment and service networks into mappings, so that a later file's mapping merges into
/// an earlier file's list instead of replacing it (docker normalises both forms before merging
/// too).
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
    // Recipes share healthchecks, environments and deploy blocks through `<<: *anchor`.
    yaml::apply_merge(&mut value).map_err(|e| {
        format!("invalid merge key (`<<`): {e}; merge only mappings, like `<<: *anchor`")
    })?;
    interpolate_value(&mut value, vars)?;
    normalize(&mut value);
    Ok(value)
}

fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
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
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            };
            Err(format!(
                "required variable {name} is missing a value{why}; set it in the app env file"
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
            names_to_mapping(service.get_mut("networks"));
        }
    }
    for section in ["volumes", "networks", "secrets", "configs"] {
        if let Some(items) = value.get_mut(section).and_then(Value::as_mapping_mut) {
            for (_, item) in items.iter_mut() {
                list_to_mapping(item.get_mut("labels"));
            }
        }
    }
}

/// `[a, b]` → `{a: null, b: null}`: the list form of a service's networks.
fn names_to_mapping(value: Option<&mut Value>) {
    let Some(value) = value else { return };
    let Value::Sequence(items) = value else {
        return;
    };
    let map = items
        .iter()
        .filter_map(scalar_string)
        .map(|name| (Value::String(name), Value::Null))
        .collect();
    *value = Value::Mapping(map);
}

/// Layers one (normalised) file onto the files before it: services field by field
/// ([`merge_service`]), everything else key by key.
fn merge_file(base: &mut Value, mut overlay: Value) {
    if let Some(base_services) = base.get_mut("services").and_then(Value::as_mapping_mut)
        && let Some(services) = overlay.as_mapping_mut().and_then(|m| m.remove("services"))
    {
        // An empty `services:` adds nothing.
        if let Value::Mapping(services) = services {
            for (name, service) in services {
                match base_services.get_mut(&name) {
                    Some(existing) => merge_service(existing, service),
                    None => {
                        base_services.insert(name, service);
                    }
                }
            }
        }
    }
    yaml::merge(base, overlay);
}

/// One service over the same service of an earlier file, by docker's rules.
fn merge_service(base: &mut Value, overlay: Value) {
    let overlay = match overlay {
        Value::Mapping(overlay) => overlay,
        Value::Null => return,
        other => {
            *base = other;
            return;
        }
    };
    let Value::Mapping(base) = base else {
        *base = Value::Mapping(overlay);
        return;
    };
    for (key, value) in overlay {
        let Some(existing) = base.get_mut(&key) else {
            base.insert(key, value);
            continue;
        };
        match key.as_str() {
            Some("volumes") => merge_list_by(existing, value, volume_target),
            Some("ports") => merge_list_by(existing, value, port_key),
            Some("secrets" | "configs") => merge_list_by(existing, value, source_of),
            Some("networks") => merge_networks(existing, value),
            // environment, labels and deploy (with its labels) are mappings by now.
            _ => yaml::merge(existing, value),
        }
    }
}

/// Each overlay item replaces the base item with the same key in place, or is appended; items
/// without a key (malformed ones docker will reject) are appended.
fn merge_list_by(base: &mut Value, overlay: Value, key: fn(&Value) -> Option<String>) {
    match (base, overlay) {
        (_, Value::Null) => {}
        (Value::Sequence(base), Value::Sequence(overlay)) => {
            for item in overlay {
                let slot =
                    key(&item).and_then(|k| base.iter().position(|b| key(b).as_ref() == Some(&k)));
                match slot {
                    Some(i) => base[i] = item,
                    None => base.push(item),
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// The container path of `source:target[:mode]`, `target` or the long form.
fn volume_target(value: &Value) -> Option<String> {
    match value {
        Value::Mapping(_) => value.get("target").and_then(scalar_string),
        other => {
            let text = scalar_string(other)?;
            let mut parts = text.split(':');
            let first = parts.next()?;
            Some(parts.next().unwrap_or(first).to_owned())
        }
    }
}

/// (host ip, published, target, protocol) of `[[ip:]published:]target[/protocol]` or the long
/// form; the protocol defaults to tcp, as docker's does.
fn port_key(value: &Value) -> Option<String> {
    let field = |key: &str| value.get(key).and_then(scalar_string).unwrap_or_default();
    let (ip, published, target, protocol) = match value {
        Value::Mapping(_) => (
            field("host_ip"),
            field("published"),
            value.get("target").and_then(scalar_string)?,
            field("protocol"),
        ),
        other => {
            let text = scalar_string(other)?;
            let (spec, protocol) = text.split_once('/').unwrap_or((&text, ""));
            // rsplit: an IPv6 host ip holds colons of its own.
            let mut parts = spec.rsplitn(3, ':');
            let target = parts.next()?.to_owned();
            let published = parts.next().unwrap_or_default().to_owned();
            let ip = parts.next().unwrap_or_default().to_owned();
            (ip, published, target, protocol.to_owned())
        }
    };
    // `docker stack deploy` merges published ports by the published port alone (a later file's
    // `8080:8080` replaces an earlier `8080:80`); ports that publish nothing by what they are.
    if !published.is_empty() {
        return Some(format!("published|{published}"));
    }
    let protocol = if protocol.is_empty() {
        "tcp"
    } else {
        &protocol
    };
    Some(format!("{ip}|{target}|{protocol}"))
}

/// The secret or config a service entry names: the short form, or the long form's `source`.
fn source_of(value: &Value) -> Option<String> {
    match value {
        Value::Mapping(_) => value.get("source").and_then(scalar_string),
        other => scalar_string(other),
    }
}

/// Networks by name; a bare name in a later file (`- internal`) keeps the earlier settings.
fn merge_networks(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (_, Value::Null) => {}
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (name, config) in overlay {
                match base.get_mut(&name) {
                    Some(_) if config.is_null() => {}
                    Some(existing) => yaml::merge(existing, config),
                    None => {
                        base.insert(name, config);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
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

    fn load(dir: &Path, files: &[&str], vars: &BTreeMap<String, String>) -> Result<Compose> {
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        Compose::load(dir, &files, vars)
    }

    fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
        path.iter().try_fold(value, |v, k| v.get(*k))
    }

    #[test]
    fn regression_volume_lists_replaced_instead_of_merged() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "compose.yml",
            "services:\n  app:\n    image: app:1\n    volumes: [data:/data]\nvolumes:\n  data:\n",
        );
        write(
            dir.path(),
            "compose.extra.yml",
            "services:\n  app:\n    volumes: [extra:/extra]\nvolumes:\n  extra:\n",
        );
        let c = load(
            dir.path(),
            &["compose.yml", "compose.extra.yml"],
            &BTreeMap::new(),
        )
        .unwrap();
        let targets: Vec<String> = c
            .service("app")
            .unwrap()
            .volumes
            .into_iter()
            .map(|v| format!("{}:{}", v.source, v.target))
            .collect();
        assert_eq!(targets, vec!["data:/data", "extra:/extra"]);
    }

    #[test]
    fn service_lists_merge_by_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "compose.yml",
            r#"services:
  app:
    image: app:1
    command: ["serve", "--base"]
    environment: [A=1, B=base]
    labels: {l1: base}
    deploy:
      replicas: 1
      labels: [traefik.enable=true, backupbot.backup=true]
    volumes:
      - data:/data
      - type: volume
        source: conf
        target: /etc/app
    ports: ["8080:80", "127.0.0.1:53:53/udp"]
    secrets: [db_password, {source: api_key, target: api}]
    configs: [{source: conf, target: /etc/conf}]
    networks:
      internal:
        aliases: [app]
      proxy:
"#,
        );
        write(
            dir.path(),
            "compose.extra.yml",
            r#"services:
  app:
    command: ["serve"]
    environment: {B: extra, C: "3"}
    labels: [l2=extra]
    deploy:
      labels: {traefik.enable: "false"}
    volumes: ["other:/etc/app:ro", "extra:/extra"]
    ports: ["8080:80/tcp", {target: 90, published: 9090, protocol: udp}]
    secrets: [{source: db_password, target: db_pw}, smtp_password]
    configs: [{source: conf, target: /etc/conf2}, other]
    networks: [internal, backend]
"#,
        );
        let c = load(
            dir.path(),
            &["compose.yml", "compose.extra.yml"],
            &BTreeMap::new(),
        )
        .unwrap();
        let app = at(c.value(), &["services", "app"]).unwrap();
        let want: Value = yaml::from_str(
            r#"
image: app:1
command: ["serve"]
environment: {A: "1", B: extra, C: "3"}
labels: {l1: base, l2: extra}
deploy:
  replicas: 1
  labels: {traefik.enable: "false", backupbot.backup: "true"}
volumes:
  - data:/data
  - other:/etc/app:ro
  - extra:/extra
ports: ["8080:80/tcp", "127.0.0.1:53:53/udp", {target: 90, published: 9090, protocol: udp}]
secrets: [{source: db_password, target: db_pw}, {source: api_key, target: api}, smtp_password]
configs: [{source: conf, target: /etc/conf2}, other]
networks:
  internal:
    aliases: [app]
  proxy:
  backend:
"#,
        )
        .unwrap();
        assert_eq!(app, &want);
        let spec = c.service("app").unwrap();
        assert_eq!(
            spec.labels.get("backupbot.backup").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            spec.volumes
                .iter()
                .map(|v| v.source.as_str())
                .collect::<Vec<_>>(),
            vec!["data", "other", "extra"]
        );
    }

    #[test]
    fn anchors_merge_keys_and_extension_fields() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "compose.yml",
            r#"version: "3.8"
x-postgres-env: &postgres-env
  POSTGRES_DB: app
  POSTGRES_USER: ${DB_USER:-app}
x-deploy: &deploy
  restart_policy: {condition: on-failure}
  labels: [backupbot.backup=true]
x-health: &health
  interval: 30s
  retries: 10
services:
  x-not-a-service:
    image: nope
  app:
    image: app:1
    environment:
      <<: *postgres-env
      POSTGRES_DB: override
    deploy:
      <<: *deploy
    healthcheck:
      <<: [*health, {interval: 5s, timeout: 3s}]
  db:
    image: postgres:16
    environment: *postgres-env
"#,
        );
        let c = load(dir.path(), &["compose.yml"], &vars(&[("DB_USER", "u")])).unwrap();
        let names: Vec<String> = c.services().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["app", "db"]);
        assert!(c.service("x-not-a-service").is_none());
        assert_eq!(c.images(), vec!["app:1", "postgres:16"]);
        let app = at(c.value(), &["services", "app"]).unwrap();
        let env: Value = yaml::from_str("{POSTGRES_DB: override, POSTGRES_USER: u}").unwrap();
        assert_eq!(app.get("environment"), Some(&env));
        let db_env: Value = yaml::from_str("{POSTGRES_DB: app, POSTGRES_USER: u}").unwrap();
        assert_eq!(
            at(c.value(), &["services", "db", "environment"]),
            Some(&db_env)
        );
        let spec = c.service("app").unwrap();
        assert_eq!(
            spec.labels.get("backupbot.backup").map(String::as_str),
            Some("true")
        );
        let hc = spec.healthcheck.unwrap();
        assert_eq!(hc.interval, Some(Duration::from_secs(30)));
        assert_eq!(hc.timeout, Some(Duration::from_secs(3)));
        assert_eq!(hc.retries, Some(10));

        write(dir.path(), "compose.yml", "a: &a 1\nb:\n  <<: *a\n");
        let err = load(dir.path(), &["compose.yml"], &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("compose.yml") && m.contains("merge key")),
            "{err}"
        );
    }

    #[test]
    fn required_variable_names_the_file_and_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "compose.yml",
            "services:\n  app:\n    image: app:1\n",
        );
        write(
            dir.path(),
            "compose.smtp.yml",
            "services:\n  app:\n    environment:\n      SMTP_HOST: ${SMTP_HOST:?set the mail server}\n      SMTP_PORT: ${SMTP_PORT?}\n",
        );
        let files = ["compose.yml", "compose.smtp.yml"];
        let err = load(dir.path(), &files, &vars(&[("SMTP_PORT", "25")])).unwrap_err();
        let Error::Config(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains("compose.smtp.yml")
                && msg.contains("SMTP_HOST")
                && msg.contains("set the mail server"),
            "{msg}"
        );
        let err = load(dir.path(), &files, &vars(&[("SMTP_HOST", "mail")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("required variable SMTP_PORT is missing a value; set it"),
            "{err}"
        );
        // Empty is set for `?`, not for `:?`.
        let ok = load(
            dir.path(),
            &files,
            &vars(&[("SMTP_HOST", "mail"), ("SMTP_PORT", "")]),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        assert!(
            load(
                dir.path(),
                &files,
                &vars(&[("SMTP_HOST", ""), ("SMTP_PORT", "")])
            )
            .is_err()
        );
    }

    /// What the comparison with docker looks at in one service: every field ccci reads or
    /// merges by a rule of its own, in a form both syntaxes reduce to.
    fn facts(service: &Value) -> BTreeMap<&'static str, Vec<String>> {
        let pairs = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_mapping)
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        scalar_string(k).unwrap_or_default(),
                        scalar_string(v).unwrap_or_default()
                    )
                })
                .collect()
        };
        let list = |key: &str, f: fn(&Value) -> Option<String>| -> Vec<String> {
            service
                .get(key)
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(f)
                .collect()
        };
        let volume = |v: &Value| -> Option<String> {
            let source = match v {
                Value::Mapping(_) => v.get("source").and_then(scalar_string)?,
                other => scalar_string(other)?.split(':').next()?.to_owned(),
            };
            Some(format!("{source}->{}", volume_target(v)?))
        };
        let secret = |v: &Value| -> Option<String> {
            let target = v.get("target").and_then(scalar_string).unwrap_or_default();
            Some(format!("{}->{target}", source_of(v)?))
        };
        let hc = service.get("healthcheck").map(healthcheck);
        let mut out = BTreeMap::new();
        out.insert(
            "image",
            service
                .get("image")
                .and_then(scalar_string)
                .into_iter()
                .collect(),
        );
        out.insert("environment", pairs(service.get("environment")));
        out.insert("labels", pairs(service.get("labels")));
        out.insert("deploy.labels", pairs(at(service, &["deploy", "labels"])));
        out.insert("volumes", list("volumes", volume));
        out.insert("ports", list("ports", port_key));
        out.insert("secrets", list("secrets", secret));
        out.insert("configs", list("configs", secret));
        out.insert(
            "networks",
            service
                .get("networks")
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| scalar_string(k))
                .collect(),
        );
        out.insert("healthcheck", vec![format!("{hc:?}")]);
        for values in out.values_mut() {
            values.sort();
        }
        out
    }

    /// ccci's merged model against docker's own merger on the same files. Debian's docker.io
    /// 20.10 has no `docker stack config` nor `docker compose`; Debian's `docker-compose`
    /// package (1.29) has `config`, which merges by the same rules.
    #[test]
    fn merged_model_matches_docker_compose() {
        let present = std::process::Command::new("docker-compose")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        // Never a silent pass: without docker's merger there is nothing to compare with.
        assert!(
            present,
            "docker-compose is not installed: run scripts/setup-host.sh (or apt-get install docker-compose)"
        );
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "compose.yml", DOCKER_BASE);
        write(dir.path(), "compose.extra.yml", DOCKER_EXTRA);
        let v = vars(&[
            ("STACK_NAME", "app_example_org"),
            ("DOMAIN", "app.example.org"),
            ("SECRET_DB_PASSWORD_VERSION", "v1"),
            ("DB_NAME", ""),
        ]);
        let files = ["compose.yml", "compose.extra.yml"];
        let ours = load(dir.path(), &files, &v).unwrap();
        let output = std::process::Command::new("docker-compose")
            .args(["-f", files[0], "-f", files[1], "config"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&v)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker-compose config failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // docker-compose writes `$` back as `$$`; reading its output as a compose file with no
        // variables undoes that and normalises it as ccci's own files are.
        let theirs =
            parse_file(&String::from_utf8_lossy(&output.stdout), &BTreeMap::new()).unwrap();
        for service in ["app", "db"] {
            let ours = facts(at(ours.value(), &["services", service]).unwrap());
            let theirs = facts(at(&theirs, &["services", service]).unwrap());
            assert_eq!(ours, theirs, "service {service}");
        }
        // The comparison compared something.
        let app = facts(at(ours.value(), &["services", "app"]).unwrap());
        assert_eq!(
            app["volumes"],
            vec!["conf->/etc/app", "data->/data", "extra->/extra"]
        );
        assert!(app["environment"].contains(&"PRICE=$5".to_owned()));
    }

    const DOCKER_BASE: &str = r#"version: "3.8"
x-env: &env
  DB_HOST: db
  DB_NAME: ${DB_NAME:-app}
x-deploy: &deploy
  restart_policy:
    condition: on-failure
services:
  app:
    image: nginx:${NGINX_VERSION:-1.25}
    environment:
      <<: *env
      MODE: base
      PRICE: "$$5"
      COUNT: 3
    labels:
      - base.label=1
    deploy:
      <<: *deploy
      labels:
        - traefik.enable=true
        - "traefik.http.routers.${STACK_NAME}.rule=Host(`${DOMAIN}`)"
        - coop-cloud.${STACK_NAME}.timeout=${TIMEOUT:-300}
    volumes:
      - data:/data
      - type: volume
        source: conf
        target: /etc/app
    ports:
      - "8080:80"
      - 9000
    secrets:
      - db_password
    configs:
      - source: app_conf
        target: /etc/app.conf
    networks:
      - internal
      - proxy
    healthcheck:
      test: ["CMD", "true"]
      interval: 30s
      retries: 10
  db:
    image: postgres:${PG_VERSION-15}
    environment:
      - POSTGRES_DB=${DB_NAME:-app}
    volumes:
      - db:/var/lib/postgresql/data
volumes:
  data:
  conf:
  db:
  extra:
networks:
  internal:
  proxy:
    external: true
secrets:
  db_password:
    external: true
    name: ${STACK_NAME}_db_password_${SECRET_DB_PASSWORD_VERSION}
  smtp_password:
    external: true
    name: ${STACK_NAME}_smtp_password_v1
configs:
  app_conf:
    name: ${STACK_NAME}_app_conf_v1
    file: app.conf
"#;

    const DOCKER_EXTRA: &str = r#"version: "3.8"
services:
  app:
    environment:
      - MODE=extra
      - EXTRA=1
    labels:
      extra.label: "2"
    deploy:
      labels:
        traefik.enable: "false"
        backupbot.backup: "true"
    volumes:
      - extra:/extra
      - conf:/etc/app:ro
    ports:
      - "8080:80"
      - "9090:90/udp"
    secrets:
      - source: smtp_password
      - source: db_password
        target: db_pw
    networks:
      internal:
        aliases: [app]
    healthcheck:
      start_period: 1m30s
  db:
    image: postgres:16
"#;

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
