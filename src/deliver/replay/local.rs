//! Moves replayed on a local destination with rename(2).

use std::path::Path;

use super::{landing, parent, NewDirs, Replayed};
use crate::changeset::Move;

/// Replays `moves` in order under `dir` (the destination directory) with
/// SOURCE's `rel` below the virtual root. `stop` is asked between moves;
/// `true` ends the replay (what was not done falls back).
pub fn replay(
    dir: &Path,
    rel: &[u8],
    moves: &[Move],
    new_dirs: &NewDirs,
    mut stop: impl FnMut() -> bool,
) -> Replayed {
    let mut r = Replayed::default();
    for (i, m) in moves.iter().enumerate() {
        if stop() {
            for rest in &moves[i..] {
                r.fall_back(rest, "syncd is stopping");
            }
            break;
        }
        let from = landing(dir, rel, &m.from);
        let to = landing(dir, rel, &m.to);
        // rename(2) follows symlinks in every component but the last: a
        // directory of the source that is still a symlink on the
        // destination (its change not delivered yet) would take the
        // rename elsewhere, over a file no event names again.
        if let Some(link) = [&m.from, &m.to]
            .into_iter()
            .find_map(|p| linked_ancestor(dir, rel, p))
        {
            r.fall_back(
                m,
                format_args!("{} is a symlink on the destination", link.display()),
            );
            continue;
        }
        if std::fs::symlink_metadata(&from).is_err() {
            r.fall_back(m, "not on the destination");
            continue;
        }
        let up = to.parent().unwrap_or(dir);
        if !std::fs::symlink_metadata(up).is_ok_and(|md| md.is_dir()) {
            if !new_dirs.covers(parent(&m.to)) {
                r.fall_back(m, "its new parent is not on the destination");
                continue;
            }
            if let Err(e) = std::fs::create_dir_all(up) {
                r.fall_back(m, format_args!("cannot create its new parent: {e}"));
                continue;
            }
        }
        match std::fs::rename(&from, &to) {
            Ok(()) => r.done += 1,
            Err(e) => r.fall_back(m, e),
        }
    }
    r
}

/// The first directory above `p` (below the destination directory) that
/// is a symlink on the destination, if any.
fn linked_ancestor(dir: &Path, rel: &[u8], p: &[u8]) -> Option<std::path::PathBuf> {
    let full = match rel.is_empty() {
        true => p.to_vec(),
        false => [rel, b"/", p].concat(),
    };
    let mut at = 0;
    while let Some(i) = full[at..].iter().position(|&b| b == b'/') {
        let up = &full[..at + i];
        at += i + 1;
        let path = landing(dir, b"", up);
        if std::fs::symlink_metadata(&path).is_ok_and(|md| md.file_type().is_symlink()) {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::{Entry, Kind};
    use std::fs;

    fn m(a: &str, b: &str) -> Move {
        Move {
            from: a.into(),
            to: b.into(),
        }
    }

    #[test]
    fn renames_in_order_and_falls_back_where_the_destination_differs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("www");
        fs::create_dir_all(d.join("a")).unwrap();
        fs::write(d.join("a/f"), b"1").unwrap();
        fs::write(d.join("x"), b"x").unwrap();
        fs::write(d.join("y"), b"y").unwrap();
        fs::create_dir_all(d.join("full/inside")).unwrap();
        let new = NewDirs::of(&[Entry::new(Kind::Tree, b"made".to_vec())]);
        let r = replay(
            t.path(),
            b"www",
            &[
                m("x", "t"),
                m("y", "x"),
                m("t", "y"),
                m("a", "made/deep/a"),
                m("missing", "z"),
                m("y", "nowhere/y"),
                m("x", "full"),
            ],
            &new,
            || false,
        );
        assert_eq!(r.done, 4, "{r:?}");
        assert_eq!(fs::read(d.join("x")).unwrap(), b"y", "swapped");
        assert_eq!(fs::read(d.join("y")).unwrap(), b"x", "swapped");
        assert_eq!(fs::read(d.join("made/deep/a/f")).unwrap(), b"1");
        assert_eq!(
            r.fell_back,
            vec![b"z".to_vec(), b"nowhere/y".to_vec(), b"full".to_vec()]
        );
        assert!(r.why[0].contains("not on the destination"), "{r:?}");
        assert!(r.why[1].contains("new parent"), "{r:?}");
    }

    #[test]
    fn a_move_through_a_symlinked_directory_falls_back() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("real/inside")).unwrap();
        fs::write(d.join("real/inside/f"), b"keep").unwrap();
        std::os::unix::fs::symlink("real", d.join("link")).unwrap();
        fs::write(d.join("x"), b"moved").unwrap();
        let r = replay(
            d,
            b"",
            &[m("x", "link/inside/f")],
            &NewDirs::of(&[]),
            || false,
        );
        assert_eq!(r.done, 0, "{r:?}");
        assert!(
            r.why[0].contains("is a symlink on the destination"),
            "{r:?}"
        );
        assert_eq!(fs::read(d.join("real/inside/f")).unwrap(), b"keep");
        assert_eq!(fs::read(d.join("x")).unwrap(), b"moved");
    }

    #[test]
    fn a_stop_leaves_the_rest_to_the_data_pass() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a"), b"1").unwrap();
        let r = replay(t.path(), b"", &[m("a", "b")], &NewDirs::of(&[]), || true);
        assert_eq!((r.done, r.fell_back), (0, vec![b"b".to_vec()]));
    }
}
