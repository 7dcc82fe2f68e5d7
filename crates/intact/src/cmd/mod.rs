//! One module per subcommand.

pub mod admin;
pub mod completions;
pub mod config;
pub mod get;
pub mod go;
pub mod hooks;
pub mod import_files;
pub mod ls;
pub mod migrate;
pub mod publish;
pub mod ready;
pub mod repos;
mod send;
pub mod serve;
pub mod stage;
pub mod tag;
pub mod token;
pub mod transfer;

/// Whether progress bars make sense (stderr is a terminal).
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Whether to draw progress bars: on a terminal, and never under `--json` (whose reader is a
/// program, not a person).
pub fn bars(json: bool) -> bool {
    !json && interactive()
}

/// What `--json` prints on every command that reports one result: that result as one JSON
/// document (pretty-printed), and nothing else, on stdout. Listings (`repos`, `ls`,
/// `hooks list`, `token list`) print one JSON object per line instead, as they go.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    println!("{text}");
    Ok(())
}

/// `1 file`, `2 files`: a count with its noun, plural when it is not one.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A size in the one style every command uses: bytes below 1 KiB (`1 byte`, `200 bytes`),
/// else one decimal of the largest binary unit (`1.5 MiB`).
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return count(n, "byte");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sizes_read_naturally() {
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }
}
