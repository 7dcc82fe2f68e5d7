//! Measurement 5: the server's peak resident memory (`VmHWM`) while it streams a large file out
//! (measurement 3) and in (measurement 4). Each of those runs on a freshly started server, so
//! its high-water mark belongs to that measurement alone. The peer for downloads is the nginx
//! worker that served them (also started fresh); for uploads there is no server peer.

use crate::report::{Better, Row};
use crate::stats::fmt_mib;

/// Memory figures of one measurement's server (and peer).
#[derive(Debug, Clone)]
pub struct MemorySample {
    /// `VmRSS` right after start-up, KiB.
    pub baseline_kib: u64,
    /// `VmHWM` at the end of the measurement, KiB.
    pub peak_kib: u64,
    /// The transfer the server did meanwhile, for the row label.
    pub during: String,
    /// The peer's name and peak, when it has one.
    pub peer: Option<(String, u64)>,
}

/// One `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Direct children of `pid` (nginx's workers under its master).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .map(|p| p.trim() == pid.to_string())
                })
                .unwrap_or(false)
        })
        .collect()
}

pub fn rows(download: Option<&MemorySample>, upload: Option<&MemorySample>) -> Vec<Row> {
    let mut rows = Vec::new();
    for (id, sample) in [("5a", download), ("5b", upload)] {
        let Some(s) = sample else { continue };
        let what = format!("server peak RSS (VmHWM) during {}", s.during);
        let intact = format!("{} (after start-up {})", fmt_mib(s.peak_kib), fmt_mib(s.baseline_kib));
        let reproduce = vec![format!(
            "grep -E 'VmRSS|VmHWM' /proc/$(pgrep -nx intact)/status   # after measurement {}",
            if id == "5a" { "3" } else { "4" }
        )];
        rows.push(match &s.peer {
            Some((peer, kib)) => Row::compare(
                id,
                what,
                (s.peak_kib as f64, intact),
                peer.clone(),
                (*kib as f64, fmt_mib(*kib)),
                Better::Smaller,
                reproduce,
            ),
            None => Row::alone(id, what, intact, "no server peer", reproduce),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_status() {
        let me = std::process::id();
        assert!(status_kib(me, "VmHWM").is_some_and(|k| k > 0));
        assert!(status_kib(me, "NoSuchField").is_none());
    }
}
