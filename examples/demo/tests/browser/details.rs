//! Checks 11 to 13 (issue 19): what a user shows beyond the status, in real
//! browsers. Alice sets "In a meeting 📅" for one hour from the picker and
//! bob's member row shows it; alice signs in again from a phone-sized
//! browser and bob's row shows a mobile device beside the web one; carol,
//! in an organisation of 300 guests (`PRESENCE_DEMO_CROWD`), sees the town
//! hall as counts.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::page::Browser;
use crate::processes::{ChromeDriver, Demo};
use crate::{Failure, Outcome, POLL, check, secs_d};

/// How long a change may take to show in another browser.
const SHOWS_WITHIN: Duration = Duration::from_secs(5);

/// Polls `script` in `browser` until it returns `want`; how long it took.
async fn until(browser: &Browser, script: &str, want: &Value) -> Outcome<Duration> {
    let start = Instant::now();
    loop {
        let got = browser.js(script, vec![]).await?;
        if got == *want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > SHOWS_WITHIN {
            return Err(format!(
                "{script} gave {got}, not {want}, within {}",
                secs_d(SHOWS_WITHIN)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs checks 11 to 13 against a demo of its own; panics naming the failed
/// checks.
pub(crate) async fn run(artifacts: &Path) {
    let mut demo = Demo::start(
        &[("PRESENCE_DEMO_CROWD", "town:300")],
        &artifacts.join("demo-details-stderr.log"),
    )
    .await
    .unwrap_or_else(|e| panic!("setup: starting the demo failed: {e}"));
    let driver = ChromeDriver::start(&artifacts.join("chromedriver-details.log"))
        .await
        .unwrap_or_else(|e| panic!("setup: {e}"));
    let (bob, alice, phone, carol) = tokio::try_join!(
        Browser::open("bob", &driver, &demo.base),
        Browser::open("alice", &driver, &demo.base),
        Browser::open_phone("alice-phone", &driver, &demo.base),
        Browser::open("carol", &driver, &demo.base),
    )
    .unwrap_or_else(|e| panic!("setup: starting Chromium failed: {e}"));
    let browsers = [&bob, &alice, &phone, &carol];

    let mut failures: Vec<Failure> = Vec::new();
    let outcomes = [
        check(
            11,
            "a custom status from the picker reaches the observer",
            custom_status(&bob, &alice),
        )
        .await,
        check(
            12,
            "a phone-sized second session shows a mobile device",
            mobile_device(&bob, &phone),
        )
        .await,
        check(
            13,
            "a 300-member organisation shows counts on the town hall",
            town_hall_counts(&carol),
        )
        .await,
    ];
    for outcome in outcomes {
        if let Err(failure) = outcome {
            println!("{failure}");
            for browser in browsers {
                browser.screenshot(artifacts, &failure.label()).await;
            }
            failures.push(failure);
        }
    }
    drop((bob, alice, phone, carol));
    let _ = demo.terminate(Duration::from_secs(10)).await;
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(ToString::to_string).collect();
        panic!(
            "the browser test failed:\n{}\n(screenshots are in {})",
            list.join("\n"),
            artifacts.display()
        );
    }
}

/// Check 11.
async fn custom_status(bob: &Browser, alice: &Browser) -> Outcome<String> {
    bob.login("Bob", "acme").await?;
    bob.goto("/members").await?;
    bob.wait_connected().await?;
    alice.login("Alice", "acme").await?;
    alice.goto("/members").await?;
    alice.wait_connected().await?;

    alice.type_into("input#custom-text", "In a meeting").await?;
    // chromedriver cannot type 📅 (outside the BMP): the picker's button.
    alice.click(".emoji-choice[data-emoji=\"📅\"]").await?;
    alice
        .click("select#clear-after option[value=\"1h\"]")
        .await?;
    alice
        .click("select#status-picker option[value=\"BUSY\"]")
        .await?;
    let applied = Instant::now();
    alice.click("button#status-apply").await?;

    let row = "document.querySelector('li.member[data-user-id=\"alice\"]')";
    let shown = until(
        bob,
        &format!(
            "const row = {row}; if (!row) return null;
             const text = row.querySelector('.member-text');
             const emoji = row.querySelector('.member-emoji');
             return [text && text.textContent.trim(), emoji && emoji.textContent.trim()];"
        ),
        &json!(["In a meeting", "📅"]),
    )
    .await?;
    let until_ms = bob
        .js(
            &format!(
                "const c = {row}.querySelector('.member-custom');
                 return Date.parse(c.getAttribute('data-until')) - Date.now();"
            ),
            vec![],
        )
        .await?;
    let left = until_ms.as_f64().unwrap_or_default() / 1000.0;
    if !(3_500.0..=3_600.0).contains(&left) {
        return Err(format!(
            "the custom status should clear in about an hour, clears in {left:.0} s"
        ));
    }
    until(
        bob,
        &format!("return {row}.querySelector('.status-dot').getAttribute('data-status');"),
        &json!("BUSY"),
    )
    .await?;
    Ok(format!(
        "bob's row shows \"In a meeting\" 📅, BUSY, clearing in {left:.0} s, {} after the click ({} to apply)",
        secs_d(shown),
        secs_d(applied.elapsed().saturating_sub(shown))
    ))
}

/// Check 12.
async fn mobile_device(bob: &Browser, phone: &Browser) -> Outcome<String> {
    phone.login("Alice", "acme").await?;
    phone.goto("/members").await?;
    phone.wait_connected().await?;
    let devices = "const row = document.querySelector('li.member[data-user-id=\"alice\"]');
         if (!row) return null;
         return Array.from(row.querySelectorAll('.member-devices .device'))
             .map(d => d.getAttribute('data-kind')).sort();";
    let took = until(bob, devices, &json!(["mobile", "web"])).await?;
    Ok(format!(
        "bob's row shows alice on mobile and web {} after her phone connected",
        secs_d(took)
    ))
}

/// Check 13.
async fn town_hall_counts(carol: &Browser) -> Outcome<String> {
    carol.login("Carol", "town").await?;
    carol.goto("/channels/town-hall").await?;
    carol.wait_connected().await?;
    let shown = until(
        carol,
        "const p = document.getElementById('occupancy');
         return !!p && !p.hidden;",
        &json!(true),
    )
    .await?;
    let counts = carol
        .js(
            "const p = document.getElementById('occupancy');
             return [p.dataset.online, p.dataset.away, p.dataset.busy].map(Number)
                 .concat([p.textContent]);",
            vec![],
        )
        .await?;
    let total: f64 = (0..3).filter_map(|i| counts[i].as_f64()).sum();
    if total < 300.0 {
        return Err(format!(
            "the town hall counts {total} members, not 300 or more: {counts}"
        ));
    }
    if counts[2].as_f64().unwrap_or_default() < 30.0 {
        return Err(format!("every tenth guest is BUSY: {counts}"));
    }
    let rows = carol
        .js(
            "return document.querySelectorAll('li.member').length;",
            vec![],
        )
        .await?;
    if rows.as_u64().is_none_or(|rows| rows > 10) {
        return Err(format!("the town hall lists {rows} rows: counts, not rows"));
    }
    Ok(format!(
        "{} shown {} after load; {rows} member row(s)",
        counts[3].as_str().unwrap_or_default().trim(),
        secs_d(shown)
    ))
}
