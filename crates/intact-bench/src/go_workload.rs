//! Measurement 8: the Go workload. The real `go mod download all` of a dependency graph, with a
//! fresh module cache every time, warm through intact against the same files served by nginx.
//!
//! The graph: `MODULES` modules with `VERSIONS` versions each, every version requiring a few
//! later modules at assorted versions, and a main module requiring the first few. Their
//! `go.mod` files say `go 1.16` (no graph pruning, as most of the modules a real build pulls
//! in still do), so `go` reads the `go.mod` of every version the graph names and downloads the
//! zip of every selected one, several at a time, as a build on a fresh machine or in CI does.
//! Module contents are Go source plus an incompressible data file of varied size, so zips
//! range from a few KiB to a few hundred.
//!
//! Peer: nginx serving the modules as a GOPROXY directory. intact is a Go proxy repo whose
//! upstream is that nginx, warmed by one untimed run; runs then alternate between the two.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::nginx::Nginx;
use crate::report::{Better, Row};
use crate::server::{Server, UNREFUSED_RATES};
use crate::stats::{fmt_dur, median};
use crate::{Ctx, progress};

const REPO: &str = "gowork";
const MODULES: usize = 40;
const VERSIONS: usize = 3;
/// The main module requires this many of the graph's modules directly.
const DIRECT: usize = 6;

fn module(i: usize) -> String {
    format!("example.com/dep/m{i:02}")
}

fn version(k: usize) -> String {
    format!("v1.{k}.0")
}

/// What module `i` at version `k` requires: a few later modules, at versions that differ
/// from one requirement to the next (so minimal version selection has choices to make).
fn requirements(i: usize, k: usize) -> Vec<(usize, usize)> {
    [1, 2, 5, 11]
        .iter()
        .map(|step| i + step)
        .filter(|&j| j < MODULES)
        .map(|j| (j, (i + j + k) % VERSIONS))
        .collect()
}

fn go_mod(i: usize, k: usize) -> String {
    let mut text = format!("module {}\n\ngo 1.16\n", module(i));
    let reqs = requirements(i, k);
    if !reqs.is_empty() {
        text.push_str("\nrequire (\n");
        for (j, v) in reqs {
            text.push_str(&format!("\t{} {}\n", module(j), version(v)));
        }
        text.push_str(")\n");
    }
    text
}

/// Go source of a plausible size (a few KiB), different per version.
fn go_source(i: usize, k: usize) -> String {
    let mut text = format!("// Package m{i:02} is generated for the benchmark.\npackage m{i:02}\n\n");
    for f in 0..(20 + (i * 7 + k) % 60) {
        text.push_str(&format!(
            "// F{f} returns a value of version {k}.\nfunc F{f}(x int) int {{\n\treturn x*{} + {f}\n}}\n\n",
            i + k + 1
        ));
    }
    text
}

/// Pseudo-random bytes (xorshift): content deflate cannot shrink.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes every module version as a GOPROXY directory under `root`, built from sources under
/// `scratch`. Returns the total size of the zips.
fn write_goproxy(root: &Path, scratch: &Path) -> Result<u64> {
    let mut zip_bytes = 0;
    for i in 0..MODULES {
        let at = root.join(module(i)).join("@v");
        std::fs::create_dir_all(&at).with_context(|| format!("creating {}", at.display()))?;
        let mut list = String::new();
        for k in 0..VERSIONS {
            let (m, v) = (module(i), version(k));
            let src = scratch.join(format!("m{i:02}-{v}"));
            std::fs::create_dir_all(src.join("data"))?;
            std::fs::write(src.join("go.mod"), go_mod(i, k))?;
            std::fs::write(src.join(format!("m{i:02}.go")), go_source(i, k))?;
            let data = ((i * 37 + k * 11) % 24) * 8 * 1024;
            std::fs::write(
                src.join("data").join("blob.bin"),
                incompressible(data, (i * 10 + k) as u64 + 3),
            )?;
            let mut zip = std::io::Cursor::new(Vec::new());
            intact_go::zip::create_from_dir(&src, &m, &v, &mut zip).context("making a module zip")?;
            let zip = zip.into_inner();
            zip_bytes += zip.len() as u64;
            std::fs::write(at.join(format!("{v}.zip")), zip)?;
            std::fs::write(at.join(format!("{v}.mod")), go_mod(i, k))?;
            std::fs::write(
                at.join(format!("{v}.info")),
                format!("{{\"Version\":\"{v}\",\"Time\":\"2025-0{}-01T00:00:00Z\"}}", k + 1),
            )?;
            list.push_str(&v);
            list.push('\n');
        }
        std::fs::write(at.join("list"), list)?;
    }
    Ok(zip_bytes)
}

/// The main module: requires the first `DIRECT` modules at their newest version.
fn write_main_module(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut text = "module example.com/app\n\ngo 1.19\n\nrequire (\n".to_owned();
    for i in 0..DIRECT {
        text.push_str(&format!("\t{} {}\n", module(i), version(VERSIONS - 1)));
    }
    text.push_str(")\n");
    std::fs::write(dir.join("go.mod"), text)?;
    let _ = std::fs::remove_file(dir.join("go.sum"));
    Ok(())
}

/// Modules (with the version selected) every correct run must end up with: minimal version
/// selection over the graph, as `go` does it for unpruned modules.
fn selected() -> Vec<(usize, usize)> {
    let mut chosen = vec![None::<usize>; MODULES];
    let mut todo: Vec<(usize, usize)> = (0..DIRECT).map(|i| (i, VERSIONS - 1)).collect();
    let mut seen = BTreeSet::new();
    while let Some((i, k)) = todo.pop() {
        if !seen.insert((i, k)) {
            continue;
        }
        chosen[i] = Some(chosen[i].map_or(k, |c| c.max(k)));
        todo.extend(requirements(i, k));
    }
    chosen
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.map(|k| (i, k)))
        .collect()
}

/// Runs `go mod download all` against `goproxy` with an empty module cache; returns how long
/// it took, after checking every selected module's zip landed with the bytes `root` holds.
async fn download(go: &Path, app: &Path, goproxy: &str, cache: &Path, root: &Path) -> Result<Duration> {
    if cache.exists() {
        std::fs::remove_dir_all(cache).with_context(|| format!("emptying {}", cache.display()))?;
    }
    write_main_module(app)?;
    let t = Instant::now();
    let out = tokio::process::Command::new(go)
        .args(["mod", "download", "all"])
        .current_dir(app)
        .env("GOPROXY", goproxy)
        .env("GOMODCACHE", cache.join("mod"))
        .env("GOPATH", cache.join("gopath"))
        .env("GOCACHE", cache.join("build"))
        .env("GOFLAGS", "-mod=mod -modcacherw")
        .env("GOSUMDB", "off")
        .env("GONOSUMDB", "")
        .env("GOPRIVATE", "")
        .env("GONOPROXY", "")
        .env("GO111MODULE", "on")
        .output()
        .await
        .context("running go mod download")?;
    let took = t.elapsed();
    ensure!(
        out.status.success(),
        "go mod download via {goproxy} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, k) in selected() {
        let (m, v) = (module(i), version(k));
        let got = cache
            .join("mod/cache/download")
            .join(&m)
            .join("@v")
            .join(format!("{v}.zip"));
        let got = std::fs::read(&got).with_context(|| format!("go did not download {m}@{v} via {goproxy}"))?;
        let want = std::fs::read(root.join(&m).join("@v").join(format!("{v}.zip")))?;
        ensure!(got == want, "{m}@{v}.zip via {goproxy} differs from the original");
    }
    Ok(took)
}

/// Counts the requests a run makes, from the nginx run's module cache: the `.mod` files and
/// zips `go` fetched (for the row's description).
fn fetched(cache: &Path) -> (usize, usize) {
    let dir = cache.join("mod/cache/download/example.com/dep");
    let (mut mods, mut zips) = (0, 0);
    for i in 0..MODULES {
        let Ok(entries) = std::fs::read_dir(dir.join(format!("m{i:02}")).join("@v")) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".mod") {
                mods += 1;
            } else if name.ends_with(".zip") {
                zips += 1;
            }
        }
    }
    (mods, zips)
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = ctx.work.join("gowork");
    let root = dir.join("goproxy");
    let zip_bytes = write_goproxy(&root, &dir.join("sources"))?;
    let what_files = format!(
        "{MODULES} modules x {VERSIONS} versions, {} KiB of zips",
        zip_bytes / 1024
    );
    let Some(go) = ctx.tools.go.clone() else {
        return Ok(vec![Row::alone(
            "8a",
            format!("go mod download all, fresh module cache ({what_files})"),
            "—".into(),
            "the go command is not installed",
            vec![],
        )]);
    };
    let Some(nginx_bin) = ctx.tools.nginx.clone() else {
        return Ok(vec![Row::alone(
            "8a",
            format!("go mod download all, fresh module cache ({what_files})"),
            "—".into(),
            "nginx is not installed (it is also intact's upstream here)",
            vec![],
        )]);
    };
    let nginx = Nginx::start(&nginx_bin, &dir.join("nginx"), &root)?;
    let config = dir.join("intact.toml");
    std::fs::write(
        &config,
        format!(
            "{UNREFUSED_RATES}[[repo]]\nname = \"{REPO}\"\nkind = \"proxy\"\nformat = \"go\"\nupstream = \"{}\"\nchecksum_db = \"off\"\n",
            nginx.base
        ),
    )?;
    let server = Server::start_configured(ctx, &dir.join("data"), "gowork", Some(&config), &[])?;
    let via_intact = server.url(&format!("/go/{REPO}"));
    let app = dir.join("app");
    let cache = dir.join("cache");

    let cold = download(&go, &app, &via_intact, &cache, &root).await?;
    progress(format!(
        "  cold through intact (filling its cache from nginx): {}",
        fmt_dur(cold)
    ));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut shape = (0, 0);
    for round in 0..ctx.args.runs.max(1) {
        // Alternating, so drift on a shared machine falls on both alike.
        let peer = download(&go, &app, &nginx.base, &cache, &root).await?;
        shape = fetched(&cache);
        let intact = download(&go, &app, &via_intact, &cache, &root).await?;
        progress(format!(
            "  round {}: nginx {} · intact {}",
            round + 1,
            fmt_dur(peer),
            fmt_dur(intact)
        ));
        theirs.push(peer.as_secs_f64());
        ours.push(intact.as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&cache);
    drop(server);
    let (mods, zips) = shape;
    let go_version = go_version(&go).await;
    let what = format!(
        "go mod download all, fresh module cache: {mods} .mod + {zips} .zip ({what_files}), warm, median of {}",
        ours.len()
    );
    let shown = |runs: &[f64]| {
        let list: Vec<String> = runs.iter().map(|s| fmt_dur(Duration::from_secs_f64(*s))).collect();
        format!(
            "{} ({})",
            fmt_dur(Duration::from_secs_f64(median(runs))),
            list.join(" · ")
        )
    };
    ctx.note(format!(
        "8a: {go_version}; every run's zips are compared byte for byte with the originals; intact is a Go proxy repo \
         whose upstream is the same nginx, warmed by one run first"
    ));
    Ok(vec![Row::compare(
        "8a",
        what,
        (median(&ours), shown(&ours)),
        format!("{} (GOPROXY directory)", nginx.version),
        (median(&theirs), shown(&theirs)),
        Better::Lower,
        vec![
            format!("intact-bench --only gowork   # GOPROXY=$INTACT/go/{REPO} go mod download all"),
            "GOPROXY=$NGINX go mod download all".into(),
        ],
    )])
}

/// `go version go1.19.8 linux/amd64`, or `go` if it will not say.
async fn go_version(go: &Path) -> String {
    tokio::process::Command::new(go)
        .arg("version")
        .output()
        .await
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "go".into())
}
