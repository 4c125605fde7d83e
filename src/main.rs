//! The `syncd` binary: parse the command line, run it, and turn the result
//! into an exit status. Everything else lives in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = syncd::config::cli::Cli::parse();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result: anyhow::Result<()> = syncd::run(cli, &mut out).map_err(anyhow::Error::from);
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`syncd queue inspect | head`) is not an error.
            if err.chain().any(is_broken_pipe) {
                return ExitCode::SUCCESS;
            }
            // The library's messages already say their cause: `{err}`,
            // not the chain, which would repeat it.
            let _ = writeln!(std::io::stderr(), "syncd: error: {err}");
            let code = err
                .downcast_ref::<syncd::Error>()
                .map_or(1, syncd::Error::exit_code);
            ExitCode::from(code)
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
