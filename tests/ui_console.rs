//! The web console over HTTP: pages render with the state the API holds, the drain
//! action changes the instance, and with tokens configured no page is reachable
//! without one and a read token gets no write action. (Browser tests in headless
//! Chromium come with the charts.)

use crate::support::{echo_upstream, until_status, Http, Sluice};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A console page's HTML.
async fn page_text(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Posts a form as a browser would, with `headers` (a session cookie, ...).
async fn post_form(
    client: &reqwest::Client,
    url: String,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_and_drain_changes_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let api = Http::new(&sluice.url);
    api.echo_service_with_two_instances().await;
    let gateway = sluice.gateway.clone().unwrap();
    let client = no_redirects();
    until_status(&client, &format!("{gateway}/echo"), 200).await;
    for (path, needles) in [
        (
            "/ui/",
            vec!["Overview", "echo", "Top APIs", "Firing alarms"],
        ),
        ("/ui/services", vec!["echo", "protection threshold"]),
        (
            "/ui/services/echo",
            vec![
                "e1",
                "e2",
                "Drain",
                "API health",
                "Protection",
                "rejections",
            ],
        ),
        ("/ui/alarms", vec!["Alarms"]),
        ("/ui/errors", vec!["Errors"]),
        ("/ui/resources", vec!["Route", "echo", "path_prefix"]),
        ("/ui/resources/Route/echo", vec!["(current)", "path_prefix"]),
        ("/ui/hosts", vec!["Hosts", "CPU (%)", "host_cpu_percent"]),
    ] {
        let response = client
            .get(format!("{}{path}", sluice.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        for needle in needles {
            assert!(text.contains(needle), "{path} lacks {needle:?}");
        }
    }
    // The protection behind the service page, through the API.
    api.put(
        "/v1/namespaces/default/resources/Breaker/echo",
        r#"{"spec": {"service": "echo", "per_instance": true}}"#,
    )
    .await;
    let protection = crate::support::until("the breakers in the gateway", || {
        let api = api.clone();
        let (_, protection) = crate::support::block_on(async move {
            api.get("/v1/namespaces/default/services/echo/protection?window=5m")
                .await
        });
        (protection["breakers"].as_array()?.len() == 2).then_some(protection)
    })
    .await;
    assert_eq!(protection["gateway"], true, "{protection}");
    assert_eq!(protection["routes"], serde_json::json!(["echo"]));
    assert_eq!(protection["policies"][0]["kind"], "Breaker");
    assert_eq!(protection["breakers"][0]["state"], "closed");
    assert!(protection["breakers"][0]["instance"].is_string());
    assert_eq!(protection["window_s"], 300);
    let (status, _, bad) = api
        .send(
            "GET",
            "/v1/namespaces/default/services/echo/protection?window=forever",
            None,
        )
        .await;
    assert_eq!(status, 400, "{bad}");

    let response = post_form(
        &client,
        format!(
            "{}/ui/services/echo/instances/e1/drain?ns=default",
            sluice.url
        ),
        &[],
        format!("draining={}", "true"),
    )
    .await;
    assert_eq!(response.status(), 303);
    let (_, instance) = api
        .get("/v1/namespaces/default/services/echo/instances/e1")
        .await;
    assert_eq!(instance["draining"], true, "{instance}");
    let page = page_text(&client, format!("{}/ui/services/echo", sluice.url)).await;
    assert!(page.contains("Undrain"), "{page}");

    // History and rollback of a route.
    api.route(
        "echo",
        r#"{"match": {"path_prefix": "/v2"}, "service": "echo"}"#,
    )
    .await;
    let (_, history) = api
        .get("/v1/namespaces/default/resources/Route/echo/history")
        .await;
    let first = history["items"][1]["revision"].as_u64().unwrap();
    let page = page_text(&client, format!("{}/ui/resources/Route/echo", sluice.url)).await;
    assert!(
        page.contains("Roll back to this") && page.contains("/v2"),
        "{page}"
    );
    let rolled = post_form(
        &client,
        format!("{}/ui/resources/Route/echo/rollback?ns=default", sluice.url),
        &[],
        format!("revision={first}"),
    )
    .await;
    assert_eq!(rolled.status(), 303);
    let (_, route) = api.get("/v1/namespaces/default/resources/Route/echo").await;
    assert_eq!(route["spec"]["match"]["path_prefix"], "/echo", "{route}");

    // The mute form creates a Mute.
    let page = page_text(&client, format!("{}/ui/alarms", sluice.url)).await;
    assert!(page.contains("name=\"match\""), "{page}");
    let muted = post_form(
        &client,
        format!("{}/ui/mutes?ns=default", sluice.url),
        &[],
        "match=service%3Decho&duration=30m&reason=deploying",
    )
    .await;
    assert_eq!(muted.status(), 303);
    let (_, mutes) = api.get("/v1/namespaces/default/resources/Mute").await;
    let mute = &mutes["items"][0]["spec"];
    assert_eq!(mute["match"]["service"], "echo", "{mutes}");
    assert_eq!(mute["reason"], "deploying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_pages_need_one_and_readers_cannot_act() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with_tokens(
        dir.path(),
        r#"
[[tokens]]
name = "reader"
token = "read-token-0123456789"
role = "read"

[[tokens]]
name = "writer"
token = "write-token-0123456789"
role = "write"
"#,
        &[],
    );
    let writer = Http::with_token(&sluice.url, "write-token-0123456789");
    writer
        .register("echo", "e1", &echo_upstream("e1").await)
        .await;
    // Two revisions: a writer would be offered a rollback.
    for prefix in ["/echo", "/echo2"] {
        writer
            .route(
                "echo",
                &format!(r#"{{"match": {{"path_prefix": "{prefix}"}}, "service": "echo"}}"#),
            )
            .await;
    }
    let client = no_redirects();
    let pages: Vec<&str> = crate::support::CONSOLE_PAGES
        .into_iter()
        .chain(["/ui/series?metric=qps"])
        .collect();
    // Every write action, with a body it would accept.
    let actions = [
        ("/ui/services/echo/instances/e1/drain", "draining=true"),
        ("/ui/resources/Route/echo/rollback", "revision=1"),
        ("/ui/alarms/0123456789abcdef/ack", ""),
        ("/ui/mutes", "match=service%3Decho&duration=1h&reason=x"),
    ];
    for path in &pages {
        let response = client
            .get(format!("{}{path}", sluice.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/ui/login");
    }
    for (path, body) in actions {
        let refused = post_form(&client, format!("{}{path}", sluice.url), &[], body).await;
        assert_eq!(refused.status(), 303, "{path}: no action without a token");
        assert_eq!(refused.headers()["location"], "/ui/login");
    }
    let bad = post_form(
        &client,
        format!("{}/ui/login", sluice.url),
        &[],
        format!("token={}", "guess-guess-guess-guess"),
    )
    .await;
    assert_eq!(bad.status(), 401);

    let login = |token: &'static str| {
        let client = client.clone();
        let url = sluice.url.clone();
        async move {
            let response = post_form(
                &client,
                format!("{url}/ui/login"),
                &[],
                format!("token={}", token),
            )
            .await;
            assert_eq!(response.status(), 303);
            let cookie = response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
            cookie.split(';').next().unwrap().to_owned()
        }
    };
    let reader = login("read-token-0123456789").await;
    let page = client
        .get(format!("{}/ui/services/echo", sluice.url))
        .header("cookie", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("e1") && !text.contains("Drain"), "{text}");
    // A reader is offered no write action anywhere (signing out is the only form
    // that posts), and every action refuses it.
    for path in &pages {
        let response = client
            .get(format!("{}{path}", sluice.url))
            .header("cookie", &reader)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        let posting_forms = text.matches(r#"method="post""#).count();
        let sign_out = text.matches(r#"action="/ui/logout""#).count();
        assert_eq!(
            posting_forms, sign_out,
            "{path} offers a reader a write action"
        );
    }
    for (path, body) in actions {
        let refused = post_form(
            &client,
            format!("{}{path}", sluice.url),
            &[("cookie", &reader)],
            body,
        )
        .await;
        assert_eq!(refused.status(), 403, "{path}");
    }
    let (_, mutes) = writer.get("/v1/namespaces/default/resources/Mute").await;
    assert_eq!(mutes["items"].as_array().unwrap().len(), 0, "{mutes}");
    let (_, instance) = writer
        .get("/v1/namespaces/default/services/echo/instances/e1")
        .await;
    assert_eq!(instance["draining"], false, "{instance}");

    // Behind an HTTPS proxy the cookie is Secure as well.
    let secure = post_form(
        &client,
        format!("{}/ui/login", sluice.url),
        &[("x-forwarded-proto", "https")],
        "token=read-token-0123456789",
    )
    .await;
    let cookie = secure.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    let writer_cookie = login("write-token-0123456789").await;
    let done = post_form(
        &client,
        format!("{}/ui/services/echo/instances/e1/drain", sluice.url),
        &[("cookie", &writer_cookie)],
        format!("draining={}", "true"),
    )
    .await;
    assert_eq!(done.status(), 303);
    let (_, instance) = writer
        .get("/v1/namespaces/default/services/echo/instances/e1")
        .await;
    assert_eq!(instance["draining"], true);
}
