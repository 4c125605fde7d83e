//! The control protocol: one JSON object per line in each direction.
//!
//! A request is `{"version": 1, "op": "status", ...}`; the answer is
//! `{"version": 1, "reply": {"kind": ..., "result": {...}}}` or
//! `{"version": 1, "error": "...", "usage": bool}`. The version is checked
//! before anything else, so a client and a daemon of different releases
//! get a message that says so instead of a confusing parse error; an op
//! this version does not know is refused by name. Unknown fields are
//! ignored, so later versions may add optional ones without a bump. Lines
//! are capped at [`MAX_LINE`] bytes, which bounds what a client can make
//! the daemon buffer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::observe::inspect::{Inspection, StatusReport};
use crate::observe::status::DEFAULT_MAX_FAILURES;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The longest request line the daemon reads, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Every destination's backlog, with the `entries` oldest paths each.
    Inspect {
        #[serde(default)]
        dest: Option<String>,
        #[serde(default)]
        entries: usize,
    },
    /// The daemon's and every destination's health.
    Status {
        #[serde(default = "default_max_failures")]
        max_failures: u32,
    },
    /// Dead letters back into the queue, and a backing-off worker tries now.
    Retry {
        #[serde(default)]
        dest: Option<String>,
    },
    /// Drop every pending changeset and dead letter of one destination.
    Purge { dest: String },
    /// Take a checkpoint now: it completes for a destination once every
    /// change made before it is there. Only the running daemon can.
    Checkpoint {
        #[serde(default)]
        dest: Option<String>,
    },
    /// Commit the open window now; with `full`, queue a full sync too.
    /// Only the running daemon can.
    Sync {
        #[serde(default)]
        dest: Option<String>,
        #[serde(default)]
        full: bool,
    },
}

fn default_max_failures() -> u32 {
    DEFAULT_MAX_FAILURES
}

/// What the daemon answers, by request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "result", rename_all = "snake_case")]
pub enum Reply {
    Inspection(Inspection),
    Status(StatusReport),
    Changed(Changed),
    Checkpoint(CheckpointTaken),
    Synced(SyncQueued),
}

/// A checkpoint taken: when, and on which destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointTaken {
    pub at_unix_ms: u64,
    pub destinations: Vec<String>,
}

/// What `sync` did: the window committed, and a full sync queued for
/// these destinations when asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncQueued {
    pub full: bool,
    pub destinations: Vec<String>,
}

/// An action on the queues of destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Dead letters back into the queue; the worker tries now.
    Retry,
    /// Every pending changeset and dead letter dropped.
    Purge,
}

impl Action {
    /// The word of the protocol and of the command's output.
    pub fn word(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Purge => "purge",
        }
    }
}

/// The outcome of `retry` or `purge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub action: Action,
    pub destinations: Vec<Moved>,
}

/// What `retry` or `purge` did to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub name: String,
    pub target: String,
    /// Changesets revived (retry) or dropped (purge).
    pub changesets: u64,
    /// Whether a running worker was told to try now.
    pub woken: bool,
}

/// A refused or failed request, as the client reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub message: String,
    /// A usage error (unknown destination, bad request): the client exits 2.
    pub usage: bool,
}

#[derive(Serialize, Deserialize)]
struct Response {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<Reply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default)]
    usage: bool,
}

/// The request as one line (with its newline).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut v = serde_json::to_value(req).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("version".into(), VERSION.into());
    }
    line(&v)
}

/// Reads a request line. The error is the message to send back.
pub fn decode_request(line: &[u8]) -> Result<Request, Failure> {
    let usage = |message: String| Failure {
        message,
        usage: true,
    };
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| usage(format!("the request is not valid JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(usage("the request is not a JSON object".into()));
    };
    match obj.get("version").map(Value::as_u64) {
        None => return Err(usage("the request has no \"version\" field".into())),
        Some(Some(n)) if n == u64::from(VERSION) => {}
        Some(n) => {
            return Err(usage(format!(
                "control protocol version {} is not supported: this daemon (syncd {}) speaks \
                 version {VERSION}; use the syncd binary of the daemon's release",
                n.map_or_else(|| obj["version"].to_string(), |n| n.to_string()),
                env!("CARGO_PKG_VERSION")
            )))
        }
    }
    let op = match obj.get("op") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(usage("the request has no \"op\" field".into())),
    };
    serde_json::from_value(v).map_err(|e| {
        usage(format!(
            "unknown or malformed request {op:?} for control protocol version {VERSION}: {e}"
        ))
    })
}

/// The answer as one line.
pub fn encode_response(r: &Result<Reply, Failure>) -> Vec<u8> {
    let resp = match r {
        Ok(reply) => Response {
            version: VERSION,
            reply: Some(reply.clone()),
            error: None,
            usage: false,
        },
        Err(f) => Response {
            version: VERSION,
            reply: None,
            error: Some(f.message.clone()),
            usage: f.usage,
        },
    };
    match serde_json::to_value(&resp) {
        Ok(v) => line(&v),
        Err(e) => line(&serde_json::json!({
            "version": VERSION,
            "error": format!("cannot encode the answer: {e}"),
        })),
    }
}

/// Reads an answer line. The outer error is a protocol problem, the inner
/// one the daemon's refusal.
pub fn decode_response(line: &[u8]) -> Result<Result<Reply, Failure>, String> {
    let v: Value =
        serde_json::from_slice(line).map_err(|e| format!("the answer is not valid JSON: {e}"))?;
    match v.get("version").and_then(Value::as_u64) {
        Some(n) if n == u64::from(VERSION) => {}
        other => {
            return Err(format!(
                "the daemon answered in control protocol version {}, this syncd ({}) speaks \
                 version {VERSION}; use the syncd binary of the daemon's release",
                other.map_or_else(|| "(none)".into(), |n| n.to_string()),
                env!("CARGO_PKG_VERSION")
            ))
        }
    }
    let r: Response =
        serde_json::from_value(v).map_err(|e| format!("the answer is malformed: {e}"))?;
    match (r.reply, r.error) {
        (_, Some(message)) => Ok(Err(Failure {
            message,
            usage: r.usage,
        })),
        (Some(reply), None) => Ok(Ok(reply)),
        (None, None) => Err("the answer holds neither a reply nor an error".into()),
    }
}

fn line(v: &Value) -> Vec<u8> {
    // A Value always serializes; JSON escapes every control byte, so the
    // line cannot contain a raw newline.
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_the_version() {
        for req in [
            Request::Inspect {
                dest: Some("a\nb".into()),
                entries: 3,
            },
            Request::Status { max_failures: 4 },
            Request::Retry { dest: None },
            Request::Purge { dest: "x".into() },
        ] {
            let line = encode_request(&req);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert!(String::from_utf8_lossy(&line).contains("\"version\":1"));
            assert_eq!(decode_request(&line[..line.len() - 1]).unwrap(), req);
        }
    }

    #[test]
    fn other_versions_and_unknown_ops_are_refused_by_name() {
        let e = decode_request(br#"{"version":2,"op":"status"}"#).unwrap_err();
        assert!(e.message.contains("version 2 is not supported"), "{e:?}");
        let e = decode_request(br#"{"op":"status"}"#).unwrap_err();
        assert!(e.message.contains("no \"version\""), "{e:?}");
        let e = decode_request(br#"{"version":1,"op":"reboot"}"#).unwrap_err();
        assert!(e.message.contains("\"reboot\""), "{e:?}");
        let e = decode_request(b"not json").unwrap_err();
        assert!(e.usage && e.message.contains("not valid JSON"), "{e:?}");
        let ok = decode_request(br#"{"version":1,"op":"status","later":true}"#).unwrap();
        assert_eq!(
            ok,
            Request::Status {
                max_failures: DEFAULT_MAX_FAILURES
            }
        );
    }

    #[test]
    fn answers_round_trip() {
        let ok = Ok(Reply::Changed(Changed {
            action: Action::Retry,
            destinations: vec![],
        }));
        let line = encode_response(&ok);
        assert_eq!(decode_response(&line).unwrap(), ok);
        let err = Err(Failure {
            message: "no".into(),
            usage: true,
        });
        assert_eq!(decode_response(&encode_response(&err)).unwrap(), err);
        assert!(decode_response(br#"{"version":7}"#)
            .unwrap_err()
            .contains("version 7"));
    }
}
