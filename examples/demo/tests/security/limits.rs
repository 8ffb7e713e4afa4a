//! The limits an abusive socket client meets: the 4 KiB frame limit
//! (1009), flood control (`rate_limited`, then 1008), garbage frames (each
//! answered) and protocol violations — each leaving other clients and the
//! server unharmed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::barrage::{self, Tally};
use crate::client::{Answer, answer, assert_healthy, close_code, open, round_trip};
use crate::common::Demo;

/// A heartbeat padded to exactly `len` bytes.
fn heartbeat_of(len: usize) -> String {
    let frame = format!(r#"{{"type":"heartbeat","pad":"{}"}}"#, "x".repeat(len - 29));
    assert_eq!(frame.len(), len);
    frame
}

#[tokio::test]
async fn a_frame_over_4_kib_closes_that_socket_with_1009_only() {
    let mut demo = Demo::start(&[]);
    let alice = demo.login("Alice", "acme").await;
    let carol = demo.login("Carol", "acme").await;
    let mut bystander = open(&demo, &carol).await;

    let mut socket = open(&demo, &alice).await;
    socket
        .send(Message::text(heartbeat_of(4096)))
        .await
        .expect("sent");
    let Answer::Frame(pong) = answer(&mut socket).await else {
        panic!("4096 bytes is within the limit");
    };
    assert_eq!(pong["type"], "pong");
    socket
        .send(Message::text(heartbeat_of(4097)))
        .await
        .expect("sent");
    assert_eq!(close_code(&mut socket).await, Some(1009), "4097 bytes");

    // In fragments of 2 KiB: the message, not the frame, is too large.
    let mut socket = open(&demo, &alice).await;
    let whole = heartbeat_of(6000);
    let (first, rest) = whole.as_bytes().split_at(2000);
    let (second, last) = rest.split_at(2000);
    for (part, opcode, fin) in [
        (first, Data::Text, false),
        (second, Data::Continue, false),
        (last, Data::Continue, true),
    ] {
        let frame = Frame::message(part.to_vec(), OpCode::Data(opcode), fin);
        // The server may hang up before the last fragment.
        let _ = socket.send(Message::Frame(frame)).await;
    }
    assert_eq!(close_code(&mut socket).await, Some(1009), "fragmented");

    for oversized in [
        Message::binary(vec![7; 5000]),
        Message::text(heartbeat_of(64 * 1024)),
    ] {
        let mut socket = open(&demo, &alice).await;
        let _ = socket.send(oversized).await;
        assert_eq!(close_code(&mut socket).await, Some(1009));
    }

    // The bystander noticed nothing.
    for _ in 0..3 {
        round_trip(&mut bystander).await;
    }
    assert_healthy(&mut demo, "Healthy").await;
}

/// What one flooding connection got.
#[derive(Debug, Default)]
struct Flood {
    pongs: usize,
    rate_limited: usize,
    close: Option<u16>,
}

/// Sends `frames` heartbeats back to back, then reads every answer.
async fn flood(demo: &Demo, token: &str, frames: usize) -> Flood {
    let mut socket = open(demo, token).await;
    for _ in 0..frames {
        if socket
            .feed(Message::text(r#"{"type":"heartbeat"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = socket.flush().await;
    let mut got = Flood::default();
    loop {
        match answer(&mut socket).await {
            Answer::Frame(frame) if frame["type"] == "pong" => got.pongs += 1,
            Answer::Frame(frame) if frame["code"] == "rate_limited" => got.rate_limited += 1,
            Answer::Frame(other) => panic!("a flood got {other}"),
            Answer::Closed(code) => {
                got.close = Some(code);
                return got;
            }
            Answer::Dropped | Answer::Silent => return got,
        }
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_throttled_then_closed_with_1008_while_others_are_served() {
    const FLOODERS: usize = 4;
    const FRAMES: usize = 500;
    const FLOOD_FOR: Duration = Duration::from_secs(2);
    // Within the flood limit (20 messages/s).
    const OBSERVER_PACE: Duration = Duration::from_millis(60);
    let mut demo = Demo::start(&[]);
    let carol = demo.login("Carol", "acme").await;
    let mut observer = open(&demo, &carol).await;
    let mut baseline = Vec::new();
    for _ in 0..20 {
        baseline.push(round_trip(&mut observer).await);
        tokio::time::sleep(OBSERVER_PACE).await;
    }

    let flooding = Arc::new(AtomicBool::new(true));
    let observe = tokio::spawn({
        let flooding = flooding.clone();
        async move {
            let mut during = Vec::new();
            while flooding.load(Ordering::Relaxed) {
                during.push(round_trip(&mut observer).await);
                tokio::time::sleep(OBSERVER_PACE).await;
            }
            during
        }
    });
    let mut floods = Vec::new();
    let started = Instant::now();
    let tokens = futures_util::future::join_all((0..FLOODERS).map(|n| {
        let demo = &demo;
        async move { demo.login(&format!("Flooder{n}"), "acme").await }
    }))
    .await;
    while started.elapsed() < FLOOD_FOR {
        let round =
            futures_util::future::join_all(tokens.iter().map(|t| flood(&demo, t, FRAMES))).await;
        floods.extend(round);
    }
    flooding.store(false, Ordering::Relaxed);
    let mut during = observe.await.expect("the observer");

    for got in &floods {
        assert_eq!(got.close, Some(1008), "{got:?}");
        assert!(got.pongs >= 40, "the burst passes: {got:?}");
        assert!(got.rate_limited >= 1, "throttled before the close: {got:?}");
        assert!(got.pongs + got.rate_limited < FRAMES, "{got:?}");
    }
    baseline.sort();
    during.sort();
    let (pongs, throttled): (usize, usize) = floods
        .iter()
        .fold((0, 0), |(p, r), f| (p + f.pongs, r + f.rate_limited));
    println!(
        "security figure: flood: {} connections x {FRAMES} heartbeats over {:?}: \
         {pongs} pongs, {throttled} rate_limited, all closed 1008; bystander round trip \
         p50/p99/max {:?}/{:?}/{:?} during ({} pongs), {:?}/{:?}/{:?} before",
        floods.len(),
        started.elapsed(),
        percentile(&during, 50),
        percentile(&during, 99),
        during.last().expect("round trips"),
        during.len(),
        percentile(&baseline, 50),
        percentile(&baseline, 99),
        baseline.last().expect("round trips"),
    );
    assert!(
        during.len() >= 10,
        "the bystander kept going: {}",
        during.len()
    );
    assert!(
        percentile(&during, 50) < Duration::from_millis(100),
        "the bystander's median round trip {:?}",
        percentile(&during, 50)
    );
    assert!(
        *during.last().expect("round trips") < Duration::from_secs(1),
        "the bystander's slowest round trip {:?}",
        during.last()
    );
    assert_healthy(&mut demo, "Healthy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_garbage_frames_are_each_answered() {
    const CLIENTS: usize = 10;
    const FRAMES: usize = 10_000;
    let mut demo = Demo::start(&[]);
    // An org each, so no one's arrival is news to another.
    let tokens = futures_util::future::join_all((0..CLIENTS).map(|n| {
        let demo = &demo;
        async move { demo.login(&format!("Fuzzer{n}"), &format!("fuzz{n}")).await }
    }))
    .await;
    let started = Instant::now();
    let tallies = futures_util::future::join_all(
        tokens
            .iter()
            .zip(0u64..)
            .map(|(token, seed)| barrage::throw(&demo, token, seed, FRAMES / CLIENTS)),
    )
    .await;
    let mut tally = Tally::default();
    for one in tallies {
        tally.add(one);
    }
    println!(
        "security figure: garbage: {tally} in {:?}",
        started.elapsed()
    );
    assert_eq!(tally.sent, FRAMES);
    assert!(tally.silent.is_empty(), "silently dropped: {tally}");
    assert!(tally.other.is_empty(), "garbage accepted: {tally}");
    assert!(
        !tally.errors.contains_key("rate_limited"),
        "paced under the flood limit: {tally}"
    );
    let dropped: usize = tally.dropped.values().sum();
    assert_eq!(tally.error_frames() + tally.closed() + dropped, FRAMES);
    // Oversized frames close with 1009, invalid UTF-8 with 1007; nothing
    // ends without a close code.
    assert!(
        tally.closes.keys().all(|code| [1007, 1009].contains(code)),
        "only oversized frames and invalid UTF-8 close: {tally}"
    );
    assert_eq!(dropped, 0, "ended without a close code: {tally}");
    assert_healthy(&mut demo, "Healthy").await;
}

/// What the server does with frames that break RFC 6455 itself: the code
/// it closes with (`None`: the connection ended without one).
async fn violation_closes(demo: &Demo, token: &str) -> Vec<(&'static str, Option<u16>)> {
    let violations = [
        (
            "invalid UTF-8 text",
            Frame::message(
                b"{\"type\":\"\xff\"}".to_vec(),
                OpCode::Data(Data::Text),
                true,
            ),
        ),
        (
            "continuation without a start",
            Frame::message(b"x".to_vec(), OpCode::Data(Data::Continue), true),
        ),
        (
            "reserved opcode",
            Frame::message(b"x".to_vec(), OpCode::Data(Data::Reserved(3)), true),
        ),
    ];
    let mut seen = Vec::new();
    for (what, frame) in violations {
        let mut socket = open(demo, token).await;
        let _ = socket.send(Message::Frame(frame)).await;
        seen.push((what, close_code(&mut socket).await));
    }
    seen
}

#[tokio::test]
async fn protocol_violations_close_with_1007_or_1002() {
    let mut demo = Demo::start(&[]);
    let token = demo.login("Alice", "acme").await;
    let seen = violation_closes(&demo, &token).await;
    println!("security figure: protocol violations: {seen:?}");
    assert_eq!(
        seen,
        [
            ("invalid UTF-8 text", Some(1007)),
            ("continuation without a start", Some(1002)),
            ("reserved opcode", Some(1002)),
        ]
    );
    assert_healthy(&mut demo, "Healthy").await;
}
