//! Per-recipe test trees (tests-recipes/) and the generic suite.
