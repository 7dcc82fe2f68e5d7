//! The artifact API on a PostgreSQL catalog, opened the way `intact serve` opens it
//! (`[catalog] url`): one server end to end, then two servers on one database and one shared
//! blob directory, as two replicas behind a load balancer would run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use intact_server::Config;
use intact_testkit::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

use crate::{Server, str_of};

fn config_on(db: &TestDatabase) -> Config {
    let mut config = Config::embedded_default();
    config.catalog.url = Some(db.url.clone());
    config
}

/// A server on its own data dir, its catalog on `db`.
async fn server_on(db: &TestDatabase) -> Server {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    Server::start_opened(root, data, config_on(db)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_api_runs_on_postgres() {
    let db = TestDatabase::create().await;
    let s = Arc::new(server_on(&db).await);
    assert!(
        !s.data.join("catalog.db").exists(),
        "a server with a PostgreSQL catalog keeps no SQLite catalog"
    );
    let m = s
        .publish("pg/tool", "1.0", &[("bin/tool", b"tool bytes"), ("README", b"read me")])
        .await;
    assert_eq!(m["files"].as_array().map(Vec::len), Some(2));
    let (status, bytes) = s.get_bytes("/api/v1/repos/files/pg/tool/@v/1.0/bin/tool").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, b"tool bytes");
    s.publish("pg/tool", "1.1", &[("bin/tool", b"tool bytes, again")]).await;
    assert_eq!(s.versions("pg/tool").await, ["1.0", "1.1"]);
    let (status, v) = s.get_json("/api/v1/repos/files/names?prefix=pg/").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["names"], json!(["pg/tool"]));

    let events = s.events(0).await;
    let committed: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "committed")
        .map(|e| str_of(e, "version"))
        .collect();
    assert_eq!(committed, ["1.0", "1.1"]);
    // A long poll is answered by the next commit.
    let next = events.last().map_or(0, |e| e["seq"].as_i64().expect("seq"));
    let follower = {
        let s = s.clone();
        tokio::spawn(async move {
            s.get_json(&format!("/api/v1/events?after={next}&wait_seconds=60"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.publish("pg/tool", "2.0", &[("bin/tool", b"two")]).await;
    let (status, v) = follower.await.expect("join");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["events"][0]["version"], "2.0");
}

/// Opens, uploads and commits `race@1` on `s`; `Some(content)` when this publisher's commit
/// made the version, `None` when another publisher held or had made it.
async fn race_once(s: &Server, i: usize) -> Option<Vec<u8>> {
    let (status, v) = s.create(json!({"name": "race", "version": "1"})).await;
    if status == StatusCode::CONFLICT {
        return None;
    }
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = str_of(&v, "id");
    let content = format!("publisher {i}'s payload").into_bytes();
    let (status, v) = s.put(&id, "payload", content.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = s.commit(&id).await;
    match status {
        StatusCode::CREATED => Some(content),
        // The version was committed with other content by a publisher before this one.
        StatusCode::CONFLICT => None,
        other => panic!("commit answered {other}: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_publish_as_one() {
    let db = TestDatabase::create().await;
    // One blob directory for both (S3 plays this part in production).
    let root_a = tempfile::tempdir().expect("tempdir");
    let shared = root_a.path().join("data");
    let a = Arc::new(Server::start_opened(root_a, shared.clone(), config_on(&db)).await);
    let b = Arc::new(Server::start_opened(tempfile::tempdir().expect("tempdir"), shared, config_on(&db)).await);

    // A follower of A's event log, long-polling from the start.
    let follower = {
        let a = a.clone();
        tokio::spawn(async move {
            let (status, v) = a.get_json("/api/v1/events?after=0&wait_seconds=60").await;
            assert_eq!(status, StatusCode::OK, "{v}");
            v
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.publish("from-b", "1", &[("f", b"made on b")]).await;
    let woken = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .expect("A's follower was not woken by B's commit")
        .expect("join");
    assert_eq!(woken["events"][0]["name"], "from-b");
    assert_eq!(woken["events"][0]["kind"], "committed");

    // 20 publishers of one version, alternating between the servers.
    let racers = (0..20).map(|i| {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { race_once(&s, i).await })
    });
    let winners: Vec<Vec<u8>> = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter_map(|r| r.expect("racer"))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one publisher commits race@1");
    for s in [&a, &b] {
        assert_eq!(s.versions("race").await, ["1"]);
        let (status, bytes) = s.get_bytes("/api/v1/repos/files/race/@v/1/payload").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(bytes, winners[0], "both servers read the winner's bytes");
    }

    // Both event logs are one log: every commit, in one order, whichever server made it.
    b.publish("from-b", "2", &[("f", b"b again")]).await;
    a.publish("from-a", "1", &[("f", b"made on a")]).await;
    let on_a = a.events(0).await;
    assert_eq!(on_a, b.events(0).await);
    let seqs: Vec<i64> = on_a.iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let names: BTreeSet<String> = on_a
        .iter()
        .filter(|e| e["kind"] == "committed")
        .map(|e| format!("{}@{}", str_of(e, "name"), str_of(e, "version")))
        .collect();
    assert_eq!(
        names,
        ["from-a@1", "from-b@1", "from-b@2", "race@1"].map(String::from).into()
    );
}
