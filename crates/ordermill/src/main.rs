//! The `ordermill` binary: parses the command line and hands over to [`cli::run`].

mod cli;
mod config;
mod logging;
mod orders;
mod report;
mod status;

// glibc's malloc showed as ~10% of CPU under load (many small per-request allocations across
// threads); mimalloc's thread-local free lists cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
