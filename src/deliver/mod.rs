//! Delivery: from committed changesets to rsync runs, and the acks.

pub mod classify;
pub mod guard;
pub mod outbox;
pub mod plan;
pub mod rsync;
pub mod worker;
