//! Built-in HTTPS (`[tls]`) and trusted reverse proxies (`http.trusted_proxies`), against a
//! real server: a client trusting the test CA publishes and reads back over https; plain
//! HTTP, a silent client and bad certificate files are turned away; `X-Forwarded-*` headers
//! count only from a trusted peer. (Reload on SIGHUP is tested on the real `intact serve`
//! process, in the intact crate's suite: a signal here would hit every test in the binary.)

use std::path::Path;
use std::time::Duration;

use intact_server::Config;
use intact_server::config::TlsSettings;
use intact_server::tls::ReloadableCert;
use intact_testkit::{TestCa, TestCert};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Server, assert_error, json_of};

/// A generous guard against a hung test, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn tls_config(cert: &Path, key: &Path, extra: &str) -> Config {
    Config::from_toml(&format!(
        "{extra}\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ))
    .expect("config")
}

/// A client that trusts only the test CA, and reports the certificate it was shown.
fn https_client(ca: &TestCa) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("CA certificate");
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .tls_info(true)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("https client")
}

fn peer_certificate(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the response came over TLS")
        .to_vec()
}

/// A server with `[tls]` whose `base` and `http` speak https (so every helper does).
async fn start_https(ca: &TestCa, cert: &TestCert, dir: &Path, extra: &str) -> Server {
    let (cert_file, key_file) = cert.write_to(dir);
    let mut server = Server::start_with(tls_config(&cert_file, &key_file, extra)).await;
    server.base = format!("https://127.0.0.1:{}", server.addr.port());
    server.http = https_client(ca);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_healthz_and_a_publish_round_trip() {
    let ca = TestCa::new();
    let cert = ca.issue("intact test server");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_https(&ca, &cert, dir.path(), "").await;

    let resp = s
        .http
        .get(s.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz over https");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11, "ALPN offers http/1.1 only");
    assert_eq!(
        peer_certificate(&resp),
        cert.der,
        "the configured certificate is served"
    );

    s.publish(
        "tls/round-trip",
        "1",
        &[("a.txt", b"over https"), ("dir/b.bin", &[0, 1, 2, 255])],
    )
    .await;
    let (status, body) = s.get_bytes("/api/v1/repos/files/tls/round-trip/@v/1/a.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"over https");
    let (status, body) = s.get_bytes("/api/v1/repos/files/tls/round-trip/@v/1/dir/b.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, [0, 1, 2, 255]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_not_served() {
    let ca = TestCa::new();
    let cert = ca.issue("intact test server");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_https(&ca, &cert, dir.path(), "").await;

    let plain = crate::client().get(format!("http://{}/healthz", s.addr)).send().await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");

    // What a plain-HTTP client sees on the wire: no HTTP response, only the end of the
    // connection (after a TLS alert at most).
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection")
        .ok();
    assert!(!answer.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&answer));

    // The server goes on serving https.
    let resp = s.http.get(s.url("/healthz")).send().await.expect("https after plain");
    assert_eq!(resp.status(), StatusCode::OK);
    s.stop().await;
}

/// A client that connects and never sends a ClientHello is dropped after the header timeout,
/// like one that never sends a request line: it must not hold a task for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_before_the_handshake() {
    let ca = TestCa::new();
    let cert = ca.issue("intact test server");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_https(&ca, &cert, dir.path(), "[http]\nheader_timeout_seconds = 1\n").await;

    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HANG_GUARD, tcp.read(&mut buf))
        .await
        .expect("the server dropped the silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_files_are_a_start_up_error_naming_the_file() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file) = ca.issue("one").write_to(dir.path());
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, ca.issue("two").key_pem).expect("write");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let missing = dir.path().join("missing.pem");

    let error_for = |cert: &Path, key: &Path| {
        let err = ReloadableCert::load(&TlsSettings {
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
        })
        .expect_err("bad files must not load");
        format!("{err:#}")
    };
    let cases = [
        (error_for(&missing, &key_file), "tls.cert_file", &missing, "cannot read"),
        (
            error_for(&garbage, &key_file),
            "tls.cert_file",
            &garbage,
            "BEGIN CERTIFICATE",
        ),
        (error_for(&cert_file, &missing), "tls.key_file", &missing, "cannot read"),
        (
            error_for(&cert_file, &cert_file),
            "tls.key_file",
            &cert_file,
            "no PEM private key",
        ),
        (
            error_for(&cert_file, &other_key),
            "tls.key_file",
            &other_key,
            "not usable with the certificate",
        ),
    ];
    for (err, field, file, problem) in cases {
        assert!(err.contains(field), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(problem), "{err}");
    }

    // `run` refuses to start on them.
    let mut config = tls_config(&garbage, &key_file, "");
    config.data_dir = dir.path().join("data");
    let state = intact_server::open(config).await.expect("open");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let err = tokio::time::timeout(HANG_GUARD, intact_server::run(listener, state, stop_rx))
        .await
        .expect("run returned")
        .expect_err("run must fail on a bad certificate");
    assert!(format!("{err:#}").contains("tls.cert_file"), "{err:#}");
}

/// `X-Forwarded-Host` and `X-Forwarded-Proto` count only from a trusted proxy: observed
/// through the cross-site guard, which compares a browser's `Origin` with the host and scheme
/// the client used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let behind_proxy = [
        ("origin", "https://intact.example"),
        ("x-forwarded-host", "intact.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "198.51.100.7"),
    ];
    let create = |s: &Server, name: &str, headers: &[(&str, &str)]| {
        let mut req = s
            .http
            .post(s.url("/api/v1/repos/files/transactions"))
            .json(&json!({"name": name, "version": "1"}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move { json_of(req.send().await.expect("send")).await }
    };

    // Trusted: the browser's origin is the host and scheme the proxy forwarded.
    let trusted = Server::start_with(
        Config::from_toml("[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n").expect("config"),
    )
    .await;
    let (status, v) = create(&trusted, "proxied/ok", &behind_proxy).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // A page on the plain-http side of the same host is another origin.
    let mut wrong_scheme = behind_proxy;
    wrong_scheme[0] = ("origin", "http://intact.example");
    let got = create(&trusted, "proxied/http", &wrong_scheme).await;
    assert_error(&got, StatusCode::FORBIDDEN, "cross_site", Some("origin"));
    let mut other_host = behind_proxy;
    other_host[1] = ("x-forwarded-host", "evil.example");
    let got = create(&trusted, "proxied/evil", &other_host).await;
    assert_error(&got, StatusCode::FORBIDDEN, "cross_site", Some("origin"));
    trusted.stop().await;

    // Not trusted: the same headers are ignored, so that origin is not this server's.
    let direct = Server::start().await;
    let got = create(&direct, "direct/forged", &behind_proxy).await;
    assert_error(&got, StatusCode::FORBIDDEN, "cross_site", Some("origin"));
    direct.stop().await;
}

/// Over TLS the scheme is known: a page on `http://` of the same host is another origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_an_http_origin_is_cross_site() {
    let ca = TestCa::new();
    let cert = ca.issue("intact test server");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_https(&ca, &cert, dir.path(), "").await;
    let port = s.addr.port();
    for (origin, allowed) in [
        (format!("https://127.0.0.1:{port}"), true),
        (format!("http://127.0.0.1:{port}"), false),
    ] {
        let got = json_of(
            s.http
                .post(s.url("/api/v1/repos/files/transactions"))
                .header("origin", &origin)
                .json(&json!({"name": format!("origin/{allowed}"), "version": "1"}))
                .send()
                .await
                .expect("send"),
        )
        .await;
        if allowed {
            assert_eq!(got.0, StatusCode::CREATED, "{origin}: {}", got.1);
        } else {
            assert_error(&got, StatusCode::FORBIDDEN, "cross_site", Some("origin"));
        }
    }
    s.stop().await;
}
