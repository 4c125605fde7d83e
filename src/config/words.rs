//! Remote-shell commands split into words and joined back, exactly as
//! rsync splits its `-e` value: pure byte work, shared by the settings that
//! read `--rsh` and the runs that pass it on.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Splits a remote-shell command as rsync splits `-e`: words are separated
/// by spaces; single or double quotes group, and a doubled quote inside
/// quotes is a literal quote. No backslash escapes.
pub fn split_command(s: &OsStr) -> Result<Vec<OsString>, String> {
    let b = s.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let mut w = Vec::new();
        let mut quote: Option<u8> = None;
        while i < b.len() && (b[i] != b' ' || quote.is_some()) {
            let c = b[i];
            match quote {
                None if c == b'\'' || c == b'"' => quote = Some(c),
                Some(q) if c == q => {
                    if b.get(i + 1) == Some(&q) {
                        w.push(q);
                        i += 1;
                    } else {
                        quote = None;
                    }
                }
                _ => w.push(c),
            }
            i += 1;
        }
        if let Some(q) = quote {
            return Err(format!(
                "the remote shell command {:?} lacks a trailing {}",
                s.to_string_lossy(),
                q as char
            ));
        }
        words.push(OsString::from_vec(w));
    }
    Ok(words)
}

/// Joins words into one `-e` value that [`split_command`] (and rsync)
/// splits back into the same words.
pub fn join_command(words: &[OsString]) -> OsString {
    let mut out = Vec::new();
    for (n, w) in words.iter().enumerate() {
        if n > 0 {
            out.push(b' ');
        }
        let b = w.as_bytes();
        if !b.is_empty() && !b.iter().any(|&c| c == b' ' || c == b'\'' || c == b'"') {
            out.extend_from_slice(b);
            continue;
        }
        out.push(b'\'');
        for &c in b {
            out.push(c);
            if c == b'\'' {
                out.push(b'\'');
            }
        }
        out.push(b'\'');
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        split_command(OsStr::new(s)).unwrap()
    }

    #[test]
    fn commands_split_as_rsync_splits_them() {
        assert_eq!(words("ssh  -p 22"), ["ssh", "-p", "22"]);
        assert_eq!(words("ssh -i '/a b/k'"), ["ssh", "-i", "/a b/k"]);
        assert_eq!(words(r#"ssh -o "X=it""s""#), ["ssh", "-o", "X=it\"s"]);
        assert_eq!(words("ssh ''"), ["ssh", ""]);
        assert_eq!(words("a'b c'd"), ["ab cd"]);
        assert!(split_command(OsStr::new("ssh \"x")).is_err());
    }

    #[test]
    fn joined_commands_split_back_into_the_same_words() {
        let cases: Vec<Vec<OsString>> = vec![
            vec!["ssh".into(), "-i".into(), "/a b/it's".into()],
            vec!["x".into(), "".into(), "\"q\"".into(), "''".into()],
            vec![OsString::from_vec(b"\xff \xfe".to_vec())],
        ];
        for w in cases {
            assert_eq!(split_command(&join_command(&w)).unwrap(), w);
        }
    }
}
