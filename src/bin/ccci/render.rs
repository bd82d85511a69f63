//! Renders the library's events for a person: a spinner per step on a terminal, plain
//! timestamped lines otherwise (CI logs, pipes). Colour follows the terminal and NO_COLOR.

use std::sync::Mutex;
use std::time::Duration;

use ccci::event::{Event, EventSink};
use console::style;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Terminal {
    interactive: bool,
    spinner: Mutex<Option<ProgressBar>>,
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
            spinner: Mutex::new(None),
        }
    }

    fn println(&self, line: String) {
        let spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
        match spinner.as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn spin(&self, message: String) {
        let mut spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
        let bar = spinner.get_or_insert_with(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(message);
    }

    fn stop_spinner(&self) {
        if let Some(bar) = self
            .spinner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }
}

impl EventSink for Terminal {
    fn event(&self, event: &Event) {
        if !self.interactive {
            eprintln!("{} {}", ccci::report::now_rfc3339(), event.to_line());
            return;
        }
        match event {
            Event::StepStarted { .. } | Event::Waiting { .. } => self.spin(event.to_line()),
            Event::StepFinished { ok: true, .. } => {}
            Event::StageFinished { .. } | Event::Verdict { .. } => {
                self.stop_spinner();
                let line = event.to_line();
                let styled = if line.contains("failed") || line.contains("FAILED") {
                    style(line).red().bold()
                } else if line.contains("passed") || line.contains("pass") {
                    style(line).green().bold()
                } else {
                    style(line).bold()
                };
                eprintln!("{styled}");
            }
            _ => self.println(event.to_line()),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.stop_spinner();
    }
}
