//! The `pgrepl` binary: parse the command line, resolve it into settings, run it, and print
//! any error and exit in one place.

use std::process::ExitCode;
use std::sync::Arc;

use pgrepl::error::{Error, exit};
use pgrepl::report::{Format, Reporter};
use pgrepl::settings::Settings;

fn main() -> ExitCode {
    let cli = match pgrepl::cli::Cli::parse_checked(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    let settings = Settings::from_cli(cli);
    let (format, verbose) = settings
        .as_ref()
        .map_or((Format::Human, 0), |s| (s.format, s.verbose));
    let mut reporter = Reporter::new(format, verbose, Reporter::stderr_is_interactive(), None);
    let settings = settings.and_then(|s| {
        if let Some(path) = &s.log_file {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| Error::File {
                    path: path.clone(),
                    source,
                })?;
            reporter.set_log(file);
        }
        Ok(s)
    });
    let reporter = Arc::new(reporter);
    let result = settings.and_then(|settings| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Runtime { source })?;
        runtime.block_on(pgrepl::app::run(settings, reporter.clone()))
    });
    match result {
        Ok(finished) => ExitCode::from(finished.exit_code()),
        Err(e) => {
            reporter.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}
