//! A headless Chromium driven through chromedriver's W3C `WebDriver`
//! protocol (JSON over HTTP/1.1, <https://www.w3.org/TR/webdriver2/>),
//! spoken here with one `Connection: close` exchange per command.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// The browser the tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Its driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in `WebDriver` answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether Chromium and chromedriver are installed; prints a SKIP line if
/// not.
pub fn available(test: &str) -> bool {
    let ok = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !ok {
        println!(
            "SKIP {test}: {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver; scripts/test installs them as root)"
        );
    }
    ok
}

/// One request to the driver at `driver`: the answer's `value`.
fn call(driver: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect_timeout(&driver, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect chromedriver {driver}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {driver}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    // chromedriver says `Connection: close` but keeps the connection
    // open: read the head, then `Content-Length` bytes (or to EOF).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (head, body_at) = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&raw[..at]).into_owned(), at + 4);
        }
        let n = s
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(n > 0, "{method} {path}: closed before the answer's head");
        raw.extend_from_slice(&chunk[..n]);
    };
    let lower = head.to_ascii_lowercase();
    let length = lower.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    loop {
        if length.is_some_and(|len| raw.len() - body_at >= len) {
            break;
        }
        let n = s
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[body_at..]).into_owned();
    let json_body = if lower.contains("transfer-encoding: chunked") {
        dechunk(&rest)
    } else {
        rest
    };
    let v: Value = serde_json::from_str(&json_body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {json_body}"));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    assert_eq!(status, "200", "{method} {path} {body}: {v}");
    v["value"].clone()
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A browser session (closed on drop).
pub struct Session {
    driver: SocketAddr,
    id: String,
}

impl Session {
    /// A new headless Chromium with a fresh profile in `profile`, through
    /// the driver listening at `driver`.
    pub fn start(driver: SocketAddr, profile: &Path) -> Self {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let v = call(driver, "POST", "/session", Some(&caps));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        Self { driver, id }
    }

    fn cmd(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        call(
            self.driver,
            method,
            &format!("/session/{}{what}", self.id),
            body,
        )
    }

    /// Loads `url`.
    pub fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body) in the page: what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script` (a function body that calls `arguments[0]` with its
    /// result) in the page: the result.
    pub fn run_async(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Clicks the element matching CSS `selector`.
    pub fn click(&self, selector: &str) {
        let el = self.cmd(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": selector })),
        );
        let id = el[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {el}"))
            .to_owned();
        self.cmd("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None);
        base64_decode(v.as_str().expect("base64 PNG"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            call(
                self.driver,
                "DELETE",
                &format!("/session/{}", self.id),
                None,
            )
        });
    }
}

/// Standard base64 (RFC 4648 section 4), padding and whitespace ignored.
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decodes_rfc_4648_vectors() {
    for (enc, dec) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYg==", "foob"),
        ("Zm9vYmE=", "fooba"),
        ("Zm9vYmFy", "foobar"),
    ] {
        assert_eq!(base64_decode(enc), dec.as_bytes(), "{enc}");
    }
}
