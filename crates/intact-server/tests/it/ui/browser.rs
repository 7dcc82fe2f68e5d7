//! The web UI in a real browser: Debian's headless chromium, driven through chromedriver.
//! Clicks through repo → name → version → a file download (the bytes checked), watches a
//! commit made after a page opened appear on it, signs in with a token on a server with
//! access control, and lays pages out on a 360 px wide screen. With
//! `INTACT_UI_SCREENSHOTS=DIR` set, writes PNGs of the main pages there (docs/web-ui.md shows
//! them). Without chromium it skips with a reason, except under `CI`, where it fails.

use std::path::PathBuf;
use std::time::Duration;

use intact_server::Config;
use reqwest::StatusCode;
use serde_json::json;

use super::webdriver::Browser;
use crate::Server;

/// How long a live update may take to show before the test gives up (a guard against a hung
/// test, not a timing assertion: the page long-polls and shows events as soon as they land).
const LIVE: Duration = Duration::from_secs(30);

fn screenshots_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("INTACT_UI_SCREENSHOTS")?);
    let dir = if dir.is_relative() {
        // Relative to the workspace root, where `cargo test` is run from.
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir)
    } else {
        dir
    };
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    Some(dir)
}

async fn shoot(browser: &Browser, name: &str) {
    if let Some(dir) = screenshots_dir() {
        browser.screenshot(&dir.join(format!("{name}.png"))).await;
    }
}

/// The text a file link's URL answers inside the browser's session (its cookies, its origin).
async fn fetched_in_browser(browser: &Browser, href: &str) -> String {
    let v = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.text().then(t => done(r.status + ' ' + t)))
                                .catch(e => done('error ' + e));",
            json!([href]),
        )
        .await;
    v.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_to_a_file_download_it_and_watch_commits_arrive() {
    let Some(browser) = Browser::start_or_skip("the web UI browser test").await else {
        return;
    };
    let s = Server::start().await;
    s.publish(
        "shots/sq010/comp",
        "1",
        &[
            ("render/beauty.0001.exr", b"frame one"),
            ("notes.txt", b"hello from intact\n"),
        ],
    )
    .await;
    let (id, _) = s
        .open(json!({"name": "shots/sq010/comp", "version": "2", "metadata": {"artist": "ana", "frames": "1-24"}}))
        .await;
    s.put(&id, "notes.txt", b"second take\n".to_vec()).await;
    s.put(&id, "render/beauty.0001.exr", b"frame one, again".to_vec()).await;
    let (status, v) = s.commit(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.publish("tools/exporter", "0.3.1", &[("exporter.py", b"print('hi')\n")])
        .await;
    let tag = s
        .http
        .put(s.url("/api/v1/repos/files/shots/sq010/comp/@tags/approved"))
        .json(&json!({"version": "2"}))
        .send()
        .await
        .expect("tag");
    assert!(tag.status().is_success(), "{}", tag.status());

    // Home → repo.
    browser.goto(&s.url("/")).await;
    browser.wait_for_text("Repositories you may read", LIVE).await;
    shoot(&browser, "home").await;
    browser.find("a[href='/ui/repos/files']").await.click().await;
    browser.wait_for_text("Names starting with", LIVE).await;
    assert!(browser.text().await.contains("tools/exporter"));

    // Prefix search, through the form.
    browser.find("#prefix").await.type_text("shots").await;
    browser.find("form.search button").await.click().await;
    browser.wait_for_url("/ui/repos/files?prefix=shots", LIVE).await;
    browser.wait_for_text("shots/sq010/comp", LIVE).await;
    assert!(!browser.text().await.contains("tools/exporter"), "the prefix filters");
    shoot(&browser, "names").await;

    // Name → its versions, newest first, with the tag.
    browser
        .find("a[href='/ui/repos/files/shots/sq010/comp/@versions']")
        .await
        .click()
        .await;
    browser.wait_for_text("Versions, newest first", LIVE).await;
    let text = browser.text().await;
    assert!(text.contains("approved"), "{text}");
    let first_row = browser.find("#versions tr:first-child td:first-child a").await;
    assert_eq!(first_row.text().await, "2", "newest first");
    shoot(&browser, "versions").await;

    // A commit made while the page is open appears on it.
    s.publish("shots/sq010/comp", "3", &[("notes.txt", b"third\n")]).await;
    let deadline = std::time::Instant::now() + LIVE;
    loop {
        let top = browser.find("#versions tr:first-child td:first-child a").await;
        if top.text().await == "3" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "version 3 never appeared live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Version → its files → download.
    browser
        .find("a[href='/ui/repos/files/shots/sq010/comp/@v/1']")
        .await
        .click()
        .await;
    browser.wait_for_text("render/beauty.0001.exr", LIVE).await;
    let text = browser.text().await;
    assert!(
        text.contains(&intact_core::Digest::of(b"hello from intact\n").to_hex()),
        "{text}"
    );
    let link = browser.find("a[href$='/@v/1/notes.txt']").await;
    let href = link.attribute("href").await.expect("href");
    assert_eq!(href, "/api/v1/repos/files/shots/sq010/comp/@v/1/notes.txt");
    assert_eq!(fetched_in_browser(&browser, &href).await, "200 hello from intact\n");
    link.click().await;
    browser.wait_for_text("hello from intact", LIVE).await;
    assert!(browser.current_url().await.ends_with(&href));

    // A version page with metadata and a tag, shot for the docs.
    browser.goto(&s.url("/ui/repos/files/shots/sq010/comp/@v/2")).await;
    browser.wait_for_text("frames", LIVE).await;
    assert!(browser.text().await.contains("approved"));
    shoot(&browser, "version").await;

    // Activity: an open transaction with its lease, and an event arriving live.
    let (open_id, _) = s.open(json!({"name": "shots/sq020/light", "version": "1"})).await;
    browser.goto(&s.url("/ui/activity")).await;
    browser.wait_for_text("Open transactions", LIVE).await;
    assert!(browser.text().await.contains(&open_id));
    s.put(&open_id, "light.usd", b"#usda 1.0\n".to_vec()).await;
    let (status, v) = s.commit(&open_id).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    browser.wait_for_text("files/shots/sq020/light@1", LIVE).await;
    shoot(&browser, "activity").await;

    // A 360 px wide screen: nothing wider than the screen but tables, which scroll in place.
    browser.emulate_screen(360, 740).await;
    for path in [
        "/",
        "/ui/repos/files",
        "/ui/repos/files/shots/sq010/comp/@v/2",
        "/ui/activity",
    ] {
        browser.goto(&s.url(path)).await;
        browser.find("main h1").await;
        let overflow = browser
            .run(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                json!([]),
            )
            .await;
        assert_eq!(overflow.as_i64(), Some(0), "{path} is wider than a 360 px screen");
    }
    browser.goto(&s.url("/ui/repos/files/shots/sq010/comp/@v/2")).await;
    browser.find("main h1").await;
    shoot(&browser, "version-narrow").await;
    s.stop().await;
}

const ACCESS: &str = r#"
[[repo]]
name = "files"
kind = "hosted"

[[repo]]
name = "public"
kind = "hosted"
anonymous_read = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_token_read_what_it_may_and_sign_out() {
    let Some(browser) = Browser::start_or_skip("the web UI sign-in test").await else {
        return;
    };
    let s = Server::start_with(Config::from_toml(ACCESS).expect("config")).await;
    let token = |admin: Option<String>, name: &'static str, scopes: serde_json::Value| {
        let s = &s;
        async move {
            let mut req = s
                .http
                .post(s.url("/api/v1/tokens"))
                .json(&json!({"name": name, "scopes": scopes}));
            if let Some(a) = admin {
                req = req.bearer_auth(a);
            }
            let v: serde_json::Value = req.send().await.expect("token").json().await.expect("json");
            v["secret"].as_str().expect("secret").to_owned()
        }
    };
    let admin = token(None, "root", json!(["*:admin"])).await;
    let reader = token(Some(admin.clone()), "reviewer", json!(["files:read"])).await;
    for repo in ["files", "public"] {
        let v: serde_json::Value = s
            .http
            .post(s.url(&format!("/api/v1/repos/{repo}/transactions")))
            .bearer_auth(&admin)
            .json(&json!({"name": "plates", "version": "1"}))
            .send()
            .await
            .expect("open")
            .json()
            .await
            .expect("json");
        let id = v["id"].as_str().expect("id");
        s.http
            .put(s.url(&format!("/api/v1/transactions/{id}/files/plate.txt")))
            .bearer_auth(&admin)
            .body(format!("{repo} plate"))
            .send()
            .await
            .expect("put");
        s.http
            .post(s.url(&format!("/api/v1/transactions/{id}/commit")))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("commit");
    }

    // Anonymous: the public repo only.
    browser.goto(&s.url("/")).await;
    browser.wait_for_text("public", LIVE).await;
    assert!(browser.try_find("a[href='/ui/repos/files']").await.is_none());
    let denied = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/repos/files/plates/@v/1/plate.txt', {credentials: 'omit'})
               .then(r => done(r.status)).catch(e => done('error ' + e));",
            json!([]),
        )
        .await;
    assert_eq!(denied.as_i64(), Some(401), "{denied}");

    // Sign in through the form.
    browser.find("a[href='/ui/sign-in']").await.click().await;
    browser.find("#token").await.type_text(&reader).await;
    shoot(&browser, "sign-in").await;
    browser.find("form.sign-in button").await.click().await;
    browser.wait_for_text("signed in as reviewer", LIVE).await;
    assert!(
        !browser.source().await.contains(&reader),
        "the token is never in a page"
    );
    let cookie_visible = browser.run("return document.cookie;", json!([])).await;
    assert_eq!(cookie_visible.as_str(), Some(""), "HttpOnly: no script reads the token");
    browser.find("a[href='/ui/repos/files']").await.click().await;
    browser
        .find("a[href='/ui/repos/files/plates/@versions']")
        .await
        .click()
        .await;
    browser
        .find("a[href='/ui/repos/files/plates/@v/1']")
        .await
        .click()
        .await;
    let link = browser.find("a[href$='/plate.txt']").await;
    let href = link.attribute("href").await.expect("href");
    assert_eq!(fetched_in_browser(&browser, &href).await, "200 files plate");

    // (That the cookie never authorises a write is checked over HTTP in `pages.rs`: here a
    // refused fetch would answer 401 with a Basic challenge, on which a browser stops to ask
    // for a password.)

    // Sign out: back to what anyone may read.
    browser.find("form.who button").await.click().await;
    browser.wait_for_text("Sign in", LIVE).await;
    assert!(browser.try_find("a[href='/ui/repos/files']").await.is_none());
    s.stop().await;
}
