//! `isola-bench`: the benchmark harness on its own (the same CLI as `isola bench`).

use std::process::ExitCode;

use clap::Parser;
use isola_bench::cli::{BenchCli, BenchEnv, run};

fn main() -> ExitCode {
    let cli = BenchCli::parse();
    let exe = std::env::current_exe().ok();
    let isola_exe = cli.isola_bin().map(ToOwned::to_owned).or_else(|| {
        exe.as_ref()
            .and_then(|e| e.parent())
            .map(|dir| dir.join("isola"))
    });
    let env = BenchEnv {
        isola_exe,
        self_cmd: exe.into_iter().map(Into::into).collect(),
        startup_probe: None,
    };
    match run(cli, env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
