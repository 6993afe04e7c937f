//! The `ordermill` binary: parses the command line and hands over to [`cli::run`].

mod cli;
mod config;
mod logging;

fn main() -> std::process::ExitCode {
    cli::run()
}
