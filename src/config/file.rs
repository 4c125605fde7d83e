//! The TOML config file (`--config FILE`, env `SYNCD_CONFIG`).
//!
//! The file holds every setting the command line has, plus per-destination
//! settings, so a service can run as `syncd --config /etc/syncd/www.toml
//! run`. This module only reads and checks the file: unknown keys, wrong
//! types and bad values are errors that name the file, the line and the
//! key. `config` merges it under the command line (the command line wins)
//! and `destopts` checks the rsync settings, so the file and `--dest-opt`
//! share one set of rules and messages. An example:
//!
//! ```toml
//! source = "/srv/./www"
//! state_dir = "/var/lib/syncd/www"
//! delay = 10
//! exclude = ["*.tmp", "/cache/"]
//!
//! [log]
//! syslog = true
//! syslog_facility = "daemon"
//!
//! [rsync]            # defaults for every destination
//! timeout = 60
//! rsync-arg = ["--numeric-ids"]
//!
//! [[dest]]
//! target = "backup@mirror1:/srv/www"
//! bwlimit = "10M"
//!
//! [[dest]]
//! target = "mirror2::www"
//! name = "mirror2"
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};

/// Settings of one table (`[rsync]`, `[[dest]]`), with where each is.
type Table = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    source: Option<String>,
    state_dir: Option<PathBuf>,
    delay: Option<f64>,
    backoff_max: Option<f64>,
    hold_open: Option<f64>,
    initial_sync: Option<InitialSyncRaw>,
    full_sync_every: Option<DurationRaw>,
    allow_empty_source: Option<bool>,
    exclude: Option<Vec<String>>,
    exclude_from: Option<Vec<PathBuf>>,
    metrics_listen: Option<String>,
    metrics_textfile: Option<PathBuf>,
    log: Option<LogRaw>,
    rsync: Option<Table>,
    dest: Option<Vec<Table>>,
}

/// `initial_sync`: `"scan"`, `"full"`, `"none"`, or a boolean as older
/// files wrote it (`true` a full sync, `false` none).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum InitialSyncRaw {
    Bool(bool),
    Mode(String),
}

/// A duration: seconds, or text such as `"6h"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationRaw {
    Seconds(u64),
    Text(String),
}

/// The `[log]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRaw {
    pub debug: Option<bool>,
    pub verbose: Option<bool>,
    pub quiet: Option<bool>,
    pub syslog: Option<bool>,
    pub syslog_facility: Option<String>,
    pub syslog_socket: Option<PathBuf>,
}

/// One setting of an rsync table, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: OsString,
    pub line: usize,
}

/// One `[[dest]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDest {
    pub target: OsString,
    /// The name given with `name = ...`, replacing the default one.
    pub name: Option<String>,
    pub settings: Vec<Setting>,
    pub line: usize,
}

/// A loaded and checked config file.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    raw: Raw,
    rsync: Vec<Setting>,
    dests: Vec<FileDest>,
}

impl ConfigFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        // Absolute, so paths relative to the file stay right whatever the
        // working directory (a relative target is also a queue's key).
        let path = std::path::absolute(path)
            .map_err(|e| Error::io("cannot resolve the config file", path, e))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io("cannot read the config file", &path, e))?;
        ConfigFile::parse(&path, &text)
    }

    /// Checks `text` as the content of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            Error::Usage(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        let at = |span: std::ops::Range<usize>| line_of(text, span.start);
        let bad = |line: usize, msg: String| {
            Error::Usage(format!("{} line {line}: {msg}", path.display()))
        };
        let rsync = match &raw.rsync {
            Some(t) => settings(t, &at, &bad, "[rsync]")?,
            None => Vec::new(),
        };
        let mut dests = Vec::new();
        for t in raw.dest.iter().flatten() {
            let mut target = None;
            let mut name = None;
            let mut rest = Table::new();
            for (k, v) in t {
                match k.get_ref().as_str() {
                    "target" => target = Some(string(v, &at, &bad, "target")?),
                    "name" => name = Some(string(v, &at, &bad, "name")?),
                    _ => {
                        rest.insert(k.clone(), v.clone());
                    }
                }
            }
            let line = t.keys().map(|k| at(k.span())).min().unwrap_or(1);
            let Some(target) = target else {
                return Err(bad(line, "a [[dest]] needs `target = \"...\"`".into()));
            };
            if let Some(n) = &name {
                let ok = !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                if !ok {
                    return Err(bad(
                        line,
                        format!("name {n:?}: use letters, digits, '.', '_' and '-'"),
                    ));
                }
            }
            let settings = settings(&rest, &at, &bad, "[[dest]]")?;
            dests.push(FileDest {
                target: target.into(),
                name,
                settings,
                line,
            });
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            raw,
            rsync,
            dests,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn source(&self) -> Option<OsString> {
        self.raw.source.clone().map(OsString::from)
    }

    pub fn state_dir(&self) -> Option<PathBuf> {
        self.raw
            .state_dir
            .as_ref()
            .map(|p| self.relative_to_file(p))
    }

    pub fn delay(&self) -> Option<f64> {
        self.raw.delay
    }

    pub fn backoff_max(&self) -> Option<f64> {
        self.raw.backoff_max
    }

    pub fn hold_open(&self) -> Option<f64> {
        self.raw.hold_open
    }

    /// `initial_sync` as its word (`scan`, `full`, `none`), unchecked.
    pub fn initial_sync(&self) -> Option<String> {
        self.raw.initial_sync.as_ref().map(|v| match v {
            InitialSyncRaw::Bool(true) => "full".to_string(),
            InitialSyncRaw::Bool(false) => "none".to_string(),
            InitialSyncRaw::Mode(m) => m.clone(),
        })
    }

    /// `full_sync_every` as text (`"6h"`, or seconds), unchecked.
    pub fn full_sync_every(&self) -> Option<String> {
        self.raw.full_sync_every.as_ref().map(|v| match v {
            DurationRaw::Seconds(n) => n.to_string(),
            DurationRaw::Text(t) => t.clone(),
        })
    }

    pub fn allow_empty_source(&self) -> Option<bool> {
        self.raw.allow_empty_source
    }

    pub fn excludes(&self) -> Vec<OsString> {
        self.raw
            .exclude
            .iter()
            .flatten()
            .map(OsString::from)
            .collect()
    }

    pub fn exclude_from(&self) -> Vec<PathBuf> {
        self.raw
            .exclude_from
            .iter()
            .flatten()
            .map(|p| self.relative_to_file(p))
            .collect()
    }

    pub fn metrics_listen(&self) -> Option<String> {
        self.raw.metrics_listen.clone()
    }

    pub fn metrics_textfile(&self) -> Option<PathBuf> {
        self.raw
            .metrics_textfile
            .as_ref()
            .map(|p| self.relative_to_file(p))
    }

    pub fn log(&self) -> LogRaw {
        self.raw.log.clone().unwrap_or_default()
    }

    /// The `[rsync]` defaults of every destination.
    pub fn rsync(&self) -> &[Setting] {
        &self.rsync
    }

    /// The `[[dest]]` tables, in file order.
    pub fn dests(&self) -> &[FileDest] {
        &self.dests
    }

    /// Relative paths in the file are relative to the file's directory, so
    /// a service does not depend on its working directory.
    fn relative_to_file(&self, p: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// Where a setting came from, for messages: `FILE line N`.
    pub fn at(&self, line: usize) -> String {
        format!("{} line {line}", self.path.display())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn string(
    v: &Spanned<toml::Value>,
    at: &impl Fn(std::ops::Range<usize>) -> usize,
    bad: &impl Fn(usize, String) -> Error,
    key: &str,
) -> Result<String> {
    match v.get_ref() {
        toml::Value::String(s) => Ok(s.clone()),
        other => Err(bad(
            at(v.span()),
            format!("{key} must be a string, not {}", other.type_str()),
        )),
    }
}

/// The settings of an rsync table as text, arrays as repeated keys.
fn settings(
    t: &Table,
    at: &impl Fn(std::ops::Range<usize>) -> usize,
    bad: &impl Fn(usize, String) -> Error,
    table: &str,
) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    for (k, v) in t {
        let key = k.get_ref().clone();
        let line = at(k.span());
        if !crate::config::destopts::KEYS
            .iter()
            .any(|(name, _)| *name == key)
        {
            let known: Vec<&str> = crate::config::destopts::KEYS
                .iter()
                .map(|(k, _)| *k)
                .collect();
            let also = if table == "[[dest]]" {
                "target, name, "
            } else {
                ""
            };
            return Err(bad(
                line,
                format!(
                    "unknown key `{key}` in {table}; the keys are: {also}{}",
                    known.join(", ")
                ),
            ));
        }
        let scalar = |v: &toml::Value| -> Result<OsString> {
            match v {
                toml::Value::String(s) => Ok(s.into()),
                toml::Value::Integer(i) => Ok(i.to_string().into()),
                toml::Value::Float(f) => Ok(f.to_string().into()),
                toml::Value::Boolean(b) => Ok(b.to_string().into()),
                other => Err(bad(
                    line,
                    format!(
                        "{key} must be a string, a number or a boolean, not {}",
                        other.type_str()
                    ),
                )),
            }
        };
        // Values are checked now, against a scratch set of options, so a bad
        // one is reported with its line whatever else is wrong.
        let mut scratch = crate::config::destopts::DestOptions::default();
        let mut check = |value: &OsString| {
            scratch
                .set(&key, value)
                .map_err(|e| bad(line, format!("{table} {key}: {e}")))
        };
        match v.get_ref() {
            toml::Value::Array(items) => {
                if key != "rsync-arg" {
                    return Err(bad(line, format!("{key} takes one value, not a list")));
                }
                for item in items {
                    let value = scalar(item)?;
                    check(&value)?;
                    out.push(Setting {
                        key: key.clone(),
                        value,
                        line,
                    });
                }
            }
            other => {
                let value = scalar(other)?;
                check(&value)?;
                out.push(Setting {
                    key: key.clone(),
                    value,
                    line,
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ConfigFile> {
        ConfigFile::parse(Path::new("/etc/syncd/x.toml"), t)
    }

    #[test]
    fn a_full_file_parses() {
        let c = parse(
            "source = \"/srv/./www\"\nstate_dir = \"state\"\ndelay = 2.5\nexclude = [\"*.tmp\"]\n\
             [log]\nsyslog = true\n[rsync]\ntimeout = 30\nrsync-arg = [\"--numeric-ids\", \"-c\"]\n\
             [[dest]]\ntarget = \"h:/x\"\nbwlimit = \"1M\"\n[[dest]]\ntarget = \"/b\"\nname = \"local\"\n",
        )
        .unwrap();
        assert_eq!(c.source().unwrap(), "/srv/./www");
        assert_eq!(c.state_dir().unwrap(), Path::new("/etc/syncd/state"));
        assert_eq!(c.delay(), Some(2.5));
        assert_eq!(c.log().syslog, Some(true));
        let keys: Vec<_> = c
            .rsync()
            .iter()
            .map(|s| (s.key.as_str(), s.value.to_str().unwrap()))
            .collect();
        assert_eq!(
            keys,
            [
                ("rsync-arg", "--numeric-ids"),
                ("rsync-arg", "-c"),
                ("timeout", "30")
            ]
        );
        assert_eq!(c.dests().len(), 2);
        assert_eq!(c.dests()[0].settings[0].key, "bwlimit");
        assert_eq!(c.dests()[0].line, 11, "the line of its first key");
        assert_eq!(c.dests()[1].name.as_deref(), Some("local"));
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_line() {
        let e = parse("source = \"/a\"\n\ndelya = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("delya"), "{e}");
        let e = parse("[rsync]\ntimeout = 3\nbwlimt = \"1M\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("bwlimt") && e.contains("bwlimit"),
            "{e}"
        );
        let e = parse("[[dest]]\ntarget = \"/b\"\nsourc = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("sourc"), "{e}");
        let e = parse("[log]\nsyslg = true\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("syslg"), "{e}");
    }

    #[test]
    fn wrong_types_and_missing_targets_are_errors() {
        let e = parse("delay = \"soon\"\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("delay"), "{e}");
        let e = parse("[[dest]]\nbwlimit = \"1M\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("target"), "{e}");
        let e = parse("[rsync]\ntimeout = [1, 2]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("one value"), "{e}");
        let e = parse("[[dest]]\ntarget = \"/b\"\nname = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("name"), "{e}");
        assert!(parse("source = \n").is_err());
    }
}
