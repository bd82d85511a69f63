//! The Docker engine, and only the engine: which engine (the endpoint, resolved once), the CLI
//! calls and the API client that both talk to it, what a stack looks like (services, tasks,
//! containers), readiness and fail-fast, diagnostics, and teardown.
//! Knows nothing of recipes or runs: callers name a stack and get typed answers.

pub mod api;
pub(crate) mod cli;
mod diagnostics;
pub mod endpoint;
pub mod host;
pub mod image;
pub mod inspect;
pub mod network;
mod readiness;
mod swarm;
pub mod teardown;

pub use diagnostics::{Diagnosis, ServiceDiagnosis};
pub use inspect::{
    ContainerInfo, Health, HealthProbe, Mount, NAMESPACE_LABEL, ServiceState, Snapshot, TaskState,
};
pub use readiness::{Assessment, assess};
pub use swarm::{ExecIo, NotReady, ReadyOptions, Swarm};
