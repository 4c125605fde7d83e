//! The record codec: how changesets, dead letters and destination status
//! are written into the store, and read back.
//!
//! Every value is a bincode 2 envelope, an enum whose variants are only ever
//! appended (`V1`, then one day `V2`), so new code reads old records and old
//! code refuses new ones cleanly. The serialized structs live here and
//! nowhere else; the pipeline works on the core types of `changeset`, and
//! the `From` conversions below are the only bridge. Decoding is bounded by
//! [`LIMIT`] and strict about trailing bytes, so a corrupt value is an
//! error, never an allocation of a terabyte or a panic. Pure and fuzzed.

use serde::{Deserialize, Serialize};

use crate::changeset::{Changeset, Entry, Kind, Move};
use crate::error::RecordError;

/// The largest record the decoder accepts, in bytes. A changeset is capped
/// by the aggregator well below this (see `aggregate`).
pub const LIMIT: usize = 256 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
enum KindV1 {
    Attrs,
    Gone,
    File,
    Tree,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct EntryV1 {
    kind: KindV1,
    path: Vec<u8>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct ChangesetV1 {
    created_ms: u64,
    entries: Vec<EntryV1>,
}

/// One entry of a V2 changeset: the kind is the variant.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum EntryV2 {
    Attrs(Vec<u8>),
    Listing(Vec<u8>),
    Gone(Vec<u8>),
    File(Vec<u8>),
    Tree(Vec<u8>),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct MoveV2 {
    from: Vec<u8>,
    to: Vec<u8>,
}

/// V2 adds the watermark before the changeset, directory listings and
/// moves.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct ChangesetV2 {
    created_ms: u64,
    since_ms: u64,
    moves: Vec<MoveV2>,
    entries: Vec<EntryV2>,
}

/// The envelope of a queued changeset. Append variants; never edit one.
#[derive(Serialize, Deserialize, Debug)]
enum QueueRecord {
    V1(ChangesetV1),
    V2(ChangesetV2),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct DeadV1 {
    changeset: ChangesetV1,
    error: String,
    attempts: u32,
    dead_since_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct DeadV2 {
    changeset: ChangesetV2,
    error: String,
    attempts: u32,
    dead_since_ms: u64,
}

/// The envelope of a dead letter.
#[derive(Serialize, Deserialize, Debug)]
enum DeadRecord {
    V1(DeadV1),
    V2(DeadV2),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct StatusV1 {
    name: String,
    last_success_ms: Option<u64>,
    last_error: Option<String>,
    last_error_ms: Option<u64>,
    runs: u64,
    failures: u64,
}

/// The envelope of a destination's persisted status.
#[derive(Serialize, Deserialize, Debug)]
enum StatusRecord {
    V1(StatusV1),
}

/// A changeset that failed for good, with why and how often it was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub changeset: Changeset,
    pub error: String,
    pub attempts: u32,
    pub dead_since_ms: u64,
}

/// What the store remembers of a destination between runs of the daemon, so
/// `queue inspect` can say when it last succeeded even while it is stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestStatus {
    pub name: String,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub runs: u64,
    pub failures: u64,
}

impl From<KindV1> for Kind {
    fn from(k: KindV1) -> Kind {
        match k {
            KindV1::Attrs => Kind::Attrs,
            KindV1::Gone => Kind::Gone,
            KindV1::File => Kind::File,
            KindV1::Tree => Kind::Tree,
        }
    }
}

impl From<ChangesetV1> for Changeset {
    fn from(c: ChangesetV1) -> Changeset {
        Changeset::new(
            c.created_ms,
            c.entries
                .into_iter()
                .map(|e| Entry {
                    kind: e.kind.into(),
                    path: e.path,
                })
                .collect(),
        )
    }
}

impl From<&Entry> for EntryV2 {
    fn from(e: &Entry) -> EntryV2 {
        let p = e.path.clone();
        match e.kind {
            Kind::Attrs => EntryV2::Attrs(p),
            Kind::Listing => EntryV2::Listing(p),
            Kind::Gone => EntryV2::Gone(p),
            Kind::File => EntryV2::File(p),
            Kind::Tree => EntryV2::Tree(p),
        }
    }
}

impl From<EntryV2> for Entry {
    fn from(e: EntryV2) -> Entry {
        match e {
            EntryV2::Attrs(p) => Entry::new(Kind::Attrs, p),
            EntryV2::Listing(p) => Entry::new(Kind::Listing, p),
            EntryV2::Gone(p) => Entry::new(Kind::Gone, p),
            EntryV2::File(p) => Entry::new(Kind::File, p),
            EntryV2::Tree(p) => Entry::new(Kind::Tree, p),
        }
    }
}

impl From<&Changeset> for ChangesetV2 {
    fn from(c: &Changeset) -> ChangesetV2 {
        ChangesetV2 {
            created_ms: c.created_ms,
            since_ms: c.since_ms,
            moves: c
                .moves
                .iter()
                .map(|m| MoveV2 {
                    from: m.from.clone(),
                    to: m.to.clone(),
                })
                .collect(),
            entries: c.entries.iter().map(EntryV2::from).collect(),
        }
    }
}

impl From<ChangesetV2> for Changeset {
    fn from(c: ChangesetV2) -> Changeset {
        Changeset {
            created_ms: c.created_ms,
            since_ms: c.since_ms,
            moves: c
                .moves
                .into_iter()
                .map(|m| Move {
                    from: m.from,
                    to: m.to,
                })
                .collect(),
            entries: c.entries.into_iter().map(Entry::from).collect(),
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for these types: no maps with
    // non-string keys, no unsupported serde attributes, no I/O.
    bincode::serde::encode_to_vec(v, config()).expect("record types always encode")
}

fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, RecordError> {
    let (v, used) = bincode::serde::decode_from_slice::<T, _>(bytes, config()).map_err(|e| {
        RecordError::Decode {
            what,
            reason: e.to_string(),
        }
    })?;
    if used != bytes.len() {
        return Err(RecordError::Trailing {
            what,
            extra: bytes.len() - used,
        });
    }
    Ok(v)
}

/// Encodes a changeset as a queue value (always the newest version).
pub fn encode_changeset(c: &Changeset) -> Vec<u8> {
    encode(&QueueRecord::V2(c.into()))
}

/// Decodes a queue value of any version.
pub fn decode_changeset(bytes: &[u8]) -> Result<Changeset, RecordError> {
    match decode::<QueueRecord>("changeset", bytes)? {
        QueueRecord::V1(c) => Ok(c.into()),
        QueueRecord::V2(c) => Ok(c.into()),
    }
}

/// Encodes a dead letter.
pub fn encode_dead(d: &DeadLetter) -> Vec<u8> {
    encode(&DeadRecord::V2(DeadV2 {
        changeset: (&d.changeset).into(),
        error: d.error.clone(),
        attempts: d.attempts,
        dead_since_ms: d.dead_since_ms,
    }))
}

/// Decodes a dead letter of any version.
pub fn decode_dead(bytes: &[u8]) -> Result<DeadLetter, RecordError> {
    let (changeset, error, attempts, dead_since_ms) =
        match decode::<DeadRecord>("dead letter", bytes)? {
            DeadRecord::V1(d) => (d.changeset.into(), d.error, d.attempts, d.dead_since_ms),
            DeadRecord::V2(d) => (d.changeset.into(), d.error, d.attempts, d.dead_since_ms),
        };
    Ok(DeadLetter {
        changeset,
        error,
        attempts,
        dead_since_ms,
    })
}

/// Encodes a destination status.
pub fn encode_status(s: &DestStatus) -> Vec<u8> {
    encode(&StatusRecord::V1(StatusV1 {
        name: s.name.clone(),
        last_success_ms: s.last_success_ms,
        last_error: s.last_error.clone(),
        last_error_ms: s.last_error_ms,
        runs: s.runs,
        failures: s.failures,
    }))
}

/// Decodes a destination status.
pub fn decode_status(bytes: &[u8]) -> Result<DestStatus, RecordError> {
    match decode::<StatusRecord>("status", bytes)? {
        StatusRecord::V1(s) => Ok(DestStatus {
            name: s.name,
            last_success_ms: s.last_success_ms,
            last_error: s.last_error,
            last_error_ms: s.last_error_ms,
            runs: s.runs,
            failures: s.failures,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Changeset {
        Changeset {
            created_ms: 1_700_000_000_123,
            since_ms: 1_700_000_000_001,
            moves: vec![Move {
                from: b"old\n-x".to_vec(),
                to: b"new/\xff".to_vec(),
            }],
            entries: vec![
                Entry::new(Kind::Tree, b"new dir".to_vec()),
                Entry::new(Kind::File, b"a/\xff\n-e sh*?[".to_vec()),
                Entry::new(Kind::Gone, b"gone".to_vec()),
                Entry::new(Kind::Listing, b"d".to_vec()),
                Entry::new(Kind::Attrs, b"".to_vec()),
            ],
        }
    }

    #[test]
    fn changeset_round_trips() {
        let c = sample();
        assert_eq!(decode_changeset(&encode_changeset(&c)).unwrap(), c);
    }

    /// The V1 bytes of a small changeset. They must decode forever: if this
    /// test breaks, a released store became unreadable.
    #[test]
    fn v1_golden_bytes_still_decode() {
        let c = Changeset::new(
            5,
            vec![Entry::new(Kind::File, b"a".to_vec()), Entry::full()],
        );
        let golden: &[u8] = &[0, 5, 2, 2, 1, b'a', 3, 0];
        assert_eq!(decode_changeset(golden).unwrap(), c);
    }

    /// The V2 bytes of a small changeset: what this version writes, and
    /// what every later version must keep reading.
    #[test]
    fn v2_golden_bytes_round_trip() {
        let c = Changeset {
            created_ms: 5,
            since_ms: 7,
            moves: vec![Move {
                from: b"x".to_vec(),
                to: b"y".to_vec(),
            }],
            entries: vec![Entry::new(Kind::File, b"a".to_vec()), Entry::full()],
        };
        let golden: &[u8] = &[1, 5, 7, 1, 1, b'x', 1, b'y', 2, 3, 1, b'a', 4, 0];
        assert_eq!(encode_changeset(&c), golden);
        assert_eq!(decode_changeset(golden).unwrap(), c);
    }

    #[test]
    fn dead_letter_and_status_round_trip() {
        let d = DeadLetter {
            changeset: sample(),
            error: "rsync exited with 1: syntax".into(),
            attempts: 5,
            dead_since_ms: 42,
        };
        assert_eq!(decode_dead(&encode_dead(&d)).unwrap(), d);
        let s = DestStatus {
            name: "backup".into(),
            last_success_ms: Some(9),
            last_error: None,
            last_error_ms: Some(3),
            runs: 7,
            failures: 2,
        };
        assert_eq!(decode_status(&encode_status(&s)).unwrap(), s);
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let good = encode_changeset(&sample());
        for cut in 0..good.len() {
            assert!(decode_changeset(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            decode_changeset(&trailing),
            Err(RecordError::Trailing { extra: 1, .. })
        ));
        // An unknown variant (a newer syncd's record) is refused.
        assert!(decode_changeset(&[9, 0, 0]).is_err());
        // So is an unknown entry kind inside a known version.
        assert!(decode_changeset(&[1, 5, 7, 0, 1, 9, 1, b'a']).is_err());
        // A length prefix of 2^60 entries must not allocate.
        let huge = [0u8, 5, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(decode_changeset(&huge).is_err());
        assert!(decode_dead(&[0xff; 16]).is_err());
        assert!(decode_status(&[]).is_err());
    }
}
