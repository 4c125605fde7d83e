//! Observing the daemon: what it reports and how it is asked.
//!
//! [`status`] is the leaf both sides share: the state and live figures a
//! worker publishes. On top of it, [`inspect`] builds the reports of `syncd
//! queue inspect` and `syncd status`, [`metrics`] renders them for
//! Prometheus, [`control`] carries requests from a command to the running
//! daemon (or opens the store itself when none runs), [`service`] speaks
//! systemd's notify protocol, [`logger`] writes the log and [`steps`]
//! times the main loop's steps. This folder
//! reads the store and the workers' published state; it never runs rsync
//! and never commits or acks (a `retry` or `purge` acts on the store
//! through the store's own operations).

pub mod control;
pub mod inspect;
pub mod logger;
pub mod metrics;
pub mod service;
pub mod status;
pub mod steps;
