//! Reaping what killed runs leaked.
