//! Small stacks of the local test image, deployed straight onto the swarm (not through
//! ccci) for the inspector and teardown tests, each under its own stack name, and torn down
//! even when the test fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ccci::docker::teardown::{self, Target};
use ccci::docker::{NotReady, ReadyOptions, Swarm};
use ccci::event::Recorder;
use ccci::sys::process::Cmd;

use super::sandbox::runner;
use super::swarm::IMAGE;

pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The swarm inspector of ccci, on this machine's swarm.
pub fn swarm() -> Swarm {
    Swarm::new(runner())
}

/// A deployed stack that is torn down when dropped, whatever the test did.
pub struct Stack {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// A unique stack name: tests run in parallel, and other runs may use the swarm too.
    pub fn unique_name() -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "ccci-t-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        )
    }

    pub fn new() -> Stack {
        Stack {
            name: Stack::unique_name(),
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// Writes `compose` and deploys it; returns the time taken just before deploying, which
    /// is what readiness takes as the start of this deploy.
    pub fn deploy(&self, compose: &str) -> SystemTime {
        let file = self.dir.path().join("compose.yml");
        std::fs::write(&file, compose).expect("write compose file");
        std::fs::write(self.dir.path().join("pw.txt"), "secret\n").expect("write secret file");
        let since = SystemTime::now();
        let out = runner()
            .output(
                &Cmd::new("docker")
                    .args(["stack", "deploy", "-c"])
                    .arg(&file)
                    .arg(&self.name)
                    .current_dir(self.dir.path())
                    .timeout(Duration::from_secs(60)),
            )
            .expect("run docker stack deploy");
        assert!(
            out.success(),
            "docker stack deploy {} failed: {}",
            self.name,
            out.stderr_str()
        );
        since
    }

    pub fn service(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    pub fn target(&self) -> Target {
        Target {
            domain: format!("{}.test", self.name),
            stack: self.name.clone(),
            env_file: None,
        }
    }

    pub fn teardown(&self) -> teardown::Outcome {
        teardown::teardown(
            &runner().with_budget(Duration::from_secs(90)),
            &self.target(),
            &Recorder::default(),
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let outcome = self.teardown();
        if !outcome.leftovers.is_empty() && !std::thread::panicking() {
            panic!("teardown of {} left {:?}", self.name, outcome.leftovers);
        }
    }
}

pub fn wait(
    swarm: &Swarm,
    stack: &Stack,
    since: SystemTime,
    sink: &Recorder,
) -> Result<(), NotReady> {
    swarm.wait_ready(
        &stack.name,
        &ReadyOptions {
            timeout: READY_TIMEOUT,
            since,
            deployed: true,
        },
        sink,
    )
}

/// A web server that is healthy at once, with a named volume.
pub fn healthy_compose() -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "echo app starting; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"]
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]
      interval: 1s
      start_period: 1s
      retries: 3
volumes:
  data:
"#
    )
}

/// A service whose healthcheck always fails, and whose main process ignores SIGTERM, so the
/// swarm's own kill would only come after the 10 s stop grace period.
pub fn unhealthy_compose() -> String {
    format!(
        r#"version: "3.8"
services:
  bad:
    image: {IMAGE}
    command: ["sh", "-c", "trap '' TERM; echo bad is starting; sleep 3600"]
    healthcheck:
      test: ["CMD", "sh", "-c", "echo probe says no; exit 1"]
      interval: 1s
      start_period: 1s
      retries: 1
"#
    )
}

pub fn missing_image_compose() -> &'static str {
    r#"version: "3.8"
services:
  ghost:
    image: ccci-nonexistent:9
    command: ["sleep", "3600"]
"#
}

/// A sink that notes when each event came, in seconds after the first.
#[derive(Default)]
pub struct Timed(
    pub std::sync::Mutex<Vec<(f64, ccci::event::Event)>>,
    std::sync::OnceLock<std::time::Instant>,
);

impl ccci::event::EventSink for Timed {
    fn event(&self, event: &ccci::event::Event) {
        let start = *self.1.get_or_init(std::time::Instant::now);
        self.0
            .lock()
            .unwrap()
            .push((start.elapsed().as_secs_f64(), event.clone()));
    }
}
