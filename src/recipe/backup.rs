//! What a recipe says about its backups, from the backupbot labels on its services (as
//! backup-bot-two reads them): which services are backed up, which paths inside each, and the
//! hooks to run around a backup and a restore. The stack driver backs these paths up, and the
//! generic backup test puts its markers in them, so the two always agree.
//!
//! Labels: `backupbot.backup=true` on a service backs it up; `backupbot.backup.path=/a,/b`
//! (the older form) names container paths; otherwise each mounted volume is backed up, unless
//! `backupbot.backup.volumes.<vol>=false`, narrowed by `backupbot.backup.volumes.<vol>.path`
//! (paths inside the volume, comma-separated; an absolute path is taken as a container path).

use super::compose::{Compose, ServiceSpec};

/// One backed-up service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupTarget {
    pub service: String,
    /// Container paths to back up and restore.
    pub paths: Vec<String>,
    pub backup_pre: Option<String>,
    pub backup_post: Option<String>,
    pub restore_pre: Option<String>,
    pub restore_post: Option<String>,
}

/// Every service with `backupbot.backup=true`, in the compose file's order.
pub fn targets(compose: &Compose) -> Vec<BackupTarget> {
    compose
        .services()
        .iter()
        .filter(|s| label(s, "backupbot.backup").as_deref() == Some("true"))
        .map(|s| BackupTarget {
            service: s.name.clone(),
            paths: paths(s),
            backup_pre: label(s, "backupbot.backup.pre-hook"),
            backup_post: label(s, "backupbot.backup.post-hook"),
            restore_pre: label(s, "backupbot.restore.pre-hook"),
            restore_post: label(s, "backupbot.restore.post-hook"),
        })
        .collect()
}

fn label(service: &ServiceSpec, key: &str) -> Option<String> {
    service.labels.get(key).cloned()
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn paths(service: &ServiceSpec) -> Vec<String> {
    if let Some(list) = label(service, "backupbot.backup.path") {
        return split(&list).map(str::to_string).collect();
    }
    let mut paths = Vec::new();
    for volume in &service.volumes {
        let key = format!("backupbot.backup.volumes.{}", volume.source);
        if label(service, &key).as_deref() == Some("false") {
            continue;
        }
        let root = volume.target.trim_end_matches('/');
        match label(service, &format!("{key}.path")) {
            Some(list) => paths.extend(split(&list).map(|p| {
                if p.starts_with('/') {
                    p.to_string()
                } else {
                    format!("{root}/{}", p.trim_start_matches("./"))
                }
            })),
            None => paths.push(volume.target.clone()),
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn compose(text: &str) -> Compose {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yml"), text).unwrap();
        Compose::load(dir.path(), &["compose.yml".into()], &BTreeMap::new()).unwrap()
    }

    #[test]
    fn paths_follow_both_label_forms_and_exclusions() {
        let c = compose(
            r#"services:
  app:
    image: a:1
    volumes: [content:/var/lib/app, cache:/cache]
    deploy:
      labels:
        backupbot.backup: "true"
        backupbot.backup.volumes.cache: "false"
  db:
    image: postgres:15
    volumes: [pgdata:/var/lib/postgresql/data]
    deploy:
      labels:
        backupbot.backup: "true"
        backupbot.backup.pre-hook: "pg_dump -f /var/lib/postgresql/data/dump/db.sql"
        backupbot.restore.post-hook: "psql -f /var/lib/postgresql/data/dump/db.sql"
        backupbot.backup.volumes.pgdata.path: "dump,/etc/extra"
  old:
    image: o:1
    deploy:
      labels: [backupbot.backup=true, "backupbot.backup.path=/a, /b"]
  none:
    image: n:1
    volumes: [x:/x]
"#,
        );
        let t = targets(&c);
        let names: Vec<&str> = t.iter().map(|t| t.service.as_str()).collect();
        assert_eq!(names, ["app", "db", "old"]);
        assert_eq!(t[0].paths, ["/var/lib/app"]);
        assert_eq!(t[1].paths, ["/var/lib/postgresql/data/dump", "/etc/extra"]);
        assert!(t[1].backup_pre.as_deref().unwrap().starts_with("pg_dump"));
        assert!(t[1].restore_post.is_some());
        assert_eq!(t[2].paths, ["/a", "/b"]);
    }
}
