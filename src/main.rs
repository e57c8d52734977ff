//! The `pgrepl` binary: parse the command line and hand over to [`pgrepl::app`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match pgrepl::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                pgrepl::app::exit::INVALID
            } else {
                0
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgrepl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(runtime.block_on(pgrepl::app::run(cli)))
}
