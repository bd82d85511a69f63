//! Names: recipe names, app domains, stack names and the short test domains ccci generates.
//!
//! Swarm limits (N1): service names at most 63 characters; secret and config names at most 64
//! of `[a-zA-Z0-9-_.]`, alphanumeric at both ends. Recipes name secrets
//! `<stack>_<secret>_<version>`, so a long domain breaks deploys in confusing ways; ccci checks
//! the names before it deploys anything. The stack name is the domain with dots replaced by
//! underscores (N2). Generated domains are `<3 letters of the recipe>-<6 hash chars>.<zone>`
//! (N3), and [`is_test_domain`] matches exactly those.

use crate::error::{Error, Result};

pub const MAX_SERVICE_NAME: usize = 63;
pub const MAX_SECRET_NAME: usize = 64;
const PREFIX_LEN: usize = 3;
const HASH_LEN: usize = 6;

/// A recipe name is one path component: lowercase letters, digits, `-` and `_`.
pub fn validate_recipe(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid recipe name `{name}`: use lowercase letters, digits, `-` and `_` (a recipe name is not a path)"
        )))
    }
}

/// An app domain: dot-separated labels of lowercase letters, digits and `-`.
pub fn validate_domain(domain: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Usage(format!("invalid domain `{domain}`: {why}")));
    if domain.len() > 253 {
        return bad("longer than 253 characters");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return bad("it needs at least two labels, like app.example.org");
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return bad("each label must have 1 to 63 characters");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return bad("use lowercase letters, digits, `-` and dots only");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with `-`");
        }
    }
    Ok(())
}

/// N2: the stack name abra and `docker stack deploy` use for a domain.
pub fn stack_name(domain: &str) -> String {
    domain.replace('.', "_")
}

/// N1: fails with one line naming the first service or secret whose swarm name would be too
/// long, and how much shorter the domain must be.
pub fn check_swarm_names<'a>(
    domain: &str,
    services: impl IntoIterator<Item = &'a str>,
    secrets: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    let stack = stack_name(domain);
    for service in services {
        let name = format!("{stack}_{service}");
        if name.len() > MAX_SERVICE_NAME {
            return Err(Error::Usage(format!(
                "domain `{domain}` is too long: service name `{name}` has {} characters, swarm allows {MAX_SERVICE_NAME}; use a domain at least {} characters shorter",
                name.len(),
                name.len() - MAX_SERVICE_NAME
            )));
        }
    }
    for (secret, version) in secrets {
        let name = format!("{stack}_{secret}_{version}");
        if name.len() > MAX_SECRET_NAME {
            return Err(Error::Usage(format!(
                "domain `{domain}` is too long: secret name `{name}` has {} characters, swarm allows {MAX_SECRET_NAME}; use a domain at least {} characters shorter",
                name.len(),
                name.len() - MAX_SECRET_NAME
            )));
        }
    }
    Ok(())
}

/// N3: a short, recognisable test domain for a run of `recipe` at `commit`.
pub fn test_domain(recipe: &str, commit: &str, run_id: &str, zone: &str) -> String {
    let prefix: String = recipe
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(PREFIX_LEN)
        .collect();
    let prefix = if prefix.is_empty() {
        "app".to_string()
    } else {
        prefix
    };
    let hash = short_hash(&[recipe, commit, run_id]);
    format!("{prefix}-{hash}.{zone}")
}

/// True for exactly the domains [`test_domain`] makes under `zone`: the janitor's pattern.
pub fn is_test_domain(domain: &str, zone: &str) -> bool {
    let Some(host) = domain.strip_suffix(zone).and_then(|h| h.strip_suffix('.')) else {
        return false;
    };
    let Some((prefix, hash)) = host.split_once('-') else {
        return false;
    };
    (1..=PREFIX_LEN).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && hash.len() == HASH_LEN
        && hash
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// FNV-1a over the parts (separated, so ("ab","c") ≠ ("a","bc")), in base 36.
fn short_hash(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..HASH_LEN)
        .map(|_| {
            let d = DIGITS[(hash % 36) as usize] as char;
            hash /= 36;
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_names_are_not_paths() {
        assert!(validate_recipe("ghost").is_ok());
        assert!(validate_recipe("my_recipe-2").is_ok());
        for bad in ["../etc", "a/b", "..", "", "Ghost", "-x", "a b"] {
            let err = validate_recipe(bad).unwrap_err().to_string();
            assert!(err.contains("invalid recipe name"), "{bad}: {err}");
        }
    }

    #[test]
    fn domains_are_validated() {
        assert!(validate_domain("gho-a1b2c3.ci.example.org").is_ok());
        for bad in [
            "localhost",
            "UPPER.example",
            "a..b",
            "-a.b",
            "a_b.c",
            "x.y-",
        ] {
            assert!(validate_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_domains_are_short_stable_and_recognised() {
        let d = test_domain("ghost", "0123abc", "manual-42", "ci.example.org");
        assert_eq!(
            d,
            test_domain("ghost", "0123abc", "manual-42", "ci.example.org")
        );
        assert_ne!(
            d,
            test_domain("ghost", "0123abc", "manual-43", "ci.example.org")
        );
        assert!(d.starts_with("gho-"), "{d}");
        assert!(validate_domain(&d).is_ok());
        assert!(is_test_domain(&d, "ci.example.org"));
        // Hand-made apps under the same zone are never matched.
        for other in [
            "ghost.ci.example.org",
            "gho-abc.ci.example.org",
            "ghost-abcdef.ci.example.org",
            "gho-abcdef.example.org",
            "gho-ABCDEF.ci.example.org",
            "x.gho-abcdef.ci.example.org",
        ] {
            assert!(!is_test_domain(other, "ci.example.org"), "{other}");
        }
    }

    #[test]
    fn long_domains_fail_before_any_deploy() {
        let long = format!("{}.example.org", "a".repeat(50));
        let err = check_swarm_names(&long, ["app"], [("db_password", "v1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("service name"), "{err}");
        assert!(err.contains("at least 3 characters shorter"), "{err}");
        // A domain whose services fit can still break on its secrets.
        let medium = format!("{}.example.org", "a".repeat(40));
        let err = check_swarm_names(&medium, ["app"], [("db_password", "v1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret name"), "{err}");
        let d = test_domain("discourse", "c0ffee0", "manual-1", "ci.coopcloud.tech");
        check_swarm_names(&d, ["app", "db", "redis"], [("db_password", "v1")]).unwrap();
    }
}
