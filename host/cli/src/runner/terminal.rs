//! What a run shows on the terminal: a progress bar with the current step
//! when stderr is a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use crate::printable::printable;

pub struct Terminal {
    tty: bool,
    start: Instant,
    last_line_len: usize,
    pub quiet: bool,
}

impl Terminal {
    pub fn new(quiet: bool) -> Terminal {
        Terminal {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last_line_len: 0,
            quiet,
        }
    }

    fn clear(&mut self) {
        if self.tty && self.last_line_len > 0 {
            eprint!("\r{}\r", " ".repeat(self.last_line_len));
            self.last_line_len = 0;
        }
    }

    /// A message above the bar (escaped: it may hold a plugin's text).
    pub fn line(&mut self, msg: &str) {
        if self.quiet {
            return;
        }
        self.clear();
        eprintln!("{}", printable(msg));
    }

    pub fn progress(&mut self, done: u32, total: u32, step: &str) {
        if self.quiet {
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        let step = printable(step);
        if !self.tty {
            eprintln!("[{done}/{total}] {step} ({elapsed:.1}s)");
            return;
        }
        const WIDTH: usize = 30;
        let filled = if total == 0 {
            0
        } else {
            (done as usize * WIDTH / total as usize).min(WIDTH)
        };
        let bar = format!("{}{}", "█".repeat(filled), "░".repeat(WIDTH - filled));
        let mut text = format!("{bar} {done}/{total} {step} ({elapsed:.0}s)");
        if text.chars().count() > 110 {
            text = text.chars().take(110).collect();
        }
        self.clear();
        eprint!("{text}");
        let _ = std::io::stderr().flush();
        self.last_line_len = text.chars().count();
    }

    pub fn finish(&mut self) {
        self.clear();
    }
}
