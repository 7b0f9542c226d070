//! `wormfs scrub`, `wormfs repair`, `wormfs at-risk` and `wormfs what-if`: durability, as
//! the cluster knows it.

use crate::commands::{connect, human};
use crate::output::out;
use anyhow::Context;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use wormfs::rpc::proto;

/// One worker as JSON.
pub fn worker_json(w: &proto::WorkerInfo) -> serde_json::Value {
    json!({
        "name": w.name, "state": w.state, "node": w.node, "passes": w.passes, "deep": w.deep,
        "done": w.done, "total": w.total, "bytes": w.bytes, "found": w.found,
        "repaired": w.repaired, "failed": w.failed, "skipped": w.skipped,
        "degraded": w.degraded, "at_risk": w.at_risk, "unreadable": w.unreadable,
        "queued": w.queued, "counted_ns": w.counted, "removed": w.removed, "started_ns": w.started, "updated_ns": w.updated,
        "finished_ns": w.finished, "message": w.message, "paused": w.paused,
        "request": w.request, "requested": w.requested, "bytes_per_sec": w.bytes_per_sec,
        "ops_per_sec": w.ops_per_sec, "rate": w.rate,
        "eta_secs": (w.eta_secs >= 0).then_some(w.eta_secs),
    })
}

/// One worker as a line of text.
pub fn worker_line(w: &proto::WorkerInfo) -> String {
    let state = if w.paused && w.state != "paused" {
        format!("{} (pausing)", w.state)
    } else {
        w.state.clone()
    };
    let mut line = format!("{:<7} {:<8}", w.name, state);
    if w.name.starts_with("garbage@") {
        // the garbage worker of one node's disks: the node is in the name
        line = format!("{} {:<8}", w.name, state);
    }
    if w.total > 0 {
        line.push_str(&format!(
            " {}/{} ({:.0}%)",
            w.done,
            w.total,
            w.done as f64 * 100.0 / w.total as f64
        ));
    }
    if w.rate > 0 {
        line.push_str(&format!(" {}/s", human(w.rate)));
    }
    if w.eta_secs >= 0 {
        line.push_str(&format!(" ETA {}s", w.eta_secs));
    }
    match w.name.as_str() {
        "scrub" => {
            line.push_str(&format!(
                " {}; {} passes; found {} damaged chunks",
                if w.deep { "deep" } else { "shallow" },
                w.passes,
                w.found
            ));
            if w.skipped > 0 {
                line.push_str(&format!(", {} not reachable", w.skipped));
            }
        }
        "repair" => line.push_str(&format!(
            "; rebuilt {} chunks, {} queued, {} failed",
            w.repaired, w.queued, w.failed
        )),
        _ => line.push_str(&format!(
            "; {} chunk files looked at, {} removed ({}); {} passes",
            w.found,
            w.removed,
            human(w.bytes),
            w.passes
        )),
    }
    if !w.node.is_empty() {
        line.push_str(&format!(" (on {})", w.node));
    }
    if !w.message.is_empty() && (w.state == "error" || w.failed > 0) {
        line.push_str(&format!("\n        last error: {}", w.message));
    }
    line
}

fn find<'a>(r: &'a proto::WorkersReply, name: &str) -> anyhow::Result<&'a proto::WorkerInfo> {
    r.workers
        .iter()
        .find(|w| w.name == name)
        .with_context(|| format!("the node reports no `{name}` worker"))
}

/// `wormfs scrub [--deep] [--wait] [--rate BYTES]`: asks for a scrub pass; with `--wait`,
/// shows its progress until it finishes.
pub async fn scrub(
    node: &str,
    deep: bool,
    wait: bool,
    bytes_per_sec: u64,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = connect(node).await?;
    let r = client
        .control_worker(proto::WorkerRequest {
            name: "scrub".into(),
            action: "start".into(),
            deep,
            bytes_per_sec,
            ops_per_sec: 0,
        })
        .await
        .context("ask for a scrub")?;
    let want = find(&r, "scrub")?.requested;
    if !wait {
        if as_json {
            out!("{}", json!({"requested": want, "deep": deep}));
        } else {
            out!(
                "{} scrub {want} asked for; the master starts it within a second, after any pass in progress (`wormfs status` shows it)",
                if deep { "deep" } else { "shallow" }
            );
        }
        return Ok(());
    }
    let mut progress = Progress::new(as_json);
    loop {
        let r = client
            .list_workers()
            .await
            .context("read the scrub's progress")?;
        let w = find(&r, "scrub")?;
        let finished = w.request >= want && w.state == "done";
        if w.request < want {
            // the master has not taken the request up yet
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        progress.show(w);
        if finished {
            progress.done();
            if as_json {
                out!("{}", serde_json::to_string_pretty(&worker_json(w))?);
            } else {
                out!(
                    "scrub {want} finished: {} stripes checked, {} damaged chunks found{}",
                    w.done,
                    w.found,
                    if w.found > 0 {
                        " (repair rebuilds them; `wormfs repair` shows it)"
                    } else {
                        ""
                    }
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A worker's progress on stderr: a bar redrawn in place on a terminal, a line per change
/// otherwise, nothing with `--json`.
struct Progress {
    tty: bool,
    quiet: bool,
    last: String,
}

impl Progress {
    fn new(as_json: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal() && !as_json,
            quiet: as_json,
            last: String::new(),
        }
    }

    fn show(&mut self, w: &proto::WorkerInfo) {
        let line = progress_line(w);
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if line != self.last && !self.quiet {
            eprintln!("{line}");
        }
        self.last = line;
    }

    /// Ends the bar's line.
    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn progress_line(w: &proto::WorkerInfo) -> String {
    const WIDTH: usize = 30;
    let frac = if w.total > 0 {
        (w.done as f64 / w.total as f64).min(1.0)
    } else {
        0.0
    };
    let fill = (frac * WIDTH as f64) as usize;
    format!(
        "[{}{}] {}",
        "#".repeat(fill),
        "-".repeat(WIDTH - fill),
        worker_line(w)
    )
}

/// Repair passes [`wait_for_repair`] sees end with work left before it gives up.
const PASSES_BEFORE_GIVING_UP: u64 = 3;

/// Asks for a repair sweep now, then shows the repair worker's progress (a bar on a
/// terminal, a line per change otherwise) until that sweep, and the repairs it queued,
/// are done and a sweep after them found nothing more to rebuild. Fails when a repair pass
/// ends with chunks it could not rebuild, or when stripes are still degraded or
/// unreadable at the end: the wait never ends on "done" while data lacks its redundancy.
pub async fn wait_for_repair(node: &str, as_json: bool) -> anyhow::Result<()> {
    let client = connect(node).await?;
    let asked = client
        .control_worker(proto::WorkerRequest {
            name: "repair".into(),
            action: "start".into(),
            deep: false,
            bytes_per_sec: 0,
            ops_per_sec: 0,
        })
        .await
        .context("ask for a repair sweep")?;
    let first = find(&asked, "repair")?.clone();
    let want = first.requested;
    let mut progress = Progress::new(as_json);
    loop {
        let r = client
            .list_workers()
            .await
            .context("read the repair's progress")?;
        let w = find(&r, "repair")?;
        progress.show(w);
        if w.state == "error" {
            anyhow::bail!("the repair worker stopped on an error: {}", w.message);
        }
        // the sweep asked for is done, nothing is queued, and the counts are newer than the
        // last repair pass
        let settled =
            w.request >= want && w.state != "active" && w.queued == 0 && w.counted >= w.finished;
        // each pass rebuilds all it can; one that leaves work behind failed somewhere
        if !settled && w.passes >= first.passes + PASSES_BEFORE_GIVING_UP {
            anyhow::bail!(
                "repair ran {PASSES_BEFORE_GIVING_UP} passes and stripes still need it ({} \
                 failed in the last{}): `wormfs repair` and `wormfs at-risk` show them",
                w.failed,
                if w.message.is_empty() {
                    String::new()
                } else {
                    format!("; last error: {}", w.message)
                }
            );
        }
        if !settled {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        progress.done();
        if as_json {
            out!("{}", json!({ "repair": worker_json(w) }));
        }
        if w.degraded > 0 || w.unreadable > 0 {
            anyhow::bail!(
                "repair can do no more now, but {} stripes are still degraded and {} \
                 unreadable: `wormfs at-risk --max-margin 100` lists their files",
                w.degraded,
                w.unreadable
            );
        }
        if !as_json {
            out!("repair finished: every stripe has all its chunks");
        }
        return Ok(());
    }
}

/// `wormfs repair [status|pause|resume] [--rate BYTES] [--ops N]`.
pub async fn repair(
    node: &str,
    action: &str,
    rate: Option<u64>,
    ops: Option<u64>,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = connect(node).await?;
    let budget = rate.is_some() || ops.is_some();
    let r = if action == "status" && !budget {
        client.list_workers().await.context("read the workers")?
    } else {
        let action = if action == "status" { "rate" } else { action };
        client
            .control_worker(proto::WorkerRequest {
                name: "repair".into(),
                action: action.into(),
                deep: false,
                bytes_per_sec: rate.unwrap_or(0),
                ops_per_sec: ops.unwrap_or(0),
            })
            .await
            .with_context(|| format!("{action} repair"))?
    };
    let w = find(&r, "repair")?;
    if as_json {
        out!("{}", serde_json::to_string_pretty(&worker_json(w))?);
    } else {
        out!("{}", worker_line(w));
        out!(
            "stripes: {} degraded, {} at risk (one more loss and they are gone), {} unreadable",
            w.degraded,
            w.at_risk,
            w.unreadable
        );
    }
    Ok(())
}

fn risk_json(r: &proto::RiskReply) -> serde_json::Value {
    json!({
        "stripes": r.stripes, "degraded": r.degraded, "at_risk": r.at_risk,
        "unreadable": r.unreadable, "rebuild_bytes": r.rebuild_bytes,
        "files_at_risk": r.files_at_risk, "files_unreadable": r.files_unreadable,
        "truncated": r.truncated,
        "files": r.files.iter().map(|f| json!({
            "path": f.path, "inode": f.ino, "margin": f.margin, "size": f.size,
            "stripes_at_risk": f.stripes_at_risk, "unreadable_stripes": f.unreadable_stripes,
        })).collect::<Vec<_>>(),
    })
}

fn print_files(r: &proto::RiskReply) {
    for f in &r.files {
        let what = if f.margin < 0 {
            format!("UNREADABLE ({} stripes)", f.unreadable_stripes)
        } else {
            format!("margin {}", f.margin)
        };
        out!("  {what:<28} {:>10}  {}", human(f.size), f.path);
    }
    if r.truncated {
        out!("  ... more files (raise --limit)");
    }
}

/// `wormfs at-risk [--max-margin N] [--limit N]`.
pub async fn at_risk(node: &str, max_margin: i64, limit: u32, as_json: bool) -> anyhow::Result<()> {
    let client = connect(node).await?;
    let r = client
        .risk(proto::RiskRequest {
            max_margin,
            limit,
            ..Default::default()
        })
        .await
        .context("list files at risk")?;
    if as_json {
        out!("{}", serde_json::to_string_pretty(&risk_json(&r))?);
        return Ok(());
    }
    out!(
        "{} stripes: {} degraded, {} at risk, {} unreadable; {} files unreadable, {} at risk",
        r.stripes,
        r.degraded,
        r.at_risk,
        r.unreadable,
        r.files_unreadable,
        r.files_at_risk
    );
    if r.files.is_empty() {
        out!("no file has a margin of {max_margin} or less");
    } else {
        out!("files with a margin of {max_margin} or less (margin: further losses survived):");
        print_files(&r);
    }
    Ok(())
}

/// `wormfs what-if --lose-node N --lose-disk D`.
pub async fn what_if(
    node: &str,
    nodes: &[String],
    disks: &[String],
    limit: u32,
    as_json: bool,
) -> anyhow::Result<()> {
    if nodes.is_empty() && disks.is_empty() {
        anyhow::bail!("name at least one --lose-node or --lose-disk");
    }
    let client = connect(node).await?;
    let r = what_if_report(&client, nodes, disks, limit).await?;
    if as_json {
        out!("{}", serde_json::to_string_pretty(&risk_json(&r))?);
        return Ok(());
    }
    print_what_if(nodes, disks, &r);
    Ok(())
}

/// The risk report if `nodes` and `disks` were lost.
pub async fn what_if_report(
    client: &wormfs::rpc::client::Client,
    nodes: &[String],
    disks: &[String],
    limit: u32,
) -> anyhow::Result<proto::RiskReply> {
    client
        .risk(proto::RiskRequest {
            nodes: nodes.to_vec(),
            disks: disks.to_vec(),
            max_margin: 0,
            limit,
        })
        .await
        .context("compute what would be lost")
}

/// Prints a what-if report.
pub fn print_what_if(nodes: &[String], disks: &[String], r: &proto::RiskReply) {
    let lost: Vec<String> = nodes
        .iter()
        .map(|n| format!("node {n}"))
        .chain(disks.iter().map(|d| format!("disk {d}")))
        .collect();
    out!(
        "if {} were lost: {} files unreadable, {} at risk (one more loss and they are gone); {} of chunks to rebuild",
        lost.join(" and "),
        r.files_unreadable,
        r.files_at_risk,
        human(r.rebuild_bytes)
    );
    print_files(r);
}

/// `wormfs recover --config NODE.toml`.
pub fn recover(config: &std::path::Path, as_json: bool) -> anyhow::Result<()> {
    let config = wormfs_node::config::NodeConfig::load(config)?;
    let r = wormfs_node::recover_offline(&config)?;
    if as_json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "files": r.files, "stripes": r.stripes, "chunks": r.chunks, "bytes": r.bytes,
                "chunks_left_out": r.chunks_left_out, "unreadable": r.unreadable,
                "moved": r.moved, "problems": r.problems,
                "backup": r.backup.as_ref().map(|b| json!({
                    "path": b.path, "last_applied": b.last_applied, "written_unix": b.written,
                })),
                "updated_stripes": r.updated_stripes, "renamed": r.renamed, "gone": r.gone,
            }))?
        );
    } else {
        match &r.backup {
            Some(b) => out!(
                "started from the metadata copy {} (op {}, written at Unix time {}); then from the chunk files:",
                b.path.display(),
                b.last_applied,
                b.written
            ),
            None => out!("no metadata copy on the disks; from the chunk files alone:"),
        }
        out!(
            "  {} stripes of known files updated, {} files renamed after the copy",
            r.updated_stripes,
            r.renamed.len()
        );
        for g in &r.gone {
            out!("  gone since the copy (its chunks are not on the disks): {g}");
        }
        out!(
            "recovered {} files ({}), {} stripes, {} chunks; {} chunks left out (damaged, older or second copies)",
            r.files,
            human(r.bytes),
            r.stripes,
            r.chunks,
            r.chunks_left_out
        );
        for u in &r.unreadable {
            out!("  unreadable: {u}");
        }
        for m in &r.moved {
            out!("  moved: {m}");
        }
        for p in &r.problems {
            out!("  not recovered: {p}");
        }
        let since = if r.backup.is_some() {
            "for what changed after the copy: "
        } else {
            ""
        };
        out!(
            "not on the disks, so not recovered {since}owners, modes and times (new files are \
             root's, 0644), directory policies, empty directories, symlinks and other special \
             files, and files or stripes small enough to be kept in the metadata \
             (policies.inline_max)"
        );
    }
    if !r.problems.is_empty() || !r.unreadable.is_empty() {
        anyhow::bail!(
            "{} files or stripes could not be fully recovered (listed above)",
            r.problems.len() + r.unreadable.len()
        );
    }
    Ok(())
}

/// `wormfs disk drain|undrain|remove DISK`.
pub async fn disk(node: &str, disk: &str, action: &str, as_json: bool) -> anyhow::Result<()> {
    let client = connect(node).await?;
    client
        .disk_command(disk, action)
        .await
        .with_context(|| format!("{action} disk {disk}"))?;
    if as_json {
        out!("{}", json!({"disk": disk, "done": action}));
        return Ok(());
    }
    match action {
        "drain" => out!(
            "disk {disk} is draining: it takes no new chunks, and repair moves its chunks to \
             other disks (`wormfs repair` shows it); then `wormfs disk remove {disk}`"
        ),
        "undrain" => out!("disk {disk} takes new chunks again"),
        _ => out!("disk {disk} removed from the cluster"),
    }
    Ok(())
}
