//! Per-app-domain locks.
