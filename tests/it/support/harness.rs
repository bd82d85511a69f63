//! The test harness of the integration crate: every module registers its tests with
//! [`tests!`](crate::tests), and `main` hands them to `libtest-mimic`.
//!
//! What a test needs decides whether it is listed as ignored, and the decision is made when the
//! tests are listed, never by a test returning early:
//!
//! - `local` tests need nothing but this machine: they always run.
//! - `swarm` tests need docker with an active swarm. When `docker info` (asked once, with a short
//!   timeout) says there is none, they are listed as ignored, so nextest reports them as
//!   skipped, and the harness says why on stderr. With a swarm they run.
//! - `forge` tests need the throwaway Gitea of [`crate::support::forge`], whose binary
//!   `scripts/build-forge.sh` builds once per machine. When it is not built (asked once, with
//!   `scripts/build-forge.sh --check`, which builds nothing), they are listed as ignored and the
//!   harness says why on stderr, as for the swarm.
//! - `chromium` tests drive a real headless Chromium (the dashboard). When `chromium` is not on
//!   the `PATH` they are listed as ignored, and the harness says why on stderr.
//! - `measurement` tests (timings that print figures, not checks) are always listed as ignored;
//!   they run with `--run-ignored only` (nextest) or `--ignored` (libtest). Their names start
//!   with `measure::`, so a listing tells them apart from tests skipped for want of a swarm.
//! - A test that needs several of these names them all (`forge + swarm + chromium: name`): it
//!   is listed as ignored when any one is missing, and the harness says which.
//!
//! nextest lists the tests in one process (`--list`), then runs each one in a process of its
//! own (`--exact NAME`, plus `--ignored` for a test it listed as ignored). Such a run follows
//! the listing: the test runs, whatever the swarm says by then, and a swarm test that finds no
//! swarm fails saying so (see [`crate::support::swarm::require`]); likewise a forge test that
//! finds no Gitea (see [`crate::support::forge::require`]), or a chromium test without
//! chromium ([`crate::support::chromium::require`]). Run without nextest (plain
//! `cargo test --test it`), listing and running are one process, so the one decision holds.

use std::time::Duration;

use libtest_mimic::{Arguments, Trial};

/// What a test needs from this machine: nothing beyond it ([`Needs::LOCAL`]), or any of a
/// swarm, the test forge and a headless Chromium; a measurement needs a swarm and a person who
/// asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Docker with an active single-node swarm and the local image `ccci-busybox:1`.
    pub swarm: bool,
    /// The test forge: a Gitea built by `scripts/build-forge.sh`.
    pub forge: bool,
    /// A headless Chromium (`chromium` on the `PATH`).
    pub chromium: bool,
    /// A person who asked for a timing measurement (always listed as ignored).
    pub measurement: bool,
}

impl Needs {
    /// Nothing beyond this machine: processes, files, the kernel.
    pub const LOCAL: Needs = Needs {
        swarm: false,
        forge: false,
        chromium: false,
        measurement: false,
    };
    pub const SWARM: Needs = Needs {
        swarm: true,
        ..Needs::LOCAL
    };
    pub const FORGE: Needs = Needs {
        forge: true,
        ..Needs::LOCAL
    };
    pub const CHROMIUM: Needs = Needs {
        chromium: true,
        ..Needs::LOCAL
    };
    pub const MEASUREMENT: Needs = Needs {
        swarm: true,
        measurement: true,
        ..Needs::LOCAL
    };

    /// What both need.
    pub const fn and(self, other: Needs) -> Needs {
        Needs {
            swarm: self.swarm || other.swarm,
            forge: self.forge || other.forge,
            chromium: self.chromium || other.chromium,
            measurement: self.measurement || other.measurement,
        }
    }
}

/// One registered test: its full name (`module::function`) and body.
pub struct Test {
    pub name: String,
    pub needs: Needs,
    pub run: fn(),
}

impl Test {
    /// `module` is the registering module's `module_path!()`; the crate's own name is dropped,
    /// so names read `guards::g3_…`, which is what nextest filters (`test(/^guards::/)`) match.
    pub fn new(module: &str, function: &str, needs: Needs, run: fn()) -> Test {
        let module = module.split_once("::").map_or("", |(_, rest)| rest);
        let name = if module.is_empty() {
            function.to_string()
        } else {
            format!("{module}::{function}")
        };
        Test { name, needs, run }
    }
}

/// Registers a module's tests: `tests! { local: a, swarm: b, forge + swarm + chromium: c,
/// measurement: d }` defines `pub fn tests() -> Vec<Test>` listing them. Test functions are
/// private `fn()`s, so one that is left out of the list is dead code, which the crate denies
/// (`#![deny(dead_code)]` in `main.rs`): a test that is written but never run does not build.
#[macro_export]
macro_rules! tests {
    ($($needs:ident $(+ $more:ident)* : $name:ident),* $(,)?) => {
        pub fn tests() -> Vec<$crate::support::harness::Test> {
            vec![$($crate::support::harness::Test::new(
                module_path!(),
                stringify!($name),
                $crate::tests!(@needs $needs)$(.and($crate::tests!(@needs $more)))*,
                $name,
            )),*]
        }
    };
    (@needs local) => { $crate::support::harness::Needs::LOCAL };
    (@needs swarm) => { $crate::support::harness::Needs::SWARM };
    (@needs forge) => { $crate::support::harness::Needs::FORGE };
    (@needs chromium) => { $crate::support::harness::Needs::CHROMIUM };
    (@needs measurement) => { $crate::support::harness::Needs::MEASUREMENT };
}

/// Whether swarm, forge and chromium tests are listed as ignored, and why.
enum Listing {
    /// Decided now: for each, `None` when it is there, else the reason it is not.
    Decided {
        swarm: Option<String>,
        forge: Option<String>,
        chromium: Option<String>,
    },
    /// A run by nextest of one test it listed before: run what it names.
    FollowNextest,
}

/// Runs the harness: lists or runs `tests` as the command line asks, and exits.
pub fn main(tests: Vec<Test>) -> ! {
    let mut args = Arguments::from_args();
    check_registrations(&tests);
    // Tests adopt the orphans of the processes they kill (a subreaper) and some set
    // process-wide state (the environment, signal handling of children): one test at a time per
    // process. nextest runs every test in a process of its own, which is where the suite's
    // parallelism comes from.
    args.test_threads = Some(1);
    let listing = if args.list || std::env::var_os("NEXTEST").is_none() {
        let any = |need: fn(&Needs) -> bool| tests.iter().any(|t| need(&t.needs));
        Listing::Decided {
            swarm: any(|n| n.swarm).then(swarm_absence).flatten(),
            forge: any(|n| n.forge)
                .then(crate::support::forge::absence)
                .flatten(),
            chromium: any(|n| n.chromium)
                .then(crate::support::chromium::absence)
                .flatten(),
        }
    } else {
        Listing::FollowNextest
    };
    if let Listing::Decided {
        swarm,
        forge,
        chromium,
    } = &listing
    {
        // Measurements are counted on their own below.
        let count = |need: fn(&Needs) -> bool| {
            tests
                .iter()
                .filter(|t| need(&t.needs) && !t.needs.measurement)
                .count()
        };
        if let Some(reason) = swarm {
            eprintln!(
                "it: {} swarm tests are ignored (skipped): {reason}; `bash scripts/setup-host.sh` sets up docker and the swarm",
                count(|n| n.swarm)
            );
        }
        if let Some(reason) = chromium {
            eprintln!(
                "it: {} chromium tests are ignored (skipped): {reason}; `bash scripts/setup-host.sh` installs it",
                count(|n| n.chromium)
            );
        }
        if let Some(reason) = forge {
            eprintln!(
                "it: {} forge tests are ignored (skipped): {reason}",
                count(|n| n.forge)
            );
        }
    }
    if !args.list && !args.ignored && !args.include_ignored {
        let n = tests.iter().filter(|t| t.needs.measurement).count();
        if n > 0 && matches!(listing, Listing::Decided { .. }) {
            eprintln!(
                "it: {n} measurements (`measure::`) are ignored on purpose; run them with --ignored"
            );
        }
    }
    let trials = tests
        .into_iter()
        .map(|test| {
            let needs = test.needs;
            let ignored = match &listing {
                Listing::FollowNextest => args.ignored,
                Listing::Decided {
                    swarm,
                    forge,
                    chromium,
                } => {
                    needs.measurement
                        || (needs.swarm && swarm.is_some())
                        || (needs.forge && forge.is_some())
                        || (needs.chromium && chromium.is_some())
                }
            };
            let run = test.run;
            Trial::test(test.name, move || {
                if needs.swarm {
                    crate::support::swarm::require();
                }
                if needs.forge {
                    crate::support::forge::require();
                }
                if needs.chromium {
                    crate::support::chromium::require();
                }
                run();
                Ok(())
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// `None` when docker answers that its swarm is active; otherwise what it said instead.
fn swarm_absence() -> Option<String> {
    match crate::support::swarm::state(Duration::from_secs(5)) {
        Ok(state) if state == "active" => None,
        Ok(state) => Some(format!("the swarm is `{state}`, not active")),
        Err(e) => Some(e),
    }
}

/// Every name once, and every measurement under `measure::` (what the listing shows of why a
/// test is ignored); a harness that breaks either fails before it lists anything.
fn check_registrations(tests: &[Test]) {
    let mut names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        eprintln!("it: test {} is registered twice", pair[0]);
        std::process::exit(101);
    }
    if let Some(t) = tests
        .iter()
        .find(|t| t.needs.measurement != t.name.starts_with("measure::"))
    {
        eprintln!(
            "it: {}: measurements, and only they, live in the `measure` module",
            t.name
        );
        std::process::exit(101);
    }
}
