//! syncd: watch a directory tree, aggregate its changes, commit each
//! changeset to a durable per-destination queue, and drain the queues
//! through rsync, acknowledging only what rsync delivered.
//!
//! The pipeline has one module per stage: [`watch`] (inotify through
//! notify), [`aggregate`] (the time window) with the pure [`optimize`]r,
//! [`commit`] (one transaction per changeset into the [`store`]), and
//! [`worker`] (one thread per destination running [`rsync`] on paths
//! [`classify`]d against the live tree). [`daemon`] wires them into one
//! main loop; [`record`] is the on-disk codec, [`lock`] the single-instance
//! guard, [`inspect`] the queue report. The binary (`main.rs`) is a thin
//! layer over [`run`].

pub mod aggregate;
pub mod changeset;
pub mod classify;
pub mod cli;
pub mod commit;
pub mod config;
pub mod daemon;
pub mod dryrun;
pub mod error;
pub mod inspect;
pub mod location;
pub mod lock;
pub mod logger;
pub mod optimize;
pub mod pipeline;
pub mod record;
pub mod rsync;
pub mod service;
pub mod store;
pub mod watch;
pub mod worker;

use std::io::Write;

pub use error::{Error, Result};

use cli::{Cli, Command, InspectArgs, QueueCommand};

/// Runs a parsed command line. Output goes to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    logger::init(&logger::LogConfig {
        debug: cli.log.debug,
        verbose: cli.log.verbose,
        quiet: cli.log.quiet,
        syslog: cli.log.syslog.then(|| cli.log.syslog_facility.clone()),
        syslog_socket: cli.log.syslog_socket.clone(),
    })
    .map_err(Error::Usage)?;
    match cli.command {
        Command::Run(a) => {
            let cfg = config::RunConfig::from_args(&a)?;
            if a.dry_run {
                return dryrun::run(cfg, out);
            }
            daemon::run(cfg)
        }
        Command::Queue(QueueCommand::Inspect(a)) => queue_inspect(&a, out),
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            man.render(out)
                .map_err(|e| Error::io("cannot write to", "stdout", e))
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "syncd", out);
            Ok(())
        }
    }
}

fn queue_inspect(a: &InspectArgs, out: &mut dyn Write) -> Result<()> {
    let dir = config::state_dir(&a.state)?;
    if !store::db_path(&dir).exists() {
        return Err(Error::Usage(format!(
            "no syncd store in {}: no daemon has run with this --state-dir",
            dir.display()
        )));
    }
    if let Some(pid) = lock::holder_of(&dir) {
        return Err(Error::Control(format!(
            "a syncd daemon (pid {pid}) holds {}; the store cannot be read while it runs",
            lock::lock_path(&dir).display()
        )));
    }
    let store = store::Store::open(&dir)?;
    let ins = inspect::offline(&store, a.dest.as_deref(), a.entries)?;
    if let Some(d) = &a.dest {
        if ins.destinations.is_empty() {
            return Err(Error::Usage(format!(
                "no destination named {d:?} in this store"
            )));
        }
    }
    let res = if a.json {
        serde_json::to_writer_pretty(&mut *out, &ins)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        inspect::write_table(out, &ins)
    };
    res.and_then(|_| out.flush())
        .map_err(|e| Error::io("cannot write to", "stdout", e))
}
