//! The record of a run: `run.json` (versioned, written atomically), `junit.xml`, and the
//! one-line reason that the console, the commit status and run.json all quote.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::stage::Stage;
pub use crate::verdict::{StageStatus, Verdict};

/// Bump when a field's meaning changes or a field goes away; adding a field does not.
pub const RUN_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub status: StageStatus,
    /// What the stage deployed or tested, e.g. "base 0.1.0+1.0 → a1b2c3d".
    #[serde(default)]
    pub detail: String,
    pub started_at: Option<String>,
    pub seconds: Option<f64>,
    pub reason: Option<String>,
    /// Every check of the stage, in order.
    #[serde(default)]
    pub checks: Vec<CheckRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub ok: bool,
    pub seconds: f64,
    #[serde(default)]
    pub detail: String,
}

/// Everything `run.json` says about a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format_version: u32,
    pub run_id: String,
    pub recipe: String,
    /// Where the recipe came from: a git URL or a local path.
    pub source: String,
    /// The ref asked for (`None`: the default branch's head).
    pub git_ref: Option<String>,
    /// The commit the ref resolved to.
    pub commit: Option<String>,
    /// The published version the upgrade started from.
    pub base_version: Option<String>,
    pub domain: String,
    pub stack: String,
    pub driver: String,
    pub stages: Vec<StageRecord>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub verdict: Option<Verdict>,
    /// The top reason, one line.
    pub reason: Option<String>,
    /// True once teardown finished (whatever it removed); see `teardown_leftovers`.
    #[serde(default)]
    pub torn_down: bool,
    #[serde(default)]
    pub teardown_leftovers: Vec<String>,
    /// Set when `--keep` left the app deployed: the command that removes it.
    pub kept: Option<String>,
    /// `--tests-dir` of the run, so a replayed step finds the same tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_dir: Option<PathBuf>,
}

impl StageRecord {
    /// A stage that has not run yet.
    pub fn pending(stage: Stage) -> Self {
        StageRecord {
            stage,
            status: StageStatus::Pending,
            detail: String::new(),
            started_at: None,
            seconds: None,
            reason: None,
            checks: Vec::new(),
        }
    }
}

impl RunRecord {
    /// The record of a run that has just started: nothing fetched, deployed or decided yet.
    pub fn new(run_id: &str, recipe: &str, source: &str, driver: &str) -> Self {
        RunRecord {
            format_version: RUN_FORMAT_VERSION,
            run_id: run_id.to_string(),
            recipe: recipe.to_string(),
            source: source.to_string(),
            git_ref: None,
            commit: None,
            base_version: None,
            domain: String::new(),
            stack: String::new(),
            driver: driver.to_string(),
            stages: Vec::new(),
            started_at: now_rfc3339(),
            finished_at: None,
            seconds: None,
            verdict: None,
            reason: None,
            torn_down: false,
            teardown_leftovers: Vec::new(),
            kept: None,
            tests_dir: None,
        }
    }

    pub fn stage_mut(&mut self, stage: Stage) -> Option<&mut StageRecord> {
        self.stages.iter_mut().find(|s| s.stage == stage)
    }

    pub fn read(path: &Path) -> Result<RunRecord> {
        let text = std::fs::read_to_string(path).at("read", path)?;
        serde_json::from_str(&text).map_err(|e| {
            crate::Error::Config(format!("{} is not a ccci run record: {e}", path.display()))
        })
    }

    /// Writes run.json atomically: readers (the dashboard, `tail`, a second ccci) never see a
    /// half-written file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("run record serialises");
        write_atomic(path, &json)
    }

    /// JUnit XML: one test suite per run, one test case per stage and per check.
    pub fn junit(&self) -> String {
        let mut cases = String::new();
        let mut failures = 0;
        let mut skipped = 0;
        let mut count = 0;
        for stage in &self.stages {
            count += 1;
            let name = format!("{}.{}", self.recipe, stage.stage);
            cases.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n",
                xml_escape(&self.recipe),
                xml_escape(&name),
                stage.seconds.unwrap_or(0.0)
            ));
            match stage.status {
                StageStatus::Failed => {
                    failures += 1;
                    let reason = stage.reason.as_deref().unwrap_or("failed");
                    cases.push_str(&format!(
                        "    <failure message=\"{}\"/>\n",
                        xml_escape(reason)
                    ));
                }
                StageStatus::Skipped | StageStatus::Pending | StageStatus::Running => {
                    skipped += 1;
                    let reason = stage.reason.as_deref().unwrap_or("not run");
                    cases.push_str(&format!(
                        "    <skipped message=\"{}\"/>\n",
                        xml_escape(reason)
                    ));
                }
                StageStatus::Passed => {}
            }
            cases.push_str("  </testcase>\n");
            for check in &stage.checks {
                count += 1;
                cases.push_str(&format!(
                    "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n",
                    xml_escape(&name),
                    xml_escape(&check.name),
                    check.seconds
                ));
                if !check.ok {
                    failures += 1;
                    cases.push_str(&format!(
                        "    <failure message=\"{}\"/>\n",
                        xml_escape(&check.detail)
                    ));
                }
                cases.push_str("  </testcase>\n");
            }
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"ccci {}\" tests=\"{count}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n{cases}</testsuite>\n",
            xml_escape(&self.recipe),
            self.seconds.unwrap_or(0.0)
        )
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub use crate::files::write_atomic;
pub use crate::timestamp::{now_rfc3339, rfc3339_of_unix};

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RunRecord {
        RunRecord {
            format_version: RUN_FORMAT_VERSION,
            run_id: "manual-1".into(),
            recipe: "demo".into(),
            source: "/src".into(),
            git_ref: None,
            commit: Some("abc".into()),
            base_version: None,
            domain: "dem-abc123.ccci.test".into(),
            stack: "dem-abc123_ccci_test".into(),
            driver: "stack".into(),
            stages: vec![
                StageRecord {
                    stage: Stage::Install,
                    status: StageStatus::Passed,
                    detail: String::new(),
                    started_at: None,
                    seconds: Some(1.5),
                    reason: None,
                    checks: vec![],
                },
                StageRecord {
                    stage: Stage::Upgrade,
                    status: StageStatus::Failed,
                    detail: String::new(),
                    started_at: None,
                    seconds: Some(2.0),
                    reason: Some("app: exit <137> & \"unhealthy\"".into()),
                    checks: vec![],
                },
            ],
            started_at: now_rfc3339(),
            finished_at: None,
            seconds: Some(3.5),
            verdict: Some(Verdict::Fail),
            reason: None,
            torn_down: true,
            teardown_leftovers: vec![],
            tests_dir: None,
            kept: None,
        }
    }

    #[test]
    fn run_json_round_trips_through_an_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let rec = record();
        rec.write(&path).unwrap();
        assert_eq!(RunRecord::read(&path).unwrap(), rec);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn junit_counts_failures_and_escapes_reasons() {
        let xml = record().junit();
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" skipped=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("exit &lt;137&gt; &amp; &quot;unhealthy&quot;"),
            "{xml}"
        );
    }
}
