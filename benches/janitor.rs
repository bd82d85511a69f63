//! Janitor sweep benchmark (not a test): how long a sweep takes on a busy host and on an idle
//! one, next to baselines measured in the same run.
//!
//! Busy: 10,000 lock files of test domains, 1,000 of them with an app env file, none orphaned:
//! a helper process (this binary, re-executed) holds all 10,000 locks, as live runs would (the
//! 9,000 without an app are runs that have not deployed yet). Every one of them is a candidate
//! the sweep must open, probe and judge; each busy sweep is checked to have judged all 10,000
//! as live. Idle: empty directories. Both sweeps also ask the real docker engine for labelled
//! resources, as every sweep does, and a sweep that could not ask it fails the benchmark
//! instead of reporting a fast figure. Targets: busy ≤ 0.5 s, idle ≤ 20 ms.
//!
//! Run with `cargo bench --bench janitor`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ccci::config::Config;
use ccci::event::Discard;
use ccci::janitor::{self, SweepOptions};
use ccci::sys::cancel::Cancel;
use ccci::sys::lock::{AppLock, Holder};
use ccci::sys::process::Runner;

const LOCK_FILES: usize = 10_000;
const APPS: usize = 1_000;
const HOLDER_ENV: &str = "CCCI_BENCH_HOLDER";

fn main() {
    if let Ok(spec) = std::env::var(HOLDER_ENV) {
        hold(&spec);
        return;
    }
    // `cargo bench` passes `--bench`; nothing else here takes arguments.
    let dir = tempfile::tempdir().expect("temp dir");
    let zone = "bench.ccci.test";
    let busy = setup(dir.path(), "busy", zone, APPS);
    let idle = setup(dir.path(), "idle", zone, 0);

    // Every lock, held by another process as live runs hold them.
    let mut holder = Command::new(std::env::current_exe().expect("current exe"))
        .env(
            HOLDER_ENV,
            format!("{}\n{zone}\n{LOCK_FILES}", busy.lock_dir.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the lock holder");
    let mut ready = [0u8; 1];
    holder
        .stdout
        .take()
        .expect("holder stdout")
        .read_exact(&mut ready)
        .expect("the lock holder took its locks");

    let runner = Runner::new(Cancel::new());
    let sweep = |config: &Config, judged: usize| {
        let started = Instant::now();
        let summary = janitor::sweep(config, &runner, &SweepOptions::now(false), &Discard);
        let took = started.elapsed();
        check(&summary, judged);
        (took, summary)
    };

    // Warm the page cache and the engine connection path once.
    let (_, first) = sweep(&busy, LOCK_FILES);
    let busy_times = measure(15, || sweep(&busy, LOCK_FILES).0);
    let (_, idle_summary) = sweep(&idle, 0);
    let idle_times = measure(50, || sweep(&idle, 0).0);

    // Baselines, same run, same machine.
    let list_dirs = measure(15, || {
        let started = Instant::now();
        let mut n = 0;
        for d in [
            busy.lock_dir.clone(),
            busy.abra_dir.join("servers").join("default"),
        ] {
            n += std::fs::read_dir(d).map(|e| e.count()).unwrap_or(0);
        }
        assert!(n >= LOCK_FILES);
        started.elapsed()
    });
    let docker_info = measure(5, || {
        let started = Instant::now();
        let status = Command::new("docker")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run `docker info`");
        let took = started.elapsed();
        assert!(status.success(), "`docker info` failed: no baseline");
        took
    });
    let engine = ccci::docker::api::Engine::from_env().expect("engine");
    let engine_info = measure(15, || {
        let started = Instant::now();
        let info = engine.get_json("/v1.41/info");
        let took = started.elapsed();
        if let Err(e) = info {
            panic!("engine GET /info failed: {e}: no baseline");
        }
        took
    });

    let busy_median = median(&busy_times);
    let idle_median = median(&idle_times);
    println!(
        "janitor sweep benchmark ({LOCK_FILES} lock files of live runs, {APPS} of them with an app)"
    );
    println!(
        "  busy sweep   median {:>9}  (target ≤ 500 ms)  {}",
        ms(busy_median),
        first.line()
    );
    println!(
        "  idle sweep   median {:>9}  (target ≤ 20 ms)   {}",
        ms(idle_median),
        idle_summary.line()
    );
    println!("  baselines:");
    println!("    list both dirs        {:>9}", ms(median(&list_dirs)));
    println!("    engine GET /info      {:>9}", ms(median(&engine_info)));
    println!("    `docker info`         {:>9}", ms(median(&docker_info)));
    println!(
        "  ratios: busy sweep = {:.1}× `docker info`, idle sweep = {:.2}× `docker info`",
        busy_median.as_secs_f64() / median(&docker_info).as_secs_f64(),
        idle_median.as_secs_f64() / median(&docker_info).as_secs_f64()
    );

    // Closing its stdin ends the holder.
    drop(holder.stdin.take());
    let _ = holder.wait();
}

/// A sweep that could not ask the engine, or did not judge every lock as a live run's, is no
/// measurement of the sweep this benchmark is about: stop loudly.
fn check(summary: &janitor::Summary, judged: usize) {
    let why = summary
        .details
        .iter()
        .find(|d| d.action == janitor::Action::Error)
        .map(|d| d.reason.as_str())
        .unwrap_or("");
    assert_eq!(
        summary.errors,
        0,
        "the sweep failed ({why}): {}",
        summary.line()
    );
    assert_eq!(
        (summary.skipped_live, summary.reaped, summary.flagged_leaked),
        (judged, 0, 0),
        "the sweep judged other than {judged} live runs: {}",
        summary.line()
    );
}

/// A config whose abra home has `apps` env files of test domains and whose lock dir is
/// `<root>/<name>/locks` (the lock holder creates the lock files).
fn setup(root: &Path, name: &str, zone: &str, apps: usize) -> Config {
    let abra = root.join(name).join("abra");
    let lock_dir = root.join(name).join("locks");
    let servers = abra.join("servers").join("default");
    std::fs::create_dir_all(&servers).expect("servers dir");
    std::fs::create_dir_all(&lock_dir).expect("lock dir");
    let env = [
        ("HOME", root.to_str().expect("utf-8 path")),
        ("ABRA_DIR", abra.to_str().expect("utf-8 path")),
        ("CCCI_APP_LOCK_DIR", lock_dir.to_str().expect("utf-8 path")),
        ("CCCI_RUNS_DIR", root.to_str().expect("utf-8 path")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (config, _) =
        Config::from_yaml(&format!("domain_zone: {zone}\n"), &env).expect("bench config");
    // Every env file is older than the sweeps, as a live run's would be.
    let old = SystemTime::now() - Duration::from_secs(600);
    for i in 0..apps {
        let domain = app_domain(i, zone);
        let path = config.env_file(&domain);
        let mut file = std::fs::File::create(&path).expect("env file");
        writeln!(file, "TYPE=bench\nDOMAIN={domain}").expect("write env file");
        file.set_modified(old).expect("set mtime");
    }
    config
}

/// A test domain of the zone, as `naming::test_domain` makes them: `<3 letters>-<6>.zone`.
fn app_domain(i: usize, zone: &str) -> String {
    format!("ben-{i:06}.{zone}")
}

/// The holder process: takes the locks of the first `count` test domains of the zone (`spec`
/// is `<lock dir>\n<zone>\n<count>`), says so with one byte, holds until stdin closes.
fn hold(spec: &str) {
    let mut lines = spec.lines();
    let lock_dir = Path::new(lines.next().expect("lock dir")).to_path_buf();
    let zone = lines.next().expect("zone");
    let count: usize = lines.next().expect("count").parse().expect("a count");
    raise_fd_limit();
    let holder = Holder::this_process("bench-live-run");
    let locks: Vec<AppLock> = (0..count)
        .map(|i| {
            AppLock::try_acquire(&lock_dir, &app_domain(i, zone), &holder)
                .expect("lock")
                .expect("free")
        })
        .collect();
    let mut out = std::io::stdout();
    out.write_all(b"r").expect("report ready");
    out.flush().expect("flush");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(locks);
}

/// 10,000 held locks are 10,000 open files; the soft limit may be 1,024.
fn raise_fd_limit() {
    let mut limit = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass, which lives on our
    // stack for the whole call.
    unsafe {
        if nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max.min(65_536).max(limit.rlim_cur);
            nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn measure(n: usize, mut f: impl FnMut() -> Duration) -> Vec<Duration> {
    (0..n).map(|_| f()).collect()
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
