//! rsync as the daemon runs it.
//!
//! This folder owns the file-level strategy: one run with `-r --delete -R
//! --files-from=- --from0 --delete-missing-args --force` for files, gone
//! paths and trees, and a second, non-recursive run only for directories
//! whose own attributes changed (`command`); the child process, fed its
//! NUL-separated list on stdin and judged by its exit status (`process`,
//! with the policy in `exitcode`); what it prints (`progress`); the
//! watchdog for runs that hang despite `--timeout` (`stall`); and how ssh
//! destinations are reached (`ssh`). ARCHITECTURE.md says why this
//! strategy and not lsyncd's or pylsyncd's.

pub mod command;
pub mod exitcode;
pub mod process;
pub mod progress;
pub mod ssh;
pub mod stall;

pub use command::{argv, list, transport_args, Run};
pub use exitcode::Class;
pub use process::{check_program, run, Control, Io, LineSink, Outcome};
