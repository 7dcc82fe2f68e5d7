//! Integration tests: real archives built in the test (tar via the tar crate, gzip, bzip2, xz,
//! zstd and zip encoders), extracted into a fresh directory beside a sentinel directory that no
//! extraction, successful or refused, may touch.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use intact_archive::{ArchiveError, ArchiveKind, ExtractedFile, Limits, extract};
use intact_core::Digest;
use tar::{EntryType, Header};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Building archives

/// Deterministic, incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A tar header with a raw name (no validation, unlike the tar crate's path setters).
fn header(name: &[u8], kind: EntryType, size: u64, link: Option<&[u8]>) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(link) = link {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_cksum();
    h
}

struct TarBuf(tar::Builder<Vec<u8>>);

impl TarBuf {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn raw(&mut self, name: &[u8], kind: EntryType, data: &[u8], link: Option<&[u8]>) -> &mut Self {
        let h = header(name, kind, data.len() as u64, link);
        self.0.append(&h, data).expect("append to an in-memory tar");
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Regular, data, None)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Directory, b"", None)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Symlink, b"", Some(target.as_bytes()))
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Link, b"", Some(target.as_bytes()))
    }

    /// Writes the end-of-archive marker and returns the bytes (so chains can end with it).
    fn finish(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .expect("finish an in-memory tar")
    }
}

fn compress(kind: ArchiveKind, tar: &[u8]) -> Vec<u8> {
    match kind {
        ArchiveKind::Tar => tar.to_vec(),
        ArchiveKind::TarGz => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(tar).expect("gzip");
            enc.finish().expect("gzip")
        }
        ArchiveKind::TarBz2 => {
            let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            enc.write_all(tar).expect("bzip2");
            enc.finish().expect("bzip2")
        }
        ArchiveKind::TarXz => {
            let mut enc = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6)).expect("xz");
            enc.write_all(tar).expect("xz");
            enc.finish().expect("xz")
        }
        ArchiveKind::TarZst => ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest),
        ArchiveKind::Zip => panic!("zip archives are built with ZipBuf"),
    }
}

struct ZipBuf(ZipWriter<io::Cursor<Vec<u8>>>);

impl ZipBuf {
    fn new() -> Self {
        Self(ZipWriter::new(io::Cursor::new(Vec::new())))
    }

    fn options(method: CompressionMethod) -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(method)
    }

    fn file_with(&mut self, name: &str, data: &[u8], method: CompressionMethod) -> &mut Self {
        self.0.start_file(name, Self::options(method)).expect("zip start_file");
        self.0.write_all(data).expect("zip write");
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_with(name, data, CompressionMethod::Deflated)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.0
            .add_directory(name, Self::options(CompressionMethod::Stored))
            .expect("zip add_directory");
        self
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.0
            .add_symlink(name, target, Self::options(CompressionMethod::Stored))
            .expect("zip add_symlink");
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.finish().expect("zip finish").into_inner()
    }
}

/// Offsets of every occurrence of `needle` (zip record signatures, names) in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

const LOCAL_SIG: &[u8] = b"PK\x03\x04";
const CENTRAL_SIG: &[u8] = b"PK\x01\x02";

/// Overwrites a little-endian field at `offset` from each record with signature `sig`.
fn patch_records(zip: &mut [u8], sig: &[u8], offset: usize, value: &[u8]) {
    for at in find_all(zip, sig) {
        zip[at + offset..at + offset + value.len()].copy_from_slice(value);
    }
}

// ---------------------------------------------------------------------------------------------
// Extracting beside a sentinel

/// `<tmp>/a/b/{archive, dest/, sentinel/keep.txt}`: deep enough that `../../evil` from `dest`
/// still lands inside `<tmp>`, where the walk after each test would find it.
struct Fixture {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("a/b");
        fs::create_dir_all(root.join("dest")).expect("create dest");
        fs::create_dir_all(root.join("sentinel")).expect("create sentinel");
        fs::write(root.join("sentinel/keep.txt"), b"keep").expect("write sentinel");
        Self { tmp, root }
    }

    fn dest(&self) -> PathBuf {
        self.root.join("dest")
    }

    fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    fn run_with(&self, kind: ArchiveKind, bytes: &[u8], limits: &Limits) -> Result<Vec<ExtractedFile>, ArchiveError> {
        fs::write(self.archive(), bytes).expect("write archive");
        let mut seen = Vec::new();
        let result = extract(&self.archive(), kind, &self.dest(), limits, &mut |n| seen.push(n));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress must increase: {seen:?}");
        assert!(
            seen.iter().all(|&n| n <= bytes.len() as u64),
            "progress beyond the archive: {seen:?}"
        );
        if result.is_ok() {
            assert!(seen.last().is_some_and(|&n| n > 0), "no progress reported");
        }
        self.assert_nothing_outside_dest();
        result
    }

    fn run(&self, kind: ArchiveKind, bytes: &[u8]) -> Result<Vec<ExtractedFile>, ArchiveError> {
        self.run_with(kind, bytes, &Limits::default())
    }

    /// Everything in the temp dir is the fixture itself or lies under `dest`.
    fn assert_nothing_outside_dest(&self) {
        let dest = self.dest();
        let mut found = BTreeSet::new();
        walk(self.tmp.path(), &mut |p| {
            if !p.starts_with(&dest) {
                found.insert(p.strip_prefix(self.tmp.path()).expect("inside tmp").to_path_buf());
            }
        });
        let expected: BTreeSet<PathBuf> = ["a", "a/b", "a/b/archive", "a/b/sentinel", "a/b/sentinel/keep.txt"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(found, expected, "something was written outside dest");
        assert_eq!(
            fs::read(self.root.join("sentinel/keep.txt")).expect("sentinel"),
            b"keep"
        );
    }

    /// Bytes of all files under `dest`.
    fn bytes_in_dest(&self) -> u64 {
        let mut total = 0;
        walk(&self.dest(), &mut |p| {
            let meta = fs::symlink_metadata(p).expect("metadata");
            assert!(
                !meta.file_type().is_symlink(),
                "extraction created a symlink at {}",
                p.display()
            );
            if meta.is_file() {
                total += meta.len();
            }
        });
        total
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("dir entry").path();
        f(&path);
        if fs::symlink_metadata(&path).expect("metadata").is_dir() {
            walk(&path, f);
        }
    }
}

fn paths(files: &[ExtractedFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

/// Checks each extracted file against its expected content, on disk and in the result.
fn assert_files(fx: &Fixture, files: &[ExtractedFile], expected: &[(&str, &[u8])]) {
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(paths(files), expected.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    for (file, (_, content)) in files.iter().zip(&expected) {
        assert_eq!(file.size, content.len() as u64, "{}", file.path);
        assert_eq!(file.sha256, Digest::of(content), "{}", file.path);
        assert!(file.local.starts_with(fx.dest()), "{}", file.local.display());
        assert_eq!(
            fs::read(&file.local).expect("read extracted file"),
            *content,
            "{}",
            file.path
        );
    }
    assert_eq!(
        fx.bytes_in_dest(),
        expected.iter().map(|(_, c)| c.len() as u64).sum::<u64>()
    );
}

fn unsafe_reason(r: Result<Vec<ExtractedFile>, ArchiveError>) -> (String, String) {
    match r {
        Err(ArchiveError::UnsafePath { entry, reason }) => (entry, reason),
        other => panic!("expected UnsafePath, got {other:?}"),
    }
}

fn is_corrupt(r: &Result<Vec<ExtractedFile>, ArchiveError>) -> bool {
    matches!(r, Err(ArchiveError::Corrupt { .. }))
}

const TAR_KINDS: [ArchiveKind; 5] = [
    ArchiveKind::Tar,
    ArchiveKind::TarGz,
    ArchiveKind::TarBz2,
    ArchiveKind::TarXz,
    ArchiveKind::TarZst,
];

// ---------------------------------------------------------------------------------------------
// Round trips

fn sample() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("top/a.txt", b"hello\n".to_vec()),
        ("top/empty", Vec::new()),
        ("top/sub/deeper/b.bin", noise(300_000, 1)),
        ("top/sub/zeros", vec![0; 100_000]),
        ("c", b"at the root, named ./c in the archive".to_vec()),
    ]
}

#[test]
fn every_kind_round_trips_nested_directories() -> TestResult {
    let sample = sample();
    let expected: Vec<(&str, &[u8])> = sample.iter().map(|(p, c)| (*p, c.as_slice())).collect();
    let mut tar = TarBuf::new();
    tar.dir("./").dir("top/").dir("top/sub/").dir("top/sub/deeper/");
    for (p, c) in &sample {
        let name = if *p == "c" { "./c".to_string() } else { (*p).to_string() };
        tar.file(&name, c);
    }
    let tar = tar.finish();
    for kind in TAR_KINDS {
        let fx = Fixture::new();
        let files = fx
            .run(kind, &compress(kind, &tar))
            .map_err(|e| format!("{kind:?}: {e}"))?;
        assert_files(&fx, &files, &expected);
    }

    let mut zip = ZipBuf::new();
    zip.dir("top/").dir("top/sub/");
    for (p, c) in &sample {
        zip.file(p, c);
    }
    zip.file_with("stored.txt", b"stored, not deflated", CompressionMethod::Stored);
    let fx = Fixture::new();
    let files = fx.run(ArchiveKind::Zip, &zip.finish())?;
    let mut expected = expected.clone();
    expected.push(("stored.txt", b"stored, not deflated"));
    assert_files(&fx, &files, &expected);
    Ok(())
}

#[test]
fn long_names_through_gnu_and_pax_headers() -> TestResult {
    let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(90));
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    builder.append_data(&mut h, &long, &b"long"[..])?;
    let fx = Fixture::new();
    let files = fx.run(ArchiveKind::Tar, &builder.into_inner()?)?;
    assert_files(&fx, &files, &[(long.as_str(), b"long")]);
    Ok(())
}

#[test]
fn concatenated_gzip_members_are_one_stream() -> TestResult {
    let mut tar = TarBuf::new();
    tar.file("a", &noise(10_000, 2)).file("b", b"bee");
    let tar = tar.finish();
    let (head, tail) = tar.split_at(3000);
    let mut gz = compress(ArchiveKind::TarGz, head);
    gz.extend(compress(ArchiveKind::TarGz, tail));
    let fx = Fixture::new();
    let files = fx.run(ArchiveKind::TarGz, &gz)?;
    assert_eq!(paths(&files), ["a", "b"]);
    Ok(())
}

#[test]
fn empty_but_well_formed_archives_extract_nothing() -> TestResult {
    let fx = Fixture::new();
    assert!(fx.run(ArchiveKind::Tar, &TarBuf::new().finish())?.is_empty());
    let fx = Fixture::new();
    assert!(fx.run(ArchiveKind::Zip, &ZipBuf::new().finish())?.is_empty());
    Ok(())
}

#[test]
fn destination_must_be_an_empty_directory() {
    let fx = Fixture::new();
    fs::write(fx.dest().join("already"), b"x").expect("write");
    let r = fx.run(ArchiveKind::Tar, &TarBuf::new().finish());
    assert!(
        matches!(r, Err(ArchiveError::Io(ref e)) if e.kind() == io::ErrorKind::InvalidInput),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile names

#[test]
fn zip_slip_is_refused() {
    let fx = Fixture::new();
    let tar = TarBuf::new().file("ok", b"fine").file("../../evil", b"pwned").finish();
    let (entry, reason) = unsafe_reason(fx.run(ArchiveKind::Tar, &tar));
    assert_eq!(
        (entry.as_str(), reason.as_str()),
        ("../../evil", "name contains a '..' component")
    );

    let fx = Fixture::new();
    let zip = {
        let mut z = ZipBuf::new();
        z.file("ok", b"fine").file("../../evil", b"pwned");
        z.finish()
    };
    let (entry, reason) = unsafe_reason(fx.run(ArchiveKind::Zip, &zip));
    assert_eq!(
        (entry.as_str(), reason.as_str()),
        ("../../evil", "name contains a '..' component")
    );

    let fx = Fixture::new();
    let tar = TarBuf::new().file("a/../../evil", b"pwned").finish();
    assert!(unsafe_reason(fx.run(ArchiveKind::Tar, &tar)).1.contains(".."));
}

#[test]
fn absolute_paths_drive_letters_and_backslashes_are_refused() {
    for (name, rule) in [
        ("/tmp/intact-abs-evil", "absolute path"),
        ("C:/evil", "name starts with a drive letter"),
        ("..\\..\\evil", "name contains a backslash"),
    ] {
        let fx = Fixture::new();
        let tar = TarBuf::new().file(name, b"pwned").finish();
        assert_eq!(unsafe_reason(fx.run(ArchiveKind::Tar, &tar)).1, rule, "tar {name}");

        let fx = Fixture::new();
        let mut z = ZipBuf::new();
        z.file(name, b"pwned");
        assert_eq!(
            unsafe_reason(fx.run(ArchiveKind::Zip, &z.finish())).1,
            rule,
            "zip {name}"
        );
    }
    assert!(!Path::new("/tmp/intact-abs-evil").exists());
}

#[test]
fn names_outside_the_file_path_grammar_are_refused_with_the_rule() {
    let fx = Fixture::new();
    let tar = TarBuf::new().file("has space.txt", b"x").finish();
    let (entry, reason) = unsafe_reason(fx.run(ArchiveKind::Tar, &tar));
    assert_eq!(entry, "has space.txt");
    assert!(reason.contains("' ' is not allowed"), "{reason}");

    let fx = Fixture::new();
    let tar = TarBuf::new().raw(b"bad\xff", EntryType::Regular, b"x", None).finish();
    assert_eq!(
        unsafe_reason(fx.run(ArchiveKind::Tar, &tar)).1,
        "name is not valid utf-8"
    );
}

#[test]
fn names_differing_only_in_case_are_refused() {
    let fx = Fixture::new();
    let mut z = ZipBuf::new();
    z.file("README", b"1").file("readme", b"2");
    assert!(
        unsafe_reason(fx.run(ArchiveKind::Zip, &z.finish()))
            .1
            .contains("letter case")
    );

    let fx = Fixture::new();
    let tar = TarBuf::new().file("Dir/a", b"1").file("dir/b", b"2").finish();
    assert!(unsafe_reason(fx.run(ArchiveKind::Tar, &tar)).1.contains("letter case"));
}

#[test]
fn a_file_and_a_directory_cannot_share_a_path() {
    let fx = Fixture::new();
    let tar = TarBuf::new().file("a", b"file").file("a/b", b"under a file").finish();
    assert!(
        unsafe_reason(fx.run(ArchiveKind::Tar, &tar))
            .1
            .contains("is a file extracted earlier")
    );

    let fx = Fixture::new();
    let tar = TarBuf::new().file("a/b", b"x").file("a", b"over a directory").finish();
    assert!(
        unsafe_reason(fx.run(ArchiveKind::Tar, &tar))
            .1
            .contains("already a directory")
    );
}

// ---------------------------------------------------------------------------------------------
// Duplicates

#[test]
fn tar_duplicates_later_entry_wins() -> TestResult {
    let fx = Fixture::new();
    let tar = TarBuf::new()
        .file("d/x", b"first")
        .file("other", b"o")
        .file("./d/x", b"second, longer")
        .finish();
    let files = fx.run(ArchiveKind::Tar, &tar)?;
    assert_files(&fx, &files, &[("d/x", b"second, longer"), ("other", b"o")]);
    Ok(())
}

#[test]
fn zip_duplicate_names_are_refused() {
    // The zip writer refuses duplicates, so write two names and make them equal afterwards.
    let mut z = ZipBuf::new();
    z.file("dupA", b"one").file("dupB", b"two");
    let mut zip = z.finish();
    for at in find_all(&zip, b"dupB") {
        zip[at..at + 4].copy_from_slice(b"dupA");
    }
    let fx = Fixture::new();
    let (_, reason) = unsafe_reason(fx.run(ArchiveKind::Zip, &zip));
    assert!(reason.contains("more than once"), "{reason}");

    // Names that differ in the archive but not once normalized.
    let mut z = ZipBuf::new();
    z.file("a", b"one").file("./a", b"two");
    let fx = Fixture::new();
    assert!(
        unsafe_reason(fx.run(ArchiveKind::Zip, &z.finish()))
            .1
            .contains("duplicate path")
    );
}

// ---------------------------------------------------------------------------------------------
// Links

#[test]
fn symlinks_pointing_outside_are_refused() {
    for target in ["../../sentinel/keep.txt", "/etc/passwd", "../x", "d/../../x"] {
        let fx = Fixture::new();
        let tar = TarBuf::new().file("f", b"x").symlink("l", target).finish();
        let r = fx.run(ArchiveKind::Tar, &tar);
        assert!(
            matches!(&r, Err(ArchiveError::LinkEscape { entry, target: t }) if entry == "l" && t == target),
            "tar {target}: {r:?}"
        );

        let fx = Fixture::new();
        let mut z = ZipBuf::new();
        z.file("f", b"x").symlink("l", target);
        let r = fx.run(ArchiveKind::Zip, &z.finish());
        assert!(matches!(r, Err(ArchiveError::LinkEscape { .. })), "zip {target}: {r:?}");
    }
}

#[test]
fn symlinks_inside_become_copies() -> TestResult {
    let fx = Fixture::new();
    let tar = TarBuf::new()
        .file("d/f", b"target bytes")
        .symlink("d/l", "f")
        .symlink("top", "d/../d/./f")
        .symlink("chain", "top")
        .finish();
    let files = fx.run(ArchiveKind::Tar, &tar)?;
    let t: &[u8] = b"target bytes";
    assert_files(&fx, &files, &[("chain", t), ("d/f", t), ("d/l", t), ("top", t)]);

    let fx = Fixture::new();
    let mut z = ZipBuf::new();
    z.file("d/f", b"target bytes").symlink("d/l", "./f");
    let files = fx.run(ArchiveKind::Zip, &z.finish())?;
    assert_files(&fx, &files, &[("d/f", t), ("d/l", t)]);
    Ok(())
}

#[test]
fn symlinks_may_precede_their_targets_and_copy_their_final_content() -> TestResult {
    // tar and zip store entries in directory order: a link often comes before its target.
    let fx = Fixture::new();
    let tar = TarBuf::new()
        .symlink("sub/link", "../a.txt")
        .symlink("chain", "sub/link")
        .file("a.txt", b"first")
        .file("a.txt", b"final")
        .finish();
    let files = fx.run(ArchiveKind::Tar, &tar)?;
    let t: &[u8] = b"final";
    assert_files(&fx, &files, &[("a.txt", t), ("chain", t), ("sub/link", t)]);

    let fx = Fixture::new();
    let mut z = ZipBuf::new();
    z.symlink("sub/link", "../a.txt").file("a.txt", b"zipped");
    let files = fx.run(ArchiveKind::Zip, &z.finish())?;
    let t: &[u8] = b"zipped";
    assert_files(&fx, &files, &[("a.txt", t), ("sub/link", t)]);
    Ok(())
}

#[test]
fn links_to_missing_directory_or_looping_targets_are_refused() {
    let cases = [
        (
            "missing",
            TarBuf::new().symlink("l", "nowhere").finish(),
            "not a file in the archive",
        ),
        (
            "directory",
            TarBuf::new().file("d/f", b"x").symlink("l", "d").finish(),
            "a directory",
        ),
        (
            "loop",
            TarBuf::new().symlink("l", "m").symlink("m", "l").finish(),
            "symlink loop",
        ),
        ("self", TarBuf::new().symlink("l", "./l").finish(), "symlink loop"),
        (
            "hardlink first",
            TarBuf::new().hardlink("l", "f").file("f", b"x").finish(),
            "extracted earlier",
        ),
    ];
    for (what, tar, why) in cases {
        let fx = Fixture::new();
        let r = fx.run(ArchiveKind::Tar, &tar);
        assert!(
            matches!(&r, Err(ArchiveError::UnsupportedEntry { entry, kind }) if entry == "l" && kind.contains(why)),
            "{what}: {r:?}"
        );
    }
}

#[test]
fn symlinks_neither_replace_nor_are_replaced_nor_hold_files() {
    let cases = [
        TarBuf::new().file("x", b"1").symlink("x", "y").file("y", b"2").finish(),
        TarBuf::new().file("y", b"2").symlink("x", "y").file("x", b"1").finish(),
        TarBuf::new()
            .file("y", b"2")
            .symlink("x", "y")
            .file("x/inside", b"1")
            .finish(),
    ];
    for tar in cases {
        let fx = Fixture::new();
        let (entry, reason) = unsafe_reason(fx.run(ArchiveKind::Tar, &tar));
        assert!(
            entry.starts_with('x') && (reason.contains("duplicate") || reason.contains("symlink")),
            "{reason}"
        );
    }
}

#[test]
fn hardlinks_become_copies_and_cannot_escape() -> TestResult {
    let fx = Fixture::new();
    let tar = TarBuf::new()
        .file("d/f", b"linked")
        .hardlink("h", "./d/f")
        .hardlink("d/h2", "d/f")
        .finish();
    let files = fx.run(ArchiveKind::Tar, &tar)?;
    let t: &[u8] = b"linked";
    assert_files(&fx, &files, &[("d/f", t), ("d/h2", t), ("h", t)]);

    for target in ["../outside", "/etc/passwd"] {
        let fx = Fixture::new();
        let tar = TarBuf::new().file("f", b"x").hardlink("h", target).finish();
        let r = fx.run(ArchiveKind::Tar, &tar);
        assert!(matches!(r, Err(ArchiveError::LinkEscape { .. })), "{target}: {r:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Entry kinds

#[test]
fn devices_and_fifos_are_refused() {
    for (kind, name) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
    ] {
        let fx = Fixture::new();
        let tar = TarBuf::new().raw(b"dev/null", kind, b"", None).finish();
        let r = fx.run(ArchiveKind::Tar, &tar);
        assert!(
            matches!(&r, Err(ArchiveError::UnsupportedEntry { entry, kind }) if entry == "dev/null" && kind == name),
            "{r:?}"
        );
    }

    // A zip member whose unix mode says character device.
    let mut z = ZipBuf::new();
    z.file_with("dev", b"", CompressionMethod::Stored);
    let mut zip = z.finish();
    patch_records(&mut zip, CENTRAL_SIG, 5, &[3]); // version made by: unix
    patch_records(&mut zip, CENTRAL_SIG, 38, &((0o020_644u32) << 16).to_le_bytes());
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Zip, &zip);
    assert!(
        matches!(&r, Err(ArchiveError::UnsupportedEntry { kind, .. }) if kind == "character device"),
        "{r:?}"
    );
}

#[test]
fn unsupported_zip_compression_is_refused_by_name() {
    let mut z = ZipBuf::new();
    z.file_with("f", b"data", CompressionMethod::Stored);
    let mut zip = z.finish();
    // Claim bzip2 (method 12) in both headers.
    patch_records(&mut zip, LOCAL_SIG, 8, &12u16.to_le_bytes());
    patch_records(&mut zip, CENTRAL_SIG, 10, &12u16.to_le_bytes());
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Zip, &zip);
    assert!(
        matches!(&r, Err(ArchiveError::UnsupportedEntry { entry, .. }) if entry == "f"),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits

fn limit(r: &Result<Vec<ExtractedFile>, ArchiveError>) -> Option<(&'static str, u64)> {
    match r {
        Err(ArchiveError::LimitExceeded { what, limit, .. }) => Some((*what, *limit)),
        _ => None,
    }
}

/// A tar holding one file of `len` zero bytes, gzipped as it is built (never in memory).
fn zeros_tar_gz(len: u64) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best()));
    let h = header(b"zeros", EntryType::Regular, len, None);
    builder.append(&h, io::repeat(0).take(len)).expect("append zeros");
    builder.into_inner().expect("finish tar").finish().expect("finish gzip")
}

#[test]
fn a_gzip_bomb_is_stopped_by_the_ratio_without_writing_past_it() {
    let bomb = zeros_tar_gz(200 * MIB);
    assert!(bomb.len() < 1024 * 1024, "the bomb should be small: {}", bomb.len());
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::TarGz, &bomb);
    assert_eq!(limit(&r), Some(("expansion ratio", 200)), "{r:?}");
    let cap = 200 * bomb.len() as u64;
    let written = fx.bytes_in_dest();
    assert!(written <= cap, "wrote {written} bytes, cap {cap}");
    assert!(written < 200 * MIB);

    // With the ratio off, the total and per-file limits hold on their own.
    let fx = Fixture::new();
    let limits = Limits {
        max_ratio: 0,
        max_total_bytes: 3 * MIB,
        ..Limits::default()
    };
    let r = fx.run_with(ArchiveKind::TarGz, &bomb, &limits);
    assert_eq!(limit(&r), Some(("total bytes", 3 * MIB)), "{r:?}");
    assert!(fx.bytes_in_dest() <= 3 * MIB);
}

#[test]
fn a_zip_bomb_is_stopped_by_the_ratio() {
    let mut z = ZipBuf::new();
    z.0.start_file("zeros", ZipBuf::options(CompressionMethod::Deflated))
        .expect("start");
    io::copy(&mut io::repeat(0).take(50 * MIB), &mut z.0).expect("write zeros");
    let bomb = z.finish();
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Zip, &bomb);
    assert_eq!(limit(&r), Some(("expansion ratio", 200)), "{r:?}");
    assert!(fx.bytes_in_dest() <= 200 * bomb.len() as u64);
}

#[test]
fn limits_count_real_bytes_and_entries() {
    // Three files of 2 MiB under a 5 MiB total: the third stops at the limit.
    let mut tar = TarBuf::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        tar.file(name, &noise(2 * MIB as usize, i as u64));
    }
    let tar = tar.finish();
    let fx = Fixture::new();
    let limits = Limits {
        max_total_bytes: 5 * MIB,
        ..Limits::default()
    };
    let r = fx.run_with(ArchiveKind::Tar, &tar, &limits);
    assert_eq!(limit(&r), Some(("total bytes", 5 * MIB)), "{r:?}");
    // The chunk that would cross the limit is refused whole, so a little less may be written.
    let written = fx.bytes_in_dest();
    assert!((4 * MIB..=5 * MIB).contains(&written), "{written}");

    let fx = Fixture::new();
    let limits = Limits {
        max_file_bytes: MIB,
        ..Limits::default()
    };
    let r = fx.run_with(ArchiveKind::Tar, &tar, &limits);
    assert_eq!(limit(&r), Some(("file bytes", MIB)), "{r:?}");
    assert_eq!(fx.bytes_in_dest(), 0);

    let fx = Fixture::new();
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let r = fx.run_with(ArchiveKind::Tar, &tar, &limits);
    assert_eq!(limit(&r), Some(("entries", 2)), "{r:?}");

    let mut z = ZipBuf::new();
    z.file("a", b"1").file("b", b"2").file("c", b"3");
    let fx = Fixture::new();
    let r = fx.run_with(ArchiveKind::Zip, &z.finish(), &limits);
    assert_eq!(limit(&r), Some(("entries", 2)), "{r:?}");
    assert_eq!(fx.bytes_in_dest(), 0);
}

#[test]
fn symlink_copies_count_against_the_limits() {
    let mut tar = TarBuf::new();
    tar.file("f", &noise(MIB as usize, 9));
    for i in 0..10 {
        tar.symlink(&format!("l{i}"), "f");
    }
    let fx = Fixture::new();
    let limits = Limits {
        max_total_bytes: 4 * MIB,
        ..Limits::default()
    };
    let r = fx.run_with(ArchiveKind::Tar, &tar.finish(), &limits);
    assert_eq!(limit(&r), Some(("total bytes", 4 * MIB)), "{r:?}");
    assert!(fx.bytes_in_dest() <= 4 * MIB);
}

#[test]
fn huge_tar_metadata_is_refused_before_it_is_buffered() {
    // A GNU long-name record of 2 MiB: the tar crate would read it whole into memory.
    let mut tar = TarBuf::new();
    tar.raw(
        b"././@LongLink",
        EntryType::GNULongName,
        &vec![b'a'; 2 * MIB as usize],
        None,
    )
    .file("x", b"x");
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Tar, &tar.finish());
    assert_eq!(limit(&r).map(|l| l.0), Some("tar metadata bytes"), "{r:?}");
}

#[test]
fn decoders_may_not_allocate_past_the_memory_limit() {
    let tar = TarBuf::new().file("f", b"x").finish();
    let limits = Limits {
        max_decoder_memory: MIB,
        ..Limits::default()
    };
    // xz preset 6 uses an 8 MiB dictionary.
    let fx = Fixture::new();
    let r = fx.run_with(ArchiveKind::TarXz, &compress(ArchiveKind::TarXz, &tar), &limits);
    assert_eq!(limit(&r).map(|l| l.0), Some("decoder memory"), "{r:?}");

    // A zstd frame header asking for a 1 GiB window.
    let frame = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xA0, 0, 0, 0, 0];
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::TarZst, &frame);
    assert_eq!(limit(&r).map(|l| l.0), Some("decoder memory"), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Lies and truncation

#[test]
fn a_tar_header_claiming_more_data_than_there_is_is_corrupt() {
    let mut builder = tar::Builder::new(Vec::new());
    // The header promises 1 MiB; 10 bytes follow, then the end of the archive.
    builder
        .append(&header(b"liar", EntryType::Regular, MIB, None), &b"0123456789"[..])
        .expect("append");
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Tar, &builder.into_inner().expect("finish"));
    assert!(is_corrupt(&r), "{r:?}");
    assert!(fx.bytes_in_dest() < MIB);
}

#[test]
fn a_tar_header_claiming_less_data_than_there_is_is_corrupt() {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(&header(b"liar", EntryType::Regular, 5, None), &vec![b'x'; 2000][..])
        .expect("append");
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Tar, &builder.into_inner().expect("finish"));
    assert!(is_corrupt(&r), "{r:?}");
}

#[test]
fn a_zip_declaring_the_wrong_size_is_corrupt() {
    for declared in [10u32, 100_000] {
        let mut z = ZipBuf::new();
        z.file("f", &noise(1000, 3));
        let mut zip = z.finish();
        patch_records(&mut zip, LOCAL_SIG, 22, &declared.to_le_bytes());
        patch_records(&mut zip, CENTRAL_SIG, 24, &declared.to_le_bytes());
        let fx = Fixture::new();
        let r = fx.run(ArchiveKind::Zip, &zip);
        assert!(is_corrupt(&r), "declared {declared}: {r:?}");
        assert!(fx.bytes_in_dest() <= u64::from(declared));
    }
}

#[test]
fn zip_central_entries_must_match_their_local_headers() {
    // Point the second member's central record at the first member's local header: the
    // overlap behind non-recursive zip bombs, and a name the local header does not carry.
    let mut z = ZipBuf::new();
    z.file_with("one", b"1111", CompressionMethod::Stored)
        .file_with("two", b"2222", CompressionMethod::Stored);
    let mut zip = z.finish();
    let central = find_all(&zip, CENTRAL_SIG);
    assert_eq!(central.len(), 2);
    let first_local = zip[central[0] + 42..central[0] + 46].to_vec();
    zip[central[1] + 42..central[1] + 46].copy_from_slice(&first_local);
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Zip, &zip);
    assert!(is_corrupt(&r), "{r:?}");
    assert_eq!(
        fx.bytes_in_dest(),
        0,
        "nothing is written before the directory checks out"
    );
}

#[test]
fn truncated_archives_are_corrupt() {
    let tar = TarBuf::new()
        .file("a", &noise(200_000, 4))
        .file("b", &noise(200_000, 5))
        .finish();
    for kind in TAR_KINDS {
        let whole = compress(kind, &tar);
        // One byte short cuts a compressed stream's trailer; in a plain tar it only shortens
        // the padding after the end-of-archive marker, which is fine.
        let cuts = if kind == ArchiveKind::Tar {
            vec![whole.len() / 2]
        } else {
            vec![whole.len() / 2, whole.len() - 1]
        };
        for cut in cuts {
            let fx = Fixture::new();
            let r = fx.run(kind, &whole[..cut]);
            assert!(is_corrupt(&r), "{kind:?} cut at {cut} of {}: {r:?}", whole.len());
        }
    }
    // A plain tar cut exactly after an entry: headers alone cannot tell, the missing
    // end-of-archive marker does.
    let fx = Fixture::new();
    let r = fx.run(ArchiveKind::Tar, &tar[..512 + 200_192]);
    assert!(
        matches!(&r, Err(ArchiveError::Corrupt { reason }) if reason.contains("end-of-archive")),
        "{r:?}"
    );

    let mut z = ZipBuf::new();
    z.file("a", &noise(200_000, 6));
    let zip = z.finish();
    for cut in [zip.len() / 2, zip.len() - 1] {
        let fx = Fixture::new();
        let r = fx.run(ArchiveKind::Zip, &zip[..cut]);
        assert!(is_corrupt(&r), "zip cut at {cut}: {r:?}");
    }
    let fx = Fixture::new();
    assert!(is_corrupt(&fx.run(ArchiveKind::Tar, b"")));
}

#[test]
fn corrupted_compressed_data_fails_its_integrity_check() {
    let tar = TarBuf::new().file("a", &noise(50_000, 7)).finish();
    for kind in [ArchiveKind::TarGz, ArchiveKind::TarBz2, ArchiveKind::TarXz] {
        let mut bytes = compress(kind, &tar);
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        let fx = Fixture::new();
        let r = fx.run(kind, &bytes);
        assert!(is_corrupt(&r), "{kind:?}: {r:?}");
    }
    let mut z = ZipBuf::new();
    z.file_with("a", &noise(50_000, 8), CompressionMethod::Stored);
    let mut zip = z.finish();
    zip[30_000] ^= 0x55; // inside the stored data: only the CRC can tell
    let fx = Fixture::new();
    assert!(is_corrupt(&fx.run(ArchiveKind::Zip, &zip)));
}

#[test]
fn garbage_is_corrupt_for_every_kind() {
    let garbage = noise(10_000, 10);
    for kind in ArchiveKind::ALL {
        let fx = Fixture::new();
        let r = fx.run(kind, &garbage);
        assert!(is_corrupt(&r), "{kind:?}: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Archives written by the reference tools

/// A tree with what real archives hold: nesting, a name longer than ustar's 100 bytes, a
/// symlink that sorts before its target, a hardlink.
#[cfg(unix)]
fn tool_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(80));
    let files = vec![
        ("a.txt".to_string(), b"hello\n".to_vec()),
        ("sub/deep/r.bin".to_string(), noise(100_000, 11)),
        (long, b"long name\n".to_vec()),
    ];
    for (p, c) in &files {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, c).expect("write");
    }
    std::os::unix::fs::symlink("../a.txt", dir.join("sub/link")).expect("symlink");
    fs::hard_link(dir.join("a.txt"), dir.join("sub/hard")).expect("hardlink");
    let mut expected = files;
    expected.push(("sub/link".into(), b"hello\n".to_vec()));
    expected.push(("sub/hard".into(), b"hello\n".to_vec()));
    expected
}

#[cfg(unix)]
#[test]
fn archives_from_gnu_tar_and_info_zip_extract() -> TestResult {
    use std::process::Command;
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    let expected = tool_tree(&src);
    let expected: Vec<(&str, &[u8])> = expected.iter().map(|(p, c)| (p.as_str(), c.as_slice())).collect();
    let out = tmp.path().join("out");
    fs::create_dir(&out)?;
    let runs: [(&str, &[&str], &str); 7] = [
        ("tar", &["--format=gnu", "-cf"], "gnu.tar"),
        ("tar", &["--format=pax", "-cf"], "pax.tar"),
        ("tar", &["-czf"], "x.tar.gz"),
        ("tar", &["-cjf"], "x.tar.bz2"),
        ("tar", &["-cJf"], "x.tar.xz"),
        ("tar", &["--zstd", "-cf"], "x.tar.zst"),
        ("zip", &["-q", "-r", "-y"], "x.zip"),
    ];
    let mut ran = 0;
    for (tool, args, name) in runs {
        let archive = out.join(name);
        let mut cmd = Command::new(tool);
        cmd.args(args).arg(&archive);
        if tool == "tar" {
            cmd.args(["-C".as_ref(), src.as_os_str(), ".".as_ref()]);
        } else {
            cmd.arg(".").current_dir(&src);
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            other => {
                println!(
                    "skipping {name}: `{tool} {}` is not available here ({other:?})",
                    args.join(" ")
                );
                continue;
            }
        }
        let kind = ArchiveKind::from_file_name(name).ok_or("kind")?;
        let fx = Fixture::new();
        let files = fx.run(kind, &fs::read(&archive)?).map_err(|e| format!("{name}: {e}"))?;
        assert_files(&fx, &files, &expected);
        ran += 1;
    }
    println!("extracted {ran} archives written by the reference tools");
    Ok(())
}
