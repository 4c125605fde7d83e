//! The one integration-test binary: every module drives the real `syncd`
//! binary against real rsync (and, for remote destinations, a real sshd and
//! rsync daemon on loopback), except `model`, a pure property test of the
//! optimizer and the classifier against an in-memory model of rsync.

mod support;
mod util;

mod churn;
mod compose;
mod config;
mod control;
mod core;
mod crash;
mod filter;
mod guard;
mod hardening;
mod model;
mod moves;
mod random_ops;
mod remote;
mod restart;
mod service;
mod watch;
