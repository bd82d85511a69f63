//! Reading the compose files an app really uses.
