//! Bad HTTP heartbeats: oversized and malformed bodies, beacon and form
//! content types, broken framing — each answered 4xx, never 5xx.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::assert_healthy;
use crate::common::Demo;

/// Sends raw bytes as one HTTP request; the status of the answer.
async fn raw_status(demo: &Demo, request: &str) -> u16 {
    let address = demo.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    // A body past the limit is answered (413) once 1 KiB of it has come,
    // and the connection closed: the rest of the write may meet a reset,
    // while the answer is already here to read.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .expect("an answer in time")
        .expect("a status line");
    let line = String::from_utf8_lossy(&head);
    line.trim_start_matches("HTTP/1.1 ")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a status line, got {line:?}"))
}

#[tokio::test]
async fn bad_heartbeat_bodies_get_4xx_never_5xx() {
    let mut demo = Demo::start(&[]);
    let token = demo.login("Alice", "acme").await;
    let url = format!("{}/presence/heartbeat", demo.base);
    // A connection per request: one the server closed after refusing a
    // body is not reused for the next case.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let mut noise = vec![0u8; 1000];
    fastrand::Rng::with_seed(7).fill(&mut noise);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        // Controls: what a client and a beacon send.
        ("", Vec::new(), 204),
        ("application/json", br#"{"activity":true}"#.to_vec(), 204),
        (
            "text/plain;charset=UTF-8",
            br#"{"activity":false}"#.to_vec(),
            204,
        ),
        // Too large.
        ("application/json", heartbeat_body(1025), 413),
        ("text/plain", vec![b' '; 64 * 1024], 413),
        // Malformed.
        ("application/json", b"{".to_vec(), 400),
        ("application/json", b"null".to_vec(), 400),
        ("application/json", br#"{"activity":"yes"}"#.to_vec(), 400),
        ("application/json", br#"{"activity":1e999}"#.to_vec(), 400),
        ("application/json", br#"{"user_id":"carol"}"#.to_vec(), 400),
        ("application/json", b"[".repeat(1000), 400),
        ("application/json", noise, 400),
        ("application/json", b"\xff\xfe{}".to_vec(), 400),
        (
            "application/x-www-form-urlencoded",
            b"activity=true".to_vec(),
            400,
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=\"activity\"\r\n\r\ntrue\r\n--x--"
                .to_vec(),
            400,
        ),
        ("text/plain", b"\0\0\0".to_vec(), 400),
    ];
    for (content_type, body, expected) in cases {
        let len = body.len();
        let mut request = http.post(&url).bearer_auth(&token).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let status = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{content_type} body of {len} bytes: no answer: {e}"))
            .status()
            .as_u16();
        assert_eq!(status, expected, "{content_type} body of {len} bytes");
    }
    // serde reads a struct from an array too: lenient, and harmless.
    for lenient in ["[]", "[true]", "[false]"] {
        let answer = http
            .post(&url)
            .bearer_auth(&token)
            .body(lenient)
            .send()
            .await;
        let status = answer.expect("an answer").status().as_u16();
        assert!(status < 500, "{lenient}: {status}");
    }

    let host = demo.base.trim_start_matches("http://").to_owned();
    let head = |extra: &str| {
        format!(
            "POST /presence/heartbeat HTTP/1.1\r\nHost: {host}\r\n\
             Authorization: Bearer {token}\r\n{extra}\r\n"
        )
    };
    // `None`: any 4xx will do.
    for (request, expected) in [
        // A length far beyond the limit: refused once 1 KiB has come.
        (
            head("Content-Length: 99999999999\r\n") + &"x".repeat(2048),
            Some(413),
        ),
        (
            head("Transfer-Encoding: chunked\r\n")
                + &format!("800\r\n{}\r\n0\r\n\r\n", "x".repeat(0x800)),
            Some(413),
        ),
        // A whole 1 MiB body, sent as fast as the client can (a plain HTTP
        // client reports the reset of its write, not the answer).
        (
            head("Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n")
                + &"\0".repeat(1024 * 1024),
            Some(413),
        ),
        (head("Content-Length: abc\r\n"), Some(400)),
        // A broken chunk reads as a body error (answered 413).
        (
            head("Transfer-Encoding: chunked\r\n") + "zz\r\nxx\r\n0\r\n\r\n",
            None,
        ),
    ] {
        let status = raw_status(&demo, &request).await;
        let what = request.lines().nth(3).unwrap_or("");
        match expected {
            Some(expected) => assert_eq!(status, expected, "{what}"),
            None => assert!((400..500).contains(&status), "{what}: {status}"),
        }
    }
    assert_healthy(&mut demo, "Healthy").await;
}

/// A heartbeat body of exactly `len` bytes.
fn heartbeat_body(len: usize) -> Vec<u8> {
    let body = format!(r#"{{"activity":true,"pad":"{}"}}"#, " ".repeat(len - 26));
    assert_eq!(body.len(), len);
    body.into_bytes()
}
