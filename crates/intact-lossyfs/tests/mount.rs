//! The lossy filesystem through a real mount: what the kernel sends for ordinary file calls
//! (create, write, rename, fsync of files and directories, mmap) is modelled, and a power cut
//! keeps exactly what was made durable. Needs FUSE (root and /dev/fuse): a machine without it
//! fails here, loudly, rather than skipping.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use intact_lossyfs::LossyFs;

fn mounted() -> (tempfile::TempDir, LossyFs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = LossyFs::mount(dir.path()).unwrap_or_else(|e| {
        panic!(
            "cannot mount the lossy FUSE filesystem on {}: {e} (needs /dev/fuse and root; CI has both)",
            dir.path().display()
        )
    });
    (dir, fs)
}

fn sync_dir(dir: &Path) {
    File::open(dir).expect("open dir").sync_all().expect("fsync dir");
}

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

#[test]
fn a_power_cut_keeps_exactly_what_was_fsynced() {
    let (dir, mut fs) = mounted();
    let root = dir.path();

    // Durable: written, fsynced, its directory fsynced.
    fs::create_dir(root.join("d")).expect("mkdir");
    sync_dir(root);
    let mut f = File::create(root.join("d/durable")).expect("create");
    f.write_all(b"kept").expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    sync_dir(&root.join("d"));
    // Appended to afterwards without fsync: the tail is lost.
    let mut f = OpenOptions::new()
        .append(true)
        .open(root.join("d/durable"))
        .expect("open");
    f.write_all(b" and lost").expect("append");
    drop(f);
    // Name durable, contents never fsynced: an empty file.
    File::create(root.join("d/empty"))
        .expect("create")
        .write_all(b"y")
        .expect("write");
    sync_dir(&root.join("d"));
    // Contents fsynced, name never made durable.
    let mut f = File::create(root.join("d/unnamed")).expect("create");
    f.write_all(b"x").expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    fs::write(root.join("d/durable2"), b"z").expect("write");
    // A rename not made durable is undone.
    fs::rename(root.join("d/durable"), root.join("d/renamed")).expect("rename");
    assert_eq!(read(&root.join("d/renamed")), Some(b"kept and lost".to_vec()));

    let report = fs.power_cut().expect("power cut");
    assert_eq!(read(&root.join("d/durable")), Some(b"kept".to_vec()));
    assert_eq!(read(&root.join("d/renamed")), None);
    assert_eq!(read(&root.join("d/unnamed")), None);
    assert_eq!(read(&root.join("d/empty")), Some(Vec::new()));
    assert_eq!(read(&root.join("d/durable2")), None);
    assert!(report.inodes_lost >= 2, "{report:?}");
    assert!(report.files_reverted >= 1, "{report:?}");
    assert_eq!(fs.stats().power_cuts, 1);
}

#[test]
fn large_files_seek_truncate_and_mmap_like_access_round_trip() {
    let (dir, mut fs) = mounted();
    let path = dir.path().join("big");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("create");
    f.write_all(&bytes).expect("write");
    f.seek(SeekFrom::Start(1_000_000)).expect("seek");
    f.write_all(b"patched").expect("patch");
    f.sync_data().expect("fdatasync");
    f.set_len(2_000_000).expect("truncate");
    drop(f);
    sync_dir(dir.path());
    let mut want = bytes.clone();
    want[1_000_000..1_000_007].copy_from_slice(b"patched");
    let mut got = Vec::new();
    File::open(&path).expect("open").read_to_end(&mut got).expect("read");
    assert_eq!(got.len(), 2_000_000);
    assert_eq!(got[..], want[..2_000_000]);

    fs.power_cut().expect("power cut");
    let got = fs::read(&path).expect("read after cut");
    assert_eq!(got.len(), 3_000_000, "the truncate was never fsynced");
    assert_eq!(got, want);
}

#[test]
fn listing_a_directory_while_deleting_from_it_sees_every_entry() {
    let (dir, _fs) = mounted();
    for i in 0..500 {
        fs::write(dir.path().join(format!("f{i:03}")), b"").expect("write");
    }
    let mut seen = 0;
    for entry in fs::read_dir(dir.path()).expect("read_dir") {
        fs::remove_file(entry.expect("entry").path()).expect("remove");
        seen += 1;
    }
    assert_eq!(seen, 500);
    assert_eq!(fs::read_dir(dir.path()).expect("read_dir").count(), 0);
}
