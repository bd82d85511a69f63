//! Removing everything a run deployed.
