//! The OpenAPI document against the real server: a property-based client (schemathesis, from
//! PyPI; `scripts/test` installs it) generates requests for every documented operation,
//! valid and invalid, and checks that none gets a 5xx and every answer (status, content type,
//! body) is one the document describes. The server runs with access control on and the run
//! holds an admin token, so admin operations are exercised, not just refused.

use std::process::Command;

use crate::harness::{self, BIN, Server};

/// The schemathesis release the suite is known to pass with (`scripts/test` installs it).
const SCHEMATHESIS: &str = "4.32.5";

const CONFIG: &str = r#"
[auth]
required = true

[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "all"
kind = "group"
members = ["files"]

[[repo]]
name = "mods"
kind = "hosted"
format = "go"
"#;

/// A staging repo over a build tree in the scratch dir, so staging calls stage for real (the
/// examples name build `x86-release/R1`, artifact `payload` and file `notes.txt`).
fn staging_config(upstream: &std::path::Path) -> String {
    format!(
        r#"
[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "file://{}"

[repo.artifacts]
payload = {{ files = ["*.bin"] }}
suites = {{ files = ["suites.tar"], extract = true }}
"#,
        upstream.display()
    )
}

/// Long polls may wait up to 300 s (the document says so); the run keeps them to a second, so
/// that it ends in seconds and no request outlives the client's timeout.
const HOOKS: &str = r#"
import schemathesis

@schemathesis.hook
def map_query(context, query):
    if isinstance(query, dict) and "wait_seconds" in query:
        try:
            if int(query["wait_seconds"]) > 1:
                query["wait_seconds"] = 1
        except (TypeError, ValueError):
            pass
    return query
"#;

/// The build the staging examples name: two payload files, a note and a tar of suites.
fn write_build(upstream: &std::path::Path) {
    let build = upstream.join("x86-release/R1");
    std::fs::create_dir_all(&build).expect("build dir");
    std::fs::write(build.join("image_a.bin"), b"payload a\n").expect("write");
    std::fs::write(build.join("image_b.bin"), b"payload b\n").expect("write");
    std::fs::write(build.join("notes.txt"), b"built\n").expect("write");
    let mut tar = tar::Builder::new(Vec::new());
    let body = b"suite\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "suites/smoke.txt", &body[..])
        .expect("tar entry");
    std::fs::write(build.join("suites.tar"), tar.into_inner().expect("tar")).expect("write");
}

fn schemathesis_version() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import schemathesis; print(schemathesis.__version__)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn every_answer_matches_the_openapi_document() {
    let version = schemathesis_version().unwrap_or_else(|| {
        panic!(
            "schemathesis is not installed: `python3 -m pip install schemathesis=={SCHEMATHESIS}` (scripts/test does)"
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let upstream = dir.path().join("upstream");
    write_build(&upstream);
    let config_text = format!("{CONFIG}{}", staging_config(&upstream));
    // The first admin token, made on the host before the server starts (`--config` creates
    // the catalog).
    let config = dir.path().join("token.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n{config_text}", data.display().to_string()),
    )
    .expect("write config");
    let made = Command::new(BIN)
        .args(["token", "create", "property-run", "--scope", "*:admin", "--config"])
        .arg(&config)
        .output()
        .expect("intact token create");
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(
        made.status.success(),
        "token create: {stdout} {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = stdout
        .split(|c: char| c.is_whitespace() || c == '"')
        .find(|w| w.starts_with("intact_"))
        .unwrap_or_else(|| panic!("no secret in {stdout}"))
        .to_owned();
    let server = Server::start(&data, Some(&config_text), &[]);

    // The version the document's examples name (`files`, `tool`, `1.0`, `tool.txt`), so the
    // example phase reads a manifest and file bytes that exist.
    let file = dir.path().join("tool.txt");
    std::fs::write(&file, b"hello\n").expect("write");
    let published = Command::new(BIN)
        .args(["publish", "files", "tool", "1.0"])
        .arg(&file)
        .args(["--server", &server.url("")])
        .env("INTACT_TOKEN", &token)
        .output()
        .expect("intact publish");
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );

    let examples = harness::sized("30", "300");
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; sys.exit(schemathesis())",
        "run",
    ])
    .arg(server.url("/api/v1/openapi.json"))
    .args(["--header", &format!("Authorization: Bearer {token}")])
    .args([
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        examples,
        "--request-timeout",
        "30",
        // Revoking tokens is left out: the run would revoke its own (the stateful phase finds
        // names in `GET /api/v1/tokens`). tokens.rs covers revocation.
        "--exclude-path",
        "/api/v1/tokens/{name}",
    ]);
    if harness::suite_size() == harness::SuiteSize::Ci {
        // The same requests on every CI run; a full-size run explores with a fresh seed.
        cmd.args(["--seed", "1"]);
    }
    let hooks = dir.path().join("hooks.py");
    std::fs::write(&hooks, HOOKS).expect("write hooks");
    // Its working files (.schemathesis/, .hypothesis/) go to the scratch dir, not the checkout.
    let run = cmd
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "schemathesis {version} found answers the document does not describe:\n{report}\n\nserver log (tail):\n{}",
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // "N generated, N passed": a run that generated nothing checked nothing.
    let generated: u64 = report
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" generated, ")
                .and_then(|(n, _)| n.trim().parse().ok())
        })
        .unwrap_or(0);
    assert!(
        generated >= 500,
        "only {generated} test cases were generated:\n{report}"
    );
    println!("schemathesis {version}: {generated} test cases generated, all passed");
}
