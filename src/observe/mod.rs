//! Observing the daemon.

pub mod control;
pub mod inspect;
pub mod logger;
pub mod metrics;
pub mod service;
pub mod status;
