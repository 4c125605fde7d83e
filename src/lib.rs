//! syncd: watch a directory tree, aggregate its changes, commit each
//! changeset to a durable per-destination queue, and drain the queues
//! through rsync, acknowledging only what rsync delivered.
//!
//! The folders follow the pipeline (ARCHITECTURE.md has the picture and
//! the rules): [`watch`] turns inotify events into entries, [`aggregate`]
//! holds them for a window and [`optimize`] makes the set canonical,
//! [`commit`] writes each changeset into the [`store`]; [`deliver`] drains
//! the queues through rsync, one worker per destination, and acks what
//! rsync delivered; [`observe`] answers for all of it (status, inspect,
//! metrics, logs, the control socket); [`config`] turns the command line
//! and the config file into the settings everything else reads; [`daemon`]
//! wires the stages into one main loop. [`changeset`] holds the core types
//! they pass along, [`error`] the errors that end a command. The binary
//! (`main.rs`) is a thin layer over [`run`].

pub mod aggregate;
pub mod changeset;
pub mod commands;
pub mod commit;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod error;
pub mod observe;
pub mod optimize;
pub mod store;
pub mod watch;

use std::io::Write;

pub use error::{Error, Result};

use config::cli::{Cli, Command, QueueCommand};
use config::file::ConfigFile;
use observe::logger;

/// Runs a parsed command line. Output goes to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let file = cli.config.as_deref().map(ConfigFile::load).transpose()?;
    let f = file.as_ref();
    let flog = f.map(ConfigFile::log).unwrap_or_default();
    logger::init(&logger::LogConfig {
        debug: cli.log.debug || flog.debug.unwrap_or(false),
        verbose: cli.log.verbose || flog.verbose.unwrap_or(false),
        quiet: cli.log.quiet || flog.quiet.unwrap_or(false),
        syslog: (cli.log.syslog || flog.syslog.unwrap_or(false)).then(|| {
            cli.log
                .syslog_facility
                .clone()
                .or(flog.syslog_facility)
                .unwrap_or_else(|| "user".into())
        }),
        syslog_socket: cli
            .log
            .syslog_socket
            .clone()
            .or(flog.syslog_socket)
            .unwrap_or_else(|| "/dev/log".into()),
    })
    .map_err(Error::Usage)?;
    match cli.command {
        Command::Run(a) => {
            let cfg = config::RunConfig::from_args(&a, f)?;
            if a.dry_run {
                return daemon::dryrun::run(cfg, out);
            }
            daemon::run(cfg)
        }
        Command::CheckConfig(a) => {
            let cfg = config::RunConfig::from_args(&a, f)?;
            commands::written(config::describe(&cfg, out), out)
        }
        Command::Status(a) => commands::status(&a, f, out),
        Command::Checkpoint(a) => commands::checkpoint(&a, f, out),
        Command::Sync(a) => commands::sync(&a, f, out),
        Command::Queue(QueueCommand::Inspect(a)) => commands::queue_inspect(&a, f, out),
        Command::Queue(QueueCommand::Retry(a)) => commands::queue_retry(&a, f, out),
        Command::Queue(QueueCommand::Purge(a)) => commands::queue_purge(&a, f, out),
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            commands::written(man.render(out), out)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "syncd", out);
            Ok(())
        }
    }
}
