//! One exclude rule, compiled and matched as rsync's `add_rule` and
//! `rule_matches` do it.

use super::wildmatch::{is_wild, Glob};
use super::Origin;

/// The end of every component of `p` that ends at or after `from`: each
/// `/` from there on, then the end of `p`.
pub(super) fn component_ends(p: &[u8], from: usize) -> impl Iterator<Item = usize> + '_ {
    (from..p.len())
        .filter(move |&i| p[i] == b'/')
        .chain(std::iter::once(p.len()))
}

/// Rewrites an anchored pattern (`/x`) to `/<rel>/x`, so that it is anchored
/// at SOURCE rather than at the virtual root. rsync reads backslashes as
/// escapes only in a pattern holding `*`, `?` or `[`, so `rel` is escaped
/// when the result is such a pattern, and so is the rest of the pattern when
/// only `rel` made it one. A lone `/` matches nothing in rsync and is kept.
pub(super) fn anchor(pat: &[u8], rel: &[u8]) -> Vec<u8> {
    let tail = match pat.strip_prefix(b"/") {
        Some(t) if !t.is_empty() && !rel.is_empty() => t,
        _ => return pat.to_vec(),
    };
    let (wild_tail, wild_rel) = (is_wild(tail), is_wild(rel));
    let mut out = Vec::with_capacity(pat.len() + 2 * rel.len() + 2);
    out.push(b'/');
    push_escaped(&mut out, rel, wild_tail || wild_rel);
    out.push(b'/');
    push_escaped(&mut out, tail, wild_rel && !wild_tail);
    out
}

fn push_escaped(out: &mut Vec<u8>, s: &[u8], escape: bool) {
    for &b in s {
        if escape && matches!(b, b'\\' | b'*' | b'?' | b'[') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Which part of the name a rule is compared with (rsync's
/// `rule_matches`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// No slash and no `**`: the last component only.
    LastComponent,
    /// Unanchored with a slash but no `**`: the last `n` components.
    Trailing(usize),
    /// Unanchored with `**` not at the start: the whole name, or what
    /// follows any of its slashes.
    AnySuffix,
    /// Anchored, or starting with `**`: the whole name.
    Whole,
}

/// One exclude rule, compiled as rsync's `add_rule` would.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    /// The pattern exactly as rsync receives it.
    pub(super) pattern: Vec<u8>,
    pub(super) origin: Origin,
    /// A trailing `/`: matches directories only.
    dir_only: bool,
    /// Starts with `**`: the name is matched with a `/` in front.
    wild2_prefix: bool,
    /// Ends with `***`: a directory is matched with a `/` behind.
    wild3_suffix: bool,
    anchored: bool,
    scope: Scope,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// No `*`, `?` or `[`: compared byte for byte, backslashes included.
    Literal(Vec<u8>),
    /// A wildcard pattern.
    Glob(Glob),
}

impl Rule {
    pub(super) fn compile(pattern: Vec<u8>, origin: Origin) -> Rule {
        let mut p = pattern.as_slice();
        let dir_only = p.len() > 1 && p.ends_with(b"/");
        if dir_only {
            p = &p[..p.len() - 1];
        }
        let slashes = p.iter().filter(|&&b| b == b'/').count();
        let wild = is_wild(p);
        let wild2 = wild && p.windows(2).any(|w| w == b"**");
        let wild2_prefix = wild2 && p.starts_with(b"**");
        let wild3_suffix = wild2 && p.ends_with(b"***");
        let anchored = p.starts_with(b"/");
        let scope = if slashes == 0 && !wild2 {
            Scope::LastComponent
        } else if !anchored && !wild2 {
            Scope::Trailing(slashes + 1)
        } else if !anchored && !wild2_prefix {
            Scope::AnySuffix
        } else {
            Scope::Whole
        };
        let body = if anchored { &p[1..] } else { p };
        let body = if wild {
            Body::Glob(Glob::new(body))
        } else {
            Body::Literal(body.to_vec())
        };
        Rule {
            pattern,
            origin,
            dir_only,
            wild2_prefix,
            wild3_suffix,
            anchored,
            scope,
            body,
        }
    }

    /// Whether the rule looks at the last component of a name only.
    pub(super) fn matches_name_only(&self) -> bool {
        self.scope == Scope::LastComponent
    }

    /// Whether the rule matches `name`, a path relative to the transfer
    /// root (no leading slash), by itself.
    pub(super) fn matches(&self, name: &[u8], is_dir: bool) -> bool {
        if name.is_empty() || (self.dir_only && !is_dir) {
            return false;
        }
        if self.scope == Scope::LastComponent {
            let last = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
            return match &self.body {
                Body::Literal(l) => last == l.as_slice(),
                Body::Glob(g) => g.matches(last, false),
            };
        }
        let glob = match &self.body {
            Body::Literal(l) if self.anchored => return name == l.as_slice(),
            // Unanchored: the name ends with the pattern at a component
            // boundary.
            Body::Literal(l) => {
                return name.ends_with(l)
                    && (name.len() == l.len() || name[name.len() - l.len() - 1] == b'/');
            }
            Body::Glob(g) => g,
        };
        let mut text = Vec::with_capacity(name.len() + 2);
        if self.wild2_prefix {
            text.push(b'/');
        }
        text.extend_from_slice(name);
        if is_dir && self.wild3_suffix {
            text.push(b'/');
        }
        match self.scope {
            Scope::Trailing(n) => trailing(&text, n).is_some_and(|t| glob.matches(t, false)),
            Scope::AnySuffix => glob.matches(&text, true),
            _ => glob.matches(&text, false),
        }
    }
}

/// The last `n` components of `text`, or `None` when it has fewer.
fn trailing(text: &[u8], n: usize) -> Option<&[u8]> {
    let mut seen = 0;
    for (i, &b) in text.iter().enumerate().rev() {
        if b == b'/' {
            seen += 1;
            if seen == n {
                return text.get(i + 1..);
            }
        }
    }
    (seen + 1 == n).then_some(text)
}
