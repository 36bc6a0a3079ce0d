//! What the commands print on standard output. A reader that goes away (`canary status | head`)
//! ends the command as a closed pipe ends `cat`: quietly, with exit status 141 (128 + SIGPIPE, so
//! a pipeline under `set -o pipefail` still fails), instead of the panic `println!` gives. Any
//! other failure to write is said on standard error, with exit status 1.

use std::io::{ErrorKind, Write};

/// The exit status when standard output's reader went away.
pub const CLOSED: i32 = 141;

/// Writes `text` to standard output and flushes it.
pub fn write(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        drop(out);
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(CLOSED);
        }
        eprintln!("canary: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}
