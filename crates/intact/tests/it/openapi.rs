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
    // The first admin token, made on the host before the server starts (`--config` creates
    // the catalog).
    let config = dir.path().join("token.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n{CONFIG}", data.display().to_string()),
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
    let server = Server::start(&data, Some(CONFIG), &[]);

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
    // Its working files (.schemathesis/, .hypothesis/) go to the scratch dir, not the checkout.
    let run = cmd
        .current_dir(dir.path())
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
