//! Running Go from tests: the go command isolated from the machine's settings and the
//! network, and a helper built from the x/mod sources vendored in GOROOT.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::support::write_tree;

/// The go binary, if there is one that runs.
pub fn go_binary() -> Option<PathBuf> {
    let candidates = [PathBuf::from("go"), PathBuf::from("/usr/lib/go/bin/go")];
    candidates.into_iter().find(|go| {
        Command::new(go)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A go command isolated from the machine's settings and from the network.
pub fn go_command(go: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(go);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GOPATH", home.join("gopath"))
        .env("GOMODCACHE", home.join("gopath/pkg/mod"))
        .env("GOCACHE", home.join("gocache"))
        .env("GOENV", "off")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "on")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GONOSUMDB", "")
        .env("GOPRIVATE", "")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    cmd
}

/// The helper's source: it answers batches of questions as JSON on stdin/stdout.
const HELPER_GO: &str = include_str!("xmod_helper/main.go");

/// The built x/mod helper.
pub struct Helper {
    binary: PathBuf,
}

impl Helper {
    /// Runs the helper in `mode` on `input` and decodes its answer.
    pub fn ask<T: for<'de> Deserialize<'de>>(&self, mode: &str, input: serde_json::Value) -> T {
        let mut child = Command::new(&self.binary)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        serde_json::to_writer(stdin, &input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "x/mod helper {mode} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Builds the helper once per test run; `None` (with the reason printed) without Go or
/// without x/mod sources in GOROOT.
pub fn helper(test: &str) -> Option<&'static Helper> {
    static HELPER: OnceLock<Result<Helper, String>> = OnceLock::new();
    let helper = HELPER.get_or_init(build_helper);
    match helper {
        Ok(h) => Some(h),
        Err(reason) => {
            eprintln!("skipping {test}: {reason}");
            None
        }
    }
}

fn build_helper() -> Result<Helper, String> {
    let go = go_binary().ok_or("no go command found")?;
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("intact-go-xmod-helper");
    let home = root.join("home");
    let goroot = go_command(&go, &home)
        .args(["env", "GOROOT"])
        .output()
        .map_err(|e| format!("go env GOROOT: {e}"))?;
    let goroot = PathBuf::from(String::from_utf8_lossy(&goroot.stdout).trim());
    let xmod_src = goroot.join("src/cmd/vendor/golang.org/x/mod");
    if !xmod_src.join("zip/zip.go").exists() {
        return Err(format!("no x/mod sources at {}", xmod_src.display()));
    }
    // A fresh copy each run, so a changed GOROOT is picked up.
    let _ = std::fs::remove_dir_all(&root);
    let xmod = root.join("xmod");
    copy_dir(&xmod_src, &xmod);
    std::fs::write(xmod.join("go.mod"), "module golang.org/x/mod\n\ngo 1.17\n").unwrap();
    let main = root.join("helper");
    write_tree(
        &main,
        &[
            (
                "go.mod",
                b"module intact.test/xmodhelper\n\ngo 1.17\n\nrequire golang.org/x/mod v0.0.0\n\nreplace golang.org/x/mod => ../xmod\n",
            ),
            ("main.go", HELPER_GO.as_bytes()),
        ],
    );
    let binary = root.join("xmodhelper");
    let out = go_command(&go, &home)
        .current_dir(&main)
        .env("GOFLAGS", "-mod=mod")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .output()
        .map_err(|e| format!("go build: {e}"))?;
    // With Go and its x/mod sources present, a helper that does not build is a failure.
    assert!(
        out.status.success(),
        "building the x/mod helper failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Helper { binary })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
