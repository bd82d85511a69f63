//! A real headless Chromium for the dashboard tests: the DOM of a page after its scripts ran
//! (`--dump-dom`) and a screenshot of it (`--screenshot`).
//!
//! Each call starts a fresh browser with a fresh profile, in a process group of its own, and is
//! bounded by a deadline: on timeout the whole group (browser, zygote, renderers) is killed and
//! the test fails saying so. After a normal exit the group is killed too, so no helper process
//! outlives the call.
//!
//! When Chromium dumps or shoots: at the page's load event. `--virtual-time-budget` does not
//! help with a live log, because virtual time never advances while a fetch is pending, and an
//! EventSource stream is a fetch that never ends: the browser waits until killed. A test that
//! needs the DOM after some live events therefore holds the page's load (its server sends the
//! HTML but the last bytes) until it has seen proof that the events were handled, then lets the
//! page finish: see `dashboard.rs`. A test that watches a page change, against a server it does
//! not control, drives the browser over the DevTools protocol instead: see [`super::devtools`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long one browser run may take; a cold start here takes about a second.
const LIMIT: Duration = Duration::from_secs(60);

/// Flags for a browser that talks to nobody but the test's server and keeps no state.
pub const FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// `None` when `chromium` is on the `PATH`, else why the chromium tests cannot run.
pub fn absence() -> Option<String> {
    binary().err()
}

/// Fails the calling test, saying what to do, unless chromium is installed.
pub fn require() {
    if let Err(e) = binary() {
        panic!("this test needs a headless Chromium: {e} (run `bash scripts/setup-host.sh`)");
    }
}

pub fn binary() -> Result<PathBuf, String> {
    which::which("chromium").map_err(|_| "`chromium` is not on the PATH".to_string())
}

/// The DOM of `url` once it has loaded and its scripts ran, serialised.
pub fn dump_dom(url: &str) -> String {
    let out = run(&["--dump-dom", url]);
    String::from_utf8(out).expect("chromium dumps UTF-8")
}

/// A 1280×900 PNG of `url` once it has loaded, written to `path`.
pub fn screenshot(url: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    run(&[
        &format!("--screenshot={}", path.display()),
        "--window-size=1280,900",
        url,
    ]);
    assert!(
        path.is_file(),
        "chromium wrote no screenshot to {}",
        path.display()
    );
}

/// Where a test keeps a screenshot as a build artifact: `target/artifacts/<name>` (under
/// `CARGO_TARGET_DIR` when set).
pub fn artifact(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::sandbox::root().join("target"))
        .join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir.join(name)
}

/// Fails unless `path` is a real 1280×900 PNG with something on it.
pub fn assert_screenshot(path: &Path) {
    let png = std::fs::read(path).expect("read the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        png.len() > 8 * 1024,
        "{} is only {} bytes: a blank page?",
        path.display(),
        png.len()
    );
    // IHDR: width and height, big-endian, right after the signature and the chunk header.
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (1280, 900), "{}", path.display());
}

/// Runs chromium with `args` after the common flags; returns its stdout.
fn run(args: &[&str]) -> Vec<u8> {
    let bin = binary().unwrap_or_else(|e| panic!("{e}"));
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(bin);
    cmd.args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("start chromium");
    let group = Pid::from_raw(child.id() as i32);
    // Read both pipes on their own threads, so a chatty browser never blocks on a full pipe.
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    // Watch for the browser's exit without reaping it: while it is a zombie its pid, and so the
    // group id, cannot be reused, so the kill below reaches only what it left behind.
    let until = Instant::now() + LIMIT;
    let exited = loop {
        match super::proc::proc_stat(child.id() as i32) {
            Some(('Z' | 'X', _, _)) | None => break true,
            Some(_) if Instant::now() >= until => break false,
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // Whatever the browser left running (or the browser itself, on timeout) goes now; the pipes
    // close when the last process holding them is gone.
    let _ = killpg(group, Signal::SIGKILL);
    let status = child.wait().expect("wait for chromium");
    let status = exited.then_some(status);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    match status {
        None => panic!("chromium {args:?} did not finish within {LIMIT:?}; stderr ends:\n{tail}"),
        Some(s) if !s.success() => panic!("chromium {args:?} failed ({s}); stderr ends:\n{tail}"),
        Some(_) => stdout,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}
