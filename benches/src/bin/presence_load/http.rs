//! A minimal HTTP/1.1 client over loopback: `POST /api/login` (keep-alive,
//! many requests per connection) and `GET /metrics`. Enough for a load tool,
//! and no client library's own costs in the figures.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Error;

/// One keep-alive connection.
pub(crate) struct Http {
    stream: TcpStream,
    host: String,
    buffer: Vec<u8>,
}

/// A response: status and body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Http {
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            buffer: Vec::with_capacity(1024),
        })
    }

    /// Sends a request and reads the whole response (`Content-Length`
    /// bodies only, which is what axum sends for these routes).
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> Result<Response, Error> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nuser-agent: presence-load\r\n",
            self.host
        );
        if let Some(body) = json {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            head.push_str("\r\n");
        }
        self.stream.write_all(head.as_bytes()).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> Result<Response, Error> {
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("connection closed before a response".into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buffer[..header_end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
            .ok_or("response without content-length")?;
        while self.buffer.len() < header_end + length {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("connection closed inside a body".into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        let body =
            String::from_utf8_lossy(&self.buffer[header_end..header_end + length]).into_owned();
        self.buffer.drain(..header_end + length);
        Ok(Response { status, body })
    }

    /// `POST /api/login` → (token, user id).
    pub(crate) async fn login(&mut self, user: &str, org: &str) -> Result<String, Error> {
        let body = format!(r#"{{"username":"{user}","org":"{org}"}}"#);
        let response = self.request("POST", "/api/login", Some(&body)).await?;
        if response.status != 200 {
            return Err(format!(
                "login of {user} refused: {} {}",
                response.status, response.body
            )
            .into());
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
        }
        let token: Token = serde_json::from_str(&response.body)?;
        Ok(token.token)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Logs `users` (user, org) in over `concurrency` keep-alive connections;
/// the tokens in the same order.
pub(crate) async fn login_many(
    addr: SocketAddr,
    users: &[(String, String)],
    concurrency: usize,
) -> Result<Vec<String>, Error> {
    let concurrency = concurrency.clamp(1, users.len().max(1));
    let chunk = users.len().div_ceil(concurrency).max(1);
    let mut tasks = Vec::new();
    for part in users.chunks(chunk) {
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(addr).await?;
            let mut tokens = Vec::with_capacity(part.len());
            for (user, org) in &part {
                tokens.push(http.login(user, org).await?);
            }
            Ok::<_, Error>(tokens)
        }));
    }
    let mut tokens = Vec::with_capacity(users.len());
    for task in tasks {
        tokens.extend(task.await??);
    }
    Ok(tokens)
}

/// `GET /metrics`: the sample lines (name and value) of a Prometheus text
/// page, or `None` when the server has no such page.
pub(crate) async fn scrape(addr: SocketAddr) -> Option<Vec<(String, f64)>> {
    let mut http = Http::connect(addr).await.ok()?;
    let response = http.request("GET", "/metrics", None).await.ok()?;
    if response.status != 200 {
        return None;
    }
    Some(
        response
            .body
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect(),
    )
}
