//! `investigator bench …`: benchmarks that print numbers.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Guard verdict time per statement.
    Guard,
}

pub async fn run(command: BenchCommand, _config: &Path) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Guard => {
            println!("not implemented yet");
            Ok(ExitCode::SUCCESS)
        }
    }
}
