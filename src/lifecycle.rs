//! The stage machine of one run.
