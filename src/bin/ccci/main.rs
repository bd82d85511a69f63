//! `ccci`: parses the command line, calls the library, renders what it reports, and maps the
//! result to an exit code (see `ccci::exit_code`). Nothing here decides how a run goes.

mod cli;
mod render;

use std::sync::Arc;

use ccci::config::{self, Config, Env};
use ccci::driver::DriverChoice;
use ccci::run::replay::{PrepareRequest, Step};
use ccci::run::{Host, Keep, TestRequest};
use ccci::stage::Stage;
use ccci::sys::cancel::Cancel;
use ccci::sys::signal;
use ccci::{Error, Result, exit_code};
use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

fn main() {
    // Recorded before anything else, so a parent that dies while we start up is noticed (G2).
    // A spawner that wants the gap between its fork and our start covered too (`ccci serve`,
    // a CI wrapper) names itself in CCCI_PARENT_PID.
    let parent = expected_parent();
    let cli = Cli::parse();
    let code = match run(cli, parent) {
        Ok(code) => code,
        Err(e) => {
            render::stderr_line(&format!("{} {e}", console::style("error:").red().bold()));
            exit_code::for_error(&e)
        }
    };
    std::process::exit(code);
}

/// The parent this process must have: `CCCI_PARENT_PID` when the spawner set it, else the
/// parent we have now.
fn expected_parent() -> i32 {
    std::env::var("CCCI_PARENT_PID")
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .unwrap_or_else(|| nix::unistd::getppid().as_raw())
}

/// Writes `bytes` to stdout. A closed stdout (`ccci locks | head -1`) ends the program
/// quietly with success, as a reader that stopped reading is no error.
fn out(bytes: impl AsRef<[u8]>) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(bytes.as_ref())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(exit_code::PASS),
        Err(e) => Err(Error::Infra(format!("failed to write to stdout: {e}"))),
    }
}

/// [`out`] with a newline.
fn out_line(text: impl std::fmt::Display) -> Result<()> {
    out(format!("{text}\n"))
}

fn load_config(cli: &Cli, env: &Env) -> Result<Config> {
    let path = cli.config.clone().or_else(|| Config::default_path(env));
    let (config, warnings) = Config::load(path.as_deref(), env)?;
    for warning in warnings {
        render::stderr_line(&format!(
            "{} {warning}",
            console::style("warning:").yellow()
        ));
    }
    Ok(config)
}

fn run(cli: Cli, parent: i32) -> Result<i32> {
    let env = config::process_env();
    match &cli.command {
        Command::Completions { shell } => {
            // Rendered whole first: the generator panics on a write error, `out` does not.
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ccci", &mut text);
            out(text)?;
            Ok(exit_code::PASS)
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .map_err(|e| Error::Infra(format!("failed to render the man page: {e}")))?;
            out(text)?;
            Ok(exit_code::PASS)
        }
        Command::Logs(args) => {
            let source = ccci::serve::logs::Source::locate(&args.run, || {
                Ok(load_config(&cli, &env)?.runs_dir)
            })?;
            let notices = render::Terminal::new();
            // Written as it comes and flushed by the library; a reader that goes away
            // (`ccci logs … | head`) ends the command quietly.
            ccci::serve::logs::print(
                &source,
                args.follow,
                &mut std::io::stdout().lock(),
                &notices,
                &ccci::serve::logs::FollowOptions::default(),
            )?;
            Ok(exit_code::PASS)
        }
        Command::Test(args) => {
            let config = load_config(&cli, &env)?;
            test(args, config, env, parent)
        }
        Command::Prepare(spec) => {
            let host = step_host(&cli, env, parent)?;
            let run_dir = ccci::run::replay::prepare(
                &host,
                &PrepareRequest {
                    recipe: spec.recipe.clone(),
                    source: spec.source.clone(),
                    git_ref: spec.git_ref.clone(),
                    domain: spec.domain.clone(),
                    run_id: spec.run_id.clone(),
                    driver: driver_choice(spec.driver),
                    tests_dir: spec.tests_dir.clone(),
                    stages: parse_stages(&spec.stage)?,
                },
            )?;
            render::stderr_line(&format!(
                "prepared {}; next: ccci fetch --run {}",
                run_dir.path.display(),
                run_dir.id
            ));
            out_line(run_dir.id)?;
            Ok(exit_code::PASS)
        }
        Command::Fetch(run) => {
            let host = step_host(&cli, env, parent)?;
            let terminal: Arc<dyn ccci::event::EventSink> = Arc::new(render::Terminal::new());
            let record = ccci::run::replay::fetch(&host, &run.run, terminal)?;
            render::stderr_line(&format!(
                "run {}: {} at {} on {}",
                record.run_id,
                record.recipe,
                record.commit.as_deref().unwrap_or("?"),
                record.domain
            ));
            Ok(exit_code::PASS)
        }
        Command::Deploy(args) => {
            let step = Step::Deploy {
                version: args.release.clone(),
                overlay: !args.no_overlay,
            };
            replay(&cli, env, parent, &args.run.run, step)
        }
        Command::Wait(run) => replay(&cli, env, parent, &run.run, Step::Wait),
        Command::Check(args) => {
            let stage = match Stage::parse_list(&args.stage).map_err(Error::Usage)?[..] {
                [stage] => stage,
                _ => {
                    return Err(Error::Usage(
                        "--stage takes one stage here: install, upgrade or backup".into(),
                    ));
                }
            };
            replay(&cli, env, parent, &args.run.run, Step::Check { stage })
        }
        Command::Backup(run) => replay(&cli, env, parent, &run.run, Step::Backup),
        Command::Restore(run) => replay(&cli, env, parent, &run.run, Step::Restore),
        Command::Overlay(args) => {
            let config = load_config(&cli, &env)?;
            let text = ccci::run::preview::preview_overlay(
                &config,
                &env,
                &args.recipe,
                args.source.as_deref(),
                args.git_ref.as_deref(),
                args.tests_dir.as_deref(),
            )?;
            out(text)?;
            Ok(exit_code::PASS)
        }
        Command::Teardown(args) => {
            let host = step_host(&cli, env, parent)?;
            let terminal: Arc<dyn ccci::event::EventSink> = Arc::new(render::Terminal::new());
            let outcome = match (&args.run, &args.domain) {
                (Some(run), _) => ccci::run::replay::teardown(&host, run, terminal)?,
                // clap requires one of the two; an empty domain fails validation with its line.
                (None, domain) => ccci::run::replay::teardown_domain(
                    &host.config,
                    &host.cancel,
                    domain.as_deref().unwrap_or_default(),
                    &*terminal,
                )?,
            };
            if args.json {
                out_line(
                    serde_json::json!({"removed": outcome.removed, "leftovers": outcome.leftovers}),
                )?;
            }
            Ok(if outcome.leftovers.is_empty() {
                exit_code::PASS
            } else {
                exit_code::INFRA
            })
        }
        Command::Serve(args) => serve(&cli, &env, args.check),
        Command::Janitor(args) => {
            let config = load_config(&cli, &env)?;
            // SIGTERM from systemd stops the sweep between apps; a reap under way finishes
            // (teardown ignores the token), so no app is left half-removed.
            let cancel = Cancel::new();
            signal::install(&cancel)?;
            let runner = ccci::sys::process::Runner::new(cancel.clone());
            let terminal = render::Terminal::new();
            let summary = ccci::janitor::sweep(
                &config,
                &runner,
                &ccci::janitor::SweepOptions {
                    dry_run: args.dry_run,
                    now: std::time::SystemTime::now(),
                },
                &terminal,
            );
            if args.json {
                out_line(serde_json::to_string_pretty(&summary).unwrap_or_default())?;
            } else {
                render::stderr_line(&summary.line());
            }
            Ok(if let Some(signal) = cancel.signal() {
                exit_code::for_signal(signal)
            } else if summary.needs_attention() {
                exit_code::JANITOR_ATTENTION
            } else {
                exit_code::PASS
            })
        }
        Command::Doctor(args) => {
            let config = load_config(&cli, &env)?;
            let runner = ccci::sys::process::Runner::new(Cancel::new());
            let checks = ccci::doctor::check_host(&config, &runner);
            if args.json {
                out_line(serde_json::to_string_pretty(&checks).unwrap_or_default())?;
            } else {
                for check in &checks {
                    let level = match check.level {
                        ccci::doctor::Level::Ok => console::style("ok  ").green(),
                        ccci::doctor::Level::Warn => console::style("warn").yellow(),
                        ccci::doctor::Level::Fail => console::style("FAIL").red().bold(),
                    };
                    out_line(format_args!("{level} {:<14} {}", check.name, check.detail))?;
                }
            }
            let failed = checks.iter().any(|c| c.level == ccci::doctor::Level::Fail);
            Ok(if failed {
                exit_code::INFRA
            } else {
                exit_code::PASS
            })
        }
        Command::Apps(args) => {
            let config = load_config(&cli, &env)?;
            apps(&config, args.json)
        }
        Command::Locks(args) => {
            let config = load_config(&cli, &env)?;
            let locks = ccci::sys::lock::list(&config.lock_dir)?;
            if args.json {
                out_line(serde_json::to_string_pretty(&locks).unwrap_or_default())?;
            } else if locks.is_empty() {
                render::stderr_line(&format!("no lock files in {}", config.lock_dir.display()));
            } else {
                for lock in &locks {
                    let state = if lock.held { "held" } else { "free" };
                    let (run, pid) = match &lock.holder {
                        Some(h) => (h.run_id.clone(), h.pid.to_string()),
                        None if lock.corrupt => ("(corrupt)".to_string(), "-".to_string()),
                        None => ("-".to_string(), "-".to_string()),
                    };
                    let age = lock
                        .age_secs
                        .map(|s| config::format_duration(std::time::Duration::from_secs(s)))
                        .unwrap_or_else(|| "-".into());
                    out_line(format_args!(
                        "{:<40} {state:<4} {run:<24} {pid:>8} {age}",
                        lock.domain
                    ))?;
                }
            }
            Ok(exit_code::PASS)
        }
    }
}

/// `ccci apps`: this setup's test apps and what the janitor would do with each, from a dry-run
/// sweep (which changes nothing, not even a lock file).
fn apps(config: &Config, json: bool) -> Result<i32> {
    use ccci::janitor::{Action, SweepOptions};
    let runner = ccci::sys::process::Runner::new(Cancel::new());
    let summary = ccci::janitor::sweep(
        config,
        &runner,
        &SweepOptions::now(true),
        &ccci::event::Discard,
    );
    // A sweep that could not look (no engine, no lock directory) has nothing to list: say
    // why instead of "no apps".
    for problem in summary.details.iter().filter(|d| d.domain.is_none()) {
        render::stderr_line(&format!(
            "{} {}",
            console::style("error:").red().bold(),
            problem.reason
        ));
    }
    let apps: Vec<_> = summary
        .details
        .iter()
        .filter(|d| d.domain.is_some() && d.action != Action::SkippedForeign)
        .collect();
    if json {
        out_line(serde_json::to_string_pretty(&apps).unwrap_or_default())?;
        return Ok(exit_code::PASS);
    }
    if apps.is_empty() && summary.errors == 0 {
        render::stderr_line("no test apps of this setup on this host");
    }
    for app in &apps {
        let state = match app.action {
            Action::SkippedLive => "live",
            Action::FlaggedLeaked => "leaked?",
            Action::SkippedKept => "kept",
            Action::WouldReap => "orphan",
            Action::SkippedWarm => "warm",
            Action::SkippedNew => "new",
            Action::Error => "error",
            _ => "gone",
        };
        out_line(format_args!(
            "{:<40} {state:<8} {}",
            app.domain.as_deref().unwrap_or_default(),
            app.reason
        ))?;
    }
    Ok(if summary.errors > 0 {
        exit_code::JANITOR_ATTENTION
    } else {
        exit_code::PASS
    })
}

/// Installs the lifetime guards: signals → cancel token, parent-death SIGTERM with orphan
/// refusal, and the deadline alarm.
fn guarded(parent: i32, deadline: Option<std::time::Duration>) -> Result<Cancel> {
    let cancel = Cancel::new();
    signal::install(&cancel)?;
    signal::guard_parent_death(parent)?;
    if let Some(d) = deadline {
        signal::set_deadline(d);
    }
    Ok(cancel)
}

fn parse_stages(names: &[String]) -> Result<Vec<Stage>> {
    let mut stages = Vec::new();
    for name in names {
        stages.extend(Stage::parse_list(name).map_err(Error::Usage)?);
    }
    Ok(Stage::normalise(stages))
}

fn driver_choice(arg: cli::DriverArg) -> DriverChoice {
    match arg {
        cli::DriverArg::Auto => DriverChoice::Auto,
        cli::DriverArg::Abra => DriverChoice::Abra,
        cli::DriverArg::Stack => DriverChoice::Stack,
    }
}

/// The host of a step subcommand: config, environment, and the guards every run has.
fn step_host(cli: &Cli, env: Env, parent: i32) -> Result<Host> {
    let config = load_config(cli, &env)?;
    let cancel = guarded(parent, None)?;
    Ok(Host {
        config,
        env,
        cancel,
    })
}

/// Replays one step and maps how it went to an exit code.
fn replay(cli: &Cli, env: Env, parent: i32, run: &str, step: Step) -> Result<i32> {
    let host = step_host(cli, env, parent)?;
    let terminal: Arc<dyn ccci::event::EventSink> = Arc::new(render::Terminal::new());
    match ccci::run::replay::replay(&host, run, &step, terminal) {
        Ok(None) => Ok(exit_code::PASS),
        Ok(Some(reason)) => {
            render::stderr_line(&format!(
                "{} {reason}",
                console::style("failed:").red().bold()
            ));
            Ok(exit_code::TEST_FAILED)
        }
        Err(e) => after_signal(&host, e),
    }
}

/// Whatever failed after a signal arrived, the signal is why the command ended (G4): the error
/// is shown, and the exit code is 128+signal.
fn after_signal(host: &Host, e: Error) -> Result<i32> {
    match host.cancel.signal() {
        Some(signal) => {
            render::stderr_line(&format!("{} {e}", console::style("error:").red().bold()));
            Ok(exit_code::for_signal(signal))
        }
        None => Err(e),
    }
}

fn test(args: &cli::TestArgs, config: Config, env: Env, parent: i32) -> Result<i32> {
    let stages = parse_stages(&args.spec.stage)?;
    let deadline = match &args.deadline {
        Some(text) => Some(
            config::parse_duration(text).map_err(|e| Error::Usage(format!("--deadline: {e}")))?,
        ),
        None => config.deadline,
    };
    let keep_for = match &args.keep_for {
        Some(text) => {
            config::parse_duration(text).map_err(|e| Error::Usage(format!("--keep-for: {e}")))?
        }
        None => config.keep_for,
    };
    let spec = &args.spec;
    let request = TestRequest {
        recipe: spec.recipe.clone(),
        source: spec.source.clone(),
        git_ref: spec.git_ref.clone(),
        from: args.from.clone(),
        stages,
        domain: spec.domain.clone(),
        run_id: spec.run_id.clone(),
        driver: driver_choice(spec.driver),
        keep: match args.keep {
            cli::KeepArg::Never => Keep::Never,
            cli::KeepArg::OnFailure => Keep::OnFailure,
            cli::KeepArg::Always => Keep::Always,
        },
        keep_for,
        tests_dir: spec.tests_dir.clone(),
        skip_fetch: env.get("CCCI_SKIP_FETCH").is_some_and(|v| v == "1"),
        overlay: !args.no_overlay,
        deadline_unix: deadline.map(ccci::run::unix_after),
    };
    let cancel = guarded(parent, deadline)?;
    let host = Host {
        config,
        env,
        cancel,
    };
    let terminal: Arc<dyn ccci::event::EventSink> = Arc::new(render::Terminal::new());
    let outcome = match ccci::run::run_test(&host, &request, terminal) {
        Ok(outcome) => outcome,
        Err(e) => return after_signal(&host, e),
    };
    if args.json {
        out_line(serde_json::to_string_pretty(&outcome.record).unwrap_or_default())?;
    } else {
        render::stderr_line(&format!("run directory: {}", outcome.run_dir.display()));
        if let Some(kept) = &outcome.record.kept {
            render::stderr_line(&format!("kept: {kept}"));
        }
    }
    Ok(outcome.exit_code())
}

/// `ccci serve`: starts the service and runs until SIGINT or SIGTERM, then stops it (running
/// runs are stopped, torn down and reported as interrupted).
fn serve(cli: &Cli, env: &Env, check: bool) -> Result<i32> {
    let core = load_config(cli, env)?;
    let path = cli
        .config
        .clone()
        .or_else(|| Config::default_path(env))
        .ok_or_else(|| Error::Config("no config file: give --config or set CCCI_CONFIG".into()))?;
    let settings = ccci::serve::config::ServeConfig::load(&path, env)?;
    if check {
        let forge = ccci::serve::forge::ForgeClient::new(
            &settings.forge_url,
            settings.token.expose().to_string(),
            settings.forge_timeout,
        );
        let login = forge.whoami().map_err(|e| {
            let what = if e.is_transient() {
                "cannot be reached"
            } else {
                "does not accept the token"
            };
            Error::Infra(format!("the forge at {} {what}: {e}", settings.forge_url))
        })?;
        out_line(format!(
            "serve config ok: {} repositories enrolled, forge {} as {login}, listening on {}",
            settings.repos.len(),
            settings.forge_url,
            settings.listen
        ))?;
        return Ok(exit_code::PASS);
    }
    let cancel = Cancel::new();
    signal::install(&cancel)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Infra(format!("cannot find the ccci executable: {e}")))?;
    // serve's log lines go out from a thread of their own: the intake never waits on stderr.
    let printer = render::LinePrinter::start("serve: ")
        .map_err(|e| Error::Infra(format!("cannot start a thread: {e}")))?;
    let print = printer.sink();
    let running = ccci::serve::service::start(
        settings,
        core,
        ccci::serve::service::Launcher {
            exe,
            config_file: Some(path),
        },
        Box::new(move |event| print(event.to_string())),
    );
    let running = match running {
        Ok(running) => running,
        Err(e) => return finish_printing(printer, Err(e)),
    };
    // Signals only set a flag; look at it, and at serve's threads, a few times a second.
    while cancel.signal().is_none() && ccci::serve::service::failure().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    running.stop();
    let result = match ccci::serve::service::failure() {
        Some(failure) => Err(Error::Infra(format!(
            "serve stopped: {failure}; start it again (its unit restarts it on failure)"
        ))),
        None => Ok(exit_code::PASS),
    };
    finish_printing(printer, result)
}

/// `result`, once serve's log lines are printed. When they could not be (stderr is not read),
/// the line saying an error would never be written either, and the process would never end:
/// it ends here, with the error's exit code, unsaid.
fn finish_printing(printer: render::LinePrinter, result: Result<i32>) -> Result<i32> {
    if !printer.finish()
        && let Err(e) = &result
    {
        std::process::exit(exit_code::for_error(e));
    }
    result
}
