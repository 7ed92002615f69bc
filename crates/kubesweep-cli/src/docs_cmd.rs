//! `kubesweep completions SHELL` and `kubesweep man`: shell completions and
//! the manual page, generated from the command-line definition itself so
//! they cannot drift from the flags. Both follow the name the binary was
//! started as (`kubesweep`, or `kubectl-sweep` as the kubectl plugin).

use std::io::Write;

use crate::args;
use crate::exit::{CliError, Exit};

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<Exit, CliError> {
    let invoked = args::invoked_name();
    let mut command = args::command(&invoked);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, invoked, &mut out);
    print(&out)
}

/// Prints the manual page (roff) on stdout.
pub fn man() -> Result<Exit, CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(args::command(&args::invoked_name()))
        .render(&mut out)
        .map_err(|e| CliError::new(Exit::Internal, format!("rendering the manual page: {e}")))?;
    print(&out)
}

fn print(bytes: &[u8]) -> Result<Exit, CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::new(Exit::Internal, format!("writing to stdout: {e}")))?;
    Ok(Exit::Ok)
}
