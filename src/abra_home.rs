//! Per-run abra homes (A1–A7).
