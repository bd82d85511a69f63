//! Asking the Docker engine about a stack: services, tasks, health; readiness; diagnostics.
