//! Following the store: the event log (with long polls) and the listings (versions, names).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::{Value, json};

use crate::{Server, assert_error, client, json_of, str_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_commits_and_aborts_in_order() {
    let s = Arc::new(Server::start().await);
    let (status, v) = s.get_json("/api/v1/events").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"events": [], "next": 0}));

    s.publish("ev/a", "1", &[("f", b"one")]).await;
    let (doomed, _) = s.open(json!({"name": "ev/b", "version": "1"})).await;
    s.publish("ev/a", "2", &[("f", b"two"), ("g", b"three")]).await;
    assert_eq!(s.abort(&doomed).await, StatusCode::NO_CONTENT);

    let (status, v) = s.get_json("/api/v1/events?after=0").await;
    assert_eq!(status, StatusCode::OK);
    let events = v["events"].as_array().expect("events");
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| (str_of(e, "kind"), str_of(e, "name"), str_of(e, "version")))
        .collect();
    let expected = [
        ("committed", "ev/a", "1"),
        ("committed", "ev/a", "2"),
        ("aborted", "ev/b", "1"),
    ];
    assert_eq!(
        summary,
        expected.map(|(k, n, v)| (k.to_owned(), n.to_owned(), v.to_owned()))
    );
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(v["next"], seqs[2]);
    assert_eq!(events[0]["repo"], "files");
    assert!(events[0]["at"].is_string() && events[0]["transaction"].is_string());
    assert_eq!(events[1]["data"]["files"], 2);
    assert_eq!(events[1]["data"]["size"], 8);
    assert!(events[1]["data"]["fingerprint"].is_string());
    assert_eq!(events[2]["transaction"], doomed.as_str());
    assert_eq!(events[2]["data"]["reason"], "rolled back");
    // The manifest names its event.
    let (_, m) = s.get_json("/api/v1/repos/files/ev/a/@v/2").await;
    assert_eq!(m["seq"], seqs[1]);

    // `next` as `after`: the rest of the log; `limit` pages it.
    let (_, v) = s.get_json(&format!("/api/v1/events?after={}", seqs[0])).await;
    assert_eq!(v["events"].as_array().map(Vec::len), Some(2));
    let (_, v) = s.get_json("/api/v1/events?after=0&limit=1").await;
    assert_eq!(v["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["next"], seqs[0]);
    let (_, v) = s.get_json(&format!("/api/v1/events?after={}&limit=1", v["next"])).await;
    assert_eq!(v["events"][0]["seq"], seqs[1]);
    // At the end: empty, and `next` stays put.
    let (_, v) = s.get_json(&format!("/api/v1/events?after={}", seqs[2])).await;
    assert_eq!(v, json!({"events": [], "next": seqs[2]}));
    // A short wait with nothing new ends empty.
    let (_, v) = s
        .get_json(&format!("/api/v1/events?after={}&wait_seconds=1", seqs[2]))
        .await;
    assert_eq!(v, json!({"events": [], "next": seqs[2]}));

    // A long poll returns when another client commits. The poll asks for the longest wait
    // (300 s) and the guard is far shorter: a poll that was not woken by the commit would
    // fail here instead of finding the event when its own wait ran out.
    let poll = {
        let s = s.clone();
        let after = seqs[2];
        tokio::spawn(async move {
            let resp = client()
                .get(s.url(&format!("/api/v1/events?after={after}&wait_seconds=300")))
                .send()
                .await
                .expect("poll");
            json_of(resp).await
        })
    };
    // Ordering only: let the poll start waiting first (it returns the event either way).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll returned with nothing to report");
    let m = s.publish("ev/c", "7", &[("f", b"late")]).await;
    let (status, v) = tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("the long poll was not woken by the commit")
        .expect("poll task");
    assert_eq!(status, StatusCode::OK);
    let got = v["events"].as_array().expect("events");
    assert_eq!(got.len(), 1, "{v}");
    assert_eq!(got[0]["kind"], "committed");
    assert_eq!(got[0]["name"], "ev/c");
    assert_eq!(got[0]["version"], "7");
    assert_eq!(got[0]["seq"], m["seq"]);
    assert_eq!(v["next"], m["seq"]);

    for bad in [
        "wait_seconds=1000",
        "wait_seconds=301",
        "after=-1",
        "after=x",
        "limit=x",
        "colour=1",
    ] {
        let got = s.get_json(&format!("/api/v1/events?{bad}")).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{bad}: {}", got.1);
        assert_eq!(got.1["error"], "bad_request", "{bad}");
    }
    let got = s.get_json("/api/v1/events?wait_seconds=1000").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("wait_seconds"));
}

/// Publishes a metadata-only version with the multipart endpoint (one request each).
async fn publish_empty(http: &reqwest::Client, s: &Server, name: &str) -> Value {
    let form = Form::new().text("name", name.to_owned()).text("version", "auto");
    let resp = http
        .post(s.url("/api/v1/repos/files/publish"))
        .multipart(form)
        .send()
        .await
        .expect("publish");
    let (status, m) = json_of(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_through_thousands_of_versions() {
    let s = Arc::new(Server::start().await);
    const VERSIONS: usize = 2500;
    const PUBLISHERS: usize = 4;
    // Several publishers at once with `auto`: every one gets its own number, and the listing
    // must follow commit order (the event seq), not number or string order.
    let mut tasks = Vec::new();
    for _ in 0..PUBLISHERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut got = Vec::new();
            for _ in 0..VERSIONS / PUBLISHERS {
                let m = publish_empty(&http, &s, "many/builds").await;
                got.push((m["seq"].as_i64().expect("seq"), str_of(&m, "version")));
            }
            got
        }));
    }
    let mut published = Vec::new();
    for t in tasks {
        published.extend(t.await.expect("publisher"));
    }
    assert_eq!(published.len(), VERSIONS);
    published.sort();
    let expected: Vec<String> = published.into_iter().map(|(_, v)| v).collect();
    let numbers: BTreeSet<u64> = expected
        .iter()
        .map(|v| v.parse().expect("auto versions are integers"))
        .collect();
    assert_eq!(
        numbers,
        (1..=VERSIONS as u64).collect(),
        "auto numbers are 1..=n without gaps or repeats"
    );

    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
        let (status, v) = s
            .get_json(&format!("/api/v1/repos/files/many/builds/@versions?limit=1000{q}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let page: Vec<String> = v["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|e| str_of(e, "version"))
            .collect();
        for e in v["versions"].as_array().expect("versions") {
            assert_eq!(e["files"], 0);
            assert_eq!(e["size"], 0);
            assert!(e["created_at"].is_string());
        }
        pages.push(page);
        match &v["next"] {
            Value::Null => break,
            Value::String(n) => after = Some(n.clone()),
            other => panic!("next is {other}"),
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 1000, 500]);
    assert_eq!(
        pages.concat(),
        expected,
        "versions are listed oldest (first committed) first"
    );
    // The default limit is 1000 too.
    let (_, v) = s.get_json("/api/v1/repos/files/many/builds/@versions").await;
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(1000));
    assert_eq!(v["next"], expected[999].as_str());

    let got = s
        .get_json("/api/v1/repos/files/many/builds/@versions?after=999999")
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request", Some("after"));
    // Unknown names list nothing.
    let (status, v) = s.get_json("/api/v1/repos/files/never/published/@versions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"versions": [], "next": null}));

    // Names: sorted, filtered by prefix, paged, and only names with a committed version.
    let http = client();
    for name in ["tools/a", "tools/b", "tools-x", "toolsy", "zeta/q", "a"] {
        publish_empty(&http, &s, name).await;
    }
    let (open_only, _) = s.open(json!({"name": "tools/uncommitted", "version": "1"})).await;
    let names = |v: &Value| -> Vec<String> {
        v["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|n| n.as_str().expect("str").to_owned())
            .collect()
    };
    let (status, v) = s.get_json("/api/v1/repos/files/names").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        names(&v),
        ["a", "many/builds", "tools-x", "tools/a", "tools/b", "toolsy", "zeta/q"]
    );
    assert_eq!(v["next"], Value::Null);
    let (_, v) = s.get_json("/api/v1/repos/files/names?prefix=tools").await;
    assert_eq!(names(&v), ["tools-x", "tools/a", "tools/b", "toolsy"]);
    let (_, v) = s.get_json("/api/v1/repos/files/names?prefix=tools/").await;
    assert_eq!(names(&v), ["tools/a", "tools/b"]);
    let (_, v) = s.get_json("/api/v1/repos/files/names?prefix=nothing").await;
    assert_eq!(v, json!({"names": [], "next": null}));
    // Paging with `next`.
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let (_, v) = s
            .get_json(&format!("/api/v1/repos/files/names?limit=2&after={after}"))
            .await;
        all.extend(names(&v));
        match v["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        all,
        ["a", "many/builds", "tools-x", "tools/a", "tools/b", "toolsy", "zeta/q"]
    );
    // The group repo `go` lists its members' names, not the generic repo's.
    let (status, v) = s.get_json("/api/v1/repos/go/names").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(names(&v), Vec::<String>::new());
    assert_eq!(s.abort(&open_only).await, StatusCode::NO_CONTENT);
    let got = s.get_json("/api/v1/repos/nope/names").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);

    // Repos are browsable.
    let (status, v) = s.get_json("/api/v1/repos").await;
    assert_eq!(status, StatusCode::OK);
    let repos: Vec<String> = v["repos"]
        .as_array()
        .expect("repos")
        .iter()
        .map(|r| str_of(r, "name"))
        .collect();
    assert_eq!(repos, ["files", "go-private", "go-public", "go"]);
    let (status, v) = s.get_json("/api/v1/repos/files").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["kind"], "hosted");
    assert_eq!(v["format"], "generic");
}
