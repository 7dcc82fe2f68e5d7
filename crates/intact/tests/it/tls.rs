//! `intact serve` with `[tls]`, as deployed: the CLI talks to it over https trusting a private
//! CA (`--ca-cert` / `INTACT_CA_CERT`), SIGHUP swaps the certificate for new connections
//! while an established keep-alive connection goes on, a broken file at reload keeps the old
//! certificate, and a bad file at start-up is an error naming it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use intact_testkit::{TestCa, TestCert};

use crate::harness::{BIN, Server, runtime};

/// A generous guard against a hung test, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The server's config: `[tls]` over `dir/server.{crt,key}`; a long header timeout, so the
/// keep-alive connection a test holds is not closed as idle while it waits.
fn tls_config(dir: &Path) -> String {
    format!(
        "[http]\nheader_timeout_seconds = 600\n\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.join("server.crt").display().to_string(),
        dir.join("server.key").display().to_string()
    )
}

fn intact(base: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("INTACT_SERVER", base)
        .env_remove("INTACT_CA_CERT")
        .envs(env.iter().copied())
        .output()
        .expect("run intact");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_publishes_and_reads_over_https_trusting_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue("intact test server").write_to(dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write CA");
    let ca_s = ca_file.to_str().expect("utf8");
    let server = Server::start(&dir.path().join("data"), Some(&tls_config(dir.path())), &[]);
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let src = dir.path().join("notes.txt");
    std::fs::write(&src, b"secret plans").expect("write");

    // Without the CA the server's certificate is not trusted.
    let (ok, out, err) = intact(&server.base, &["ls", "files"], &[]);
    assert!(!ok, "{out}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let (ok, out, err) = intact(
        &server.base,
        &[
            "publish",
            "files",
            "docs/plan",
            "1",
            src.to_str().expect("utf8"),
            "--ca-cert",
            ca_s,
        ],
        &[],
    );
    assert!(ok, "publish over https failed: {out}{err}");
    let (ok, out, err) = intact(&server.base, &["ls", "files"], &[("INTACT_CA_CERT", ca_s)]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "docs/plan");
    let into = dir.path().join("got");
    let (ok, out, err) = intact(
        &server.base,
        &[
            "get",
            "files",
            "docs/plan",
            "1",
            "--out",
            into.to_str().expect("utf8"),
            "--ca-cert",
            ca_s,
        ],
        &[],
    );
    assert!(ok, "get over https failed: {out}{err}");
    assert_eq!(std::fs::read(into.join("notes.txt")).expect("read"), b"secret plans");

    // A CA file that is not one is a clear error.
    let (ok, _, err) = intact(
        &server.base,
        &["ls", "files", "--ca-cert", src.to_str().expect("utf8")],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("--ca-cert"), "{err}");
}

/// A client trusting only the test CA, with at most one idle connection kept for reuse.
fn https_client(ca: &TestCa) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("CA certificate");
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .tls_info(true)
        .pool_max_idle_per_host(1)
        .timeout(HANG_GUARD)
        .build()
        .expect("https client")
}

/// GET /healthz: the status and the certificate the connection it went over was set up with.
async fn healthz(client: &reqwest::Client, server: &Server) -> (reqwest::StatusCode, Vec<u8>) {
    let resp = client.get(server.url("/healthz")).send().await.expect("GET /healthz");
    let cert = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the response came over TLS")
        .to_vec();
    let status = resp.status();
    // Read to the end so the connection goes back to the pool.
    resp.bytes().await.expect("body");
    (status, cert)
}

fn send_sighup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP failed");
}

/// Waits until the server's log has `count` lines containing `needle`.
fn wait_for_log(log: &Path, needle: &str, count: usize) -> String {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().filter(|l| l.contains(needle)).count() >= count {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_swaps_the_certificate_for_new_connections_and_keeps_the_old_on_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let first: TestCert = ca.issue("intact before reload");
    let second: TestCert = ca.issue("intact after reload");
    assert_ne!(first.der, second.der);
    first.write_to(dir.path());
    let data = dir.path().join("data");
    let log = data.with_extension("log");
    let server = Server::start(&data, Some(&tls_config(dir.path())), &[]);
    let rt = runtime();
    rt.block_on(async {
        // A keep-alive connection opened before the reload.
        let kept = https_client(&ca);
        let (status, cert) = healthz(&kept, &server).await;
        assert_eq!(status, 200);
        assert_eq!(cert, first.der);

        second.write_to(dir.path());
        send_sighup(&server);
        wait_for_log(&log, "reloaded the TLS certificate", 1);

        // A new connection gets the new certificate...
        let (status, cert) = healthz(&https_client(&ca), &server).await;
        assert_eq!(status, 200);
        assert_eq!(cert, second.der, "a new connection after SIGHUP");
        // ...while the connection opened before goes on: it still shows the certificate it
        // was set up with, which no new connection is given any more.
        let (status, cert) = healthz(&kept, &server).await;
        assert_eq!(status, 200, "the keep-alive connection survives the reload");
        assert_eq!(
            cert, first.der,
            "the request went over the connection opened before the reload"
        );

        // A broken file at reload: the error is logged, the current certificate stays.
        std::fs::write(dir.path().join("server.crt"), "-----BEGIN CERTIFICATE-----\ntruncated")
            .expect("break the certificate");
        send_sighup(&server);
        let text = wait_for_log(&log, "reloading the TLS certificate failed", 1);
        assert!(text.contains("tls.cert_file"), "the log names the file:\n{text}");
        let (status, cert) = healthz(&https_client(&ca), &server).await;
        assert_eq!(status, 200, "still serving after a failed reload");
        assert_eq!(cert, second.der, "the previous certificate is kept");
    });
}

#[test]
fn serve_refuses_to_start_on_a_bad_certificate_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue("intact test server").write_to(dir.path());
    std::fs::remove_file(dir.path().join("server.crt")).expect("remove");
    let config = dir.path().join("intact.toml");
    std::fs::write(&config, tls_config(dir.path())).expect("write config");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run intact serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("tls.cert_file"), "{err}");
    assert!(
        err.contains(&dir.path().join("server.crt").display().to_string()),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "no listening line before the certificate is loaded"
    );
}
