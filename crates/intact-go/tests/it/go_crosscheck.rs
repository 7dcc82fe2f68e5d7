//! This crate against Go itself: the go command downloading from a `file://` proxy built
//! with this crate, and a helper built from the x/mod sources vendored in GOROOT answering
//! the same questions as this crate on a corpus of inputs.
//!
//! Needs `go` on PATH (CI installs it); without it each test prints why it skips.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use intact_go::info::Info;
use intact_go::zip::{check_zip, create_from_dir, synthesized_go_mod};
use intact_go::{dirhash, module_path, pattern, semver};
use serde::Deserialize;
use serde_json::json;

use crate::create::various_tree;
use crate::gotool::{go_binary, go_command, helper};
use crate::support::{write_tree, zip_of};

#[derive(Deserialize)]
struct Download {
    #[serde(rename = "Sum", default)]
    sum: String,
    #[serde(rename = "GoModSum", default)]
    go_mod_sum: String,
    #[serde(rename = "Error", default)]
    error: String,
}

/// Serves `files` for `module@version` from a file:// proxy directory.
fn publish(proxy: &Path, module: &str, version: &str, go_mod: &[u8], zip: &[u8], time: &str) {
    let at_v = proxy.join(module_path::escape_path(module).unwrap()).join("@v");
    std::fs::create_dir_all(&at_v).unwrap();
    let v = module_path::escape_version(version).unwrap();
    let info = Info::new(version, time).unwrap();
    std::fs::write(at_v.join(format!("{v}.info")), info.to_json()).unwrap();
    std::fs::write(at_v.join(format!("{v}.mod")), go_mod).unwrap();
    std::fs::write(at_v.join(format!("{v}.zip")), zip).unwrap();
    let mut list = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(at_v.join("list"))
        .unwrap();
    writeln!(list, "{version}").unwrap();
}

#[test]
fn go_mod_download_agrees_with_our_hashes() {
    let Some(go) = go_binary() else {
        eprintln!("skipping go_mod_download_agrees_with_our_hashes: no go command found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let proxy = tmp.path().join("proxy");

    // A module whose path needs escaping, built with our zip writer.
    let src = tmp.path().join("hello");
    let go_mod = b"module example.com/Intact/Hello\n\ngo 1.19\n";
    write_tree(
        &src,
        &[
            ("go.mod", go_mod),
            ("hello.go", b"package hello\n\nconst Greeting = \"hello\"\n"),
            ("LICENSE", b"Apache-2.0\n"),
            ("internal/x/x.go", b"package x\n"),
            ("vendor/example.com/dep/dep.go", b"package dep\n"),
            ("nested/go.mod", b"module example.com/Intact/Hello/nested\n"),
            ("nested/n.go", b"package nested\n"),
        ],
    );
    let mut zip = Cursor::new(Vec::new());
    let hello = create_from_dir(&src, "example.com/Intact/Hello", "v1.2.3", &mut zip).unwrap();
    let zip = zip.into_inner();
    assert_eq!(dirhash::hash_zip(Cursor::new(&zip)).unwrap(), hello.h1);
    publish(
        &proxy,
        "example.com/Intact/Hello",
        "v1.2.3",
        go_mod,
        &zip,
        "2024-01-02T03:04:05Z",
    );

    // A legacy module without go.mod, served with the synthesized one.
    let legacy_src = tmp.path().join("legacy");
    write_tree(&legacy_src, &[("legacy.go", b"package legacy\n")]);
    let mut legacy_zip = Cursor::new(Vec::new());
    let legacy = create_from_dir(
        &legacy_src,
        "example.com/legacy",
        "v2.0.0+incompatible",
        &mut legacy_zip,
    )
    .unwrap();
    let legacy_mod = synthesized_go_mod("example.com/legacy");
    publish(
        &proxy,
        "example.com/legacy",
        "v2.0.0+incompatible",
        &legacy_mod,
        &legacy_zip.into_inner(),
        "2015-06-07T08:09:10Z",
    );

    for (target, want_sum, want_mod_sum) in [
        (
            "example.com/Intact/Hello@v1.2.3",
            &hello.h1,
            dirhash::hash_go_mod(go_mod),
        ),
        (
            "example.com/legacy@v2.0.0+incompatible",
            &legacy.h1,
            dirhash::hash_go_mod(&legacy_mod),
        ),
    ] {
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = go_command(&go, tmp.path())
            .current_dir(&work)
            .env("GOPROXY", format!("file://{}", proxy.display()))
            // A writable module cache, so the temporary directory can be removed.
            .env("GOFLAGS", "-modcacherw")
            .args(["mod", "download", "-json", target])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let d: Download = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "go mod download {target}: {e}\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(d.error, "", "go mod download {target}");
        assert_eq!(&d.sum, want_sum, "zip hash of {target}");
        assert_eq!(d.go_mod_sum, want_mod_sum, "go.mod hash of {target}");
    }
}

/// Paths that probe every rule: the x/mod table, every ASCII character in every position
/// that matters, tildes, version suffixes, escapes and some Unicode.
fn path_corpus() -> Vec<String> {
    let mut paths: Vec<String> = [
        "x.y/z",
        "x.y",
        "",
        "/x.y/z",
        "x./z",
        ".x/z",
        "-x/z",
        "x..y/z",
        "x.y/z/../../w",
        "x.y//z",
        "x.y/z//w",
        "x.y/z/",
        "x.y/z/v0",
        "x.y/z/v1",
        "x.y/z/v2",
        "x.y/z/v2.0",
        "x.y/z/v02",
        "x.y/z/v10",
        "x.y/v2",
        "x.y/z/v",
        "x.y/z/v2/v3",
        "X.y/z",
        "x.y/Z",
        "x.y/aux.foo",
        "x.y/prn",
        "x.y/prn2",
        "x.y/com",
        "x.y/com1",
        "x.y/com1.txt",
        "x.y/Lpt9.x",
        "x.y/nul",
        "x.y/calm1",
        "x.y/z~",
        "x.y/z~0",
        "x.y/z~09",
        "x.y/z09",
        "x.y/z09~",
        "x.y/z09~09z",
        "x.y/z09~09z~09",
        "x.y/z~1.go",
        "github.com/!123/logrus",
        "github.com/!azure/azure-sdk",
        "github.com/Azure/azure-sdk",
        "github.com/!azure!/x",
        "github.com/!!azure/x",
        "github.com/!0azure/x",
        "github.com/azure!",
        "../x",
        "./y",
        "x:y",
        "\\temp\\foo",
        ".gitignore",
        ".github/ISSUE_TEMPLATE",
        "bar.com/foo.",
        "gopkg.in/yaml.v2",
        "gopkg.in/yaml",
        "gopkg.in/yaml.v0",
        "gopkg.in/yaml.v1",
        "gopkg.in/yaml.v02",
        "gopkg.in/check.v1-unstable",
        "gopkg.in/v2",
        "gopkg.in/x/y.v3",
        "example.com:8080/x",
        "rsc io/quote",
        "v1.0.0",
        "v1.0.0-RC1",
        "v1.0.0-!r!c1",
        "Master",
        "-dash.com/x",
        "dash-.com/x",
        "x.y/-z",
        "x.y/z-",
        "x.y/_z",
        "x.y/z_",
        "1.2/x",
        "x.y/...",
        "x.y/.",
        "x.y/..",
        "x.y/.z",
        "x.y/z.",
        "x.y/z..w",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in (0x20u8..0x7f).map(char::from) {
        for template in ["x.y/a{}b", "x.y{}/z", "{}x.y/z", "x.y/z{}", "x{}y.z/w", "{}"] {
            paths.push(template.replace("{}", &c.to_string()));
        }
    }
    for c in [
        '\u{e9}', 'e', '\u{301}', '\u{2167}', '\u{17f}', '\u{212a}', '\u{263a}', '\u{65e5}', '\u{3c3}', '\u{a0}',
        '\u{2028}', '\u{ff21}', '\u{5d0}', '\u{660}',
    ] {
        paths.push(format!("x.y/a{c}b"));
        paths.push(format!("x.y/{c}"));
        paths.push(format!("v1.0.0-{c}"));
        paths.push(c.to_string());
    }
    paths
}

#[test]
fn x_mod_agrees_on_paths_and_escapes() {
    let Some(helper) = helper("x_mod_agrees_on_paths_and_escapes") else {
        return;
    };
    let paths = path_corpus();
    let go: Vec<Vec<String>> = helper.ask("paths", json!(paths));
    assert_eq!(go.len(), paths.len());
    let ok = |r: &Result<(), intact_go::GoError>| r.is_ok();
    let val = |r: Result<String, intact_go::GoError>| r.unwrap_or_else(|_| "error".into());
    let go_val = |s: &str| {
        if s.contains("error: ") {
            "error".to_string()
        } else {
            s.to_string()
        }
    };
    for (p, g) in paths.iter().zip(&go) {
        assert_eq!(
            ok(&module_path::check_path(p)),
            g[0].is_empty(),
            "check_path({p:?}); go: {}",
            g[0]
        );
        assert_eq!(
            ok(&module_path::check_import_path(p)),
            g[1].is_empty(),
            "check_import_path({p:?}); go: {}",
            g[1]
        );
        assert_eq!(
            ok(&module_path::check_file_path(p)),
            g[2].is_empty(),
            "check_file_path({p:?}); go: {}",
            g[2]
        );
        assert_eq!(val(module_path::escape_path(p)), go_val(&g[3]), "escape_path({p:?})");
        assert_eq!(
            val(module_path::unescape_path(p)),
            go_val(&g[4]),
            "unescape_path({p:?})"
        );
        assert_eq!(
            val(module_path::escape_version(p)),
            go_val(&g[5]),
            "escape_version({p:?})"
        );
        assert_eq!(
            val(module_path::unescape_version(p)),
            go_val(&g[6]),
            "unescape_version({p:?})"
        );
    }
}

#[test]
fn x_mod_agrees_on_versions() {
    let Some(helper) = helper("x_mod_agrees_on_versions") else {
        return;
    };
    let versions: Vec<&str> = vec![
        "bad",
        "",
        "v",
        "1.2.3",
        "v1-alpha.beta.gamma",
        "v1-pre",
        "v1+meta",
        "v1.2-pre",
        "v1.2+meta",
        "v1.0.0-alpha",
        "v1.0.0-alpha.1",
        "v1.0.0-alpha.beta",
        "v1.0.0-beta",
        "v1.0.0-beta.2",
        "v1.0.0-beta.11",
        "v1.0.0-rc.1",
        "v1",
        "v1.0",
        "v1.0.0",
        "v1.2",
        "v1.2.0",
        "v1.2.3-456",
        "v1.2.3-456.789",
        "v1.2.3-456-789",
        "v1.2.3-456a",
        "v1.2.3-pre",
        "v1.2.3-pre+meta",
        "v1.2.3-pre.1",
        "v1.2.3-zzz",
        "v1.2.3",
        "v1.2.3+meta",
        "v1.2.3+meta-pre",
        "v1.2.3+meta-pre.sha.256a",
        "v01.2.3",
        "v1.02.3",
        "v1.2.03",
        "v1.2.3-01",
        "v1.2.3-0a",
        "v1.2.3+0123",
        "v1.2.3-",
        "v1.2.3+",
        "v1.2.3-a..b",
        "v1.10.0",
        "v1.9.0",
        "v10.0.0",
        "v2.0.0+incompatible",
        "v2.0.0+Incompatible",
        "v2+incompatible",
        "v0.0.0-20060102150405-hash",
        "v1.0.0-20060102150405-hash",
        "v1.2.4-0.20060102150405-hash",
        "v1.2.4-0.20060102150405-hash+incompatible",
        "v1.2.3-pre.0.20060102150405-hash",
        "v1.2.3-pre.0.20060102150405-hash+incompatible",
        "v1.2.3-a-b.0.20060102150405-hash",
        "v0.0.0-2006010215040-hash",
        "v0.0.0-200601021504050-hash",
        "v1.2.4-1.20060102150405-hash",
        "v1.2.4-pre0.20060102150405-hash",
        "v1.2.3-20060102150405-hash",
        "v0.0.0-20060102150405-",
        "v0.0.0-20060102150405",
        "v0.0.0-20190229000000-hash",
        "v0.0.0-20200229000000-hash",
        "v0.0.0-20191301000000-hash",
        "v0.0.0-20191131000000-hash",
        "v0.0.0-20191109240000-hash",
        "v0.0.0-00000000000000-hash",
        "v0.0.0-0.20060102150405-hash",
        "v99999999999999999999.0.0",
        "v99999999999999999998.0.0",
    ];
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Res {
        valid: bool,
        canonical: String,
        major: String,
        major_minor: String,
        prerelease: String,
        build: String,
        mod_canonical: String,
        pseudo: bool,
        pseudo_time: String,
        compare: Vec<i32>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Out {
        results: Vec<Res>,
        sorted: Vec<String>,
    }
    let go: Out = helper.ask("versions", json!(versions));
    for (v, g) in versions.iter().zip(&go.results) {
        assert_eq!(semver::is_valid(v), g.valid, "is_valid({v:?})");
        assert_eq!(
            semver::canonical(v).unwrap_or_default(),
            g.canonical,
            "canonical({v:?})"
        );
        assert_eq!(semver::major(v).unwrap_or_default(), g.major, "major({v:?})");
        assert_eq!(
            semver::major_minor(v).unwrap_or_default(),
            g.major_minor,
            "major_minor({v:?})"
        );
        assert_eq!(semver::prerelease(v), g.prerelease, "prerelease({v:?})");
        assert_eq!(semver::build(v), g.build, "build({v:?})");
        assert_eq!(
            module_path::canonical_version(v).unwrap_or_default(),
            g.mod_canonical,
            "canonical_version({v:?})"
        );
        assert_eq!(semver::is_pseudo_version(v), g.pseudo, "is_pseudo_version({v:?})");
        assert_eq!(
            semver::pseudo_version_time(v).unwrap_or_default(),
            g.pseudo_time,
            "pseudo_version_time({v:?})"
        );
        for (w, &c) in versions.iter().zip(&g.compare) {
            assert_eq!(semver::compare(v, w) as i32, c, "compare({v:?}, {w:?})");
        }
    }
    let mut sorted: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
    semver::sort_versions(&mut sorted);
    assert_eq!(sorted, go.sorted);
}

#[test]
fn x_mod_agrees_on_module_version_pairs() {
    let Some(helper) = helper("x_mod_agrees_on_module_version_pairs") else {
        return;
    };
    let mut pairs = Vec::new();
    for path in [
        "rsc.io/quote",
        "github.com/go-yaml/yaml",
        "github.com/go-yaml/yaml/v2",
        "gopkg.in/yaml.v0",
        "gopkg.in/yaml.v1",
        "gopkg.in/yaml.v2",
        "gopkg.in/check.v1",
        "gopkg.in/check.v1-unstable",
        "x.y/z/v10",
        "rsc io/quote",
        "x.y/z/v1",
    ] {
        for version in [
            "0.1.0",
            "v0.8.0",
            "v1.0.0",
            "v2.0.0",
            "v2.1.5",
            "v3.0.0",
            "v10.0.0",
            "v0.0.0",
            "v0.0.0-20160102150405-abcdef123456",
            "v17.0.0",
            "v17.0.0+incompatible",
            "v2.0.0+incompatible",
            "v1.0.0+incompatible",
            "v2",
            "v1.0.0-pre",
        ] {
            pairs.push([path, version]);
        }
    }
    let go: Vec<String> = helper.ask("check", json!(pairs));
    for ([path, version], g) in pairs.iter().zip(&go) {
        let ours = module_path::check(path, version);
        // Deliberately stricter: +incompatible on a path with a major suffix.
        let stricter = ours.is_err()
            && g.is_empty()
            && semver::is_incompatible(version)
            && module_path::split_path_version(path).is_some_and(|(_, m)| !m.is_empty());
        if !stricter {
            assert_eq!(
                ours.is_ok(),
                g.is_empty(),
                "check({path:?}, {version:?}): ours {ours:?}, go {g}"
            );
        }
    }
}

#[test]
fn x_mod_agrees_on_patterns() {
    let Some(helper) = helper("x_mod_agrees_on_patterns") else {
        return;
    };
    let globs = [
        "*/quote",
        "*/quo",
        "*/quo??",
        "*/quo*",
        "*quo*",
        "rsc.io",
        "*.io",
        "rsc.io/",
        "rsc",
        "rsc*",
        "*/quote/*",
        "*/v3",
        "*/*/v3",
        "*/*/*",
        "*/*/*,,",
        "*/*/*,,*/quote",
        ",,*/quote",
        "",
        "[",
        "[a-z]sc.io",
        "[^r]sc.io",
        "rsc.i[",
        "rsc\\.io",
        "rsc.io\\",
        "r?c.io/q[u]ote",
        "*.corp.example.com,rsc.io",
        "[]a]",
        "[-]",
        "[x-]",
        "[a-b-c]",
        "a[",
        "\\",
        "*x",
    ];
    let targets = [
        "rsc.io/quote",
        "rsc.io/quote/v3",
        "rsc.io",
        "corp.example.com/x",
        "a",
        "x",
        "]",
        "-",
    ];
    let pairs: Vec<[&str; 2]> = globs
        .iter()
        .flat_map(|g| targets.iter().map(move |t| [*g, *t]))
        .collect();
    let go: Vec<[bool; 3]> = helper.ask("match", json!(pairs));
    for ([g, t], [prefix, matched, bad]) in pairs.iter().zip(&go) {
        assert_eq!(
            pattern::match_prefix_patterns(g, t),
            *prefix,
            "match_prefix_patterns({g:?}, {t:?})"
        );
        let want = if *bad { None } else { Some(*matched) };
        assert_eq!(pattern::path_match_checked(g, t), want, "path_match({g:?}, {t:?})");
    }
}

#[test]
fn x_mod_agrees_on_created_zips() {
    let Some(helper) = helper("x_mod_agrees_on_created_zips") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cases: Vec<(PathBuf, &str, &str)> = Vec::new();

    let various = tmp.path().join("various");
    various_tree(&various);
    cases.push((various, "example.com/m", "v1.0.0"));

    let legacy = tmp.path().join("legacy");
    write_tree(&legacy, &[("x.go", b"package x\n"), ("README", b"read me\n")]);
    cases.push((legacy, "example.com/Upper/Case", "v2.0.0+incompatible"));

    let bad: &[&[(&str, &[u8])]] = &[
        &[("ok.go", b""), ("bad'name.go", b"")],
        &[("sub/aux.go", b"")],
        &[("a:b.go", b"")],
        &[("GO.MOD", b"module example.com/m\n")],
        &[("A.go", b""), ("a.go", b"")],
        &[("Dir/x.go", b""), ("dir/y.go", b"")],
        &[("x~1.go", b""), (" lead space.go", b""), ("-dash.go", b"")],
        &[("\u{212a}.go", b""), ("k.go", b"")],
        &[("caf\u{e9}.go", b""), ("CAF\u{c9}.go", b"")],
        &[("e\u{301}.go", b"")],
    ];
    for (i, files) in bad.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        write_tree(&dir, files);
        cases.push((dir, "example.com/m", "v1.0.0"));
    }

    let reqs: Vec<[String; 4]> = cases
        .iter()
        .enumerate()
        .map(|(i, (dir, m, v))| {
            [
                dir.display().to_string(),
                m.to_string(),
                v.to_string(),
                tmp.path().join(format!("go{i}.zip")).display().to_string(),
            ]
        })
        .collect();
    let go: Vec<String> = helper.ask("create", json!(reqs));
    for ((dir, m, v), g) in cases.iter().zip(&go) {
        let ours = create_from_dir(dir, m, v, Cursor::new(Vec::new()));
        match ours {
            Ok(created) => assert_eq!(&created.h1, g, "{}: files {:?}", dir.display(), created.files),
            Err(e) => assert!(
                g.starts_with("error: "),
                "{}: we refuse ({e}), go made {g}",
                dir.display()
            ),
        }
    }
    // The first two cases are valid trees: Go must have hashed them, not refused them.
    assert!(go[0].starts_with("h1:") && go[1].starts_with("h1:"), "{go:?}");
}

#[test]
fn x_mod_agrees_on_checked_zips() {
    let Some(helper) = helper("x_mod_agrees_on_checked_zips") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    const P: &str = "example.com/m@v1.0.0/";
    let name = |rel: &str| format!("{P}{rel}");
    // (entries, expected to be valid); both sides must agree.
    type Entries = Vec<(String, Vec<u8>)>;
    let cases: Vec<(Entries, bool)> = vec![
        (
            vec![
                (name("go.mod"), b"module example.com/m\n".to_vec()),
                (name("m.go"), b"package m\n".to_vec()),
            ],
            true,
        ),
        (
            vec![
                (P.to_string(), vec![]),
                (name("d/"), vec![]),
                (name("d/f.go"), b"x".to_vec()),
            ],
            true,
        ),
        (
            vec![(name("LICENSE"), b"x".to_vec()), (name("dir with space/f"), vec![])],
            true,
        ),
        (
            vec![(name(".github/x.yml"), vec![]), (name("vendor/modules.txt"), vec![])],
            true,
        ),
        (vec![("example.com/other@v1.0.0/m.go".into(), vec![])], false),
        (vec![("m.go".into(), vec![])], false),
        (vec![(name("../x.go"), vec![])], false),
        (vec![(name("a/../b.go"), vec![])], false),
        (vec![(name("./b.go"), vec![])], false),
        (vec![(name("a//b.go"), vec![])], false),
        (vec![(name("a\\b.go"), vec![])], false),
        (vec![(name("aux.go"), vec![])], false),
        (vec![(name("README"), vec![]), (name("readme"), vec![])], false),
        (vec![(name("Dir/a"), vec![]), (name("dir/b"), vec![])], false),
        (vec![(name("a"), vec![]), (name("a/b"), vec![])], false),
        (vec![(name("sub/go.mod"), vec![])], false),
        (vec![(name("GO.MOD"), vec![])], false),
        (vec![(name("Go.mod"), vec![])], false),
        (vec![(name("x\u{301}.go"), vec![])], false),
        (vec![(name("\u{e9}t\u{e9}.go"), vec![])], true),
        (vec![(name("\u{212a}.go"), vec![]), (name("k.go"), vec![])], false),
    ];
    let mut reqs = Vec::new();
    for (i, (entries, _)) in cases.iter().enumerate() {
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let path = tmp.path().join(format!("{i}.zip"));
        std::fs::write(&path, zip_of(&refs)).unwrap();
        reqs.push([path.display().to_string(), "example.com/m".into(), "v1.0.0".into()]);
    }
    let go: Vec<[String; 2]> = helper.ask("checkzip", json!(reqs));
    for (((entries, want_ok), [go_check, go_hash]), req) in cases.iter().zip(&go).zip(&reqs) {
        let bytes = std::fs::read(&req[0]).unwrap();
        let ours = check_zip(Cursor::new(&bytes), "example.com/m", "v1.0.0");
        assert_eq!(ours.is_ok(), *want_ok, "{entries:?}: ours {ours:?}");
        assert_eq!(go_check.is_empty(), *want_ok, "{entries:?}: go {go_check}");
        // Hashing does not judge names: both hash every zip above the same way.
        let hash = dirhash::hash_zip(Cursor::new(&bytes)).unwrap();
        assert_eq!(&hash, go_hash, "{entries:?}");
    }

    // Where this crate is deliberately stricter than x/mod's CheckZip, Go accepts.
    let stricter: Vec<Entries> = vec![vec![(name("go.mod"), b"module example.com/other\n".to_vec())]];
    for entries in stricter {
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let path = tmp.path().join("stricter.zip");
        std::fs::write(&path, zip_of(&refs)).unwrap();
        let go: Vec<[String; 2]> = helper.ask(
            "checkzip",
            json!([[path.display().to_string(), "example.com/m", "v1.0.0"]]),
        );
        assert_eq!(go[0][0], "", "{entries:?}");
        let bytes = std::fs::read(&path).unwrap();
        assert!(check_zip(Cursor::new(&bytes), "example.com/m", "v1.0.0").is_err());
    }
}
