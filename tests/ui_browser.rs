//! The console in a real browser: headless Chromium (Debian's package) over
//! WebDriver, against `sluice up` with tokens, seeded services, traffic (some of
//! it refused by a rate limit), a firing alarm and an error report. Every page
//! loads without console errors and its charts hold points; the drain button
//! changes the instance as the API sees it; the mute form creates a `Mute`; the
//! page body refreshes itself. With `SLUICE_SCREENSHOTS=DIR` it also saves the
//! overview and the service page there (how `docs/` gets them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::{until_status, Http, Sluice};

const ADMIN: &str = "admin-token-0123456789";

/// Waits until every chart on the page is drawn or failed; returns
/// `[[metric, points or null, error or null], ...]`.
const CHARTS: &str = r#"
    const charts = Array.from(document.querySelectorAll('.chart'));
    if (charts.some(c => c.dataset.points === undefined && c.dataset.error === undefined)) return null;
    return charts.map(c => [c.dataset.metric, c.dataset.points ? Number(c.dataset.points) : null, c.dataset.error || null]);
"#;

async fn charts(browser: &Browser, page: &str) -> Vec<(String, u64)> {
    let drawn = browser
        .until(&format!("the charts of {page} drawn"), CHARTS)
        .await;
    drawn
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c[2].is_null(), "{page}: a chart failed: {c}");
            (c[0].as_str().unwrap().to_owned(), c[1].as_u64().unwrap())
        })
        .collect()
}

fn points(charts: &[(String, u64)], metric: &str) -> u64 {
    charts
        .iter()
        .find(|(m, _)| m == metric)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with_tokens(
        dir.path(),
        &format!("[[tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"),
        &crate::support::FAST_METRICS,
    );
    let api = Http::with_token(&sluice.url, ADMIN);

    // Seed: a service with two instances, two routes (one rate-limited), protection,
    // an alarm that fires on any traffic, and an error report.
    api.echo_service_with_two_instances().await;
    api.route(
        "limited",
        r#"{"match": {"path_prefix": "/limited"}, "service": "echo"}"#,
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/RateLimit/limited",
        r#"{"spec": {"route": "limited", "rate": "2r/s", "key": "route"}}"#,
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/Breaker/echo",
        r#"{"spec": {"service": "echo"}}"#,
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/AlarmRule/echo-busy",
        r#"{"spec": {"metric": "qps", "match": {"service": "echo"}, "above": 0.5, "for": "0s", "message": "echo at {{value}} req/s"}}"#,
    )
    .await;
    api.send(
        "POST",
        "/v1/namespaces/default/errors",
        Some(
        r#"{"type": "Timeout", "message": "the database did not answer", "frames": [{"function": "query", "module": "orders.db", "lineno": 42, "in_app": true}]}"#),
    )
    .await;

    // Traffic until the test ends: 20 requests a second to each route.
    let gateway = sluice.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/echo"), 200).await;
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let (running, client, gateway) = (Arc::clone(&running), client.clone(), gateway.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let _ = client.get(format!("{gateway}/echo/a")).send().await;
                let _ = client.get(format!("{gateway}/limited/b")).send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    crate::support::until("the alarm firing", || {
        let api = api.clone();
        let (_, firing) = crate::support::block_on(async move {
            api.get("/v1/namespaces/default/alarms?state=firing").await
        });
        (!firing["items"].as_array()?.is_empty()).then_some(())
    })
    .await;

    let browser = Browser::start().await;
    let ui = |path: &str| format!("{}{path}", sluice.url);

    // Without a token: the login page; a token signs in.
    browser.goto(&ui("/ui/services")).await;
    assert!(browser.url().await.ends_with("/ui/login"));
    let token = browser.find("#login input[name=token]").await;
    browser.type_into(&token, ADMIN).await;
    browser.click(&browser.find("#login button").await).await;
    browser
        .until(
            "the overview after signing in",
            "return document.querySelector('#services') !== null",
        )
        .await;

    // Every page: no console errors; charts hold points.
    for page in crate::support::CONSOLE_PAGES {
        browser.goto(&ui(page)).await;
        let drawn = charts(&browser, page).await;
        match page {
            "/ui/" => {
                for metric in ["qps", "p98_ms", "error_rate"] {
                    assert!(points(&drawn, metric) > 0, "{page} {metric}: {drawn:?}");
                }
                let text = browser
                    .run("return document.body.innerText", json!([]))
                    .await;
                let text = text.as_str().unwrap();
                assert!(text.contains("echo-busy"), "the firing alarm: {text}");
            }
            "/ui/services/echo" => {
                for metric in ["qps", "p98_ms", "rejections"] {
                    assert!(points(&drawn, metric) > 0, "{page} {metric}: {drawn:?}");
                }
                let text = browser
                    .run("return document.body.innerText", json!([]))
                    .await;
                let text = text.as_str().unwrap();
                assert!(
                    text.contains("RateLimit") && text.contains("Breaker"),
                    "{text}"
                );
                assert!(text.contains("closed"), "the breaker's state: {text}");
            }
            "/ui/hosts" => {
                assert!(points(&drawn, "host_cpu_percent") > 0, "{page}: {drawn:?}");
            }
            "/ui/errors" => {
                let text = browser
                    .run("return document.body.innerText", json!([]))
                    .await;
                assert!(text.as_str().unwrap().contains("orders.db"), "{text}");
            }
            _ => {}
        }
        let errors = browser.errors().await;
        assert!(errors.is_empty(), "{page}: console errors {errors:?}");
    }

    // Screenshots for the docs, when asked for (after a few minutes of traffic
    // whose rate rises and falls, so the curves have a shape).
    if let Ok(out) = std::env::var("SLUICE_SCREENSHOTS") {
        std::fs::create_dir_all(&out).unwrap();
        for second in 0..120u64 {
            let burst = 5 + (second / 20 % 3) * 10;
            for _ in 0..burst {
                let _ = client.get(format!("{gateway}/echo/more")).send().await;
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        for (page, file) in [
            ("/ui/", "console-overview.png"),
            ("/ui/services/echo", "console-service.png"),
        ] {
            browser.goto(&ui(page)).await;
            charts(&browser, page).await;
            std::fs::write(
                std::path::Path::new(&out).join(file),
                browser.screenshot().await,
            )
            .unwrap();
        }
    }

    // The range picker: another range redraws the charts over it.
    browser.goto(&ui("/ui/services/echo")).await;
    charts(&browser, "/ui/services/echo").await;
    browser
        .run(
            "const s = document.querySelector('select[name=range]'); s.value = '15m'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    browser
        .until(
            "the page over 15 minutes",
            "return location.search.includes('range=15m')",
        )
        .await;
    let drawn = charts(&browser, "/ui/services/echo?range=15m").await;
    assert!(points(&drawn, "qps") > 0, "{drawn:?}");
    let src = browser
        .run(
            "return document.querySelector('.chart').dataset.src",
            json!([]),
        )
        .await;
    assert!(src.as_str().unwrap().contains("range=15m"), "{src}");

    // Auto-refresh: htmx swaps in a new page body, and its charts are drawn again.
    browser.goto(&ui("/ui/services/echo?refresh=5")).await;
    charts(&browser, "/ui/services/echo").await;
    browser
        .run(
            "document.getElementById('content').dataset.old = 'yes'",
            json!([]),
        )
        .await;
    browser
        .until(
            "a refreshed page body",
            "const c = document.getElementById('content'); return c && c.dataset.old === undefined",
        )
        .await;
    let drawn = charts(&browser, "/ui/services/echo (refreshed)").await;
    assert!(points(&drawn, "qps") > 0, "{drawn:?}");

    // Drain e1 with its button; the API sees it.
    browser.goto(&ui("/ui/services/echo")).await;
    browser
        .click(&browser.find("tr[data-instance=e1] button").await)
        .await;
    browser
        .until(
            "the Undrain button",
            "const b = document.querySelector('tr[data-instance=e1] button'); return b && b.textContent.includes('Undrain')",
        )
        .await;
    let (_, instance) = api
        .get("/v1/namespaces/default/services/echo/instances/e1")
        .await;
    assert_eq!(instance["draining"], true, "{instance}");

    // The mute form creates a Mute.
    browser.goto(&ui("/ui/alarms")).await;
    let matching = browser.find("#mute-form input[name=match]").await;
    browser.type_into(&matching, "service=echo").await;
    let reason = browser.find("#mute-form input[name=reason]").await;
    browser.type_into(&reason, "deploying").await;
    browser
        .click(&browser.find("#mute-form button").await)
        .await;
    browser
        .until(
            "the mute listed",
            "return document.querySelector('#mutes').innerText.includes('deploying')",
        )
        .await;
    let (_, mutes) = api.get("/v1/namespaces/default/resources/Mute").await;
    let mute = &mutes["items"][0]["spec"];
    assert_eq!(mute["match"]["service"], "echo", "{mutes}");
    assert_eq!(mute["reason"], "deploying");
    assert_eq!(mute["created_by"], "console");

    let errors = browser.errors().await;
    assert!(errors.is_empty(), "console errors {errors:?}");
    running.store(false, Ordering::Relaxed);
    traffic.await.unwrap();
}

/// For each chart: `[metric, points, lone dots, coloured pixels on its canvas, the
/// "no data" note or null]`, once every chart is drawn (or failed).
const CHART_PIXELS: &str = r#"
    const charts = Array.from(document.querySelectorAll('.chart'));
    if (charts.some(c => c.dataset.points === undefined && c.dataset.error === undefined)) return null;
    return charts.map(c => {
        const canvas = c.querySelector('canvas');
        let coloured = 0;
        if (canvas) {
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 0; i < pixels.length; i += 4) {
                const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
                // Any clearly saturated pixel: a curve or a dot (axes and grid are grey).
                if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 80) coloured += 1;
            }
        }
        const note = c.querySelector('.no-data');
        return [c.dataset.metric, Number(c.dataset.points || 0), Number(c.dataset.dots || 0),
                coloured, note ? note.textContent : null];
    });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_address_opens_the_console_and_one_step_of_traffic_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with(dir.path(), &crate::support::FAST_METRICS);
    let api = Http::new(&sluice.url);
    api.echo_service_with_two_instances().await;
    let browser = Browser::start().await;

    // The admin address in a browser: the console, whose charts say there is no data yet.
    browser.goto(&format!("{}/", sluice.url)).await;
    assert!(
        browser.url().await.ends_with("/ui/"),
        "{}",
        browser.url().await
    );
    let drawn = browser.until("the overview's charts", CHART_PIXELS).await;
    for chart in drawn.as_array().unwrap() {
        let note = chart[4].as_str().unwrap_or_default();
        assert!(note.starts_with("no data yet"), "{chart}");
    }

    // One short burst of traffic: a single step holds data.
    let gateway = sluice.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    until_status(&client, &format!("{gateway}/echo"), 200).await;
    for _ in 0..20 {
        let _ = client.get(format!("{gateway}/echo/a")).send().await;
    }
    crate::support::until("the burst's step flushed", || {
        let api = api.clone();
        let (_, answer) = crate::support::block_on(async move {
            api.get("/v1/query?metric=qps&from=-5m&by=service").await
        });
        let points = answer["series"][0]["points"].as_array()?;
        points
            .iter()
            .any(|p| p[1].as_f64() > Some(0.0))
            .then_some(())
    })
    .await;

    // Each chart shows its one point as a visible dot.
    browser.goto(&format!("{}/ui/", sluice.url)).await;
    let drawn = browser.until("the overview's charts", CHART_PIXELS).await;
    for metric in ["qps", "p98_ms", "error_rate"] {
        let chart = drawn
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[0] == metric)
            .unwrap_or_else(|| panic!("no {metric} chart: {drawn}"));
        assert!(chart[1].as_u64() >= Some(1), "{metric}: {chart}");
        assert!(
            chart[2].as_u64() >= Some(1),
            "{metric}: a lone dot: {chart}"
        );
        assert!(
            chart[3].as_u64() > Some(10),
            "{metric}: visible on the canvas: {chart}"
        );
        assert!(chart[4].is_null(), "{metric}: {chart}");
    }
    let errors = browser.errors().await;
    assert!(errors.is_empty(), "console errors {errors:?}");
}
