//! The results table: one row per figure, intact beside its peer, the ratio of their headline
//! numbers, and the command that reproduces each side.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::Ctx;
use crate::stats::fmt_dur;

/// Which way a figure is good.
#[derive(Debug, Clone, Copy)]
pub enum Better {
    /// Throughput: more is better ("faster").
    Higher,
    /// Latency: less is better ("faster").
    Lower,
    /// Memory: less is better ("smaller").
    Smaller,
    /// The peer is a floor intact cannot beat (the disk doing only the IO): "% of floor".
    Floor,
}

pub struct Row {
    /// `1a`, `2b`, ...: stable labels the docs refer to.
    pub id: &'static str,
    pub what: String,
    /// The figure as shown (may hold several numbers).
    pub intact: String,
    /// Who the peer is, e.g. `nginx 1.22.1`; `—` when there is none.
    pub peer: String,
    pub peer_figure: String,
    /// intact ÷ peer of the headline numbers.
    pub ratio: Option<f64>,
    pub verdict: String,
    /// Commands that reproduce the figure (intact's, then the peer's).
    pub reproduce: Vec<String>,
}

impl Row {
    /// A row comparing two headline numbers.
    #[allow(clippy::too_many_arguments)]
    pub fn compare(
        id: &'static str,
        what: impl Into<String>,
        intact: (f64, String),
        peer: impl Into<String>,
        peer_figure: (f64, String),
        better: Better,
        reproduce: Vec<String>,
    ) -> Self {
        let peer = peer.into();
        let ratio = (peer_figure.0 > 0.0).then(|| intact.0 / peer_figure.0);
        let verdict = ratio.map_or_else(|| "—".to_owned(), |r| verdict(r, better, &peer));
        Self {
            id,
            what: what.into(),
            intact: intact.1,
            peer,
            peer_figure: peer_figure.1,
            ratio,
            verdict,
            reproduce,
        }
    }

    /// A row with no peer figure (the peer could not run, or there is none).
    pub fn alone(id: &'static str, what: impl Into<String>, intact: String, why: &str, reproduce: Vec<String>) -> Self {
        Self {
            id,
            what: what.into(),
            intact,
            peer: "—".into(),
            peer_figure: why.into(),
            ratio: None,
            verdict: "—".into(),
            reproduce,
        }
    }
}

fn verdict(ratio: f64, better: Better, peer: &str) -> String {
    let peer_short = peer.split_whitespace().next().unwrap_or(peer);
    let (intact_wins, factor, word) = match better {
        Better::Higher => (ratio >= 1.0, if ratio >= 1.0 { ratio } else { 1.0 / ratio }, "faster"),
        Better::Lower => (ratio <= 1.0, if ratio <= 1.0 { 1.0 / ratio } else { ratio }, "faster"),
        Better::Smaller => (ratio <= 1.0, if ratio <= 1.0 { 1.0 / ratio } else { ratio }, "smaller"),
        Better::Floor => return format!("{:.0}% of the floor", ratio * 100.0),
    };
    if (0.95..=1.05).contains(&factor) {
        return "on par".into();
    }
    if intact_wins {
        format!("intact {factor:.1}× {word}")
    } else {
        format!("{peer_short} {factor:.1}× {word}")
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// What machine this ran on, in one line.
fn machine(work: &Path) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {mem_gib:.0} GiB RAM, Linux {}, scratch on {}",
        kernel.trim(),
        filesystem_of(work)
    )
}

/// The filesystem type and device of the mount holding `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, point, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point).then(|| (point.len(), format!("{fs} ({dev})")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown filesystem".to_owned(), |(_, s)| s)
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

pub fn render(ctx: &Ctx, rows: &[Row], notes: &[String], took: Duration) -> String {
    let mut md = String::new();
    let when = httpdate::fmt_http_date(std::time::SystemTime::now());
    let _ = writeln!(md, "# intact benchmark results\n");
    let _ = writeln!(
        md,
        "{when} · {} · intact at {} · run took {}\n",
        machine(&ctx.work),
        git_rev(),
        fmt_dur(took)
    );
    let _ = writeln!(
        md,
        "| # | measurement | intact | peer | peer figure | intact ÷ peer | verdict |\n|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let ratio = r.ratio.map_or_else(|| "—".to_owned(), |x| format!("{x:.3}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            cell(&r.what),
            cell(&r.intact),
            cell(&r.peer),
            cell(&r.peer_figure),
            ratio,
            cell(&r.verdict)
        );
    }
    let _ = writeln!(
        md,
        "\nRatios divide the headline numbers (the first number in each cell)."
    );
    let _ = writeln!(md, "\n## Reproduce\n");
    for r in rows {
        for cmd in &r.reproduce {
            let _ = writeln!(md, "* {}: `{}`", r.id, cmd);
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(md, "* {n}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_name_the_winner() {
        assert_eq!(verdict(2.0, Better::Higher, "nginx 1.22"), "intact 2.0× faster");
        assert_eq!(verdict(0.5, Better::Higher, "nginx 1.22"), "nginx 2.0× faster");
        assert_eq!(verdict(0.25, Better::Lower, "nginx"), "intact 4.0× faster");
        assert_eq!(verdict(3.0, Better::Smaller, "nginx"), "nginx 3.0× smaller");
        assert_eq!(verdict(1.01, Better::Lower, "nginx"), "on par");
        assert_eq!(verdict(0.62, Better::Floor, "dd"), "62% of the floor");
    }
}
