//! Staging against a real store and a `file://` upstream, without HTTP: the rules that the
//! end-to-end suite (crates/intact/tests/it/staging.rs) does not reach.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use intact_core::{Name, Version};

use super::*;
use crate::config::Config;

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, *data).expect("tar entry");
    }
    b.into_inner().expect("tar")
}

async fn state_for(dir: &Path, repos: &str) -> AppState {
    let upstream = dir.join("up");
    let text = format!(
        "data_dir = \"{}\"\n{}",
        dir.join("data").display(),
        repos.replace("UPSTREAM", &format!("file://{}", upstream.display()))
    );
    let config = Config::from_toml(&text).expect("config");
    let store = intact_store::Store::open_local(&config.data_dir, intact_store::StoreConfig::default())
        .await
        .expect("store");
    let state = AppState::new(Arc::new(config), store).expect("state");
    recover(&state).await;
    state
}

fn put(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join("up").join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

const REPOS: &str = r#"
[[repo]]
name = "builds"
kind = "proxy"
format = "generic"
upstream = "UPSTREAM"
failure_cache_seconds = 3600
[repo.artifacts]
both = { files = ["a.tar", "x.txt"], extract = true }
payload = { files = ["*.bin"] }
late = { files = ["late.txt"] }

[[repo]]
name = "forgetful"
kind = "proxy"
format = "generic"
upstream = "UPSTREAM"
failure_cache_seconds = 0
[repo.artifacts]
late = { files = ["late.txt"] }
"#;

async fn stage_art(state: &AppState, repo: &str, name: &str, art: &str) -> Result<Arc<Manifest>, StageError> {
    let rs = state
        .staging
        .repo(&RepoName::parse(repo).expect("repo"))
        .expect("staging repo")
        .clone();
    let version = Version::parse(art).expect("version");
    let item = rs.item(&version, false).expect("artifact");
    stage(
        state,
        &rs,
        &Name::parse(name).expect("name"),
        &version,
        item,
        Duration::from_secs(60),
    )
    .await
}

#[tokio::test]
async fn two_sources_with_one_path_fail_and_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    put(
        tmp.path(),
        "b/1/a.tar",
        &tar_of(&[("x.txt", b"from the tar"), ("y.txt", b"y")]),
    );
    put(tmp.path(), "b/1/x.txt", b"plain file");
    let state = state_for(tmp.path(), REPOS).await;
    let err = stage_art(&state, "builds", "b/1", "both")
        .await
        .expect_err("duplicate path");
    assert!(matches!(err, StageError::BadContent(_)), "{err:?}");
    assert!(err.to_string().contains("x.txt"), "{err}");
    assert_eq!(err.status(), axum::http::StatusCode::BAD_GATEWAY);
    let repo = RepoName::parse("builds").expect("repo");
    let name = Name::parse("b/1").expect("name");
    assert!(
        state
            .store
            .list_versions(&repo, &name, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let leftovers = std::fs::read_dir(tmp.path().join("data/staging/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(leftovers, 0);
    // The catalog knows no transaction that could commit it later, and gc leaves no blob.
    state.store.gc(Duration::ZERO).await.expect("gc");
    assert!(
        futures::StreamExt::next(&mut state.store.blobs().list(None))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn reads_stage_configured_artifacts_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    put(tmp.path(), "b/2/one.bin", b"1");
    put(tmp.path(), "b/2/two.bin", b"22");
    let state = state_for(tmp.path(), REPOS).await;
    let repo = state.repo("builds").expect("repo").clone();
    let name = Name::parse("b/2").expect("name");
    let other = stage_on_read(&state, &repo, &name, &Version::parse("one.bin").expect("v")).await;
    assert!(matches!(other, Err(ApiError::NotFound(_))), "{other:?}");
    stage_on_read(&state, &repo, &name, &Version::parse("payload").expect("v"))
        .await
        .expect("staged on read");
    let m = state
        .store
        .manifest(&repo.name, &name, &Version::parse("payload").expect("v"))
        .await
        .expect("manifest");
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["one.bin", "two.bin"]);
    assert_eq!(m.metadata["sources"].as_array().expect("sources").len(), 2);
    let job = state
        .staging
        .jobs
        .latest(&(repo.name.clone(), name.clone(), Version::parse("payload").expect("v")))
        .expect("job");
    assert_eq!(job.to_json()["state"], "staged");
    assert_eq!(job.to_json()["bytes_done"], 3);
    assert_eq!(job.to_json()["bytes_total"], 3);
}

#[tokio::test]
async fn failures_are_remembered_per_repo() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(tmp.path().join("up/b/3")).expect("mkdir");
    let state = state_for(tmp.path(), REPOS).await;
    for repo in ["builds", "forgetful"] {
        let err = stage_art(&state, repo, "b/3", "late").await.expect_err("missing");
        assert!(
            matches!(&err, StageError::NotFound { what } if what.contains("late.txt")),
            "{err:?}"
        );
    }
    put(tmp.path(), "b/3/late.txt", b"here now");
    // Remembered for an hour in one repo; not at all in the other, which retries at once.
    let err = stage_art(&state, "builds", "b/3", "late")
        .await
        .expect_err("remembered");
    assert!(matches!(err, StageError::NotFound { .. }));
    let m = stage_art(&state, "forgetful", "b/3", "late").await.expect("retried");
    assert_eq!(m.files[0].size, 8);
}

#[test]
fn bad_configurations_name_the_repo() {
    let cases = [
        ("upstream = \"ftp://x/y\"", "must start with"),
        ("upstream = \"file://relative\"", "absolute"),
        ("upstream = \"s3:///prefix\"", "bucket"),
        (
            "upstream = \"file:///tmp\"\n[repo.artifacts]\na = { files = [\"*/x\"] }",
            "last path segment",
        ),
        (
            "upstream = \"file:///tmp\"\n[repo.artifacts]\na = { files = [\"../x\"] }",
            "pattern",
        ),
    ];
    for (extra, needle) in cases {
        let text = format!("[[repo]]\nname = \"st\"\nkind = \"proxy\"\n{extra}\n");
        let config = Config::from_toml(&text).expect("parses");
        let err = format!("{:#}", StagingState::new(&config).expect_err(extra));
        assert!(
            err.contains("st") && err.contains(needle),
            "{err} should mention {needle}"
        );
    }
}

/// An HTTP upstream on loopback whose every file trickles a byte every 300 ms, for ever
/// (announcing a length it never reaches).
async fn trickling_upstream() -> String {
    let app = axum::Router::new().fallback(|| async {
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")), ()))
        });
        axum::response::Response::builder()
            .header("content-length", "1000000")
            .body(axum::body::Body::from_stream(trickle))
            .expect("response")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

#[tokio::test]
async fn a_trickling_upstream_runs_into_the_deadline_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = trickling_upstream().await;
    let repos = format!(
        r#"
[[repo]]
name = "slow"
kind = "proxy"
format = "generic"
upstream = "{base}"
fetch_timeout_seconds = 30
fetch_deadline_seconds = 1
[repo.artifacts]
plain = {{ files = ["a.bin"] }}
packed = {{ files = ["a.tar"], extract = true }}
"#
    );
    let state = state_for(tmp.path(), &repos).await;
    for art in ["plain", "packed"] {
        let err = stage_art(&state, "slow", "b/1", art).await.expect_err("deadline");
        assert!(matches!(err, StageError::Deadline { seconds: 1, .. }), "{art}: {err:?}");
        assert_eq!(err.status(), axum::http::StatusCode::GATEWAY_TIMEOUT);
        let text = err.to_string();
        assert!(text.contains(art) && text.contains("fetch_deadline_seconds"), "{text}");
    }
    let repo = RepoName::parse("slow").expect("repo");
    let name = Name::parse("b/1").expect("name");
    assert!(
        state
            .store
            .list_versions(&repo, &name, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let leftovers = std::fs::read_dir(tmp.path().join("data/staging/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(leftovers, 0);
    let rs = state.staging.repo(&repo).expect("staging repo");
    assert_eq!(rs.flights.remembered_failures(), 0, "a deadline is not remembered");
}

/// Upstream files whose paths differ only in case (`Build.bin`, `build.bin`, both matched by
/// one pattern) cannot become a version of a case-insensitive repo. That is a definitive
/// answer about the upstream content: a 502 naming both paths (and the setting that allows
/// it), remembered like other bad content; not a 500 that every request answers by
/// downloading everything again.
#[tokio::test]
async fn upstream_files_whose_paths_differ_only_in_case_are_bad_upstream_content() {
    let tmp = tempfile::tempdir().expect("tmp");
    put(tmp.path(), "b/1/Build.bin", b"upper");
    put(tmp.path(), "b/1/build.bin", b"lower");
    let state = state_for(tmp.path(), REPOS).await;
    let err = stage_art(&state, "builds", "b/1", "payload")
        .await
        .expect_err("case clash");
    assert!(matches!(err, StageError::BadContent(_)), "{err:?}");
    assert!(
        err.to_string().contains("Build.bin") && err.to_string().contains("case_sensitive_paths"),
        "{err}"
    );
    assert!(crate::singleflight::Failure::is_definitive(&err));
}
