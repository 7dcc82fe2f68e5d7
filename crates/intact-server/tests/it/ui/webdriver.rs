//! A small W3C WebDriver client over reqwest, enough to drive Debian's headless chromium
//! through chromedriver: open pages, find and click elements, type, run scripts, size the
//! window and take screenshots. The suite starts its own chromedriver on a free port.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one headless browser session in it; both end when dropped.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    _profile: tempfile::TempDir,
}

/// Why no browser could be had (chromium or chromedriver missing, or failing to start).
#[derive(Debug)]
pub struct NoBrowser(pub String);

impl Browser {
    /// A browser, or the reason there is none. In CI (the `CI` variable set) a missing browser
    /// is a failure, never a skip: `scripts/test` installs chromium and chromium-driver.
    pub async fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start().await {
            Ok(b) => Some(b),
            Err(NoBrowser(why)) if std::env::var_os("CI").is_some() => {
                panic!("{test} needs headless chromium and chromedriver: {why}")
            }
            Err(NoBrowser(why)) => {
                eprintln!("SKIPPED {test}: {why} (apt-get install chromium chromium-driver)");
                None
            }
        }
    }

    pub async fn start() -> Result<Self, NoBrowser> {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(tool).exists() {
                return Err(NoBrowser(format!("{tool} is not installed")));
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| NoBrowser(format!("no free port: {e}")))?
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| NoBrowser(format!("starting {CHROMEDRIVER}: {e}")))?;
        let http = crate::client();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Self {
            driver,
            http,
            session: String::new(),
            _profile: tempfile::tempdir().map_err(|e| NoBrowser(e.to_string()))?,
        };
        // chromedriver answers /status once it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = browser.http.get(format!("{base}/status")).send().await
                && resp.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(NoBrowser("chromedriver did not start listening within 30 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = browser._profile.path().display().to_string();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--no-default-browser-check",
                         format!("--user-data-dir={profile}")],
            }
        }}});
        let resp = browser
            .http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .map_err(|e| NoBrowser(format!("creating a session: {e}")))?;
        let v: Value = resp.json().await.map_err(|e| NoBrowser(e.to_string()))?;
        let Some(id) = v["value"]["sessionId"].as_str() else {
            return Err(NoBrowser(format!("chromedriver refused a session: {v}")));
        };
        browser.session = format!("{base}/session/{id}");
        Ok(browser)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        assert!(status.is_success(), "webdriver {method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_owned()
    }

    /// The element matching a CSS selector, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}; the page is:\n{}",
                self.current_url().await,
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        let id = v.as_array()?.first()?[ELEMENT].as_str()?.to_owned();
        Some(Element { browser: self, id })
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1]` with its result.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.run("return document.body.innerText;", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's markup as the browser holds it.
    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits (up to `within`) until the page's text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.text().await.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not appear on {} within {within:?}; the page says:\n{}",
                self.current_url().await,
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to `within`) until the current URL ends with `suffix`.
    pub async fn wait_for_url(&self, suffix: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let url = self.current_url().await;
            if url.ends_with(suffix) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the browser stayed at {url}, not ...{suffix}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lays pages out for a screen `width` CSS pixels wide (a phone's), through the Chrome
    /// DevTools protocol: a desktop window cannot be made that narrow everywhere.
    pub async fn emulate_screen(&self, width: u32, height: u32) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride",
                   "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}}),
        )
        .await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver then quits the browser and its helpers), then
    /// chromedriver itself, by its own process id: killing chromedriver alone would leave the
    /// browser running. Blocking, plain TCP: a drop cannot await, and it also runs when a
    /// test panics.
    fn drop(&mut self) {
        if let Some((host, path)) = self
            .session
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            && let Ok(mut conn) = std::net::TcpStream::connect(host)
        {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!("DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            if conn.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = conn.read_to_end(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the current page.
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl Element<'_> {
    pub async fn click(&self) {
        self.browser
            .post(&format!("/element/{}/click", self.id), json!({}))
            .await;
    }

    pub async fn type_text(&self, text: &str) {
        self.browser
            .post(&format!("/element/{}/value", self.id), json!({ "text": text }))
            .await;
    }

    pub async fn text(&self) -> String {
        self.browser
            .get(&format!("/element/{}/text", self.id))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An attribute as written in the markup (`href` as the page spells it).
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.browser
            .get(&format!("/element/{}/attribute/{name}", self.id))
            .await
            .as_str()
            .map(str::to_owned)
    }
}
