//! The `sluice` command line: version, help, the store self-check, and clear
//! errors for bad store URLs.

use std::process::Command;

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_STORE")
        .output()
        .expect("run sluice")
}

#[test]
fn version_and_help() {
    let out = sluice(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("sluice "), "{text}");
    let out = sluice(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("store"), "{text}");
}

#[test]
fn store_check_passes_on_embedded_and_memory_stores() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("data").display());
    for url in [url.as_str(), "memory://"] {
        let out = sluice(&["store", "check", "--store", url]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("store check passed"), "{text}");
    }
}

#[test]
fn store_check_passes_on_etcd() {
    let etcd = sluice_testkit::EtcdCluster::single();
    let out = sluice(&["store", "check", "--store", &etcd.url("/cli")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("etcd backend"), "{text}");
}

#[test]
fn bad_store_urls_fail_with_the_url_named() {
    let port = sluice_testkit::free_port();
    let unreachable = format!("etcd://127.0.0.1:{port}");
    for (url, named) in [
        ("sluice-data", "\"sluice-data\""),
        ("ftp://x", "\"ftp://x\""),
        ("etcd://h:0", "\"etcd://h:0\""),
        (unreachable.as_str(), unreachable.as_str()),
    ] {
        let out = sluice(&["store", "check", "--store", url]);
        assert!(!out.status.success(), "{url} should fail");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.starts_with("error: "), "{text}");
        assert!(text.contains(named), "{text} should name {url}");
        assert!(!text.contains("panicked"), "{text}");
    }
}
