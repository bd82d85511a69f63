//! Recipes as ccci reads them: the git source and its published versions, app env files, the
//! compose model, ccci's overlay, the per-recipe test trees, and the app's own readiness probe.
//! Reads and writes files in the run's recipe tree; deploys nothing.

pub mod backup;
pub mod compose;
pub mod envfile;
pub mod git;
pub mod overlay;
pub mod probe;
pub mod suite;
