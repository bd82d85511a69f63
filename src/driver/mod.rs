//! Deploy drivers: one trait, the `abra` CLI and the plain docker `stack` implementations.
