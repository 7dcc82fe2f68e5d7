//! Versions every client can materialise: a path that is both a file and a directory, or
//! paths that differ only in case (unless the repo allows it), are refused at commit.

use reqwest::StatusCode;
use serde_json::json;

use crate::{Server, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clashing_paths_are_refused_at_commit_naming_both() {
    let config = intact_server::Config::from_toml(
        r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "linux-only"
kind = "hosted"
case_sensitive_paths = true
"#,
    )
    .expect("config");
    let s = Server::start_with(config).await;
    for (files, needle) in [
        (&["bin", "bin/tool"][..], "bin is a file, and a directory in bin/tool"),
        (&["Makefile", "makefile"][..], "differ only in case"),
    ] {
        let (id, _) = s.open(json!({"name": "clash", "version": "1"})).await;
        for f in files {
            assert_eq!(s.put(&id, f, f.as_bytes().to_vec()).await.0, StatusCode::CREATED);
        }
        let got = s.commit(&id).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "path_conflict", Some("files"));
        assert!(
            got.1["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{}",
            got.1
        );
        assert_eq!(s.abort(&id).await, StatusCode::NO_CONTENT);
    }
    // A repo that allows case-only differences takes the second one.
    let (status, v) = s.create_in("linux-only", json!({"name": "both", "version": "1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    for f in ["Makefile", "makefile"] {
        assert_eq!(s.put(&id, f, f.as_bytes().to_vec()).await.0, StatusCode::CREATED);
    }
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
}
