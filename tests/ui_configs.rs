//! The console's config pages: the namespace's items, an item with its history,
//! gray state and the clients holding each version, a secret hidden from a
//! read-only token, and an edit that shows the diff before it publishes.

use serde_json::json;

use crate::support::{Http, Sluice};

const TOKENS: &str = r#"
[[tokens]]
name = "ops"
token = "admin-token-0123456789"
role = "admin"

[[tokens]]
name = "viewer"
token = "read-token-0123456789"
role = "read"
"#;

async fn page(url: &str, token: &str, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header("cookie", format!("sluice_token={token}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn form(url: &str, token: &str, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{url}{path}"))
        .header("cookie", format!("sluice_token={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_listed_diffed_before_publishing_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up_with_tokens(dir.path(), TOKENS, &[]);
    let admin = Http::with_token(&sluice.url, "admin-token-0123456789");
    let item = "/v1/namespaces/default/configs/app/db.yaml";
    admin
        .put(item, &json!({"content": "pool: 10\n"}).to_string())
        .await;
    admin
        .put(
            "/v1/namespaces/default/configs/app/creds",
            &json!({"content": "password=Hidden-From-Viewers", "secret": true}).to_string(),
        )
        .await;
    let (status, _, _) = admin
        .send(
            "PUT",
            &format!("{item}/gray"),
            Some(
                &json!({"content": "pool: 50\n", "match": {"labels": {"canary": "true"}}})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, _) = admin
        .send(
            "GET",
            &format!("{item}?labels=canary=true&client_id=canary-7"),
            None,
        )
        .await;

    let viewer = "read-token-0123456789";
    let (status, list) = page(&sluice.url, viewer, "/ui/configs").await;
    assert_eq!(status, 200);
    assert!(
        list.contains("app/db.yaml") && list.contains("app/creds"),
        "{list}"
    );
    assert!(
        list.contains("candidate 2") && !list.contains("Hidden-From-Viewers"),
        "{list}"
    );
    let (_, secret) = page(&sluice.url, viewer, "/ui/configs/app/creds").await;
    assert!(
        secret.contains("Secret: hidden") && !secret.contains("Hidden-From-Viewers"),
        "{secret}"
    );
    let (_, shown) = page(
        &sluice.url,
        "admin-token-0123456789",
        "/ui/configs/app/creds",
    )
    .await;
    assert!(shown.contains("Hidden-From-Viewers"), "{shown}");

    let (_, item_page) = page(&sluice.url, viewer, "/ui/configs/app/db.yaml").await;
    assert!(
        item_page.contains("Gray candidate") && item_page.contains("canary-7"),
        "{item_page}"
    );
    assert!(
        !item_page.contains("Promote to everyone"),
        "a read token gets no actions"
    );

    // Edit: the diff first, then the publish of exactly that content.
    let admin_token = "admin-token-0123456789";
    let edited = [
        ("content", "pool: 20\n"),
        ("comment", "from the console"),
        ("expect", "1"),
    ];
    let (status, preview) = form(
        &sluice.url,
        admin_token,
        "/ui/configs/app/db.yaml/preview",
        &edited,
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert!(
        preview.contains("-pool: 10") && preview.contains("+pool: 20"),
        "{preview}"
    );
    let (_, _, before) = admin.send("GET", item, None).await;
    assert_eq!(before["version"], 1, "a preview publishes nothing");
    let (status, _) = form(
        &sluice.url,
        admin_token,
        "/ui/configs/app/db.yaml/publish",
        &edited,
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, after) = admin.send("GET", item, None).await;
    assert_eq!(
        (&after["content"], &after["comment"]),
        (&json!("pool: 20\n"), &json!("from the console"))
    );
    // The same form again is refused: the item moved on since version 1.
    let (status, stale) = form(
        &sluice.url,
        admin_token,
        "/ui/configs/app/db.yaml/publish",
        &edited,
    )
    .await;
    assert_eq!(status, 400, "{stale}");
    assert!(stale.contains("not the expected 1"), "{stale}");
    let (status, _) = form(&sluice.url, viewer, "/ui/configs/app/db.yaml/promote", &[]).await;
    assert_ne!(status, 303, "a read token cannot promote");
    let (status, _) = form(
        &sluice.url,
        admin_token,
        "/ui/configs/app/db.yaml/promote",
        &[],
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, promoted) = admin.send("GET", item, None).await;
    assert_eq!(
        (&promoted["content"], &promoted["gray"]),
        (&json!("pool: 50\n"), &json!(false))
    );
}
