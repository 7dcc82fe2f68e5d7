//! Allow/deny rules and network modes of Go proxy repos, through the router.

use super::*;

/// Writes `versions` of `module` into the GOPROXY layout under `up`, its `list` naming all.
fn publish_versions(up: &Path, module: &str, versions: &[&str]) {
    for v in versions {
        publish_upstream(up, module, v, &format!("module {module}\n"));
    }
    let list = up
        .join(intact_go::module_path::escape_path(module).expect("escape"))
        .join("@v/list");
    std::fs::write(list, versions.join("\n") + "\n").expect("list");
}

async fn text(app: &Router, uri: &str) -> (StatusCode, String) {
    let (s, _, body) = call(app, "GET", uri, vec![]).await;
    (s, String::from_utf8_lossy(&body).into_owned())
}

fn latest_version(body: &str) -> String {
    intact_go::info::parse_info(body.as_bytes()).expect("info").version
}

#[tokio::test]
async fn denied_modules_and_versions_are_403_with_the_rule_and_left_out_of_lists() {
    let root = tempfile::tempdir().expect("tempdir");
    let up = root.path().join("up");
    publish_versions(&up, "example.com/m", &["v1.0.0", "v1.1.0", "v1.2.0"]);
    publish_versions(&up, "example.com/bad/x", &["v1.0.0"]);
    let app = app_configured(
        root.path(),
        &[],
        None,
        r#"deny = ["example.com/bad", "example.com/m@>=v1.2.0"]"#,
    )
    .await;

    for repo in ["go-file", "go"] {
        for tail in ["@v/v1.0.0.info", "@v/v1.0.0.mod", "@v/v1.0.0.zip", "@v/list", "@latest"] {
            let uri = format!("/go/{repo}/example.com/bad/x/{tail}");
            let (s, body) = text(&app, &uri).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {body}");
            assert!(
                body.contains(r#"denied by rule "example.com/bad" of repo go-file"#),
                "{uri}: {body}"
            );
        }
    }
    let (s, body) = text(&app, "/go/go-file/example.com/m/@v/list").await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "v1.0.0\nv1.1.0\n"),
        "the denied version is not listed"
    );
    let (s, body) = text(&app, "/go/go-file/example.com/m/@v/v1.2.0.zip").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("example.com/m@v1.2.0 is denied by rule"), "{body}");
    let (s, _) = text(&app, "/go/go-file/example.com/m/@v/v1.1.0.zip").await;
    assert_eq!(s, StatusCode::OK);
    // The upstream has no @latest here, so the latest stored version (v1.1.0) answers.
    let (s, body) = text(&app, "/go/go/example.com/m/@latest").await;
    assert_eq!(
        (s, latest_version(&body).as_str()),
        (StatusCode::OK, "v1.1.0"),
        "{body}"
    );
    drop(app);

    // A rule added later refuses copies already stored; the latest then steps down to the
    // newest version the rules allow (fetched if need be).
    let app = app_configured(root.path(), &[], None, r#"deny = ["example.com/m@>=v1.1.0"]"#).await;
    let (s, body) = text(&app, "/go/go-file/example.com/m/@v/v1.1.0.zip").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a stored copy is refused too: {body}");
    let (s, body) = text(&app, "/go/go-file/example.com/m/@latest").await;
    assert_eq!(
        (s, latest_version(&body).as_str()),
        (StatusCode::OK, "v1.0.0"),
        "{body}"
    );
    // Refusing hides; it deletes nothing.
    let (s, _) = text(&app, "/api/v1/repos/go-file/example.com/m/@v/v1.1.0").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn with_allow_rules_nothing_else_is_served_but_a_hosted_member_still_is() {
    let root = tempfile::tempdir().expect("tempdir");
    let up = root.path().join("up");
    publish_versions(&up, "example.com/m", &["v1.0.0", "v2.0.0+incompatible"]);
    publish_versions(&up, "example.com/other", &["v1.0.0"]);
    let app = app_configured(root.path(), &[], None, r#"allow = ["example.com/m@<v2.0.0"]"#).await;
    let (s, body) = text(&app, "/go/go-file/example.com/other/@v/v1.0.0.info").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("matches none of the allow rules of repo go-file"),
        "{body}"
    );
    let (s, body) = text(&app, "/go/go-file/example.com/m/@v/list").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "v1.0.0\n"));
    let (s, body) = text(&app, "/go/go-file/example.com/m/@v/v2.0.0+incompatible.info").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, _) = text(&app, "/go/go-file/example.com/m/@v/v1.0.0.zip").await;
    assert_eq!(s, StatusCode::OK);

    // A module published into the group's hosted member is served whatever the proxy's rules.
    let zip = module_zip(
        &root.path().join("src-hosted"),
        "example.com/other",
        "v1.5.0",
        "package m\n",
    );
    let (s, _, body) = call(
        &app,
        "POST",
        "/go/go-private/publish?module=example.com/other&version=v1.5.0",
        zip,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    let (s, body) = text(&app, "/go/go/example.com/other/@v/v1.5.0.zip").await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn offline_serves_what_is_stored_and_never_asks_upstream() {
    let root = tempfile::tempdir().expect("tempdir");
    let up = root.path().join("up");
    publish_versions(&up, "example.com/m", &["v1.0.0", "v1.1.0", "v1.2.0"]);
    let first = app(root.path()).await;
    let (s, _) = text(&first, "/go/go-file/example.com/m/@v/v1.0.0.zip").await;
    assert_eq!(s, StatusCode::OK);
    // v1.1.0: only its .info and .mod (what `go` asks for while resolving).
    let (s, _) = text(&first, "/go/go-file/example.com/m/@v/v1.1.0.mod").await;
    assert_eq!(s, StatusCode::OK);
    drop(first);

    let offline = app_configured(root.path(), &[], None, r#"network_mode = "offline""#).await;
    let (s, _) = text(&offline, "/go/go-file/example.com/m/@v/v1.0.0.zip").await;
    assert_eq!(s, StatusCode::OK, "stored versions are served");
    let (s, _) = text(&offline, "/go/go-file/example.com/m/@v/v1.1.0.info").await;
    assert_eq!(s, StatusCode::OK, "a stored .info is served");
    // Only complete versions are listed: a .mod-only one could never get its zip.
    let (s, body) = text(&offline, "/go/go-file/example.com/m/@v/list").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "v1.0.0\n"), "only what is stored");
    let (s, body) = text(&offline, "/go/go-file/example.com/m/@latest").await;
    assert_eq!((s, latest_version(&body).as_str()), (StatusCode::OK, "v1.0.0"));
    for uri in [
        "/go/go-file/example.com/m/@v/v1.1.0.zip",
        "/go/go-file/example.com/m/@v/v1.2.0.info",
        "/go/go-file/example.com/m/@v/v1.2.0.zip",
        "/go/go-file/example.com/m/@v/master.info",
        "/go/go-file/example.com/n/@v/list",
        "/go/go-file/example.com/n/@latest",
    ] {
        let (s, body) = text(&offline, uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert!(body.contains("offline"), "{uri}: {body}");
    }
    drop(offline);
    // Nothing was fetched while offline: with the upstream gone, what is stored is as before.
    std::fs::remove_dir_all(&up).expect("rm upstream");
    std::fs::create_dir_all(&up).expect("mkdir");
    let online = app(root.path()).await;
    let (s, body) = text(&online, "/go/go-file/example.com/m/@v/list").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "v1.0.0\nv1.1.0\n"));
}

#[tokio::test]
async fn offline_sends_the_upstream_no_request_at_all() {
    let root = tempfile::tempdir().expect("tempdir");
    let packed = stored_module_zip("example.com/packed", "v1.0.0");
    let (url, seen) = recording_upstream(packed).await;
    let app = app_with(root.path(), &[], Some(&url)).await;
    let (s, _) = text(&app, "/go/go-http/example.com/packed/@v/v1.0.0.zip").await;
    assert_eq!(s, StatusCode::OK);
    drop(app);
    let before = seen.lock().expect("lock").len();
    let offline = app_configured(root.path(), &[], Some(&url), r#"network_mode = "offline""#).await;
    for tail in [
        "example.com/packed/@v/list",
        "example.com/packed/@latest",
        "example.com/packed/@v/v1.0.0.zip",
        "example.com/packed/@v/v1.0.0.info",
        "example.com/packed/@v/v1.1.0.info",
        "example.com/packed/@v/main.info",
        "example.com/m/@v/list",
        "example.com/m/@latest",
    ] {
        for repo in ["go-http", "gohttp"] {
            text(&offline, &format!("/go/{repo}/{tail}")).await;
        }
    }
    let after = seen.lock().expect("lock").clone();
    assert_eq!(
        after.len(),
        before,
        "requests sent while offline: {:?}",
        &after[before..]
    );
}

#[tokio::test]
async fn strict_reports_an_upstream_outage_where_fallback_serves_what_is_stored() {
    let root = tempfile::tempdir().expect("tempdir");
    let packed = stored_module_zip("example.com/packed", "v1.0.0");
    let (url, _) = recording_upstream(packed).await;
    let app = app_with(root.path(), &[], Some(&url)).await;
    let (s, _) = text(&app, "/go/go-http/example.com/packed/@v/v1.0.0.zip").await;
    assert_eq!(s, StatusCode::OK);
    drop(app);

    // The upstream is gone (nothing listens on the port any more).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let fallback = app_with(root.path(), &[], Some(&dead)).await;
    let (s, body) = text(&fallback, "/go/go-http/example.com/packed/@v/list").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "v1.0.0\n"));
    let (s, body) = text(&fallback, "/go/go-http/example.com/packed/@latest").await;
    assert_eq!((s, latest_version(&body).as_str()), (StatusCode::OK, "v1.0.0"));
    drop(fallback);
    let strict = app_configured(root.path(), &[], Some(&dead), r#"network_mode = "strict""#).await;
    for tail in ["@v/list", "@latest"] {
        let (s, body) = text(&strict, &format!("/go/go-http/example.com/packed/{tail}")).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{tail}: {body}");
    }
    // Stored files are immutable: served in every mode without asking the upstream.
    let (s, _) = text(&strict, "/go/go-http/example.com/packed/@v/v1.0.0.zip").await;
    assert_eq!(s, StatusCode::OK);
    // In a group, another member's versions do not stand in for the strict member's list.
    let zip = module_zip(
        &root.path().join("src-hosted"),
        "example.com/packed",
        "v0.9.0",
        "package m\n",
    );
    let (s, _, body) = call(
        &strict,
        "POST",
        "/go/go-private/publish?module=example.com/packed&version=v0.9.0",
        zip,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    for tail in ["@v/list", "@latest"] {
        let (s, body) = text(&strict, &format!("/go/gohttp/example.com/packed/{tail}")).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{tail}: {body}");
        assert!(body.starts_with("go-http: "), "{tail}: {body}");
    }
}

#[test]
fn rules_and_modes_are_checked_with_the_configuration() {
    let text = r#"
[[repo]]
name = "files"
kind = "hosted"
deny = ["x"]

[[repo]]
name = "gp"
kind = "proxy"
format = "go"
upstream = "https://proxy.golang.org"
checksum_db = "off"
deny = ["example.com/m@<1.0", "a,b"]
allow = ["ok.example/*"]
network_mode = "offline"
"#;
    let problems = Config::parse_unchecked(text).expect("parse").problems();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("repo files: deny applies to Go proxy repos only"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("repo gp: deny rule \"example.com/m@<1.0\""),
        "{problems:#?}"
    );
    assert!(problems[2].starts_with("repo gp: deny rule \"a,b\""), "{problems:#?}");
    let bad_mode = text.replace("\"offline\"", "\"sometimes\"");
    let err = Config::parse_unchecked(&bad_mode).expect_err("unknown mode");
    assert!(format!("{err:#}").contains("strict"), "{err:#}");
}

#[test]
fn a_proxy_without_an_upstream_still_has_its_rules_checked() {
    let text = r#"
[[repo]]
name = "gp"
kind = "proxy"
format = "go"
deny = ["a,b"]
"#;
    let problems = Config::parse_unchecked(text).expect("parse").problems();
    assert!(
        problems.iter().any(|p| p.contains("needs an upstream")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("deny rule \"a,b\"")),
        "{problems:#?}"
    );
}

#[test]
fn checksum_db_mistakes_name_what_is_wrong() {
    let repo = |setting: &str| {
        format!(
            r#"
[[repo]]
name = "gp"
kind = "proxy"
format = "go"
upstream = "https://proxy.golang.org"
checksum_db = {setting}
"#
        )
    };
    for (setting, says) in [
        (r#"{ name = "x" }"#, "missing field `url`"),
        (
            r#"{ name = "x", url = "https://x", key = "k", kye = "k" }"#,
            "unknown field `kye`",
        ),
        (r#""on""#, r#"write "off" or a table"#),
        ("5", r#""off" or a table { name, url, key }"#),
    ] {
        let err = Config::parse_unchecked(&repo(setting)).expect_err(setting);
        assert!(format!("{err:#}").contains(says), "{setting}: {err:#}");
    }
    let off = Config::parse_unchecked(&repo(r#""off""#)).expect("off");
    assert_eq!(off.repos[0].checksum_db, Some(crate::config::ChecksumDbSetting::Off));
    assert!(off.problems().is_empty(), "{:?}", off.problems());
    // Written out and read back the same (the config's round trip).
    let text = toml::to_string(&off).expect("toml");
    assert_eq!(
        Config::parse_unchecked(&text).expect("again").repos[0].checksum_db,
        Some(crate::config::ChecksumDbSetting::Off)
    );
}
