//! `syncd check-config`: the resolved configuration, as text.

use super::RunConfig;

/// Writes the resolved configuration, for `syncd check-config`.
pub fn describe(cfg: &RunConfig, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use crate::changeset::escape;
    writeln!(out, "configuration is valid")?;
    writeln!(out, "source        {} (watched)", cfg.source.root.display())?;
    writeln!(
        out,
        "rsync base    {} (paths below it are recreated under each DEST)",
        cfg.source.base.display()
    )?;
    writeln!(out, "state dir     {}", cfg.state_dir.display())?;
    writeln!(
        out,
        "window        {:.3}s, hold open files {:.0}s",
        cfg.delay.as_secs_f64(),
        cfg.hold.as_secs_f64()
    )?;
    writeln!(out, "initial sync  {}", cfg.initial_sync.word())?;
    let excl = cfg.filter.rsync_args();
    if !excl.is_empty() {
        let e: Vec<String> = excl
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        writeln!(out, "excludes      {}", e.join(" "))?;
    }
    if let Some(a) = cfg.metrics_listen {
        writeln!(out, "metrics       http://{a}/metrics")?;
    }
    if let Some(p) = &cfg.metrics_textfile {
        writeln!(out, "metrics file  {}", p.display())?;
    }
    for d in &cfg.dests {
        use std::os::unix::ffi::OsStrExt;
        writeln!(
            out,
            "dest {:<12} {}",
            d.dest.name,
            escape(d.dest.target.as_bytes())
        )?;
        let r = &d.rsync;
        writeln!(
            out,
            "     timeout {}s, contimeout {}s, watchdog {}s{}{}",
            r.timeout_s,
            r.contimeout_s,
            r.watchdog_s,
            r.bwlimit
                .as_deref()
                .map(|b| format!(", bwlimit {b}"))
                .unwrap_or_default(),
            r.port.map(|p| format!(", port {p}")).unwrap_or_default(),
        )?;
    }
    Ok(())
}
