//! The command's output on stdout.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`wormfs file info F |
//! head -1`). A command's output lines go through [`line`] instead: a reader that stopped
//! reading wanted no more, so the command ends there with success, as `ls` or `cat` do.

use std::io::Write;

/// Writes `args` and a newline to stdout. Ends the process with status 0 when the reader
/// has gone, and with status 1 and a message on any other write error.
pub fn line(args: std::fmt::Arguments<'_>) {
    if let Err(e) = write_line(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("wormfs: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes `args` and a newline to stdout, ignoring write errors: for a command that runs a
/// cluster or a mount (quickstart), which must go on and stop cleanly when its reader has
/// gone, not end on the spot.
pub fn say_line(args: std::fmt::Arguments<'_>) {
    let _ = write_line(args);
}

fn write_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `println!` for a command's output, through [`line`].
macro_rules! out {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// `println!` for quickstart's messages, through [`say_line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;
