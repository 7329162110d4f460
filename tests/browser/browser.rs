//! `Browser`: Debian's headless Chromium, driven through its own chromedriver
//! on a free loopback port (WebDriver, with fantoccini), one fresh profile
//! per test. A test finds things the way a person or a screen reader does:
//! form fields by their `name`, buttons by their visible text.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A phone: the narrowest screen the pages are made for.
pub const PHONE_WIDTH_PX: u32 = 360;
pub const PHONE_HEIGHT_PX: u32 = 740;

/// Longest wait for something to appear on a page.
pub const APPEAR_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for chromedriver to listen.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the screenshots go (kept by CI as artifacts).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
    pub downloads: TempDir,
}

/// chromedriver's log of the page's console (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// One Chrome DevTools command, through chromedriver.
#[derive(Debug)]
struct DevTools {
    command: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.command, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

impl Browser {
    /// A phone-sized headless Chromium.
    pub async fn start() -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: apt-get install chromium chromium-driver (.ci/run does)"
            );
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = tempfile::tempdir().expect("download dir");
        let mut last_error = String::new();
        // A port picked free may be taken before chromedriver binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("chromedriver starts");
            let webdriver = format!("http://127.0.0.1:{port}");
            if !wait_for_driver(&webdriver).await {
                last_error = "chromedriver did not listen".to_owned();
                continue;
            }
            let capabilities = json!({
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-extensions",
                        "--lang=ja",
                        "--hide-scrollbars",
                        format!("--window-size={PHONE_WIDTH_PX},{PHONE_HEIGHT_PX}"),
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                    // A phone's viewport (a headless window cannot be made
                    // narrower than about 500 px).
                    "mobileEmulation": {"deviceMetrics": {
                        "width": PHONE_WIDTH_PX, "height": PHONE_HEIGHT_PX, "pixelRatio": 1.0,
                    }},
                    "prefs": {
                        "download.default_directory": downloads.path().display().to_string(),
                        "download.prompt_for_download": false,
                    },
                },
            });
            let Value::Object(capabilities) = capabilities else {
                unreachable!()
            };
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&webdriver)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                        downloads,
                    };
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        panic!("no Chromium session: {last_error}");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigates");
    }

    /// Waits until `css` matches a displayed element, and returns it.
    pub async fn appears(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + APPEAR_TIMEOUT;
        loop {
            if let Ok(found) = self.client.find(Locator::Css(css)).await
                && found.is_displayed().await.unwrap_or(false)
            {
                return found;
            }
            if Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!(
                    "{css} did not appear; page text: {}",
                    self.text("body").await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element at `css` shows `wanted`, and returns its text.
    pub async fn shows(&self, css: &str, wanted: &str) -> String {
        let deadline = Instant::now() + APPEAR_TIMEOUT;
        loop {
            let text = self.text(css).await;
            if text.contains(wanted) {
                return text;
            }
            if Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!("{css} never showed {wanted:?}; it shows {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the first element at `css` ("" when none).
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types into the displayed form field called `name`.
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self
            .appears(&format!("form:not([hidden]) [name=\"{name}\"]"))
            .await;
        field.clear().await.expect("cleared");
        field.send_keys(value).await.expect("typed");
    }

    /// Picks the option with `value` in the displayed select called `name`.
    pub async fn choose(&self, name: &str, value: &str) {
        let select = self
            .appears(&format!("form:not([hidden]) select[name=\"{name}\"]"))
            .await;
        select.select_by_value(value).await.expect("option chosen");
    }

    /// Clicks the displayed button whose text is `label`.
    pub async fn press(&self, label: &str) {
        let deadline = Instant::now() + APPEAR_TIMEOUT;
        let xpath = format!("//button[normalize-space()='{label}']");
        loop {
            if let Ok(buttons) = self.client.find_all(Locator::XPath(&xpath)).await {
                for button in buttons {
                    if button.is_displayed().await.unwrap_or(false)
                        && button.is_enabled().await.unwrap_or(false)
                    {
                        button.click().await.expect("clicked");
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!(
                    "no button {label:?}; page text: {}",
                    self.text("body").await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the viewport as `target/browser-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    /// A PNG of the whole page at phone width, below the fold too (the
    /// DevTools screenshot, through chromedriver).
    pub async fn full_page_screenshot(&self, name: &str) {
        let answer = self
            .client
            .issue_cmd(DevTools {
                command: "Page.captureScreenshot",
                params: json!({"format": "png", "captureBeyondViewport": true}),
            })
            .await
            .expect("full-page screenshot");
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer["data"].as_str().expect("png data"))
            .expect("base64");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    /// The console's errors since the last call: script errors,
    /// `console.error`, and files of the page (not `/v1` answers: a `409`
    /// or `503` the page explains is the API working, but Chromium logs
    /// every non-2xx fetch).
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("browser log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .filter(|message| !message.contains("/v1/"))
            .collect()
    }

    /// Runs axe-core (vendored: `tests/browser/assets/`) on the page as it
    /// is now; returns the serious and critical findings.
    pub async fn accessibility_findings(&self) -> Vec<String> {
        const AXE: &str = include_str!("assets/axe.min.js");
        self.client
            .execute(&format!("{AXE}\nreturn typeof axe;"), vec![])
            .await
            .expect("axe loads");
        let findings = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] }).then((result) => done(
                  result.violations
                    .filter((v) => v.impact === "serious" || v.impact === "critical")
                    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)
                ), (error) => done([`axe failed: ${error}`]));"#,
                vec![],
            )
            .await
            .expect("axe runs");
        findings
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The viewport's width and the page's, in CSS pixels.
    pub async fn widths(&self) -> (u64, u64) {
        let widths = self
            .client
            .execute(
                "return [window.innerWidth, document.documentElement.scrollWidth];",
                vec![],
            )
            .await
            .expect("measured");
        (
            widths[0].as_u64().unwrap_or(0),
            widths[1].as_u64().unwrap_or(u64::MAX),
        )
    }

    /// The page checks every test makes where it stands: no console
    /// errors, no serious accessibility finding, no sideways scrolling on a
    /// phone; and a screenshot of the whole page.
    pub async fn check_page(&self, name: &str) {
        self.full_page_screenshot(name).await;
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "{name}: console errors {errors:#?}");
        let findings = self.accessibility_findings().await;
        assert!(findings.is_empty(), "{name}: accessibility {findings:#?}");
        let (viewport, page) = self.widths().await;
        assert_eq!(
            viewport,
            u64::from(PHONE_WIDTH_PX),
            "{name}: a phone's viewport"
        );
        assert!(
            page <= viewport,
            "{name}: {page} px wide on a {viewport} px phone"
        );
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
        // Drop makes sure no Chromium process is left.
    }
}

/// A test that panics never reaches `close`: chromedriver dies with its
/// handle, but Chromium would live on. Its processes are the ones started
/// on this test's own profile folder.
impl Drop for Browser {
    fn drop(&mut self) {
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let _ = std::process::Command::new("pkill")
            .args(["-9", "-f", "--", &profile])
            .status();
    }
}

async fn wait_for_driver(webdriver: &str) -> bool {
    let deadline = Instant::now() + DRIVER_START_TIMEOUT;
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{webdriver}/status")).send().await
            && response.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
