//! A property test against the real daemon and real rsync: random
//! sequences of file operations on a live tree (creates, writes, same-size
//! rewrites within a second, renames of files and directories in, out and
//! over each other, deletions, `mkdir -p` with contents, symlinks, tricky
//! byte names), each sequence ending with DST an exact mirror of SOURCE.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use crate::util::*;

const T: Duration = Duration::from_secs(40);

const NAMES: &[&[u8]] = &[
    b"a",
    b"b c",
    b"-e sh",
    b"new\nline",
    b"*?[x]",
    b"\xff\xfe",
    b"#h",
    b";s",
    b"back\\slash",
    b"..dots",
];

#[derive(Debug, Clone)]
enum Op {
    Write { dir: u8, name: u8, size: u16 },
    SameSizeRewrite { dir: u8, name: u8 },
    RenameFile { from: (u8, u8), to: (u8, u8) },
    RenameDir { from: u8, to: u8 },
    RenameDirOver { from: u8, to: u8 },
    MoveOut { dir: u8 },
    MoveIn { dir: u8, files: u8 },
    Delete { dir: u8, name: u8 },
    RemoveTree { dir: u8 },
    MkdirP { dir: u8, depth: u8, files: u8 },
    Symlink { dir: u8, name: u8, target: u8 },
    Chmod { dir: u8 },
    Pause { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0u8..6;
    let n = 0u8..NAMES.len() as u8;
    prop_oneof![
        4 => (d.clone(), n.clone(), 0u16..5000).prop_map(|(dir, name, size)| Op::Write { dir, name, size }),
        3 => (d.clone(), n.clone()).prop_map(|(dir, name)| Op::SameSizeRewrite { dir, name }),
        2 => ((d.clone(), n.clone()), (d.clone(), n.clone())).prop_map(|(from, to)| Op::RenameFile { from, to }),
        2 => (d.clone(), d.clone()).prop_map(|(from, to)| Op::RenameDir { from, to }),
        1 => (d.clone(), d.clone()).prop_map(|(from, to)| Op::RenameDirOver { from, to }),
        1 => d.clone().prop_map(|dir| Op::MoveOut { dir }),
        1 => (d.clone(), 0u8..20).prop_map(|(dir, files)| Op::MoveIn { dir, files }),
        2 => (d.clone(), n.clone()).prop_map(|(dir, name)| Op::Delete { dir, name }),
        1 => d.clone().prop_map(|dir| Op::RemoveTree { dir }),
        2 => (d.clone(), 1u8..6, 0u8..30).prop_map(|(dir, depth, files)| Op::MkdirP { dir, depth, files }),
        1 => (d.clone(), n.clone(), n.clone()).prop_map(|(dir, name, target)| Op::Symlink { dir, name, target }),
        1 => d.clone().prop_map(|dir| Op::Chmod { dir }),
        1 => (0u16..400).prop_map(|ms| Op::Pause { ms }),
    ]
}

fn dir_path(src: &Path, d: u8) -> PathBuf {
    src.join(format!("d{d}"))
}

fn file_path(src: &Path, d: u8, n: u8) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    dir_path(src, d).join(std::ffi::OsStr::from_bytes(NAMES[n as usize]))
}

/// Applies one operation; operations that make no sense in the current
/// tree (renaming what is not there) simply fail and change nothing.
fn apply(src: &Path, outside: &Path, op: &Op, counter: &mut u32) {
    *counter += 1;
    let c = *counter;
    match *op {
        Op::Write { dir, name, size } => {
            let _ = fs::create_dir_all(dir_path(src, dir));
            let _ = fs::write(file_path(src, dir, name), vec![b'w'; size as usize]);
        }
        Op::SameSizeRewrite { dir, name } => {
            let p = file_path(src, dir, name);
            if let Ok(old) = fs::read(&p) {
                let flipped: Vec<u8> = old.iter().map(|b| b ^ 1).collect();
                let _ = fs::write(&p, flipped);
            }
        }
        Op::RenameFile { from, to } => {
            let _ = fs::create_dir_all(dir_path(src, to.0));
            let _ = fs::rename(file_path(src, from.0, from.1), file_path(src, to.0, to.1));
        }
        Op::RenameDir { from, to } => {
            let _ = fs::rename(
                dir_path(src, from),
                dir_path(src, to).join(format!("sub{c}")),
            );
        }
        Op::RenameDirOver { from, to } => {
            // rename(2) replaces an empty directory; make the target one.
            let target = dir_path(src, to).join("empty");
            let _ = fs::create_dir_all(&target);
            let _ = fs::rename(dir_path(src, from), &target);
        }
        Op::MoveOut { dir } => {
            let _ = fs::rename(dir_path(src, dir), outside.join(format!("out{c}")));
        }
        Op::MoveIn { dir, files } => {
            let staged = outside.join(format!("in{c}"));
            let _ = fs::create_dir_all(staged.join("deep"));
            for i in 0..files {
                let _ = fs::write(
                    staged.join("deep").join(format!("f{i}")),
                    format!("{c}/{i}"),
                );
            }
            let _ = fs::create_dir_all(dir_path(src, dir));
            let _ = fs::rename(&staged, dir_path(src, dir).join(format!("moved{c}")));
        }
        Op::Delete { dir, name } => {
            let _ = fs::remove_file(file_path(src, dir, name));
        }
        Op::RemoveTree { dir } => {
            let _ = fs::remove_dir_all(dir_path(src, dir));
        }
        Op::MkdirP { dir, depth, files } => {
            let mut p = dir_path(src, dir);
            for i in 0..depth {
                p.push(format!("m{c}-{i}"));
            }
            let _ = fs::create_dir_all(&p);
            for i in 0..files {
                let _ = fs::write(p.join(format!("f{i}")), format!("{i}"));
            }
        }
        Op::Symlink { dir, name, target } => {
            let _ = fs::create_dir_all(dir_path(src, dir));
            let link = file_path(src, dir, name);
            let _ = fs::remove_file(&link);
            let _ = symlink(std::ffi::OsStr::new(&format!("../d{target}")), &link);
        }
        Op::Chmod { dir } => {
            use std::os::unix::fs::PermissionsExt;
            let mode = if c.is_multiple_of(2) { 0o750 } else { 0o755 };
            let _ = fs::set_permissions(dir_path(src, dir), fs::Permissions::from_mode(mode));
        }
        Op::Pause { ms } => std::thread::sleep(Duration::from_millis(ms as u64)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(12),
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operation_sequences_end_in_an_exact_mirror(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = Dir::new();
        let outside = dir.root.join("outside");
        fs::create_dir(&outside).unwrap();
        let d = dir.start_synced("0.2", &[]);
        let mut counter = 0;
        for op in &ops {
            apply(&dir.src(), &outside, op, &mut counter);
        }
        dir.wait_mirror(T);
        prop_assert!(d.stop().success());
    }
}
