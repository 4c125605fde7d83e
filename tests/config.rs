//! The config file: a service runs from it alone; unknown keys and bad
//! values are errors naming the key and the line; the command line wins
//! over the file; check-config validates without starting anything.

use std::ffi::OsStr;
use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(30);

fn write_config(dir: &Dir, body: &str) -> std::path::PathBuf {
    let p = dir.root.join("syncd.toml");
    fs::write(&p, body).unwrap();
    p
}

fn base_config(dir: &Dir, extra: &str) -> String {
    format!(
        "source = \"{src}/./\"\nstate_dir = \"{state}\"\ndelay = 0.2\nbackoff_max = 1\nexclude = [\"*.tmp\"]\n\
         [rsync]\ntimeout = 30\n\n[[dest]]\ntarget = \"{dst}\"\nname = \"primary\"\nwatchdog = 120\n{extra}",
        src = dir.src().display(),
        state = dir.state().display(),
        dst = dir.dst().display(),
    )
}

#[test]
fn a_daemon_runs_from_the_config_file_alone() {
    let dir = Dir::new();
    dir.write("a/b", "1");
    dir.write("skip.tmp", "excluded by the file");
    let cfg = write_config(&dir, &base_config(&dir, ""));
    let mut d = Daemon::start(
        &["--config".into(), cfg.clone().into(), "run".into()],
        &dir.root.join("cfg.log"),
    );
    d.wait_log("watching", T);
    d.wait_log("destination primary", T);
    let skip = |p: &[u8]| p.ends_with(b".tmp");
    wait_mirror_except(&dir.src(), &dir.dst(), skip, T);
    assert!(!dir.dst().join("skip.tmp").exists());
    // queue inspect finds the state directory through the file too, here
    // through SYNCD_CONFIG.
    let out = Command::new(bin())
        .args(["queue", "inspect", "--json"])
        .env("SYNCD_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["destinations"][0]["name"], "primary");
    d.signal(libc::SIGTERM);
    assert!(d.wait(T).success());
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_the_line() {
    let dir = Dir::new();
    let cases = [
        ("delay = 1\ndelya = 2\n", vec!["line 2", "delya"]),
        (
            "[rsync]\ntimeout = 5\nbwlimt = \"1M\"\n",
            vec!["line 3", "bwlimt"],
        ),
        (
            "[[dest]]\ntarget = \"/x\"\nport = 22\nfrobnicate = 1\n",
            vec!["line 4", "frobnicate"],
        ),
        ("[rsync]\ntimeout = \"soon\"\n", vec!["line 2", "timeout"]),
        ("delay = \"soon\"\n", vec!["line 1", "delay"]),
        (
            "[log]\nsyslog_facilty = \"daemon\"\n",
            vec!["line 2", "syslog_facilty"],
        ),
    ];
    for (body, needles) in cases {
        let cfg = write_config(&dir, body);
        for cmd in [
            &["check-config"][..],
            &["run"][..],
            &["queue", "inspect"][..],
        ] {
            let mut args: Vec<&OsStr> = vec!["--config".as_ref(), cfg.as_os_str()];
            args.extend(cmd.iter().map(OsStr::new));
            let out = syncd(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{body:?} {cmd:?}: {err}");
            for n in &needles {
                assert!(err.contains(n), "{body:?} {cmd:?}: {n:?} not in {err}");
            }
            assert!(err.contains("syncd.toml"), "names the file: {err}");
        }
    }
    let out = syncd(&[
        "--config".as_ref(),
        "/nonexistent/syncd.toml".as_ref(),
        "check-config".as_ref(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/syncd.toml"));
}

#[test]
fn the_command_line_overrides_the_file() {
    let dir = Dir::new();
    let other = dir.root.join("other-dst");
    let cfg = write_config(
        &dir,
        &base_config(&dir, "bwlimit = \"1M\"\n").replace("delay = 0.2", "delay = 3600"),
    );
    let check = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![
            "--config".as_ref(),
            cfg.as_os_str(),
            "check-config".as_ref(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let out = syncd(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let file_only = check(&[]);
    assert!(file_only.contains("window        3600.000s"), "{file_only}");
    assert!(
        file_only.contains("dest primary") && file_only.contains("bwlimit 1M"),
        "{file_only}"
    );
    assert!(
        file_only.contains("watchdog 120s") && file_only.contains("timeout 30s"),
        "{file_only}"
    );
    let over = check(&["--delay", "0.5", "--timeout", "9", "--bwlimit", "2M"]);
    assert!(over.contains("window        0.500s"), "{over}");
    assert!(
        over.contains("timeout 9s") && over.contains("bwlimit 2M"),
        "{over}"
    );
    assert!(
        over.contains("watchdog 120s"),
        "settings the command line does not give stay: {over}"
    );
    let src = format!("{}/./", dir.src().display());
    let other_s = other.to_str().unwrap();
    let replaced = check(&[&src, other_s]);
    assert!(
        replaced.contains("other-dst") && !replaced.contains("dest primary"),
        "{replaced}"
    );
    // And the daemon really runs with the command line's window.
    dir.write("f", "1");
    let mut args: Vec<std::ffi::OsString> =
        vec!["--config".into(), cfg.clone().into(), "run".into()];
    args.extend(["--delay".into(), "0.2".into()]);
    let d = Daemon::start(&args, &dir.root.join("over.log"));
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    dir.write("g", "2");
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn check_config_starts_nothing() {
    let dir = Dir::new();
    let cfg = write_config(&dir, &base_config(&dir, ""));
    let out = syncd(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "check-config".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("configuration is valid"), "{text}");
    assert!(
        text.contains(&format!(
            "source        {}",
            fs::canonicalize(dir.src()).unwrap().display()
        )),
        "{text}"
    );
    assert!(!dir.state().exists(), "no state directory was created");
    assert_eq!(fs::read_dir(dir.dst()).unwrap().count(), 0);
    // A semantic error (a destination inside the source) is found too.
    let bad = base_config(&dir, "").replace(
        &format!("target = \"{}\"", dir.dst().display()),
        &format!("target = \"{}/in\"", dir.src().display()),
    );
    let cfg = write_config(&dir, &bad);
    let out = syncd(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "check-config".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside SOURCE"));
}

#[test]
fn the_shipped_example_config_parses() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/syncd.toml.example");
    let c = syncd::config::file::ConfigFile::load(&p).expect("the example config is valid");
    assert_eq!(c.dests().len(), 2);
    assert!(c.source().is_some());
}

/// An rsync option with which rsync exits 0 without delivering (issue 16,
/// item 3) is refused before anything starts, in a bundle of short flags
/// too, from the command line and from the config file.
#[test]
fn an_rsync_arg_that_would_skip_changes_is_refused_at_start() {
    let dir = Dir::new();
    dir.write("f", "1");
    let mut args = dir.run_args("0.2");
    let pos = args.len() - 2;
    args.insert(pos, "--rsync-arg=-vn".into());
    let out = output_within(Command::new(bin()).args(&args), T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"-vn\""), "{err}");
    assert!(err.contains("-n (--dry-run)"), "{err}");
    assert!(err.contains("exit 0 without delivering"), "{err}");
    assert!(!dir.state().exists(), "nothing started");
    assert_eq!(fs::read_dir(dir.dst()).unwrap().count(), 0);

    let cfg = write_config(
        &dir,
        &base_config(&dir, "rsync-arg = [\"--numeric-ids\", \"--existing\"]\n"),
    );
    let out = output_within(Command::new(bin()).arg("--config").arg(&cfg).arg("run"), T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("syncd.toml"), "{err}");
    assert!(err.contains("--existing"), "{err}");
    assert!(err.contains("new on the source"), "{err}");
}
