//! Recipe readiness probes: HTTP and commands in a service.
