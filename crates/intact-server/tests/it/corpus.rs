//! The hostile-input corpus (`tests/corpus/`, described in its README): every case is a raw
//! request kept as data, sent byte for byte to a real server, and must be refused with a 4xx
//! that names the problem. Never a 5xx, a panic, a dead server, a file outside the data dir,
//! or a commit.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{RawResponse, Server, files_under, raw_exchange, raw_request, report};

/// Every escape attempt in the corpus's binary files writes a file named like this; text
/// cases use `{marker}`, which the runner makes unique per run.
const ESCAPE_NAME: &str = "intact-corpus-escape";
/// The one category whose answers are 502: archives an *upstream* serves are not the
/// client's fault, so staging reports them as a bad gateway (docs/staging.md).
const UPSTREAM_CATEGORY: &str = "upstream-archives";

/// Bytes as the corpus spells them: a string, or a list of chunks.
#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSpec {
    Text(String),
    Chunks(Vec<Chunk>),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Chunk {
    /// UTF-8 text, with placeholders.
    Text(String),
    /// Raw bytes, hex-encoded (bytes no JSON string can hold: invalid UTF-8, overlong forms).
    Hex(String),
    /// `text` repeated `count` times: oversize inputs without oversize files.
    Repeat(String, usize),
    /// A file of the corpus directory, verbatim.
    File(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StatusSpec {
    One(u16),
    Range([u16; 2]),
}

impl StatusSpec {
    fn range(&self) -> (u16, u16) {
        match *self {
            Self::One(s) => (s, s),
            Self::Range([lo, hi]) => (lo, hi),
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum BodyKind {
    /// The artifact API's `{"error","message","field"?}`.
    Json,
    /// `text/plain`, as the Go proxy answers.
    Text,
    /// hyper refuses the request before any route runs, with a bodiless status.
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: StatusSpec,
    /// Words the body must contain (case-insensitive): how the answer names the problem.
    #[serde(default)]
    names: Vec<String>,
    /// For JSON bodies: the `field` it must name, and the `error` code.
    field: Option<String>,
    error: Option<String>,
    body: BodyKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: String,
    /// What the case attacks, for humans and for the failure report.
    attacks: String,
    method: Option<String>,
    target: Option<ByteSpec>,
    #[serde(default)]
    headers: Vec<(String, ByteSpec)>,
    body: Option<ByteSpec>,
    /// The whole request, for what a request line and headers cannot express.
    raw: Option<ByteSpec>,
    expect: Expect,
    /// A real bug whose fix belongs elsewhere: reported, not failed.
    known_bug: Option<String>,
}

struct Loaded {
    category: String,
    case: Case,
}

struct Context<'a> {
    dir: &'a Path,
    txn: String,
    marker: String,
    port: u16,
}

impl Context<'_> {
    fn fill(&self, text: &str) -> String {
        text.replace("{txn}", &self.txn)
            .replace("{marker}", &self.marker)
            .replace("{port}", &self.port.to_string())
    }

    fn bytes(&self, spec: &ByteSpec) -> Vec<u8> {
        match spec {
            ByteSpec::Text(t) => self.fill(t).into_bytes(),
            ByteSpec::Chunks(chunks) => {
                let mut out = Vec::new();
                for c in chunks {
                    match c {
                        Chunk::Text(t) => out.extend_from_slice(self.fill(t).as_bytes()),
                        Chunk::Hex(h) => out.extend(hex_decode(h)),
                        Chunk::Repeat(t, n) => out.extend(self.fill(t).as_bytes().repeat(*n)),
                        Chunk::File(f) => out
                            .extend(std::fs::read(self.dir.join(f)).unwrap_or_else(|e| panic!("corpus file {f}: {e}"))),
                    }
                }
                out
            }
        }
    }

    /// The request as it goes on the wire.
    fn request(&self, case: &Case) -> Vec<u8> {
        if let Some(raw) = &case.raw {
            return self.bytes(raw);
        }
        let method = case.method.as_deref().unwrap_or("GET");
        let target = self.bytes(case.target.as_ref().expect("checked at load"));
        let body = case.body.as_ref().map(|b| self.bytes(b)).unwrap_or_default();
        let mut req = Vec::new();
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(&target);
        req.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n", self.port).as_bytes(),
        );
        let mut framed = false;
        for (name, value) in &case.headers {
            framed |= name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding");
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(&self.bytes(value));
            req.extend_from_slice(b"\r\n");
        }
        if !framed {
            req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(&body);
        req
    }
}

fn hex_decode(h: &str) -> Vec<u8> {
    let h: String = h.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(h.len().is_multiple_of(2), "odd hex {h:?}");
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or_else(|e| panic!("hex {h:?}: {e}")))
        .collect()
}

/// Reads every `cases/*.jsonl` (the file name is the category) and checks the corpus's own
/// rules, so a case cannot quietly ask for less than a named 4xx.
fn load(dir: &Path) -> Vec<Loaded> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cases"))
        .expect("corpus cases dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for file in files {
        let category = file.file_stem().expect("stem").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).expect("read cases");
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with("//") {
                continue;
            }
            let case: Case = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), n + 1));
            let at = format!("{}:{} ({})", file.display(), n + 1, case.id);
            assert!(ids.insert(case.id.clone()), "{at}: duplicate id");
            assert!(!case.attacks.trim().is_empty(), "{at}: say what it attacks");
            assert!(
                case.raw.is_some() != case.target.is_some(),
                "{at}: give either raw or target"
            );
            let (lo, hi) = case.expect.status.range();
            let allowed = |s: u16| (400..500).contains(&s) || (category == UPSTREAM_CATEGORY && s == 502);
            assert!(
                lo <= hi && allowed(lo) && allowed(hi),
                "{at}: expected status must be a 4xx"
            );
            match case.expect.body {
                BodyKind::None => assert!(
                    case.expect.names.is_empty() && case.expect.field.is_none(),
                    "{at}: a bodiless answer names nothing"
                ),
                _ => assert!(!case.expect.names.is_empty(), "{at}: say what the answer must name"),
            }
            out.push(Loaded {
                category: category.clone(),
                case,
            });
        }
    }
    out
}

/// What is wrong with `r` as the answer to `case`, if anything.
fn violation(case: &Case, category: &str, r: Option<&RawResponse>, raw: &[u8]) -> Option<String> {
    let Some(r) = r else {
        return Some(format!(
            "no HTTP answer: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ));
    };
    let body = String::from_utf8_lossy(&r.body);
    let shown: String = body.chars().take(300).collect();
    let (lo, hi) = case.expect.status.range();
    if !(lo..=hi).contains(&r.status) {
        return Some(format!("status {} (expected {lo}..={hi}): {shown}", r.status));
    }
    if r.status >= 500 && category != UPSTREAM_CATEGORY {
        return Some(format!("5xx: {shown}"));
    }
    let content_type = r.header("content-type").unwrap_or_default();
    match case.expect.body {
        BodyKind::None => {}
        BodyKind::Json => {
            let Some(v) = r.json() else {
                return Some(format!("body is not JSON ({content_type}): {shown}"));
            };
            if !v["error"].is_string() || v["message"].as_str().is_none_or(str::is_empty) {
                return Some(format!("JSON without error and message: {v}"));
            }
            if let Some(field) = &case.expect.field
                && v["field"] != json!(field)
            {
                return Some(format!("field {} (expected {field:?}): {v}", v["field"]));
            }
            if let Some(code) = &case.expect.error
                && v["error"] != json!(code)
            {
                return Some(format!("error {} (expected {code:?}): {v}", v["error"]));
            }
        }
        BodyKind::Text => {
            if !content_type.starts_with("text/plain") {
                return Some(format!("content type {content_type:?}, expected text/plain: {shown}"));
            }
        }
    }
    let lower = body.to_lowercase();
    let missing: Vec<&String> = case
        .expect
        .names
        .iter()
        .filter(|n| !lower.contains(&n.to_lowercase()))
        .collect();
    if !missing.is_empty() {
        return Some(format!("answer does not name {missing:?}: {shown}"));
    }
    None
}

/// Every path under `dir` (files and directories) whose name contains one of `needles`.
fn names_containing(dir: &Path, needles: &[&str], recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if needles.iter().any(|n| name.contains(n)) {
                out.push(entry.path());
            }
            if recursive && entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    out
}

/// A Go module zip for `example.com/present@v1.0.0`, so Go reads reach the stored version.
fn present_module(scratch: &Path) -> Vec<u8> {
    let src = scratch.join("present");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("go.mod"), "module example.com/present\n").expect("write");
    std::fs::write(src.join("p.go"), "package present\n").expect("write");
    let mut zip = std::io::Cursor::new(Vec::new());
    intact_go::zip::create_from_dir(&src, "example.com/present", "v1.0.0", &mut zip).expect("zip");
    zip.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus");
    let cases = load(&dir);
    assert!(cases.len() >= 200, "the corpus shrank to {} cases", cases.len());

    let toml = std::fs::read_to_string(dir.join("server.toml"))
        .expect("server.toml")
        .replace("{corpus}", &dir.to_string_lossy());
    let s = Server::start_with(intact_server::Config::from_toml(&toml).expect("corpus config")).await;

    // What the cases aim at: an open transaction (uploads reach path validation), a committed
    // generic version and a stored Go module (reads reach lookups past validation).
    let (txn, _) = s.open(json!({"name": "target", "version": "1"})).await;
    s.publish("present", "1", &[("f.txt", b"present")]).await;
    let scratch = tempfile::tempdir().expect("scratch");
    let resp = s
        .http
        .post(s.url("/go/go-private/publish?module=example.com/present&version=v1.0.0"))
        .body(present_module(scratch.path()))
        .send()
        .await
        .expect("go publish");
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    // Files of the data dir besides the catalog: after the cases, still exactly these.
    let stored_files = || {
        files_under(&s.data)
            .into_iter()
            .filter(|p| !p.to_string_lossy().starts_with("catalog.db"))
            .collect::<Vec<PathBuf>>()
    };
    let files_before = stored_files();
    let setup_events = s.events(0).await;
    let seq0 = setup_events.last().and_then(|e| e["seq"].as_i64()).unwrap_or(0);

    let ctx = Context {
        dir: &dir,
        txn: txn.clone(),
        marker: format!("intact-corpus-{}-{}", std::process::id(), s.addr.port()),
        port: s.addr.port(),
    };
    let mut by_category: BTreeMap<String, usize> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut known = Vec::new();
    let mut fixed = Vec::new();
    for Loaded { category, case } in &cases {
        *by_category.entry(category.clone()).or_default() += 1;
        let (answer, raw) = raw_exchange(s.addr, &ctx.request(case)).await;
        let mut problem = violation(case, category, answer.as_ref(), &raw);
        let health = raw_request(s.addr, "GET", b"/healthz", &[], b"").await;
        if health.status != 200 {
            problem = Some(format!("server unhealthy afterwards: {}", health.status));
        }
        let line = |p: &str| format!("[{category}] {}: {} -> {p}", case.id, case.attacks);
        match (problem, &case.known_bug) {
            (Some(p), None) => violations.push(line(&p)),
            (Some(p), Some(bug)) => known.push(format!("{} (known bug: {bug})", line(&p))),
            (None, Some(bug)) => fixed.push(format!("[{category}] {}: marked known_bug {bug:?} but passes", case.id)),
            (None, None) => {}
        }
    }
    for k in &known {
        println!("KNOWN BUG {k}");
    }
    for f in &fixed {
        println!("FIXED? {f}");
    }

    // Nothing a case sent was committed, staged into the open transaction, or written
    // outside the data dir.
    let committed: Vec<Value> = s
        .events(seq0)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "committed")
        .collect();
    if !committed.is_empty() {
        violations.push(format!("refused cases committed: {committed:?}"));
    }
    let t = s.txn(&txn).await;
    if t["state"] != "open" || t["files"] != json!([]) {
        violations.push(format!("the open transaction changed: {t}"));
    }
    let outside: Vec<PathBuf> = files_under(s.root.path())
        .into_iter()
        .filter(|p| !p.starts_with("data"))
        .collect();
    if !outside.is_empty() {
        violations.push(format!("files outside the data dir: {outside:?}"));
    }
    let left_behind: Vec<PathBuf> = stored_files()
        .into_iter()
        .filter(|p| !files_before.contains(p))
        .collect();
    if !left_behind.is_empty() {
        violations.push(format!("refused cases left files in the data dir: {left_behind:?}"));
    }
    let needles = [ESCAPE_NAME, ctx.marker.as_str()];
    let mut escaped = names_containing(s.root.path(), &needles, true);
    escaped.extend(names_containing(&dir, &needles, true));
    escaped.extend(names_containing(&std::env::temp_dir(), &needles, false));
    escaped.extend(names_containing(Path::new(env!("CARGO_MANIFEST_DIR")), &needles, false));
    if let Some(parent) = s.root.path().parent() {
        escaped.extend(names_containing(parent, &needles, false));
    }
    if !escaped.is_empty() {
        violations.push(format!("escaped files: {escaped:?}"));
    }

    report(
        "hostile-corpus",
        json!({
            "cases": cases.len(),
            "by_category": by_category,
            "violations": violations.len(),
            "known_bugs": known.len(),
        }),
    );
    assert!(
        violations.is_empty(),
        "{} of {} corpus cases broke the rules:\n{}",
        violations.len(),
        cases.len(),
        violations.join("\n")
    );
    assert_eq!(s.abort(&txn).await, reqwest::StatusCode::NO_CONTENT);
    s.stop().await;
}
