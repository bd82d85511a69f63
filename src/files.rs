//! Writing files that someone else reads (run.json, the teardown marker, env files, the
//! overlay): whole or not at all.

use std::path::Path;

use crate::error::{IoContext, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes).at("write", &tmp)?;
    std::fs::rename(&tmp, path).at("rename into place", path)
}
