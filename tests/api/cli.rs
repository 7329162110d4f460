//! The command line against a real server: the kill switch, an import of a
//! Shift_JIS roster with Japanese names, and the roster check.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{ADMIN_KEY, Backend, SRE_KEY, TestApp};

/// Runs `vaxslot ARGS` with `env`; its exit code and stdout.
fn vaxslot(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vaxslot"))
        .args(args)
        .env_remove("VAXSLOT_SRE_KEY")
        .env_remove("VAXSLOT_ADMIN_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("vaxslot runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn the_kill_switch_is_engaged_shown_and_released_from_the_command_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sre = [("VAXSLOT_SRE_KEY", SRE_KEY)];
    let url = app.base.as_str();
    let (code, out, err) = vaxslot(
        &[
            "kill-switch",
            "--url",
            url,
            "engage",
            "--reason",
            "ログイン障害",
        ],
        &sre,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("STOPPED") && out.contains("ログイン障害"),
        "{out}"
    );
    let (_, switch) = app
        .send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
        .await;
    assert_eq!(switch["engaged"], true, "the server says so too");
    let (code, out, _) = vaxslot(&["kill-switch", "--url", url, "status"], &sre);
    assert_eq!((code, out.contains("STOPPED")), (0, true), "{out}");
    let (code, out, _) = vaxslot(&["kill-switch", "--url", url, "release"], &sre);
    assert_eq!((code, out.contains("open")), (0, true), "{out}");
    let (_, switch) = app
        .send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
        .await;
    assert_eq!(switch["engaged"], false);
    // No key: usage (2). A wrong key: refused (1). An empty reason: usage.
    assert_eq!(vaxslot(&["kill-switch", "--url", url, "status"], &[]).0, 2);
    let (code, _, err) = vaxslot(
        &["kill-switch", "--url", url, "status"],
        &[("VAXSLOT_SRE_KEY", "wrong")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401"), "{err}");
    assert_eq!(
        vaxslot(
            &["kill-switch", "--url", url, "engage", "--reason", " "],
            &sre
        )
        .0,
        2
    );
    assert_eq!(
        vaxslot(&["kill-switch", "--url", url, "engage"], &sre).0,
        2,
        "reason required"
    );
    assert_eq!(
        vaxslot(
            &["kill-switch", "--url", "http://127.0.0.1:1", "status"],
            &sre
        )
        .0,
        2
    );
}

async fn a_shift_jis_roster_imports_with_its_japanese_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("名簿.csv");
    let csv = "ticket_number,birth_date,name,email,phone,high_risk\r\n\
        1311487001,1950-04-01,髙橋 𠮷子,,0312345678,false\r\n\
        1311487002,1952-06-03,渡邊 一郎,,,true\r\n\
        1311487003,1952-13-03,間違い 日付,,,false\r\n";
    // 𠮷 is not in Shift_JIS: the ward's spreadsheet would have written 吉.
    let csv = csv.replace('𠮷', "吉");
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&csv);
    assert!(!unmappable);
    std::fs::write(&file, &bytes).unwrap();
    let admin = [("VAXSLOT_ADMIN_KEY", ADMIN_KEY)];
    let path = file.to_str().unwrap();
    let (code, out, err) = vaxslot(&["import", "--url", &app.base, path, "--dry-run"], &admin);
    assert_eq!(code, 1, "the dry run finds line 4: {out}{err}");
    assert!(out.contains(":4: birth date is not a real"), "{out}");
    let (_, status) = app
        .send(
            Method::GET,
            "/v1/operator/residents/1311487001?birth_date=1950-04-01",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status["code"], "not_found", "a dry run sends nothing");

    let (code, out, err) = vaxslot(&["import", "--url", &app.base, path], &admin);
    assert_eq!(code, 1, "one line rejected: {out}{err}");
    assert!(out.contains(":4: rejected: invalid_birth_date"), "{out}");
    assert!(
        out.contains("2 imported") && out.contains("Shift_JIS"),
        "{out}"
    );
    let token = app.login_as("1311487001", "1950-04-01").await;
    let (_, me): (u16, Value) = app.send(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(
        me["name"], "髙橋 吉子",
        "the name reads back correctly: {me}"
    );
    let token = app.login_as("1311487002", "1952-06-03").await;
    let (_, me) = app.send(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(
        (me["name"].as_str(), me["high_risk"].as_bool()),
        (Some("渡邊 一郎"), Some(true))
    );
}

#[test]
fn check_roster_reports_each_mistake_with_its_line_and_passes_a_clean_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "\u{feff}ticket_number,birth_date,name\n\
         1311480001,1950-04-01,中野 一郎\n\
         131148000,1950-04-01,短い 番号\n\
         1311480001,1951-01-01,重複 太郎\n\
         1311480003,1950-02-30,ありえない 日\n\
         1311480004,2099-01-01,未来 花子\n\
         1311480005,1890-01-01,長寿 次郎\n\
         1950-04-01,1311480006,ずれた 列\n",
    )
    .unwrap();
    let (code, out, _) = vaxslot(&["check-roster", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        ":3: ticket number is not 10 digits",
        ":4: ticket number appears twice (first on line 2)",
        ":5: birth date is not a real",
        ":6: birth date is in the future",
        ":7: birth date is more than 120 years ago",
        ":8: columns look shifted",
        "UTF-8 with BOM",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    let clean = dir.path().join("clean.csv");
    std::fs::write(
        &clean,
        "ticket_number,birth_date,name\n1311480001,1950-04-01,中野 一郎\n",
    )
    .unwrap();
    let (code, out, _) = vaxslot(&["check-roster", clean.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 residents, 0 problems"), "{out}");
    assert_eq!(vaxslot(&["check-roster", "/no/such/file.csv"], &[]).0, 2);
    let garbage = dir.path().join("garbage.csv");
    std::fs::write(&garbage, [0x82u8, 0xFF, 0xFF, 0x00]).unwrap();
    let (code, _, err) = vaxslot(&["check-roster", garbage.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("neither UTF-8 nor Shift_JIS"), "{err}");
}

on_both_stores!(
    the_kill_switch_is_engaged_shown_and_released_from_the_command_line,
    a_shift_jis_roster_imports_with_its_japanese_names,
);
