//! Renders the library's events for a person. On a terminal: one progress line per stage
//! (pending, then a spinner with the step under way and its elapsed time, then passed, failed
//! or skipped), with notices, tests and teardown printed above them. Anywhere else (CI logs,
//! pipes): plain timestamped lines. Colour follows the terminal and NO_COLOR.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use ccci::event::{Event, EventSink};
use ccci::stage::Stage;
use ccci::verdict::{StageStatus, Verdict};
use console::{StyledObject, style};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Terminal {
    interactive: bool,
    bars: Mutex<Bars>,
}

/// The progress lines: one per stage of the run, and a spinner for work outside any stage
/// (fetch, teardown, a replayed step).
struct Bars {
    multi: MultiProgress,
    stages: BTreeMap<Stage, ProgressBar>,
    current: Option<Stage>,
    loose: Option<ProgressBar>,
}

const TICK: Duration = Duration::from_millis(120);

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>8.bold} {spinner} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn still_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>8.bold} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Terminal {
    pub fn new() -> Self {
        let interactive = console::Term::stderr().is_term() && std::env::var_os("CI").is_none();
        if std::env::var_os("NO_COLOR").is_some() {
            console::set_colors_enabled(false);
            console::set_colors_enabled_stderr(false);
        }
        Terminal {
            interactive,
            bars: Mutex::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                stages: BTreeMap::new(),
                current: None,
                loose: None,
            }),
        }
    }
}

impl Bars {
    fn println(&self, line: String) {
        if self.multi.println(&line).is_err() {
            stderr_line(&line);
        }
    }

    /// One still line per stage, pending, in run order.
    fn start_run(&mut self, stages: &[Stage]) {
        for &stage in stages {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(still_style());
            bar.set_prefix(stage.as_str());
            bar.set_message(style("pending").dim().to_string());
            self.stages.insert(stage, bar);
        }
    }

    fn start_stage(&mut self, stage: Stage, detail: &str) {
        self.finish_loose();
        let bar = self.stages.entry(stage).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_prefix(stage.as_str());
            bar
        });
        bar.reset_elapsed();
        bar.set_style(running_style());
        bar.set_message(detail.to_string());
        bar.enable_steady_tick(TICK);
        self.current = Some(stage);
    }

    fn finish_stage(&mut self, stage: Stage, status: StageStatus, reason: Option<&str>, secs: f64) {
        let text = match (status, reason) {
            (StageStatus::Passed, _) => style(format!("passed in {secs:.1}s")).green().bold(),
            (StageStatus::Failed, Some(r)) => style(format!("failed: {r}")).red().bold(),
            (StageStatus::Skipped, Some(r)) => style(format!("skipped: {r}")).yellow(),
            (status, _) => style(format!("{status:?}").to_lowercase()).bold(),
        };
        if let Some(bar) = self.stages.get(&stage) {
            bar.set_style(still_style());
            bar.finish_with_message(text.to_string());
        }
        if self.current == Some(stage) {
            self.current = None;
        }
    }

    /// What the current stage (or, outside a stage, the loose spinner) is doing now.
    fn doing(&mut self, message: String) {
        if let Some(bar) = self.current.and_then(|s| self.stages.get(&s)) {
            bar.set_message(message);
            return;
        }
        let bar = self.loose.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(running_style());
            bar.set_prefix("");
            bar.enable_steady_tick(TICK);
            bar
        });
        bar.set_message(message);
    }

    fn finish_loose(&mut self) {
        if let Some(bar) = self.loose.take() {
            bar.finish_and_clear();
        }
    }

    /// Leaves the stage lines as they are and stops every spinner.
    fn finish_all(&mut self) {
        self.finish_loose();
        for bar in self.stages.values() {
            if !bar.is_finished() {
                bar.set_style(still_style());
                bar.abandon();
            }
        }
    }
}

impl EventSink for Terminal {
    fn event(&self, event: &Event) {
        if !self.interactive {
            stderr_line(&format!(
                "{} {}",
                ccci::timestamp::now_rfc3339(),
                event.to_line()
            ));
            return;
        }
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::RunStarted { stages, .. } => {
                bars.println(event.to_line());
                bars.start_run(stages);
            }
            Event::StageStarted { stage, detail } => bars.start_stage(*stage, detail),
            Event::StageFinished {
                stage,
                status,
                reason,
                elapsed,
            } => bars.finish_stage(*stage, *status, reason.as_deref(), elapsed.as_secs_f64()),
            Event::StepStarted { .. } | Event::Waiting { .. } => bars.doing(event.to_line()),
            Event::StepFinished { ok: true, .. } => {}
            Event::Verdict { verdict, .. } => {
                bars.finish_all();
                bars.println(styled_verdict(*verdict, event.to_line()).to_string());
            }
            _ => bars.println(event.to_line()),
        }
    }
}

/// The verdict line, coloured by the verdict itself, never by the words of its reason.
fn styled_verdict(verdict: Verdict, line: String) -> StyledObject<String> {
    match verdict {
        Verdict::Pass => style(line).green().bold(),
        Verdict::Fail | Verdict::BaseFailed | Verdict::Error | Verdict::Interrupted(_) => {
            style(line).red().bold()
        }
    }
}

/// How many lines [`LinePrinter`] holds for a slow stderr; more are dropped, and counted.
const BACKLOG: usize = 4096;

/// Lines written to stderr by a thread of their own, each after a prefix, so whoever reports
/// an event (serve's webhook intake, say) never waits for stderr's reader, nor for another
/// thread's line. A reader that falls [`BACKLOG`] lines behind (a stalled journal, a flood of
/// forged deliveries) loses lines rather than stopping what reports them, as a journal does:
/// the next line printed says how many were lost.
pub struct LinePrinter {
    sender: mpsc::SyncSender<Option<String>>,
    prefix: &'static str,
    dropped: Arc<AtomicU64>,
    /// Closed by the printing thread as it ends.
    done: mpsc::Receiver<()>,
}

/// How long [`LinePrinter::finish`] waits for the lines still to print: a stderr nobody reads
/// must not keep a stopping process alive.
const FINISH_WAIT: Duration = Duration::from_secs(2);

impl LinePrinter {
    pub fn start(prefix: &'static str) -> std::io::Result<LinePrinter> {
        let (sender, receiver) = mpsc::sync_channel::<Option<String>>(BACKLOG);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let (ended, done) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("stderr".into())
            .spawn(move || {
                let _ended = ended;
                while let Ok(Some(line)) = receiver.recv() {
                    say_dropped(prefix, &counted);
                    stderr_line(&format!("{prefix}{line}"));
                }
                say_dropped(prefix, &counted);
            })?;
        Ok(LinePrinter {
            sender,
            prefix,
            dropped,
            done,
        })
    }

    /// Something that prints a line through this printer, never waiting: a line that finds
    /// the backlog full is counted and dropped. Once the printer has finished, lines go
    /// straight to stderr.
    pub fn sink(&self) -> impl Fn(String) + Send + Sync + 'static {
        let (sender, prefix, dropped) = (self.sender.clone(), self.prefix, self.dropped.clone());
        move |line| match sender.try_send(Some(line)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::SeqCst);
            }
            Err(mpsc::TrySendError::Disconnected(line)) => {
                stderr_line(&format!("{prefix}{}", line.unwrap_or_default()));
            }
        }
    }

    /// Prints every line sent so far, then stops; gives up after [`FINISH_WAIT`] when stderr
    /// is not being read, and says so (false): stderr is then no place for a last word.
    pub fn finish(self) -> bool {
        let until = std::time::Instant::now() + FINISH_WAIT;
        // The end mark goes behind the lines still waiting, once there is room for it.
        loop {
            match self.sender.try_send(None) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(_)) if std::time::Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(mpsc::TrySendError::Full(_)) => return false,
                // The printing thread has ended already.
                Err(mpsc::TrySendError::Disconnected(_)) => return true,
            }
        }
        // Ended, whether by the end mark or not, unless the wait ran out.
        !matches!(
            self.done
                .recv_timeout(until.saturating_duration_since(std::time::Instant::now())),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }
}

fn say_dropped(prefix: &str, dropped: &AtomicU64) {
    let lost = dropped.swap(0, Ordering::SeqCst);
    if lost > 0 {
        stderr_line(&format!(
            "{prefix}{lost} log line(s) dropped: stderr was not read fast enough"
        ));
    }
}

/// Writes a line to stderr, ignoring a closed stderr: a run whose output is piped into
/// `head` must still tear down, not panic half-way.
pub fn stderr_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_a_failure_whose_reason_says_password_is_not_green() {
        let line = "verdict: fail — install: probe: wrong password".to_string();
        let styled = styled_verdict(Verdict::Fail, line.clone())
            .force_styling(true)
            .to_string();
        assert!(styled.contains("\x1b[31m"), "{styled:?}");
        assert!(!styled.contains("\x1b[32m"), "{styled:?}");
        let pass = styled_verdict(Verdict::Pass, "verdict: pass".into())
            .force_styling(true)
            .to_string();
        assert!(pass.contains("\x1b[32m"), "{pass:?}");
    }
}
