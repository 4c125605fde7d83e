//! The syncd store's schema version and the steps that bring an older store
//! up to it.
//!
//! This crate owns one fact: which on-disk layout a store under
//! `STATE/db` follows. The version lives in the `meta` tree under the key
//! `schema_version` as a big-endian `u32`. Opening a store goes through
//! [`migrate`]: an empty store is stamped with [`CURRENT`], an older store
//! has every step from its version up applied in order and is then stamped,
//! and a store that is newer than this binary, or that holds data but no
//! version at all, is refused with an error that says why. Keeping this in
//! its own crate means the daemon cannot touch a queue before the check ran.

use std::fmt;

/// The schema version this build of syncd writes and reads.
///
/// Version 1 layout: tree `meta` (keys `schema_version`, `next_seq`,
/// `clean_shutdown`, `source`, `status:<target>`), one tree `queue:<target>`
/// per destination and one tree `dead:<target>` per destination. Keys of the
/// queue and dead-letter trees are big-endian `u64` sequence numbers; values
/// are versioned bincode envelopes owned by syncd's `record` module.
///
/// Version 2 adds to `meta` the watermark (`watermark`), each queue's
/// counts (`count:<target>`, `dead_count:<target>`) and checkpoints
/// (`checkpoint:<target>`, `checkpoint_done:<target>`), and queue values of
/// record version 2 (moves, directory listings, the watermark before each
/// changeset). A version 1 store needs no rewrite: its records stay
/// readable and syncd fills the counts it misses when it opens the store;
/// the bump is what makes an older syncd refuse the newer store instead of
/// misreading it.
pub const CURRENT: u32 = 2;

/// The name of the tree that holds the schema version.
pub const META_TREE: &str = "meta";

/// The key, inside [`META_TREE`], of the schema version.
pub const VERSION_KEY: &[u8] = b"schema_version";

/// One migration step: it rewrites a store of version `from` into version
/// `from + 1`. A step must be idempotent, because a crash between the step
/// and the stamping of the new version makes it run again on the next start.
pub struct Step {
    /// The version the step reads.
    pub from: u32,
    /// What the step does, for the log.
    pub about: &'static str,
    /// The step itself.
    pub run: fn(&sled::Db) -> Result<(), sled::Error>,
}

/// Every step from every older version, oldest first; the fixture test keeps
/// the oldest store readable.
pub const STEPS: &[Step] = &[Step {
    from: 1,
    about: "version 2 keeps version 1's data as it is (watermark and counts are added when used)",
    run: |_| Ok(()),
}];

/// What [`migrate`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store was empty and is now stamped with the current version.
    Created,
    /// The store already had the current version.
    Current,
    /// The store was upgraded; `from` is the version it had.
    Upgraded { from: u32, steps: Vec<&'static str> },
}

/// Why a store cannot be used.
#[derive(Debug)]
pub enum Error {
    /// The store was written by a newer syncd.
    Newer { found: u32, supported: u32 },
    /// The store holds trees or keys but no schema version.
    Unversioned { trees: Vec<String> },
    /// The version key holds something that is not a `u32`.
    Malformed { bytes: Vec<u8> },
    /// No step reads this version (a gap in [`STEPS`]).
    NoStep { from: u32 },
    /// sled failed underneath.
    Sled(sled::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Newer { found, supported } => write!(
                f,
                "the store has schema version {found}, but this syncd reads \
                 versions up to {supported}: it was written by a newer \
                 syncd; run that version, or move the store aside"
            ),
            Error::Unversioned { trees } => write!(
                f,
                "the store holds data ({}) but no schema version, so it was \
                 not written by syncd or its meta tree is lost",
                trees.join(", ")
            ),
            Error::Malformed { bytes } => write!(
                f,
                "the store's schema version is malformed ({} bytes, expected 4)",
                bytes.len()
            ),
            Error::NoStep { from } => {
                write!(f, "no migration step reads schema version {from}")
            }
            Error::Sled(e) => write!(f, "store error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sled(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        Error::Sled(e)
    }
}

/// Reads the schema version of `db`, or `None` when it has none.
pub fn version(db: &sled::Db) -> Result<Option<u32>, Error> {
    let meta = db.open_tree(META_TREE)?;
    match meta.get(VERSION_KEY)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 4] = v
                .as_ref()
                .try_into()
                .map_err(|_| Error::Malformed { bytes: v.to_vec() })?;
            Ok(Some(u32::from_be_bytes(bytes)))
        }
    }
}

/// Brings `db` to [`CURRENT`] with the released [`STEPS`].
pub fn migrate(db: &sled::Db) -> Result<Outcome, Error> {
    migrate_with(db, CURRENT, STEPS)
}

/// Brings `db` to version `target` with `steps`. [`migrate`] calls it with
/// the released constants; tests call it with synthetic steps, so the
/// machinery is exercised before a second version exists.
pub fn migrate_with(db: &sled::Db, target: u32, steps: &[Step]) -> Result<Outcome, Error> {
    let found = match version(db)? {
        Some(v) => v,
        None => {
            let trees = data_trees(db)?;
            if !trees.is_empty() {
                return Err(Error::Unversioned { trees });
            }
            stamp(db, target)?;
            return Ok(Outcome::Created);
        }
    };
    if found == target {
        return Ok(Outcome::Current);
    }
    if found > target {
        return Err(Error::Newer {
            found,
            supported: target,
        });
    }
    let mut done = Vec::new();
    for from in found..target {
        let step = steps
            .iter()
            .find(|s| s.from == from)
            .ok_or(Error::NoStep { from })?;
        (step.run)(db)?;
        done.push(step.about);
    }
    // Every step ran and is flushed before the new version is written, so a
    // crash in between re-runs idempotent steps instead of skipping them.
    db.flush()?;
    stamp(db, target)?;
    Ok(Outcome::Upgraded {
        from: found,
        steps: done,
    })
}

fn stamp(db: &sled::Db, v: u32) -> Result<(), Error> {
    let meta = db.open_tree(META_TREE)?;
    meta.insert(VERSION_KEY, &v.to_be_bytes())?;
    db.flush()?;
    Ok(())
}

/// Names of the trees that hold at least one key, besides sled's default
/// tree when it is empty.
fn data_trees(db: &sled::Db) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        if !tree.is_empty() {
            names.push(String::from_utf8_lossy(&name).into_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> sled::Db {
        sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap()
    }

    #[test]
    fn empty_store_is_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        assert_eq!(migrate(&db).unwrap(), Outcome::Created);
        assert_eq!(version(&db).unwrap(), Some(CURRENT));
        assert_eq!(migrate(&db).unwrap(), Outcome::Current);
    }

    #[test]
    fn newer_store_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        stamp(&db, CURRENT + 7).unwrap();
        let err = migrate(&db).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&(CURRENT + 7).to_string()), "{msg}");
        assert!(msg.contains(&CURRENT.to_string()), "{msg}");
    }

    #[test]
    fn unversioned_store_with_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.open_tree("queue:x").unwrap().insert(b"k", b"v").unwrap();
        let err = migrate(&db).unwrap_err();
        assert!(matches!(err, Error::Unversioned { .. }), "{err}");
        assert!(err.to_string().contains("queue:x"));
    }

    #[test]
    fn malformed_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.open_tree(META_TREE)
            .unwrap()
            .insert(VERSION_KEY, b"xy".as_ref())
            .unwrap();
        assert!(matches!(migrate(&db), Err(Error::Malformed { .. })));
    }

    fn step1(db: &sled::Db) -> Result<(), sled::Error> {
        let t = db.open_tree("t")?;
        t.insert(b"one", b"1")?;
        Ok(())
    }

    fn step2(db: &sled::Db) -> Result<(), sled::Error> {
        let t = db.open_tree("t")?;
        let one = t.get(b"one")?.expect("step 1 ran first");
        t.insert(b"two", [one.as_ref(), b"2"].concat())?;
        Ok(())
    }

    #[test]
    fn older_store_gets_every_step_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        stamp(&db, 1).unwrap();
        let steps = [
            Step {
                from: 2,
                about: "second",
                run: step2,
            },
            Step {
                from: 1,
                about: "first",
                run: step1,
            },
        ];
        let out = migrate_with(&db, 3, &steps).unwrap();
        assert_eq!(
            out,
            Outcome::Upgraded {
                from: 1,
                steps: vec!["first", "second"]
            }
        );
        assert_eq!(version(&db).unwrap(), Some(3));
        let t = db.open_tree("t").unwrap();
        assert_eq!(t.get(b"two").unwrap().unwrap().as_ref(), b"12");
    }

    #[test]
    fn a_gap_in_the_steps_is_an_error_and_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        stamp(&db, 1).unwrap();
        let steps = [Step {
            from: 1,
            about: "first",
            run: step1,
        }];
        assert!(matches!(
            migrate_with(&db, 3, &steps),
            Err(Error::NoStep { from: 2 })
        ));
        assert_eq!(version(&db).unwrap(), Some(1));
    }
}
