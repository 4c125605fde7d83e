//! The exact-mirror check: DEST holds the same names (as bytes), types,
//! contents, permission bits and symlink targets as SOURCE, nothing more
//! and nothing less. Owners and times are not compared (both daemons run
//! as the same user; times are rsync's business, not the user's).
//!
//! Two tools. [`Digester`] reduces one tree to a 128-bit digest of all of
//! the above, walking it in a fixed order (names sorted as bytes), so two
//! trees are equal when their digests are. It exists because reading
//! SOURCE while a daemon watches it is not free for the daemon: every
//! open() of a watched file or directory is an inotify event for a watcher
//! whose mask includes IN_OPEN (syncd's, through notify 8), so the
//! benchmark digests SOURCE before the daemon starts and after its CPU
//! time was read, and only DEST (which nobody watches) in between.
//! [`Mirror`] compares two trees side by side and names the differences,
//! for the report. Both remember file contents already read by inode,
//! together with size, mtime and ctime: any write changes a file's ctime
//! and no program can set it back, so an unchanged stamp proves unchanged
//! contents, and repeated checks only read what changed. Walks are
//! iterative (trees may be 1,000 levels deep).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A file's identity and the stamps that change with its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

/// The digest of one tree, remembering file contents' hashes by inode.
pub struct Digester {
    root: PathBuf,
    files: HashMap<u64, (Stamp, u128)>,
}

impl Digester {
    pub fn new(root: &Path) -> Digester {
        Digester {
            root: root.to_path_buf(),
            files: HashMap::new(),
        }
    }

    /// The tree's digest now; an error if it changed under the walk.
    pub fn digest(&mut self) -> io::Result<u128> {
        let mut h = Pair::new();
        let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for name in sorted_names(&self.root.join(&rel))? {
                let r = rel.join(&name);
                let p = self.root.join(&r);
                let m = fs::symlink_metadata(&p)?;
                let t = m.file_type();
                h.bytes(r.as_os_str().as_bytes());
                h.u64(m.mode() as u64 & 0o170000);
                if t.is_symlink() {
                    h.bytes(fs::read_link(&p)?.as_os_str().as_bytes());
                    continue;
                }
                h.u64(m.mode() as u64 & 0o7777);
                if t.is_dir() {
                    stack.push(r);
                } else if t.is_file() {
                    h.u128(self.contents(&p, &m)?);
                }
            }
            h.u64(u64::MAX); // end of a directory
        }
        Ok(h.finish())
    }

    fn contents(&mut self, p: &Path, m: &Metadata) -> io::Result<u128> {
        let stamp = Stamp::of(m);
        if let Some((s, hash)) = self.files.get(&m.ino()) {
            if *s == stamp {
                return Ok(*hash);
            }
        }
        let mut h = Pair::new();
        let mut f = File::open(p)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = read_full(&mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            h.bytes(&buf[..n]);
        }
        let hash = h.finish();
        self.files.insert(m.ino(), (stamp, hash));
        Ok(hash)
    }
}

/// Two SipHash states with different keys: a 128-bit digest, so that a
/// collision is not a concern even over millions of files.
struct Pair(DefaultHasher, DefaultHasher);

impl Pair {
    fn new() -> Pair {
        let mut b = DefaultHasher::new();
        b.write_u64(0x9E37_79B9_7F4A_7C15);
        Pair(DefaultHasher::new(), b)
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.write_usize(v.len());
        self.0.write(v);
        self.1.write_usize(v.len());
        self.1.write(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.write_u64(v);
        self.1.write_u64(v);
    }
    fn u128(&mut self, v: u128) {
        self.0.write_u128(v);
        self.1.write_u128(v);
    }
    fn finish(&self) -> u128 {
        (self.0.finish() as u128) << 64 | self.1.finish() as u128
    }
}

/// Compares one SOURCE with one DEST, remembering equal file contents.
pub struct Mirror {
    src: PathBuf,
    dst: PathBuf,
    /// (source inode, dest inode) → stamps when their contents were equal.
    equal: HashMap<(u64, u64), (Stamp, Stamp)>,
}

impl Mirror {
    pub fn new(src: &Path, dst: &Path) -> Mirror {
        Mirror {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            equal: HashMap::new(),
        }
    }

    /// Whether DEST is an exact mirror now; stops at the first difference.
    pub fn matches(&mut self) -> bool {
        let mut out = Vec::new();
        self.walk(1, &mut out).is_ok() && out.is_empty()
    }

    /// Up to `limit` differences, each a short description with the path
    /// escaped; an error when the comparison itself failed.
    pub fn differences(&mut self, limit: usize) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        self.walk(limit, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn walk(&mut self, limit: usize, out: &mut Vec<String>) -> io::Result<()> {
        let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let a = sorted_names(&self.src.join(&rel))?;
            let b = sorted_names(&self.dst.join(&rel))?;
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                if out.len() >= limit {
                    return Ok(());
                }
                let ord = match (a.get(i), b.get(j)) {
                    (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                };
                match ord {
                    std::cmp::Ordering::Less => {
                        out.push(format!("missing in DEST: {}", show(&rel.join(&a[i]))));
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        out.push(format!("extra in DEST: {}", show(&rel.join(&b[j]))));
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        let r = rel.join(&a[i]);
                        if let Some(d) = self.entry(&r, &mut stack)? {
                            out.push(format!("{d}: {}", show(&r)));
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Compares one name present on both sides; pushes directories to
    /// visit. Returns what differs, if anything.
    fn entry(&mut self, rel: &Path, stack: &mut Vec<PathBuf>) -> io::Result<Option<&'static str>> {
        let (sp, dp) = (self.src.join(rel), self.dst.join(rel));
        let (sm, dm) = (fs::symlink_metadata(&sp)?, fs::symlink_metadata(&dp)?);
        let (st, dt) = (sm.file_type(), dm.file_type());
        let same_type = st.is_dir() == dt.is_dir()
            && st.is_file() == dt.is_file()
            && st.is_symlink() == dt.is_symlink()
            && st.is_fifo() == dt.is_fifo()
            && st.is_socket() == dt.is_socket();
        if !same_type {
            return Ok(Some("type differs"));
        }
        if st.is_symlink() {
            return Ok(
                (fs::read_link(&sp)? != fs::read_link(&dp)?).then_some("symlink target differs")
            );
        }
        if sm.mode() & 0o7777 != dm.mode() & 0o7777 {
            return Ok(Some("mode differs"));
        }
        if st.is_dir() {
            stack.push(rel.to_path_buf());
            return Ok(None);
        }
        if !st.is_file() {
            return Ok(None);
        }
        if sm.size() != dm.size() {
            return Ok(Some("size differs"));
        }
        let key = (sm.ino(), dm.ino());
        let stamps = (Stamp::of(&sm), Stamp::of(&dm));
        if self.equal.get(&key) == Some(&stamps) {
            return Ok(None);
        }
        if same_contents(&sp, &dp)? {
            self.equal.insert(key, stamps);
            Ok(None)
        } else {
            Ok(Some("contents differ"))
        }
    }
}

fn sorted_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut v = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(v)
}

fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A relative path for a report line: printable ASCII kept, everything
/// else escaped, long (deep) paths shortened in the middle.
fn show(p: &Path) -> String {
    let mut s = String::new();
    for &b in p.as_os_str().as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if s.len() > 80 {
        format!("{}…{}", &s[..30], &s[s.len() - 40..])
    } else {
        s
    }
}
