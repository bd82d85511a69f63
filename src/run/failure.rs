//! What went wrong in a step, and the one mapping from a failure to the run's verdict.
//!
//! The question a verdict answers is whose fault it is. The recipe's (its tasks were rejected
//! or never became ready, the deployer refused its files, one of its checks failed): `fail`,
//! or `base-failed` when it was the published base version that would not deploy. ccci's or
//! the host's (docker down, a file ccci could not read or parse, a bad configuration): `error`,
//! never blamed on the recipe, whichever step it happened in. A signal: `interrupted`.

use crate::docker::NotReady;
use crate::error::Error;
use crate::verdict::Verdict;

/// What went wrong in a step.
#[derive(Debug)]
pub enum Failure {
    /// The swarm would not run it, or it never became ready.
    NotReady(NotReady),
    /// A check or test of the recipe failed.
    Check(String),
    /// Something could not be done at all; [`Error::Rejected`] is the deployer refusing the
    /// recipe, every other kind is ccci's or the host's.
    Error(Error),
    /// The upgrade's base version failed, by its own fault (see [`Failure::on_base`]).
    Base {
        version: String,
        cause: Box<Failure>,
    },
}

pub type StepResult = std::result::Result<(), Failure>;

impl Failure {
    /// The same failure, seen as the base version's when it is the recipe's fault; a failure
    /// of ccci's own (reading the recipe, the host) or an interruption stays what it is.
    pub fn on_base(self, version: &str) -> Failure {
        if self.blames_recipe() {
            Failure::Base {
                version: version.to_string(),
                cause: Box::new(self),
            }
        } else {
            self
        }
    }

    /// True when the recipe, not ccci or the host, is why this failed.
    pub fn blames_recipe(&self) -> bool {
        match self {
            Failure::NotReady(NotReady::Interrupted(_) | NotReady::Infra(_)) => false,
            Failure::NotReady(_) | Failure::Check(_) | Failure::Base { .. } => true,
            Failure::Error(e) => matches!(e, Error::Rejected(_) | Error::Failed(_)),
        }
    }

    /// The signal that interrupted the step, if that is what happened.
    pub fn interruption(&self) -> Option<i32> {
        match self {
            Failure::Error(Error::Interrupted(s)) | Failure::NotReady(NotReady::Interrupted(s)) => {
                Some(*s)
            }
            _ => None,
        }
    }

    /// The failure itself, whether or not it happened on the base.
    pub fn cause(&self) -> &Failure {
        match self {
            Failure::Base { cause, .. } => cause,
            other => other,
        }
    }

    /// The verdict a run gets when this is its first failure. The only place that decides.
    pub fn verdict(&self) -> Verdict {
        if let Some(signal) = self.interruption() {
            return Verdict::Interrupted(signal);
        }
        match self {
            Failure::Base { .. } => Verdict::BaseFailed,
            f if f.blames_recipe() => Verdict::Fail,
            _ => Verdict::Error,
        }
    }

    /// The one-line reason.
    pub fn message(&self) -> String {
        match self {
            Failure::NotReady(n) => n.to_string(),
            Failure::Check(m) => m.clone(),
            Failure::Error(e) => e.to_string(),
            Failure::Base { version, cause } => {
                format!(
                    "base version {version} does not deploy: {}",
                    cause.message()
                )
            }
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_failed() -> Failure {
        Failure::NotReady(NotReady::TaskFailed {
            service: "app".into(),
            error: "No such image: app:1".into(),
            exit_code: None,
        })
    }

    #[test]
    fn the_recipe_is_blamed_only_for_its_own_failures() {
        assert_eq!(task_failed().verdict(), Verdict::Fail);
        assert_eq!(Failure::Check("probe: 502".into()).verdict(), Verdict::Fail);
        assert_eq!(
            Failure::Error(Error::Rejected("invalid compose".into())).verdict(),
            Verdict::Fail
        );
        for ours in [
            Error::Infra("docker is down".into()),
            Error::Config("compose.yml: not valid YAML".into()),
            Error::Usage("bad".into()),
            Error::io("read", "/x", std::io::Error::other("gone")),
        ] {
            assert_eq!(Failure::Error(ours).verdict(), Verdict::Error);
        }
        assert_eq!(
            Failure::NotReady(NotReady::Infra("docker ps failed".into())).verdict(),
            Verdict::Error
        );
    }

    #[test]
    fn base_failed_only_when_the_base_itself_fails() {
        assert_eq!(
            task_failed().on_base("1.0.0+1").verdict(),
            Verdict::BaseFailed
        );
        let parse = Failure::Error(Error::Config("compose.yml: not valid YAML".into()));
        assert_eq!(parse.on_base("1.0.0+1").verdict(), Verdict::Error);
        let signal = Failure::from(Error::Interrupted(15));
        assert_eq!(
            signal.on_base("1.0.0+1").verdict(),
            Verdict::Interrupted(15)
        );
        assert_eq!(
            task_failed().on_base("1.0.0+1").message(),
            "base version 1.0.0+1 does not deploy: app: No such image: app:1"
        );
    }
}
