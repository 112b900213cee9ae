//! The live status page (`GET /` with `Accept: text/html`) in a real browser:
//! headless Chromium loads it against a booted daemon with a named map, a
//! cascade and a backup session, runs its script, and the rendered DOM must
//! show them; a screenshot is kept as a test artifact
//! (`target/test-artifacts/status-page.png`). Scripts get a JSON index
//! instead, and the page is served without the API token (it holds no
//! data; the routes its script reads stay guarded).

mod common;

use std::process::Command;

use common::{http, http_with, require_tool, Daemon};

fn chromium(args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .output()
        .expect("run chromium")
}

#[test]
fn the_status_page_shows_volumes_maps_cascades_and_sessions_in_a_browser() {
    require_tool("chromium");
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy", "--name",
        "snap",
    ]);
    d.cli_json(&["map", "start", "snap"]);
    // 1 MiB written to FB00 after the snapshot: FB00 holds 1 MiB, and FB01
    // received the old data of those tracks (copy on write).
    let mut nbd = common::nbd_client::NbdConn::open(&d.nbd_addr(), "FB00");
    nbd.write(0, &vec![0x5a; 1 << 20]);
    drop(nbd);
    d.cli_json(&[
        "session", "start", "--id", "K1", "--extent", "FB02:0-3", "--target", "FB03",
    ]);
    let url = format!("http://{}/", d.api);

    let out = chromium(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"data-loaded="yes""#),
        "the page's script did not finish a refresh:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "<span id=\"subsystem\">SS01</span>",
        "<td>CKD00</td>",
        "<td>snap</td>",
        "<td>FB00 → FB01</td>",
        "data-volume=\"FB00\"",
        "data-volume=\"FB01\"",
        "<td>K1</td>",
        "<td>SYS-SS01</td>",
        "<td>1 MiB (0.1 %)</td>",
        "<td>SS01: map 0 prepared -&gt; copying</td>",
    ] {
        assert!(
            dom.contains(needle),
            "the rendered page lacks {needle}:\n{dom}"
        );
    }
    assert!(
        dom.contains(r#"<div id="error"></div>"#),
        "the page shows an error:\n{dom}"
    );

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    chromium(&[&arg, "--window-size=1200,1100", &url]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    // Scripts asking for JSON get an index, not the page.
    let (status, body) = http("GET", &url, None);
    assert_eq!(status, 200);
    assert!(body.contains("\"routes\""), "{body}");
    let (status, body) = http_with("GET", &url, None, &[("Accept", "text/html")]);
    assert_eq!(status, 200);
    assert!(
        body.contains("<title>firmware-sim status</title>"),
        "{body}"
    );
}
