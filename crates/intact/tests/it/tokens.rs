//! Tokens with the real binary: the first admin token made on the host straight against the
//! data dir while the server runs, more made and revoked through the server, the CLI sending
//! them (`INTACT_TOKEN`, the CLI config file), and the real go command sending one by basic
//! auth.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::go_fixtures::{go_binary, go_command, run};
use crate::harness::{self, BIN, Server};

fn intact(server: &Server, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    harness::cli(&server.base, token, args, &[])
}

/// The secret: alone on the last line of standard output.
fn secret_of(stdout: &str) -> String {
    let last = stdout.lines().last().expect("output").trim().to_owned();
    assert!(last.starts_with("intact_") && !last.contains(' '), "{stdout}");
    last
}

#[test]
fn first_token_on_the_host_then_tokens_through_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &[]);
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").expect("write");
    let file = file.to_str().expect("utf8");

    // Open until the first token exists.
    let (ok, out, err) = intact(&server, None, &["publish", "files", "n", "1", file]);
    assert!(ok, "{out}{err}");

    // The first admin token, made on the host with no token, while the server runs.
    let (ok, out, err) = intact(
        &server,
        None,
        &[
            "token",
            "create",
            "root",
            "--scope",
            "*:admin",
            "--data-dir",
            data.to_str().expect("utf8"),
        ],
    );
    assert!(ok, "{out}{err}");
    let root = secret_of(&out);

    // The server notices it (within a tenth of a second): anonymous writes are refused. Each
    // probe publishes its own version: one that straddles the moment access control comes on
    // opens its transaction while writes are open and is refused its upload after, leaving
    // that version locked for its lease.
    let mut probe = 0;
    harness::wait_until("anonymous publish refused", Duration::from_secs(30), || {
        probe += 1;
        let version = format!("probe{probe}");
        let (ok, _, err) = intact(&server, None, &["publish", "files", "n", &version, file]);
        !ok && err.contains("401")
    });
    let (ok, _, err) = intact(&server, None, &["publish", "files", "n", "2", file]);
    assert!(!ok && err.contains("token"), "{err}");

    // Through the server with the admin token: a publisher for `files` that expires.
    let (ok, out, err) = intact(
        &server,
        Some(&root),
        &["token", "create", "ci", "--scope", "files:publish", "--expires", "1h"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("expires"), "{out}");
    let ci = secret_of(&out);
    let (ok, out, err) = intact(&server, Some(&ci), &["publish", "files", "n", "2", file]);
    assert!(ok, "{out}{err}");

    // A wrong scope: 403 naming the token.
    let (ok, _, err) = intact(&server, Some(&ci), &["token", "list"]);
    assert!(!ok && err.contains("403") && err.contains("ci"), "{err}");

    // The CLI config file carries a token too.
    let cli_config = dir.path().join("cli.toml");
    std::fs::write(&cli_config, format!("token = \"{root}\"\n")).expect("write");
    let out = Command::new(BIN)
        .args(["token", "list"])
        .env("INTACT_SERVER", &server.base)
        .env_remove("INTACT_TOKEN")
        .env("INTACT_CLI_CONFIG", &cli_config)
        .output()
        .expect("run");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        listed.contains("root") && listed.contains("ci") && listed.contains("files:publish"),
        "{listed}"
    );
    assert!(
        !listed.contains(&ci) && !listed.contains(&root),
        "secrets are never listed: {listed}"
    );

    // Revoked through the server: refused from the next request on.
    let (ok, out, err) = intact(&server, Some(&root), &["token", "revoke", "ci"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = intact(&server, Some(&ci), &["publish", "files", "n", "3", file]);
    assert!(!ok && err.contains("401") && err.contains("revoked"), "{err}");

    // Revoked on the host, straight against the catalog: the running server refuses it at
    // once, since it looks the token up at every request.
    let (ok, out, err) = intact(
        &server,
        None,
        &["token", "revoke", "root", "--data-dir", data.to_str().expect("utf8")],
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = intact(&server, Some(&root), &["token", "list"]);
    assert!(!ok && err.contains("revoked"), "{err}");
    let (ok, out, _) = intact(
        &server,
        None,
        &["token", "list", "--data-dir", data.to_str().expect("utf8")],
    );
    assert!(ok && out.contains("REVOKED"), "{out}");
}

/// The go command sends `.netrc` credentials as basic auth (over https only: it refuses to
/// send credentials over plain http): a token as the password reads a private Go repo;
/// without it the go command reports the server's reason.
#[test]
fn go_reads_a_private_repo_over_https_with_a_token_from_netrc() {
    let Some(go) = go_binary() else {
        assert!(std::env::var_os("CI").is_none(), "the go command is missing in CI");
        eprintln!("skipping: no go command");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ca = intact_testkit::TestCa::new();
    let (cert, key) = ca.issue("intact test server").write_to(dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write CA");
    let config = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let server = Server::start(&data, Some(&config), &[]);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("INTACT_SERVER", &server.base)
            .env("INTACT_CA_CERT", &ca_file)
            .env_remove("INTACT_TOKEN")
            .env("INTACT_CLI_CONFIG", "/nonexistent/intact-cli.toml");
        if let Some(t) = token {
            cmd.env("INTACT_TOKEN", t);
        }
        let out = cmd.output().expect("run intact");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "intact {args:?}: {text}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let module = "example.com/private/hello";
    let src = dir.path().join("hello");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("go.mod"), format!("module {module}\n\ngo 1.19\n")).expect("write");
    std::fs::write(
        src.join("hello.go"),
        "package hello\n\nfunc Hello() string { return \"hi\" }\n",
    )
    .expect("write");

    let root = secret_of(&cli(
        None,
        &[
            "token",
            "create",
            "root",
            "--scope",
            "*:admin",
            "--data-dir",
            data.to_str().expect("utf8"),
        ],
    ));
    cli(
        Some(&root),
        &["go", "publish", src.to_str().expect("utf8"), "--version", "v1.0.0"],
    );
    let reader = secret_of(&cli(Some(&root), &["token", "create", "builder", "--scope", "go:read"]));

    let goproxy = format!("{}/go/go", server.base);
    let download = |home: &Path, netrc: Option<&str>| {
        let mut cmd = go_command(&go, home, &goproxy);
        cmd.args(["mod", "download", "-json", &format!("{module}@v1.0.0")])
            .current_dir(home)
            .env("SSL_CERT_FILE", &ca_file);
        let path = home.join("netrc");
        std::fs::write(&path, netrc.unwrap_or("")).expect("write netrc");
        cmd.env("NETRC", &path);
        run(cmd, Duration::from_secs(120))
    };

    let home = dir.path().join("home-anon");
    std::fs::create_dir_all(&home).expect("mkdir");
    let out = download(&home, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("401") && text.contains("token"),
        "the go command shows why: {text}"
    );

    let home = dir.path().join("home-token");
    std::fs::create_dir_all(&home).expect("mkdir");
    let out = download(&home, Some(&format!("machine 127.0.0.1 login go password {reader}\n")));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\"Version\": \"v1.0.0\"") && !text.contains("\"Error\""),
        "{text}"
    );
}

/// A mistyped data dir is refused, never given a new, empty catalog that takes the token
/// while the server goes on reading its own.
#[test]
fn a_token_is_never_made_in_a_data_dir_without_a_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None, &[]);
    let typo = dir.path().join("dta");
    for target in [&typo, dir.path()] {
        let (ok, out, err) = intact(
            &server,
            None,
            &[
                "token",
                "create",
                "root",
                "--scope",
                "*:admin",
                "--data-dir",
                target.to_str().expect("utf8"),
            ],
        );
        assert!(!ok, "made a token in {}: {out}", target.display());
        assert!(err.contains("catalog.db") && err.contains("data dir"), "{err}");
        assert!(!target.join("catalog.db").exists(), "no catalog was created");
    }
    assert!(!typo.exists(), "the mistyped dir was not created");
}

/// The safe bootstrap: the first admin token made from the server's configuration file before
/// the server ever started (so the server is closed from its first request on), in a data dir
/// that did not exist yet.
#[test]
fn the_first_token_is_made_from_the_config_before_the_first_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("fresh").join("data");
    let config = dir.path().join("intact.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", data.to_str().expect("utf8"))).expect("config");
    let out = Command::new(BIN)
        .args(["token", "create", "root", "--scope", "*:admin", "--config"])
        .arg(&config)
        .env_remove("INTACT_TOKEN")
        .env_remove("INTACT_DATA_DIR")
        .env("INTACT_CLI_CONFIG", "/nonexistent/intact-cli.toml")
        .output()
        .expect("run intact");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let secret = secret_of(&stdout);
    assert!(data.join("catalog.db").is_file());

    let server = Server::start(&data, None, &[]);
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").expect("write");
    let file = file.to_str().expect("utf8");
    let (ok, out, err) = intact(&server, None, &["publish", "files", "n", "1", file]);
    assert!(!ok && err.contains("401"), "closed from the first request: {out}{err}");
    let (ok, out, err) = intact(&server, Some(&secret), &["publish", "files", "n", "1", file]);
    assert!(ok, "{out}{err}");

    // A relative data_dir is the server's working directory's business: refused, nothing
    // made here. And the server's environment counts as it does for `intact serve`.
    let relative = dir.path().join("relative.toml");
    std::fs::write(&relative, "data_dir = \"./somewhere\"\n").expect("config");
    let out = Command::new(BIN)
        .args(["token", "create", "other", "--scope", "*:admin", "--config"])
        .arg(&relative)
        .current_dir(dir.path())
        .env_remove("INTACT_TOKEN")
        .env_remove("INTACT_DATA_DIR")
        .env("INTACT_CLI_CONFIG", "/nonexistent/intact-cli.toml")
        .output()
        .expect("run intact");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("relative"), "{err}");
    assert!(!dir.path().join("somewhere").exists(), "nothing was made");
    let from_env = dir.path().join("from-env");
    let out = Command::new(BIN)
        .args(["token", "create", "other", "--scope", "*:admin", "--config"])
        .arg(&relative)
        .current_dir(dir.path())
        .env_remove("INTACT_TOKEN")
        .env("INTACT_DATA_DIR", &from_env)
        .env("INTACT_CLI_CONFIG", "/nonexistent/intact-cli.toml")
        .output()
        .expect("run intact");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        from_env.join("catalog.db").is_file() && !dir.path().join("somewhere").exists(),
        "the token went where the server's INTACT_DATA_DIR points"
    );

    // Listing or revoking never creates a catalog, even from a configuration.
    let elsewhere = dir.path().join("elsewhere.toml");
    let nowhere = dir.path().join("nowhere");
    std::fs::write(
        &elsewhere,
        format!("data_dir = {:?}\n", nowhere.to_str().expect("utf8")),
    )
    .expect("config");
    for args in [&["token", "list"][..], &["token", "revoke", "root"][..]] {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&elsewhere)
            .env_remove("INTACT_TOKEN")
            .env("INTACT_CLI_CONFIG", "/nonexistent/intact-cli.toml")
            .output()
            .expect("run intact");
        assert!(!out.status.success(), "{args:?}");
        assert!(!nowhere.exists(), "{args:?} created {}", nowhere.display());
    }
}
