//! Turning a terminal's echo off while a secret is typed, so it never shows on screen.

use std::os::fd::AsFd as _;

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};

/// Echo is off on stdin's terminal until this is dropped.
pub struct EchoOff {
    saved: Option<Termios>,
}

impl EchoOff {
    /// Turns echo off on `stdin` (nothing happens when it is not a terminal).
    pub fn new(stdin: &std::io::Stdin) -> Self {
        let fd = stdin.as_fd();
        let Ok(saved) = tcgetattr(fd) else {
            return Self { saved: None };
        };
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        match tcsetattr(fd, OptionalActions::Now, &quiet) {
            Ok(()) => Self { saved: Some(saved) },
            Err(_) => Self { saved: None },
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, saved);
        }
    }
}
