//! Named accounts: a key shown once and kept only as a hash; rotate and
//! delete take effect at once; accounts survive a restart.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, OPERATOR_KEY, SRE_KEY, TestApp};

async fn put_account(app: &TestApp, id: &str, role: &str, name: &str) -> (u16, Value) {
    app.send(
        Method::PUT,
        &format!("/v1/admin/accounts/{id}"),
        Some(ADMIN_KEY),
        Some(&json!({"role": role, "display_name": name})),
    )
    .await
}

/// What the kill switch's `GET` answers to this key (`200` for sre/admin).
async fn switch_status(app: &TestApp, key: &str) -> u16 {
    app.send(Method::GET, "/v1/admin/kill-switch", Some(key), None)
        .await
        .0
}

async fn accounts_are_made_used_rotated_deleted_and_survive_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, created) = put_account(&app, "sre-tanaka", "sre", "SRE 田中").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["role"], "sre");
    let key = created["key"]
        .as_str()
        .expect("the key, shown once")
        .to_owned();
    assert!(key.len() >= 32);
    assert_eq!(switch_status(&app, &key).await, 200, "the new key works");

    // Re-putting changes the name and role, keeps the key, shows none.
    let (status, renamed) = put_account(&app, "sre-tanaka", "sre", "SRE 田中 (夜間)").await;
    assert_eq!(status, 200, "{renamed}");
    assert!(renamed.get("key").is_none(), "{renamed}");
    assert_eq!(switch_status(&app, &key).await, 200);

    // The listing never shows a key or its hash.
    let (status, list) = app
        .send(Method::GET, "/v1/admin/accounts", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["accounts"][0]["display_name"], "SRE 田中 (夜間)");
    let text = list.to_string();
    assert!(!text.contains(&key) && !text.contains("key"), "{text}");

    // Rotate: the old key is refused at once, the new one works.
    let (status, rotated) = app
        .send(
            Method::POST,
            "/v1/admin/accounts/sre-tanaka/rotate",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(
        switch_status(&app, &key).await,
        401,
        "the old key stops at once"
    );
    assert_eq!(switch_status(&app, &new_key).await, 200);

    // Another account's role is enforced like the environment's keys.
    let (_, operator) = put_account(&app, "op-12", "operator", "コールセンター 12番").await;
    let operator_key = operator["key"].as_str().unwrap().to_owned();
    assert_eq!(switch_status(&app, &operator_key).await, 403);

    // Survives a restart (SIGKILL): the rotated key, not the old one.
    let app = app.crash_and_restart().await;
    assert_eq!(switch_status(&app, &new_key).await, 200);
    assert_eq!(switch_status(&app, &key).await, 401);

    // Delete: refused at once; the others keep working.
    let (status, _) = app
        .send(
            Method::DELETE,
            "/v1/admin/accounts/sre-tanaka",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(switch_status(&app, &new_key).await, 401);
    assert_eq!(switch_status(&app, SRE_KEY).await, 200, "break-glass key");
    let (status, _) = app
        .send(
            Method::GET,
            "/v1/operator/residents/1311480001?birth_date=1950-04-01",
            Some(&operator_key),
            None,
        )
        .await;
    assert_eq!(
        status, 404,
        "the operator account still works (no such resident)"
    );
    let (status, body) = app
        .send(
            Method::DELETE,
            "/v1/admin/accounts/sre-tanaka",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let app = app.crash_and_restart().await;
    assert_eq!(switch_status(&app, &new_key).await, 401, "deleted for good");
}

async fn only_admins_manage_accounts_and_bad_input_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for key in [OPERATOR_KEY, SRE_KEY] {
        let (status, _) = app
            .send(
                Method::PUT,
                "/v1/admin/accounts/x",
                Some(key),
                Some(&json!({"role": "admin", "display_name": "x"})),
            )
            .await;
        assert_eq!(status, 403);
    }
    // An operator account cannot make itself admin either.
    let (_, operator) = put_account(&app, "op-1", "operator", "op").await;
    let operator_key = operator["key"].as_str().unwrap();
    let (status, _) = app
        .send(Method::GET, "/v1/admin/accounts", Some(operator_key), None)
        .await;
    assert_eq!(status, 403);
    for (path, body, code) in [
        (
            "/v1/admin/accounts/Bad_Id",
            json!({"role": "sre", "display_name": "x"}),
            "invalid_account_id",
        ),
        (
            "/v1/admin/accounts/ok-id",
            json!({"role": "root", "display_name": "x"}),
            "invalid_role",
        ),
        (
            "/v1/admin/accounts/ok-id",
            json!({"role": "sre", "display_name": " "}),
            "invalid_text",
        ),
        (
            "/v1/admin/accounts/ok-id",
            json!({"role": "sre"}),
            "invalid_json",
        ),
    ] {
        let (status, answer) = app
            .send(Method::PUT, path, Some(ADMIN_KEY), Some(&body))
            .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(code)),
            "{path} {body}"
        );
    }
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/admin/accounts/nobody/rotate",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Nothing half-written: no account was made by the refused calls.
    let (_, list) = app
        .send(Method::GET, "/v1/admin/accounts", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);
}

on_both_stores!(
    accounts_are_made_used_rotated_deleted_and_survive_a_restart,
    only_admins_manage_accounts_and_bad_input_is_refused,
);

/// Polls (bounded) until `key` gets `want` from the kill switch's `GET` on `app`.
async fn until_switch_status(app: &TestApp, key: &str, want: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while switch_status(app, key).await != want {
        assert!(
            std::time::Instant::now() < deadline,
            "never {want} on the other process"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn on_a_shared_redis_another_process_follows_account_changes_within_a_second_or_two() {
    let first = TestApp::spawn(Backend::Redis).await;
    let second = first.spawn_second().await;
    let (_, created) = put_account(&first, "sre-shared", "sre", "SRE").await;
    let key = created["key"].as_str().unwrap().to_owned();
    until_switch_status(&second, &key, 200).await;
    let (_, rotated) = first
        .send(
            Method::POST,
            "/v1/admin/accounts/sre-shared/rotate",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(
        switch_status(&first, &key).await,
        401,
        "at once where it was rotated"
    );
    until_switch_status(&second, &key, 401).await;
    until_switch_status(&second, &new_key, 200).await;
    let (status, _) = first
        .send(
            Method::DELETE,
            "/v1/admin/accounts/sre-shared",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200);
    until_switch_status(&second, &new_key, 401).await;
}
