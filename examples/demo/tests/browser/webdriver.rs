//! Just enough of the W3C WebDriver protocol, spoken over `reqwest` (a
//! dev-dependency already): sessions, navigation, elements, scripts, input
//! actions, windows and screenshots.
//!
//! `fantoccini` 0.22 without its TLS features has no constructor that can
//! be called without naming a `hyper-util` connector type, and `hyper-util`
//! is not a dev-dependency of the demo; WebDriver is plain JSON over HTTP,
//! so this small client does the same job.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What every WebDriver call returns: the value, or why it failed.
pub(crate) type WdResult<T> = Result<T, String>;

/// One WebDriver session: one browser process with its own profile.
pub(crate) struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of the driver.
    driver: String,
    id: String,
}

/// A reference to an element of the current page.
pub(crate) struct Element(String);

impl Session {
    /// Starts a browser through the driver at `driver` with `capabilities`
    /// (the `alwaysMatch` object).
    pub(crate) async fn start(driver: &str, capabilities: Value) -> WdResult<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let value = send(
            &http,
            Method::POST,
            &format!("{driver}/session"),
            Some(body),
        )
        .await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {value}"))?
            .to_owned();
        Ok(Self {
            http,
            driver: driver.to_owned(),
            id,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> WdResult<Value> {
        let url = format!("{}/session/{}{path}", self.driver, self.id);
        send(&self.http, method, &url, body).await
    }

    /// Navigates and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) -> WdResult<()> {
        self.call(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    pub(crate) async fn current_url(&self) -> WdResult<String> {
        let value = self.call(Method::GET, "/url", None).await?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the URL is not a string: {value}"))
    }

    /// The first element matching a CSS selector.
    pub(crate) async fn find(&self, css: &str) -> WdResult<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let value = self.call(Method::POST, "/element", Some(body)).await?;
        value[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .ok_or_else(|| format!("no element reference for {css:?} in {value}"))
    }

    /// A real click, through the browser's input pipeline.
    pub(crate) async fn click(&self, element: &Element) -> WdResult<()> {
        let path = format!("/element/{}/click", element.0);
        self.call(Method::POST, &path, Some(json!({})))
            .await
            .map(drop)
    }

    pub(crate) async fn clear(&self, element: &Element) -> WdResult<()> {
        let path = format!("/element/{}/clear", element.0);
        self.call(Method::POST, &path, Some(json!({})))
            .await
            .map(drop)
    }

    /// Real key presses into an element.
    pub(crate) async fn send_keys(&self, element: &Element, text: &str) -> WdResult<()> {
        let path = format!("/element/{}/value", element.0);
        self.call(Method::POST, &path, Some(json!({ "text": text })))
            .await
            .map(drop)
    }

    /// Runs `script` as the body of a function called with `args`; returns
    /// what it returns.
    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> WdResult<Value> {
        let body = json!({ "script": script, "args": args });
        self.call(Method::POST, "/execute/sync", Some(body)).await
    }

    /// Performs W3C input action sequences (`actions` is the array).
    pub(crate) async fn perform_actions(&self, actions: Value) -> WdResult<()> {
        self.call(
            Method::POST,
            "/actions",
            Some(json!({ "actions": actions })),
        )
        .await
        .map(drop)
    }

    /// The current window as a PNG.
    pub(crate) async fn screenshot(&self) -> WdResult<Vec<u8>> {
        let value = self.call(Method::GET, "/screenshot", None).await?;
        let encoded = value
            .as_str()
            .ok_or_else(|| "the screenshot is not a string".to_owned())?;
        base64_decode(encoded)
    }

    /// The handle of the current window.
    pub(crate) async fn window(&self) -> WdResult<String> {
        let value = self.call(Method::GET, "/window", None).await?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the window handle is not a string: {value}"))
    }

    /// Opens a new tab (not switched to) and returns its handle.
    pub(crate) async fn new_tab(&self) -> WdResult<String> {
        let value = self
            .call(Method::POST, "/window/new", Some(json!({ "type": "tab" })))
            .await?;
        value["handle"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no handle in {value}"))
    }

    pub(crate) async fn switch_to(&self, handle: &str) -> WdResult<()> {
        self.call(Method::POST, "/window", Some(json!({ "handle": handle })))
            .await
            .map(drop)
    }

    /// Closes the current window; returns the handles still open.
    pub(crate) async fn close_window(&self) -> WdResult<Vec<String>> {
        let value = self.call(Method::DELETE, "/window", None).await?;
        Ok(value
            .as_array()
            .map(|handles| {
                handles
                    .iter()
                    .filter_map(|h| h.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Ends the session (the driver closes the browser). Blocking and
    /// infallible, so it can run in `Drop`, even while a test panics.
    pub(crate) fn quit_blocking(&self) {
        let Some(address) = self.driver.strip_prefix("http://") else {
            return;
        };
        let Ok(mut stream) = TcpStream::connect(address) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.id
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            read_one_response(&mut stream);
        }
    }
}

/// Reads one HTTP response to its end (chromedriver keeps the connection
/// open, so the end is the `Content-Length`), or until an error or timeout.
fn read_one_response(stream: &mut TcpStream) {
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
        }
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok());
        match length {
            Some(length) if response.len() < end + 4 + length => {}
            _ => return,
        }
    }
}

/// One WebDriver request; unwraps `{"value": ...}` and turns WebDriver
/// errors into text.
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> WdResult<Value> {
    let what = format!("{method} {url}");
    let request = http.request(method, url);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = response.status();
    let mut reply: Value = response
        .json()
        .await
        .map_err(|e| format!("{what}: the reply is not JSON ({e})"))?;
    let value = reply["value"].take();
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{what}: {status} {}: {}",
            value["error"].as_str().unwrap_or("error"),
            value["message"].as_str().unwrap_or("")
        ))
    }
}

/// Decodes standard base64 (the encoding of WebDriver screenshots).
fn base64_decode(text: &str) -> WdResult<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for &c in text.as_bytes() {
        if c == b'=' || c.is_ascii_whitespace() {
            continue;
        }
        let value = sextet(c).ok_or_else(|| format!("not base64: byte {c}"))?;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Ok(out)
}

#[test]
fn base64_decodes_padded_and_unpadded_text() {
    assert_eq!(base64_decode("aGVsbG8=").as_deref(), Ok(&b"hello"[..]));
    assert_eq!(base64_decode("aGVsbG8h").as_deref(), Ok(&b"hello!"[..]));
    assert_eq!(
        base64_decode("iVBORw0KGgo=").as_deref(),
        Ok(&b"\x89PNG\r\n\x1a\n"[..])
    );
}
