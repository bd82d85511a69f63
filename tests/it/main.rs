//! The integration tests of ccci: one test binary (`cargo nextest run`, or `cargo test --test
//! it`), modules by concern, and a shared [`support`] module.
//!
//! Tests drive the real `ccci` binary through [`support::ccci::Ccci`], or the library where
//! the behaviour under test is a library call; real-swarm tests deploy onto this machine's
//! single-node swarm and are listed as ignored (skipped) when there is none, never passed, and
//! real-forge tests likewise need the throwaway Gitea (see [`support::harness`]). Waits are for conditions, output lines or events, bounded by
//! deadlines; never sleeps.
//!
//! Every module registers its tests with [`tests!`]; an unregistered test function is dead
//! code, and dead code does not build here.

#![deny(dead_code)]

mod support;

mod abra_contract;
mod cli;
mod dashboard;
mod drivers;
mod e2e;
mod forge_client;
mod guards;
mod inspector;
mod janitor;
mod kill_anywhere;
mod locks;
mod logs;
mod measure;
mod scripts;
mod serve_browser;
mod serve_e2e;
mod serve_intake;
mod teardown;

fn main() {
    // A lock-holder helper is this binary re-executed (see support::helper).
    if let Some(code) = support::helper::from_env() {
        std::process::exit(code);
    }
    support::proc::init();
    let tests = [
        abra_contract::tests(),
        cli::tests(),
        dashboard::tests(),
        drivers::tests(),
        e2e::tests(),
        forge_client::tests(),
        guards::tests(),
        inspector::tests(),
        janitor::tests(),
        kill_anywhere::tests(),
        locks::tests(),
        logs::tests(),
        serve_e2e::tests(),
        measure::tests(),
        serve_browser::tests(),
        scripts::tests(),
        serve_intake::tests(),
        teardown::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    support::harness::main(tests)
}
