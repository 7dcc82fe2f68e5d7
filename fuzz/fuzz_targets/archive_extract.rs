//! Archives from upstream build servers: extracting arbitrary bytes as any kind must never
//! panic or write outside the destination, whatever it reports must match what is on disk, and
//! a bad archive is never reported as a local I/O failure.

#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use intact_archive::{ArchiveError, ArchiveKind, Limits, extract};
use libfuzzer_sys::fuzz_target;

static RUN: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = ArchiveKind::ALL[usize::from(selector) % ArchiveKind::ALL.len()];
    let root: PathBuf = std::env::temp_dir().join(format!(
        "intact-fuzz-archive-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let dest = root.join("dest");
    fs::create_dir_all(&dest).expect("create dest");
    fs::write(root.join("archive"), bytes).expect("write archive");
    let limits = Limits {
        max_total_bytes: 16 << 20,
        max_file_bytes: 8 << 20,
        max_entries: 10_000,
        max_ratio: 1000,
        max_decoder_memory: 32 << 20,
    };
    let result = extract(&root.join("archive"), kind, &dest, &limits, &mut |_| {});
    // The disk is fine here, so an I/O error can only be the archive's fault mislabelled as
    // the machine's (which staging reports as a server-side failure worth retrying).
    assert!(!matches!(result, Err(ArchiveError::Io(_))), "{kind:?}: {result:?}");
    if let Ok(files) = &result {
        for f in files {
            assert!(f.local.starts_with(&dest), "{f:?} outside dest");
            let meta = fs::symlink_metadata(&f.local).expect("extracted file exists");
            assert!(meta.is_file(), "{f:?} is not a regular file");
            assert_eq!(meta.len(), f.size, "{f:?} size differs on disk");
        }
    }
    let mut outside: Vec<_> = fs::read_dir(&root)
        .expect("read root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["archive", "dest"], "extraction wrote beside dest");
    fs::remove_dir_all(&root).expect("clean up");
});
