//! Versions by editing (`from_version`, DELETE of a path) and tags over HTTP: compare-and-swap
//! moves, reads through a tag that follow its moves (never a kept answer), history, removal.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Server, assert_error, json_of, str_of};

async fn move_tag(s: &Server, name: &str, tag: &str, body: Value) -> (StatusCode, Value) {
    let resp = s
        .http
        .put(s.url(&format!("/api/v1/repos/files/{name}/@tags/{tag}")))
        .json(&body)
        .send()
        .await
        .expect("move tag");
    json_of(resp).await
}

async fn delete_path(s: &Server, txn: &str, path: &str) -> (StatusCode, Value) {
    let resp = s
        .http
        .delete(s.url(&format!("/api/v1/transactions/{txn}/files/{path}")))
        .send()
        .await
        .expect("delete file");
    json_of(resp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_by_editing_another_sends_only_the_changes() {
    let s = Server::start().await;
    s.publish(
        "seq/plate",
        "1",
        &[("f1.exr", b"one"), ("f2.exr", b"two"), ("f3.exr", b"three")],
    )
    .await;
    // Metadata of the base is kept when the edit gives none.
    let (id, _) = s
        .open(json!({"name": "seq/plate", "version": "auto", "from_version": "1"}))
        .await;
    let t = s.txn(&id).await;
    assert_eq!(t["files"].as_array().map(Vec::len), Some(3), "{t}");
    let (status, v) = s.put(&id, "f2.exr", b"two, changed".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = delete_path(&s, &id, "f3.exr").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let got = delete_path(&s, &id, "f3.exr").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = delete_path(&s, &id, "bad%20path").await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    let (status, m) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(str_of(&m, "version"), "2");
    let paths: Vec<&str> = m["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(paths, ["f1.exr", "f2.exr"]);
    assert_eq!(s.get_bytes("/api/v1/repos/files/seq/plate/@v/2/f1.exr").await.1, b"one");
    assert_eq!(s.get_bytes("/api/v1/repos/files/seq/plate/@v/1/f2.exr").await.1, b"two");

    // With metadata given, it replaces the base's.
    let with_meta = s
        .publish_edit("seq/plate", json!({"from_version": "2", "metadata": {"shot": "010"}}))
        .await;
    assert_eq!(with_meta["metadata"], json!({"shot": "010"}));
    let kept = s.publish_edit("seq/plate", json!({"from_version": "3"})).await;
    assert_eq!(
        kept["metadata"],
        json!({"shot": "010"}),
        "an edit keeps the base's metadata"
    );

    // Bad bases are refused, naming the field or the version.
    let got = s
        .create(json!({"name": "seq/plate", "version": "auto", "from_version": "99"}))
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = s
        .create(json!({"name": "seq/plate", "version": "auto", "from_version": "a b"}))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid", Some("from_version"));
}

impl Server {
    /// Opens an edit of `name` with `extra` fields, commits it unchanged; the manifest.
    async fn publish_edit(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({"name": name, "version": "auto"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (id, _) = self.open(body).await;
        let (status, m) = self.commit(&id).await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
        m
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_move_by_compare_and_swap_and_reads_follow_them() {
    let s = Server::start().await;
    s.publish("shot", "12", &[("beauty.exr", b"twelve")]).await;
    s.publish("shot", "13", &[("beauty.exr", b"thirteen")]).await;

    let (status, v) = move_tag(&s, "shot", "hero", json!({"version": "12", "expect": null})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["version"].clone(), v["previous"].clone(), v["moved"].clone()),
        (json!("12"), Value::Null, json!(true))
    );
    // Created only when absent.
    let got = move_tag(&s, "shot", "hero", json!({"version": "13", "expect": null})).await;
    assert_error(&got, StatusCode::CONFLICT, "tag_moved", None);
    assert_eq!(got.1["current"], json!("12"));

    // Read through the tag, twice (the second read would be a kept answer if tags were
    // cached like versions), then move it and read again.
    for _ in 0..2 {
        let resp = s
            .http
            .get(s.url("/api/v1/repos/files/shot/@t/hero/beauty.exr"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-intact-version"], "12");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        assert_eq!(resp.bytes().await.expect("body").as_ref(), b"twelve");
    }
    let (status, v) = move_tag(&s, "shot", "hero", json!({"version": "13", "expect": "12"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["previous"], json!("12"));
    assert_eq!(
        s.get_bytes("/api/v1/repos/files/shot/@t/hero/beauty.exr").await.1,
        b"thirteen"
    );
    let resp = s
        .http
        .get(s.url("/api/v1/repos/files/shot/@t/hero"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.headers()["content-location"], "/api/v1/repos/files/shot/@v/13");
    let (_, m) = json_of(resp).await;
    assert_eq!(str_of(&m, "version"), "13");

    // A retried move is no error; a stale one is, naming where it points.
    let (status, v) = move_tag(&s, "shot", "hero", json!({"version": "13", "expect": "12"})).await;
    assert_eq!((status, v["moved"].clone()), (StatusCode::OK, json!(false)), "{v}");
    let got = move_tag(&s, "shot", "hero", json!({"version": "12", "expect": "12"})).await;
    assert_error(&got, StatusCode::CONFLICT, "tag_moved", None);
    assert_eq!(got.1["current"], json!("13"));
    // Bad input names the problem.
    let got = move_tag(&s, "shot", "hero", json!({"version": "99"})).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = move_tag(&s, "shot", "he ro", json!({"version": "12"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid", Some("tag"));
    let got = move_tag(&s, "shot", "hero", json!({"version": "12", "expect": "a b"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid", Some("expect"));
    let got = move_tag(&s, "shot", "hero", json!({"versoin": "12"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("body"));

    let (status, v) = s.get_json("/api/v1/repos/files/shot/@tags/hero").await;
    assert_eq!((status, v["version"].clone()), (StatusCode::OK, json!("13")), "{v}");
    let (status, v) = s.get_json("/api/v1/repos/files/shot/@tags").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["tags"].as_array().map(Vec::len), Some(1), "{v}");

    // Removal, only from where the remover saw it.
    let resp = s
        .http
        .delete(s.url("/api/v1/repos/files/shot/@tags/hero?expect=12"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let resp = s
        .http
        .delete(s.url("/api/v1/repos/files/shot/@tags/hero?expect=13"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let got = s.get_json("/api/v1/repos/files/shot/@t/hero/beauty.exr").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);

    // The history keeps every move, newest first; the event log tells each.
    let (status, v) = s.get_json("/api/v1/repos/files/shot/@tags/hero/@history").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let moves: Vec<(Value, Value)> = v["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| (e["version"].clone(), e["previous"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (Value::Null, json!("13")),
            (json!("13"), json!("12")),
            (json!("12"), Value::Null)
        ]
    );
    let kinds: Vec<String> = s
        .events(0)
        .await
        .iter()
        .filter(|e| str_of(e, "kind").ends_with("tagged"))
        .map(|e| str_of(e, "kind"))
        .collect();
    assert_eq!(kinds, ["tagged", "tagged", "untagged"]);

    // Versions are not written in place.
    let resp = s
        .http
        .put(s.url("/api/v1/repos/files/shot/@v/12/beauty.exr"))
        .body("x")
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Two pipelines racing to move `hero` from the version both saw: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_pipelines_moving_hero_have_one_winner() {
    let s = Server::start().await;
    for v in ["1", "2", "3"] {
        s.publish("asset", v, &[("model.usd", v.as_bytes())]).await;
    }
    for round in 0..10 {
        let (status, v) = move_tag(&s, "asset", "hero", json!({"version": "1"})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (a, b) = tokio::join!(
            move_tag(&s, "asset", "hero", json!({"version": "2", "expect": "1"})),
            move_tag(&s, "asset", "hero", json!({"version": "3", "expect": "1"})),
        );
        let statuses = [a.0, b.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "round {round}: {a:?} {b:?}"
        );
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 1);
    }
}

/// In a group, a read through a tag answers from the member that holds the tag, even when an
/// earlier member holds other content under the same version string; its history is that
/// member's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reads_a_tag_from_the_member_that_holds_it() {
    let config = intact_server::config::Config::from_toml(
        r#"
[[repo]]
name = "a"
kind = "hosted"
format = "generic"

[[repo]]
name = "b"
kind = "hosted"
format = "generic"

[[repo]]
name = "g"
kind = "group"
format = "generic"
members = ["a", "b"]
"#,
    )
    .expect("config");
    let s = Server::start_with(config).await;
    for (repo, bytes) in [("a", "from a"), ("b", "from b, approved")] {
        let (status, v) = s.create_in(repo, json!({"name": "tool", "version": "1.0"})).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let id = str_of(&v, "id");
        assert_eq!(s.put(&id, "a.txt", bytes).await.0, StatusCode::CREATED);
        assert_eq!(s.commit(&id).await.0, StatusCode::CREATED);
    }
    let tag = |repo: &str, body: Value| {
        let url = s.url(&format!("/api/v1/repos/{repo}/tool/@tags/approved"));
        let http = s.http.clone();
        async move { json_of(http.put(url).json(&body).send().await.expect("tag")).await }
    };
    assert_eq!(tag("b", json!({"version": "1.0"})).await.0, StatusCode::OK);
    let resp = s
        .http
        .get(s.url("/api/v1/repos/g/tool/@t/approved/a.txt"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.headers()["x-intact-version"], "1.0");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), b"from b, approved");
    let resp = s
        .http
        .get(s.url("/api/v1/repos/g/tool/@t/approved"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.headers()["content-location"], "/api/v1/repos/b/tool/@v/1.0");
    // A removed tag of the first member does not speak for the group's tag.
    assert_eq!(tag("a", json!({"version": "1.0"})).await.0, StatusCode::OK);
    let resp = s
        .http
        .delete(s.url("/api/v1/repos/a/tool/@tags/approved"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, v) = s.get_json("/api/v1/repos/g/tool/@tags/approved/@history").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["history"].as_array().map(Vec::len), Some(1), "b's history: {v}");
    assert_eq!(v["history"][0]["version"], json!("1.0"));
    // Tags are moved in the repo that holds them, not through a group.
    let got = tag("g", json!({"version": "1.0"})).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
}
