//! Keeps the screen the TUI draws on clean of what C libraries print: while the terminal
//! client runs, the process's standard error (fd 2) goes to the log file. alsa-lib writes
//! some 20 lines there on a machine without a sound card, before the first frame is drawn
//! and whenever a device is probed; Rust's own logs already go to the file through
//! `tracing`. Standard error comes back when the guard drops, and before the message of a
//! panic on the main thread is printed, so errors still reach the person at the terminal.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Standard error as it was, restored on drop.
pub struct StderrToLog {
    saved: Arc<Mutex<Option<OwnedFd>>>,
}

/// Points fd 2 at `log` (appending) until the returned guard drops.
pub fn to_log(log: &Path) -> std::io::Result<StderrToLog> {
    let file: File = OpenOptions::new().create(true).append(true).open(log)?;
    let saved = rustix::io::dup(std::io::stderr())?;
    rustix::stdio::dup2_stderr(&file)?;
    let saved = Arc::new(Mutex::new(Some(saved)));
    let for_panics = saved.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A panic on the main thread ends the client: the person must see it. Elsewhere
        // (a task the runtime catches, an audio thread) the screen goes on, and the
        // message belongs in the log with the rest.
        if std::thread::current().name() == Some("main") {
            restore(&for_panics);
        }
        previous(info);
    }));
    Ok(StderrToLog { saved })
}

fn restore(saved: &Mutex<Option<OwnedFd>>) {
    if let Ok(mut slot) = saved.lock()
        && let Some(fd) = slot.take()
    {
        let _ = rustix::stdio::dup2_stderr(&fd);
    }
}

impl Drop for StderrToLog {
    fn drop(&mut self) {
        restore(&self.saved);
    }
}
