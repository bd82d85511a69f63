//! The test stages a run can select, and the order they run in.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Deploy, wait for readiness, run the install checks.
    Install,
    /// Last published version → the change, with data surviving the upgrade.
    Upgrade,
    /// Marker, backup, mutate, restore, verify.
    Backup,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Install, Stage::Upgrade, Stage::Backup];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Install => "install",
            Stage::Upgrade => "upgrade",
            Stage::Backup => "backup",
        }
    }

    /// Parses a stage name, `all`, or a comma-separated list of them (`install,upgrade`) into
    /// stages.
    pub fn parse_list(names: &str) -> Result<Vec<Stage>, String> {
        let mut stages = Vec::new();
        for name in names.split(',').map(str::trim) {
            stages.extend(Self::parse_one(name)?);
        }
        Ok(stages)
    }

    fn parse_one(name: &str) -> Result<Vec<Stage>, String> {
        match name {
            "install" => Ok(vec![Stage::Install]),
            "upgrade" => Ok(vec![Stage::Upgrade]),
            "backup" => Ok(vec![Stage::Backup]),
            "all" => Ok(Stage::ALL.to_vec()),
            "" => Err("empty stage name: use install, upgrade, backup or all".to_string()),
            other => Err(format!(
                "unknown stage `{other}`: use install, upgrade, backup or all"
            )),
        }
    }

    /// Sorted, de-duplicated selection; empty means all.
    pub fn normalise(mut stages: Vec<Stage>) -> Vec<Stage> {
        if stages.is_empty() {
            return Stage::ALL.to_vec();
        }
        stages.sort();
        stages.dedup();
        stages
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_comma_separated_stages_are_accepted() {
        assert_eq!(
            Stage::parse_list("install,upgrade").unwrap(),
            vec![Stage::Install, Stage::Upgrade]
        );
        assert_eq!(
            Stage::parse_list("backup, install").unwrap(),
            vec![Stage::Backup, Stage::Install]
        );
        assert!(Stage::parse_list("install,,upgrade").is_err());
        assert!(
            Stage::parse_list("install,deploy")
                .unwrap_err()
                .contains("`deploy`")
        );
    }

    #[test]
    fn all_expands_and_selection_is_ordered() {
        assert_eq!(Stage::parse_list("all").unwrap(), Stage::ALL.to_vec());
        let picked = Stage::normalise(vec![Stage::Backup, Stage::Install, Stage::Backup]);
        assert_eq!(picked, vec![Stage::Install, Stage::Backup]);
        assert!(
            Stage::parse_list("deploy")
                .unwrap_err()
                .contains("install, upgrade")
        );
    }
}
