//! The test kit as an outside crate's tests use it: boots the real daemon
//! (FIRMWARE_SIM_BIN, which `scripts/test` points at the binary `cargo test`
//! built), many in parallel, crash and IPL on the same ports.

use firmware_sim_testkit::Subsystem as Kit;
use serde_json::json;

/// This workspace's daemon when FIRMWARE_SIM_BIN is not set (an outside
/// crate sets it, or puts firmware-sim on PATH).
struct Subsystem;

impl Subsystem {
    fn use_workspace_binary() {
        if std::env::var_os("FIRMWARE_SIM_BIN").is_none() {
            let bin = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/debug/firmware-sim"
            );
            if std::path::Path::new(bin).is_file() {
                std::env::set_var("FIRMWARE_SIM_BIN", bin);
            }
        }
    }
    fn boot_default() -> Result<Kit, firmware_sim_testkit::Error> {
        Self::use_workspace_binary();
        Kit::boot_default()
    }
    fn builder() -> firmware_sim_testkit::Builder {
        Self::use_workspace_binary();
        Kit::builder()
    }
}

#[test]
fn default_subsystem_boots_and_its_api_answers() {
    let sub = Subsystem::boot_default().unwrap();
    let vols = sub.api().get("/volumes").unwrap();
    assert_eq!(vols.as_array().unwrap().len(), 8, "{vols}");
    assert!(sub.nbd_uri("FB00").starts_with("nbd://127.0.0.1:"));
    let err = sub.api().get("/mappings/99").unwrap_err();
    assert_eq!(err.kind(), Some("unknown_map"), "{err}");
}

#[test]
fn a_subsystem_built_in_code_survives_a_crash_and_ipl_on_the_same_ports() {
    let mut sub = Subsystem::builder()
        .id("SSKIT")
        .volume("V0", "fb:16M")
        .volume("V1", "fb:16M")
        .boot()
        .unwrap();
    let health = sub.api().get("/health").unwrap();
    assert_eq!(health["subsystem"], "SSKIT", "{health}");
    let m = sub
        .api()
        .post(
            "/mappings",
            json!({"source": "V0", "target": "V1", "type": "nocopy"}),
        )
        .unwrap();
    let id = m["id"].as_u64().unwrap();
    sub.api()
        .post(&format!("/mappings/{id}/start"), json!({}))
        .unwrap();
    let (api, uri) = (sub.api_url().to_string(), sub.nbd_uri("V1"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !sub
        .events()
        .unwrap()
        .iter()
        .any(|e| e.text == format!("SSKIT: map {id} prepared -> copying"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", sub.events());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sub.crash();
    assert!(!sub.running());
    sub.ipl().unwrap();
    assert_eq!((sub.api_url(), sub.nbd_uri("V1")), (api.as_str(), uri));
    let m = sub.api().get(&format!("/mappings/{id}")).unwrap();
    assert_eq!(m["state"], "copying", "the map came back: {m}");
    let report = sub.reset(false).unwrap();
    assert_eq!(report["event"], "reset notification from SSKIT", "{report}");
}

#[test]
fn twenty_subsystems_in_parallel_do_not_clash() {
    let t = std::time::Instant::now();
    let subs: Vec<Kit> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|_| s.spawn(|| Subsystem::builder().volume("V", "fb:1M").boot().unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut apis: Vec<&str> = subs.iter().map(|s| s.api_url()).collect();
    apis.sort_unstable();
    apis.dedup();
    assert_eq!(apis.len(), 20, "every subsystem has its own API port");
    let mut dirs: Vec<_> = subs.iter().map(|s| s.data_dir()).collect();
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 20, "and its own data directory");
    for s in &subs {
        assert_eq!(
            s.api().get("/volumes").unwrap().as_array().unwrap().len(),
            1
        );
    }
    let dirs_left: Vec<_> = subs.iter().map(|s| s.data_dir()).collect();
    drop(subs);
    assert!(dirs_left.iter().all(|d| !d.exists()), "removed on drop");
    eprintln!(
        "20 subsystems booted, used and stopped in {:?}",
        t.elapsed()
    );
}

/// A daemon whose API is served over HTTPS: the kit's client trusts the
/// certificate given with `api_ca`, and keeps trusting it across an IPL.
#[test]
fn an_https_api_is_reached_with_the_ca_given_to_the_builder() {
    use rcgen::{CertificateParams, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    let mut sub = Subsystem::builder()
        .arg("--api-tls")
        .arg("--tls-cert")
        .arg(cert_pem.to_str().unwrap())
        .arg("--tls-key")
        .arg(key_pem.to_str().unwrap())
        .api_ca(&cert_pem)
        .boot()
        .unwrap();
    assert!(sub.api_url().starts_with("https://"), "{}", sub.api_url());
    let vols = sub.api().get("/volumes").unwrap();
    assert_eq!(vols.as_array().unwrap().len(), 8, "{vols}");
    sub.crash();
    sub.ipl().unwrap();
    // The same boot arguments: still HTTPS after the IPL.
    assert!(sub.api_url().starts_with("https://"), "{}", sub.api_url());
    let vols = sub.api().get("/volumes").unwrap();
    assert_eq!(vols.as_array().unwrap().len(), 8, "after IPL: {vols}");
}

/// An id without volumes would boot the embedded SS01 silently: refused, and
/// the error's Debug (what `unwrap` prints) is the message itself.
#[test]
fn an_id_without_volumes_is_refused_with_a_readable_error() {
    let e = Kit::builder().id("SS09").boot().err().expect("refused");
    let debug = format!("{e:?}");
    assert!(
        debug.contains("Builder::id needs at least one Builder::volume"),
        "{debug}"
    );
    assert!(!debug.starts_with("Boot("), "{debug}");
}

#[test]
fn peers_both_ways_end_a_spanning_session_on_both_when_one_crashes() {
    let two = |id: &str| {
        Subsystem::builder()
            .id(id)
            .volume("V0", "fb:16M")
            .volume("V1", "fb:16M")
            .boot()
            .unwrap()
    };
    let (mut a, mut b) = (two("SS01"), two("SS02"));
    a.peer_with(&b).unwrap();
    b.peer_with(&a).unwrap();
    let s = b
        .api()
        .post(
            "/sessions",
            json!({"id": "SPAN", "extent": "SS01/V0:0-15,SS02/V0:0-15",
                   "target": "SS01/V1,SS02/V1", "copy_rate": 0}),
        )
        .unwrap();
    assert_eq!(s["state"], "active", "{s}");
    a.crash();
    a.ipl().unwrap();
    let s = b.client().session("SPAN").unwrap();
    assert_eq!(
        (s.state.as_str(), s.reason.as_deref()),
        ("terminated", Some("ipl"))
    );
    // The coordinator's own part ended too: its target takes a new session.
    let next = b
        .api()
        .post(
            "/sessions",
            json!({"id": "NEXT", "extent": "SS02/V0:0-15", "target": "SS02/V1"}),
        )
        .unwrap();
    assert_eq!(next["state"], "active", "{next}");
}
