//! create_from_dir: which files go in, determinism, and the round trip through check_zip
//! and hash_zip.

use std::io::Cursor;
use std::path::Path;

use intact_go::GoError;
use intact_go::dirhash::hash_zip;
use intact_go::zip::{CreatedZip, MAX_GO_MOD, MAX_ZIP_FILE, check_zip, create_from_dir};

use crate::support::write_tree;

/// A module tree exercising every rule that leaves files out (Go 1.23 and older rules).
pub fn various_tree(root: &Path) {
    write_tree(
        root,
        &[
            ("go.mod", b"module example.com/m\n\ngo 1.19\n"),
            ("a.go", b"package m\n"),
            ("a/b.go", b"package a\n"),
            ("a0.go", b"package m\n"),
            ("LICENSE", b"the license\n"),
            ("dir with space/f.txt", b"space\n"),
            ("\u{fc}n\u{ef}code.txt", b"unicode\n"),
            ("testdata/x.txt", b"data\n"),
            ("empty/", b""),
            (".hg_archival.txt", b"repo: 1234\n"),
            ("a/.hg_archival.txt", b"kept: only the root one is dropped\n"),
            (".git/config", b"[core]\n"),
            (".hg/store", b"x"),
            (".svn/entries", b"x"),
            (".bzr/branch", b"x"),
            ("a/.git/HEAD", b"ref: refs/heads/main\n"),
            (".github/workflows/ci.yml", b"on: push\n"),
            ("vendor/modules.txt", b"# example.com/x v1.0.0\n"),
            ("vendor/top.go", b"package vendor\n"),
            ("vendor/example.com/x/x.go", b"package x\n"),
            ("pkg/vendor/vendor.go", b"package vendor\n"),
            ("pkg/vendor/foo/foo.go", b"package foo\n"),
            ("sub/go.mod", b"module example.com/m/sub\n"),
            ("sub/x.go", b"package sub\n"),
            ("sub/deeper/y.go", b"package deeper\n"),
            ("casesub/Go.Mod", b"module example.com/m/casesub\n"),
            ("casesub/y.go", b"package casesub\n"),
        ],
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("a.go", root.join("link.go")).unwrap();
        std::os::unix::fs::symlink("a", root.join("linkdir")).unwrap();
    }
}

/// What Go 1.23's rules put in the zip for `various_tree`, sorted.
pub const VARIOUS_FILES: &[&str] = &[
    ".github/workflows/ci.yml",
    "LICENSE",
    "a.go",
    "a/.hg_archival.txt",
    "a/b.go",
    "a0.go",
    "dir with space/f.txt",
    "go.mod",
    "testdata/x.txt",
    "vendor/modules.txt",
    "vendor/top.go",
    "\u{fc}n\u{ef}code.txt",
];

fn create(dir: &Path, module: &str, version: &str) -> Result<(CreatedZip, Vec<u8>), GoError> {
    let mut out = Cursor::new(Vec::new());
    let created = create_from_dir(dir, module, version, &mut out)?;
    Ok((created, out.into_inner()))
}

#[test]
fn selects_files_like_x_mod() {
    let dir = tempfile::tempdir().unwrap();
    various_tree(dir.path());
    let (created, _) = create(dir.path(), "example.com/m", "v1.0.0").unwrap();
    assert_eq!(created.files, VARIOUS_FILES);
}

#[test]
fn round_trips_through_check_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    various_tree(dir.path());
    let (created, bytes) = create(dir.path(), "example.com/m", "v1.0.0").unwrap();
    let summary = check_zip(Cursor::new(&bytes), "example.com/m", "v1.0.0").unwrap();
    assert_eq!(summary.files, VARIOUS_FILES.len());
    assert_eq!(
        summary.go_mod.as_deref(),
        Some(&b"module example.com/m\n\ngo 1.19\n"[..])
    );
    assert_eq!(hash_zip(Cursor::new(&bytes)).unwrap(), created.h1);
    // The zip is only valid for the module and version it was made for.
    assert!(check_zip(Cursor::new(&bytes), "example.com/m", "v1.0.1").is_err());
}

#[test]
fn output_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    various_tree(dir.path());
    let (first, a) = create(dir.path(), "example.com/m", "v1.0.0").unwrap();
    // Touching files changes their mtimes, which must not reach the zip.
    std::fs::write(dir.path().join("a.go"), b"package m\n").unwrap();
    let (second, b) = create(dir.path(), "example.com/m", "v1.0.0").unwrap();
    assert_eq!(first, second);
    assert!(a == b, "two zips of the same tree differ");
}

#[test]
fn go_1_24_excludes_all_vendor_files() {
    // golang.org/x/mod/zip/testdata/create/exclude_vendor_go124.txt, with its hash.
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            (
                "go.mod",
                b"module example.com/m\n\ngo 1.24\nmodules.txt is excluded in 1.24+. See golang.org/issue/63395\n",
            ),
            (
                "vendor/modules.txt",
                b"excluded\nsee comment in isVendoredPackage and golang.org/issue/31562.\n",
            ),
            ("vendor/example.com/x/x.go", b"excluded\n"),
            ("sub/vendor/sub.txt", b"excluded\n"),
        ],
    );
    let (created, _) = create(dir.path(), "example.com/m", "v1.0.0").unwrap();
    assert_eq!(created.h1, "h1:WxQ7ERgHLILawPCiuSwXp5UHul7CUSRRftO8b7GTnV8=");
    assert_eq!(created.files, ["go.mod"]);
}

#[test]
fn go_1_24_keeps_the_nested_vendor_false_positive() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("go.mod", b"module example.com/m\n\ngo 1.24.1\n"),
            ("pkg/vendor/vendor.go", b"package vendor\n"),
            ("longpackagename/vendor/v.go", b"package vendor\n"),
            ("vendor/top.go", b"package vendor\n"),
        ],
    );
    let (created, _) = create(dir.path(), "example.com/m", "v1.0.0").unwrap();
    assert_eq!(created.files, ["go.mod", "vendor/top.go"]);
}

#[test]
fn works_without_go_mod() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("x.go", b"package x\n")]);
    let (created, bytes) = create(dir.path(), "example.com/Legacy", "v2.0.0+incompatible").unwrap();
    assert_eq!(created.files, ["x.go"]);
    let summary = check_zip(Cursor::new(&bytes), "example.com/Legacy", "v2.0.0+incompatible").unwrap();
    assert_eq!(summary.go_mod, None);
}

fn create_error(files: &[(&str, &[u8])], module: &str, version: &str) -> GoError {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), files);
    match create(dir.path(), module, version) {
        Ok((created, _)) => panic!("{files:?}: created {:?}", created.files),
        Err(e) => e,
    }
}

#[test]
fn refuses_invalid_files_naming_them() {
    for (files, needle) in [
        (&[("ok.go", &b""[..]), ("bad'name.go", b"")][..], "bad'name.go"),
        (&[("sub/aux.go", b"")], "sub/aux.go"),
        (&[("a:b.go", b"")], "a:b.go"),
        (&[("GO.MOD", b"module example.com/m\n")], "GO.MOD"),
        (&[("A.go", b""), ("a.go", b"")], "case-insensitive"),
        (&[("Dir/x.go", b""), ("dir/y.go", b"")], "case-insensitive"),
        (&[("go.mod", b"module example.com/other\n")], "example.com/other"),
    ] {
        let e = create_error(files, "example.com/m", "v1.0.0");
        assert!(matches!(e, GoError::InvalidZip { .. }), "{files:?}: {e}");
        assert!(e.to_string().contains(needle), "{e} should mention {needle:?}");
    }
}

#[test]
fn refuses_bad_module_and_version() {
    for (module, version) in [
        ("example.com/m", "v1.0"),
        ("example.com/m", "master"),
        ("example.com/m", "v2.0.0"),
        ("example.com/m/v2", "v1.0.0"),
        ("not-a-domain/m", "v1.0.0"),
    ] {
        let e = create_error(&[("x.go", b"")], module, version);
        assert!(
            matches!(e, GoError::InvalidPath { .. } | GoError::InvalidVersion { .. }),
            "{module}@{version}: {e}"
        );
    }
}

#[test]
fn enforces_size_limits_before_reading() {
    // Sparse files: the sizes are refused from metadata, nothing is read.
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("x.go", b"package x\n")]);
    let f = std::fs::File::create(dir.path().join("go.mod")).unwrap();
    f.set_len(MAX_GO_MOD + 1).unwrap();
    let e = create(dir.path(), "example.com/m", "v1.0.0").unwrap_err();
    assert!(matches!(e, GoError::TooLarge { limit: MAX_GO_MOD, .. }), "{e}");

    let dir = tempfile::tempdir().unwrap();
    for name in ["a.bin", "b.bin"] {
        let f = std::fs::File::create(dir.path().join(name)).unwrap();
        f.set_len(MAX_ZIP_FILE / 2 + 1).unwrap();
    }
    let e = create(dir.path(), "example.com/m", "v1.0.0").unwrap_err();
    assert!(
        matches!(
            e,
            GoError::TooLarge {
                limit: MAX_ZIP_FILE,
                ..
            }
        ),
        "{e}"
    );
}
