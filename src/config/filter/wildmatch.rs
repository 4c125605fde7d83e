//! rsync's wildcard matching (its `lib/wildmatch.c`), for the exclude
//! rules of [`super`]: `*` is any run of bytes but `/`, `**` any run at all,
//! `?` one byte but `/`, `[...]` a class (never `/`) with `!`/`^` negation,
//! ranges, backslash escapes and `[:name:]` classes, and `\` escapes the
//! next byte. A pattern wildmatch would abort on (an unclosed class, an
//! unknown class name, a trailing backslash) never matches. Bytes, never
//! characters: `?` is one byte of a UTF-8 name.

/// Whether rsync treats a pattern as a wildcard pattern (otherwise it
/// compares it literally, backslashes included).
pub(super) fn is_wild(p: &[u8]) -> bool {
    p.iter().any(|&b| matches!(b, b'*' | b'?' | b'['))
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone)]
pub(super) struct Glob(Option<Vec<Tok>>);

impl Glob {
    pub(super) fn new(pattern: &[u8]) -> Glob {
        Glob(tokens(pattern))
    }

    /// Whether the pattern matches all of `text` or, with `any_start`, all
    /// of what follows one of the `/`s of `text` (rsync's matching of an
    /// unanchored pattern holding `**`).
    pub(super) fn matches(&self, text: &[u8], any_start: bool) -> bool {
        self.0.as_deref().is_some_and(|t| run(t, text, any_start))
    }
}

/// One element of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A byte, literally (also an escaped one).
    Byte(u8),
    /// `?`: any byte but `/`.
    One,
    /// `[...]`: the bytes it accepts, as a 256-bit set (never `/`).
    Class([u64; 4]),
    /// `*`: any run of bytes without `/`.
    Star,
    /// `**` (or more stars): any run of bytes.
    StarStar,
}

/// Splits a wildcard pattern into tokens, as rsync's wildmatch reads it.
/// `None` when wildmatch would abort on it (it can then never match).
fn tokens(p: &[u8]) -> Option<Vec<Tok>> {
    let mut toks = Vec::with_capacity(p.len());
    let mut i = 0;
    while let Some(&c) = p.get(i) {
        i += 1;
        match c {
            b'\\' => {
                toks.push(Tok::Byte(*p.get(i)?));
                i += 1;
            }
            b'?' => toks.push(Tok::One),
            b'*' => {
                let run = p[i..].iter().take_while(|&&b| b == b'*').count();
                i += run;
                toks.push(if run > 0 { Tok::StarStar } else { Tok::Star });
            }
            b'[' => {
                let (set, next) = class(p, i)?;
                toks.push(Tok::Class(set));
                i = next;
            }
            _ => toks.push(Tok::Byte(c)),
        }
    }
    Some(toks)
}

/// Parses a bracket class whose body starts at `p[i]`. Returns the set of
/// accepted bytes and the index after the closing `]`. Rules (rsync's
/// wildmatch): `!` or `^` first negates; a `]` first is a member; `\`
/// escapes the next byte; `a-z` is a range unless the `-` comes first or
/// last; `[:name:]` is a POSIX class (ASCII meaning, as in the C and UTF-8
/// locales); a `[:` without its `:]` is a plain `[`.
fn class(p: &[u8], mut i: usize) -> Option<([u64; 4], usize)> {
    let mut set = [0u64; 4];
    let add = |set: &mut [u64; 4], b: u8| set[usize::from(b >> 6)] |= 1 << (b & 63);
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    // The previous member, which may start a range; 0 after a range or a
    // named class.
    let mut prev: u8 = 0;
    let mut first = true;
    loop {
        let mut c = *p.get(i)?;
        if c == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        if c == b'\\' {
            i += 1;
            c = *p.get(i)?;
            add(&mut set, c);
        } else if c == b'-' && prev != 0 && p.get(i + 1).is_some_and(|&n| n != b']') {
            i += 1;
            let mut hi = *p.get(i)?;
            if hi == b'\\' {
                i += 1;
                hi = *p.get(i)?;
            }
            for b in prev..=hi {
                add(&mut set, b);
            }
            c = 0;
        } else if c == b'[' && p.get(i + 1) == Some(&b':') {
            let name_start = i + 2;
            let close = name_start + p.get(name_start..)?.iter().position(|&b| b == b']')?;
            if close > name_start && p[close - 1] == b':' {
                let name = &p[name_start..close - 1];
                for b in 0..=255u8 {
                    if posix_class(name, b)? {
                        add(&mut set, b);
                    }
                }
                i = close;
                c = 0;
            } else {
                add(&mut set, b'[');
            }
        } else {
            add(&mut set, c);
        }
        prev = c;
        i += 1;
    }
    if negate {
        for w in &mut set {
            *w = !*w;
        }
    }
    set[0] &= !(1 << b'/');
    Some((set, i))
}

/// Whether byte `b` is in the named POSIX class; `None` for an unknown
/// name, on which rsync's wildmatch aborts.
fn posix_class(name: &[u8], b: u8) -> Option<bool> {
    Some(match name {
        b"alnum" => b.is_ascii_alphanumeric(),
        b"alpha" => b.is_ascii_alphabetic(),
        b"blank" => b == b' ' || b == b'\t',
        b"cntrl" => b.is_ascii_control(),
        b"digit" => b.is_ascii_digit(),
        b"graph" => b.is_ascii_graphic(),
        b"lower" => b.is_ascii_lowercase(),
        b"print" => b.is_ascii_graphic() || b == b' ',
        b"punct" => b.is_ascii_punctuation(),
        b"space" => b.is_ascii_whitespace() || b == 0x0b,
        b"upper" => b.is_ascii_uppercase(),
        b"xdigit" => b.is_ascii_hexdigit(),
        _ => return None,
    })
}

/// Whether `toks` match all of `text`, or with `any_start` all of what
/// follows any `/` of `text` (see [`Glob::matches`]).
///
/// rsync's wildmatch backtracks (with aborts that prune it, but still
/// polynomial in the number of `*`s); this is the same language run as a
/// set of pattern positions stepped over the text once: O(text × pattern)
/// time, O(pattern) memory, no recursion. No crate was used: globset and
/// glob let `*` cross `/` or give `**` meaning only as a whole component,
/// always honour backslash escapes, and know neither `***` nor rsync's
/// anchoring; git's wildmatch ports treat `**` next to other characters as
/// `*`, where rsync does not.
fn run(toks: &[Tok], text: &[u8], any_start: bool) -> bool {
    let m = toks.len();
    let mut cur = vec![false; m + 1];
    let mut next = vec![false; m + 1];
    // Marks position `s` and, through stars that match nothing, those after.
    let enter = |set: &mut [bool], mut s: usize| {
        while s < m && !set[s] {
            set[s] = true;
            match toks[s] {
                Tok::Star | Tok::StarStar => s += 1,
                _ => return,
            }
        }
        if s == m {
            set[m] = true;
        }
    };
    enter(&mut cur, 0);
    for (i, &c) in text.iter().enumerate() {
        if any_start && i > 0 && text[i - 1] == b'/' {
            enter(&mut cur, 0);
        }
        next.iter_mut().for_each(|x| *x = false);
        for s in 0..m {
            if !cur[s] {
                continue;
            }
            match &toks[s] {
                Tok::Byte(b) if *b == c => enter(&mut next, s + 1),
                Tok::One if c != b'/' => enter(&mut next, s + 1),
                Tok::Class(set) if set[usize::from(c >> 6)] & (1 << (c & 63)) != 0 => {
                    enter(&mut next, s + 1)
                }
                Tok::Star if c != b'/' => enter(&mut next, s),
                Tok::StarStar => enter(&mut next, s),
                _ => {}
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    if any_start && text.last() == Some(&b'/') {
        enter(&mut cur, 0);
    }
    cur[m]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, text: &[u8]) -> bool {
        Glob::new(p.as_bytes()).matches(text, false)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*.tmp", b"x.tmp") && m("*.tmp", b".tmp") && !m("*.tmp", b"a/x.tmp"));
        assert!(m("**.tmp", b"a/x.tmp") && m("a/**/b", b"a/x/y/b") && !m("a/**/b", b"a/b"));
        assert!(m("***", b"") && m("a***", b"a/b/c") && m("a/***", b"a/"));
        assert!(m("?", b"\xff") && !m("?", b"/") && !m("?", "é".as_bytes()));
        assert!(m("*", b"") && !m("*", b"a/") && m("*/", b"a/"));
    }

    #[test]
    fn any_start_tries_after_every_slash() {
        let g = Glob::new(b"b/**");
        assert!(g.matches(b"a/b/c", true) && !g.matches(b"a/b/c", false));
        assert!(!g.matches(b"ab/c", true));
        assert!(Glob::new(b"*").matches(b"a/", true));
    }

    #[test]
    fn brackets() {
        assert!(m("[a-c]x", b"bx") && !m("[a-c]x", b"dx"));
        assert!(m("[!a-c]x", b"dx") && !m("[!a-c]x", b"bx"));
        assert!(m("[^a-c]x", b"dx") && !m("[^a-c]x", b"bx"));
        assert!(m("[]a]", b"]") && m("[]a]", b"a"));
        assert!(m("[!]]", b"a") && !m("[!]]", b"]"));
        assert!(m("[a-]", b"-") && m("[-a]", b"-") && !m("[c-a]", b"b"));
        assert!(m("[\\]]", b"]") && m("[\\-]", b"-") && m("[a\\-c]", b"-") && !m("[a\\-c]", b"b"));
        assert!(m("[[:digit:]x]", b"7") && m("[[:digit:]x]", b"x"));
        assert!(!m("[[:digit:]]", b"a"));
        assert!(m("[[:space:]]", b"\x0b") && m("[[:punct:]]", b"!"));
        // "[:" without ":]" is a plain "[".
        assert!(m("[[:a]", b":") && m("[[:a]", b"["));
        // Malformed classes never match (wildmatch aborts).
        for p in ["[a", "[[:bogus:]]", "[[::]]", "[a\\", "[[:alpha"] {
            assert!(!m(p, p.as_bytes()) && !m(p, b"a"), "{p}");
        }
        // A class never matches a slash, even when it lists one.
        assert!(!m("a[/]b", b"a/b") && !m("a[!x]b", b"a/b"));
        // Bytes above ASCII are in no named class.
        assert!(!m("[[:alpha:]]", b"\xe9"));
    }

    #[test]
    fn backslash_escapes_the_next_byte() {
        assert!(m("\\*lit", b"*lit") && !m("\\*lit", b"xlit"));
        assert!(m("a\\\\b*", b"a\\b") && m("a\\b*", b"ab"));
        // A trailing backslash escapes nothing: never a match.
        assert!(!m("x*\\", b"x\\") && !m("x*\\", b"x"));
    }

    #[test]
    fn pathological_patterns_finish() {
        let text = [b'a'; 4000];
        for p in ["*a*a*a*a*a*a*a*a*a*a*a*a*b", "**a**a**a**a**a**a**a**a**b"] {
            assert!(!Glob::new(p.as_bytes()).matches(&text, true), "{p}");
        }
    }
}
