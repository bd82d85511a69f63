//! The command line, as clap types. Nothing outside the binary sees these: `main` turns them
//! into the library's validated request types once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Tests Co-op Cloud recipe changes on a real Docker Swarm: install, upgrade from the last
/// published version, and backup-restore; always tears down.
#[derive(Debug, Parser)]
#[command(name = "ccci", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Test a recipe: deploy it, run the stages, tear down, report the verdict.
    Test(TestArgs),
    /// Step by step: create a run directory (no fetch, no deploy) and print its id.
    Prepare(RunSpec),
    /// Step: fetch the run's recipe, resolve its ref, and fix its app domain.
    Fetch(RunRef),
    /// Print the compose overlay ccci would deploy with a recipe (compose.ccci.yml).
    Overlay(OverlayArgs),
    /// Step: deploy the run's change (or a published version), creating the app if needed.
    Deploy(DeployArgs),
    /// Step: wait until the run's app is ready (swarm readiness, then the recipe's probe).
    Wait(RunRef),
    /// Step: run a stage's tests against the run's app.
    Check(CheckArgs),
    /// Step: back up the run's app.
    Backup(RunRef),
    /// Step: restore the run's app from its last backup.
    Restore(RunRef),
    /// Tear an app down: stack, containers, volumes, secrets, configs, networks, env file.
    Teardown(TeardownArgs),
    /// Reap what killed runs leaked; never touches a live run.
    Janitor(JanitorArgs),
    /// Check this host for ccci: docker, swarm, IPVS, abra, the proxy network, lock and runs dirs.
    Doctor(LocksArgs),
    /// List app-domain locks: held or free, holder, pid, age.
    Locks(LocksArgs),
    /// List this setup's test apps: live, kept (until when, and how to remove), or orphaned.
    Apps(LocksArgs),
    /// Run the service mode: `!testme` on a pull request becomes a run, reported back on it,
    /// with a live log and a dashboard (configured in the config file's `serve:` section).
    Serve(ServeArgs),
    /// Print a run's log, or follow it (--follow) until the run finishes.
    Logs(LogsArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// What to test and where: shared by `test` and `prepare`.
#[derive(Debug, Args)]
pub struct RunSpec {
    /// The recipe to test, e.g. ghost.
    pub recipe: String,
    /// Stage to run: install, upgrade, backup or all; repeat or comma-separate for several.
    #[arg(long, short, value_name = "STAGE", default_value = "all")]
    pub stage: Vec<String>,
    /// Git URL or local path of the recipe (default: <recipe_base_url>/<recipe>.git).
    #[arg(long, value_name = "URL|PATH")]
    pub source: Option<String>,
    /// Commit, branch or tag to test (default: the default branch's head).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// App domain to deploy on (default: a generated test domain).
    #[arg(long)]
    pub domain: Option<String>,
    /// Run id (default: manual-<pid>).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Deploy driver.
    #[arg(long, value_enum, default_value_t = DriverArg::Auto)]
    pub driver: DriverArg,
    /// A tests-recipes directory that overrides the configured and bundled ones.
    #[arg(long, value_name = "DIR")]
    pub tests_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub spec: RunSpec,
    /// Published version the upgrade starts from (default: the last one before the change).
    #[arg(long, value_name = "VERSION")]
    pub from: Option<String>,
    /// Keep the app deployed afterwards.
    #[arg(long, value_enum, default_value_t = KeepArg::Never)]
    pub keep: KeepArg,
    /// How long a kept app is left alone before the janitor reaps it, e.g. 4h (default: the
    /// config's keep_for).
    #[arg(long, value_name = "DURATION")]
    pub keep_for: Option<String>,
    /// Stop, tear down and exit 142 after this long, e.g. 45m (default: from the config).
    #[arg(long, value_name = "DURATION")]
    pub deadline: Option<String>,
    /// Deploy without ccci's compose overlay (shows what the overlay fixes).
    #[arg(long)]
    pub no_overlay: bool,
    /// Print the run record as JSON on stdout at the end.
    #[arg(long)]
    pub json: bool,
}

/// The run a step works on.
#[derive(Debug, Args)]
pub struct RunRef {
    /// The run's id (its directory under runs_dir), from `ccci prepare` or `ccci test`.
    #[arg(long = "run", value_name = "ID")]
    pub run: String,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub run: RunRef,
    /// Deploy this published version (a release tag) instead of the change.
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,
    /// Deploy without ccci's compose overlay.
    #[arg(long)]
    pub no_overlay: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub run: RunRef,
    /// Whose tests to run: install, upgrade or backup.
    #[arg(long, short, value_name = "STAGE", default_value = "install")]
    pub stage: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DriverArg {
    /// abra when it is on PATH, else stack.
    Auto,
    /// The abra CLI.
    Abra,
    /// docker stack deploy.
    Stack,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeepArg {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Args)]
pub struct OverlayArgs {
    pub recipe: String,
    #[arg(long, value_name = "URL|PATH")]
    pub source: Option<String>,
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub tests_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true))]
pub struct TeardownArgs {
    /// The app's domain.
    #[arg(long, group = "what")]
    pub domain: Option<String>,
    /// The run whose app to tear down (also records it in the run's run.json).
    #[arg(long, value_name = "ID", group = "what")]
    pub run: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JanitorArgs {
    /// Say what would be reaped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Check the configuration (and that the forge accepts the token), then exit.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct LocksArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run: its id (a directory under runs_dir), a path to its directory, or the URL of
    /// its page on a `ccci serve` (…/runs/<id>, or …/runs/<id>/log).
    #[arg(value_name = "RUN")]
    pub run: String,
    /// Keep printing as the log grows, until the run finishes.
    #[arg(long, short)]
    pub follow: bool,
}
