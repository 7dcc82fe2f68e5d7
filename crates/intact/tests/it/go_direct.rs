//! `upstream = "direct"`, end to end: git repositories served on loopback by the real
//! `git http-backend`, intact building module versions from them with the real go command,
//! and a go client whose only module source is intact. The hashes the client records must be
//! the ones the go command computes when it fetches from git itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::git_host::{GitHost, HOST, PASSWORD, Repo, USER};
use crate::go_fixtures::{go_command, need_go, run, run_ok};
use crate::harness::{self, Server};

/// The repositories: `pub` (tags v1.0.0, v1.1.0, then a commit on main), `major` (no go.mod,
/// tags v1.0.0 and v2.0.0, so v2 is `+incompatible`) and `private` (credentials needed).
/// Returns the commit hash at the tip of `pub`'s main.
fn make_repos(root: &Path) -> String {
    let public = Repo::new(root, "pub");
    let go_mod = format!("module {HOST}/pub\n\ngo 1.16\n");
    public.commit(
        &[
            ("go.mod", &go_mod),
            ("pub.go", "package pub\n\nconst Version = \"v1.0.0\"\n"),
        ],
        "2024-01-01T00:00:00Z",
    );
    public.tag("v1.0.0");
    public.commit(
        &[
            ("go.mod", &go_mod),
            ("pub.go", "package pub\n\nconst Version = \"v1.1.0\"\n"),
        ],
        "2024-02-01T00:00:00Z",
    );
    public.tag("v1.1.0");
    let tip = public.commit(
        &[
            ("go.mod", &go_mod),
            ("pub.go", "package pub\n\nconst Version = \"main\"\n"),
        ],
        "2024-03-01T12:00:00Z",
    );
    public.publish();

    let major = Repo::new(root, "major");
    major.commit(
        &[("major.go", "package major\n\nconst Major = 1\n")],
        "2024-01-01T00:00:00Z",
    );
    major.tag("v1.0.0");
    major.commit(
        &[("major.go", "package major\n\nconst Major = 2\n")],
        "2024-01-02T00:00:00Z",
    );
    major.tag("v2.0.0");
    major.publish();

    let private = Repo::new(root, "private");
    private.commit(
        &[
            ("go.mod", &format!("module {HOST}/private\n\ngo 1.16\n")),
            ("private.go", "package private\n\nconst Secret = \"kept\"\n"),
        ],
        "2024-01-01T00:00:00Z",
    );
    private.tag("v1.0.0");
    private.publish();
    tip
}

fn config(host: &GitHost, go: &Path, netrc: &Path) -> String {
    let proxy = &host.proxy;
    let repo = |name: &str, netrc: Option<&Path>| {
        let netrc = netrc.map_or(String::new(), |p| format!("netrc = \"{}\"\n", p.display()));
        format!(
            r#"
[[repo]]
name = "{name}"
kind = "proxy"
format = "go"
upstream = "direct"
checksum_db = "off"
[repo.direct]
go = "{go}"
insecure = ["{HOST}"]
{netrc}env = {{ HTTP_PROXY = "{proxy}", http_proxy = "{proxy}", HTTPS_PROXY = "{proxy}", https_proxy = "{proxy}" }}
"#,
            go = go.display()
        )
    };
    format!("{}{}", repo("go-direct", Some(netrc)), repo("go-anonymous", None))
}

/// `go mod download -json` output: module@version -> (h1 of the zip, h1 of the go.mod).
fn sums(json_stream: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let de = serde_json::Deserializer::from_str(json_stream).into_iter::<serde_json::Value>();
    for v in de {
        let v = v.expect("go mod download -json output");
        assert!(v.get("Error").is_none(), "{v}");
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        out.insert(
            format!("{}@{}", text("Path"), text("Version")),
            (text("Sum"), text("GoModSum")),
        );
    }
    out
}

#[test]
fn direct_builds_versions_from_git_tags_branches_hashes_and_private_repositories() {
    let Some(go) = need_go("direct_builds_versions_from_git_tags_branches_hashes_and_private_repositories") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let repos = tmp.path().join("repos");
    let tip = make_repos(&repos);
    let short = &tip[..12];
    let host = GitHost::start(repos.clone());
    let netrc = tmp.path().join("netrc");
    std::fs::write(&netrc, format!("machine {HOST} login {USER} password {PASSWORD}\n")).expect("netrc");
    let server = Server::start(&tmp.path().join("data"), Some(&config(&host, &go, &netrc)), &[]);
    let http = harness::client();
    let rt = harness::runtime();
    let get = |path: &str| {
        rt.block_on(async {
            let resp = http.get(server.url(path)).send().await.expect("request");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        })
    };
    let version_of = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        v["Version"].as_str().unwrap_or_default().to_owned()
    };

    // Tags, @latest, a branch and a commit hash, answered from git.
    assert_eq!(
        get(&format!("/go/go-direct/{HOST}/pub/@v/list")),
        (200, "v1.0.0\nv1.1.0\n".to_owned())
    );
    let (status, body) = get(&format!("/go/go-direct/{HOST}/pub/@latest"));
    assert_eq!((status, version_of(&body)), (200, "v1.1.0".to_owned()), "{body}");
    let pseudo = format!("v1.1.1-0.20240301120000-{short}");
    for query in ["main", short] {
        let (status, body) = get(&format!("/go/go-direct/{HOST}/pub/@v/{query}.info"));
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(version_of(&body), pseudo, "{query}: {body}");
        assert!(body.contains("\"Time\":\"2024-03-01T12:00:00Z\""), "{body}");
    }
    let (status, body) = get(&format!("/go/go-direct/{HOST}/major/@v/list"));
    assert_eq!((status, body.as_str()), (200, "v1.0.0\nv2.0.0+incompatible\n"));
    let (status, body) = get(&format!("/go/go-direct/{HOST}/pub/@v/v1.0.0.mod"));
    assert_eq!((status, body), (200, format!("module {HOST}/pub\n\ngo 1.16\n")));

    // Not there: 404 with the go command's reason, for versions and for whole repositories.
    let (status, body) = get(&format!("/go/go-direct/{HOST}/pub/@v/v1.9.9.info"));
    assert!(
        status == 404 && body.contains("unknown revision v1.9.9"),
        "{status} {body}"
    );
    let (status, body) = get(&format!("/go/go-direct/{HOST}/nothing/@v/list"));
    assert!(status == 404 && body.contains("404 Not Found"), "{status} {body}");
    // The repo's own work dir never shows in an answer.
    assert!(!body.contains(&tmp.path().display().to_string()), "{body}");

    // A private repository: with the configured netrc it is fetched, without it git is
    // refused and says so (never a prompt that hangs).
    let (status, body) = get(&format!("/go/go-anonymous/{HOST}/private/@v/v1.0.0.info"));
    assert!(
        status == 404 && body.contains("terminal prompts disabled"),
        "{status} {body}"
    );
    let (status, body) = get(&format!("/go/go-direct/{HOST}/private/@v/v1.0.0.info"));
    assert_eq!((status, version_of(&body)), (200, "v1.0.0".to_owned()), "{body}");

    // A go client whose only module source is intact downloads and builds; its hashes are the
    // ones the go command gets from git itself.
    let targets = [
        format!("{HOST}/pub@v1.0.0"),
        format!("{HOST}/pub@v1.1.0"),
        format!("{HOST}/pub@{pseudo}"),
        format!("{HOST}/major@v2.0.0+incompatible"),
        format!("{HOST}/private@v1.0.0"),
    ];
    let client_home = tmp.path().join("client");
    std::fs::create_dir_all(&client_home).expect("mkdir");
    let mut through_intact = go_command(&go, &client_home, &server.url("/go/go-direct"));
    through_intact
        .current_dir(&client_home)
        .args(["mod", "download", "-json"])
        .args(&targets);
    let via_intact = sums(&run_ok(through_intact, "go mod download through intact"));

    let direct_home = tmp.path().join("reference");
    std::fs::create_dir_all(&direct_home).expect("mkdir");
    std::fs::write(direct_home.join(".netrc"), std::fs::read(&netrc).expect("netrc")).expect("netrc");
    let mut reference = go_command(&go, &direct_home, "direct");
    reference
        .current_dir(&direct_home)
        .env("GOINSECURE", HOST)
        .env("HTTP_PROXY", &host.proxy)
        .env("http_proxy", &host.proxy)
        .env("HTTPS_PROXY", &host.proxy)
        .env("https_proxy", &host.proxy)
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["mod", "download", "-json"])
        .args(&targets);
    let from_git = sums(&run_ok(reference, "go mod download from git"));
    assert_eq!(via_intact.len(), targets.len(), "{via_intact:?}");
    assert_eq!(via_intact, from_git);

    // A module built with them, through intact: `go get` a branch, then build and run.
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::write(app.join("go.mod"), "module example.test/app\n\ngo 1.16\n").expect("write");
    std::fs::write(
        app.join("main.go"),
        format!(
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"{HOST}/major\"\n\t\"{HOST}/private\"\n\t\"{HOST}/pub\"\n)\n\nfunc main() {{ fmt.Println(pub.Version, major.Major, private.Secret) }}\n"
        ),
    )
    .expect("write");
    for args in [
        vec!["get".to_owned(), format!("{HOST}/pub@main")],
        vec!["get".to_owned(), format!("{HOST}/major@v2.0.0+incompatible")],
        vec!["get".to_owned(), format!("{HOST}/private@v1.0.0")],
    ] {
        let mut cmd = go_command(&go, &client_home, &server.url("/go/go-direct"));
        cmd.current_dir(&app).args(&args);
        run_ok(cmd, &format!("go {}", args.join(" ")));
    }
    let mut cmd = go_command(&go, &client_home, &server.url("/go/go-direct"));
    cmd.current_dir(&app).args(["run", "."]);
    assert_eq!(run_ok(cmd, "go run").trim(), "main 2 kept");

    // Every version was committed whole: with the git host gone, a fresh client still gets
    // them all (fallback mode serves the stored list when the upstream cannot be reached).
    let asked_before = host.git_requests();
    assert!(asked_before > 0);
    drop(host);
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    let mut again = go_command(&go, &fresh, &server.url("/go/go-direct"));
    again
        .current_dir(&fresh)
        .args(["mod", "download", "-json"])
        .args(&targets);
    let out = run(again, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "stored versions with the git host gone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sums(&String::from_utf8_lossy(&out.stdout)), from_git);
    assert_eq!(
        get(&format!("/go/go-direct/{HOST}/pub/@v/list")),
        (200, "v1.0.0\nv1.1.0\n".to_owned())
    );
    // What is not stored cannot be built while git is unreachable: an upstream failure
    // (502), not "not found", so a client knows to retry.
    let (status, body) = get(&format!("/go/go-direct/{HOST}/pub/@v/v1.0.1.info"));
    assert!(status == 502 && body.contains("connection refused"), "{status} {body}");
}

#[test]
fn direct_settings_mistakes_are_named_at_start_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (settings, needle) in [
        (
            "upstream = \"https://proxy.golang.org\"\n[repo.direct]\ninsecure = [\"x\"]\n",
            "only used when the upstream list has \"direct\"",
        ),
        (
            "upstream = \"direct\"\n[repo.direct]\nenv = { GOPROXY = \"off\" }\n",
            "direct.env.GOPROXY is set by intact itself",
        ),
        (
            "upstream = \"direct\"\n[repo.direct]\nnetrc = \"relative/netrc\"\n",
            "must be an absolute path",
        ),
        (
            "upstream = \"direct\"\n[repo.direct]\nnetrc_file = \"/x\"\n",
            "unknown field",
        ),
    ] {
        let config = format!("[[repo]]\nname = \"g\"\nkind = \"proxy\"\nformat = \"go\"\n{settings}");
        let path = tmp.path().join("intact.toml");
        std::fs::write(&path, &config).expect("write");
        let (ok, out, err) = harness::cli(
            "http://127.0.0.1:9",
            None,
            &["config", "check", &path.display().to_string()],
            &[],
        );
        assert!(!ok, "{config}: {out}");
        assert!(format!("{out}{err}").contains(needle), "{config}: {out}{err}");
    }
}
