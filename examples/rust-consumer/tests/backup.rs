//! A backup tool's first integration test: boot a virtual subsystem, write
//! through NBD, take a point-in-time copy, overwrite the source, check the
//! copy still holds the old bytes, then crash the subsystem and see the copy
//! come back after the IPL. NBD I/O goes through `qemu-io`, as any NBD
//! client would do it.

use std::process::Command;

use firmware_sim_testkit::{ClientError, ErrorKind, Subsystem};
use serde_json::json;

fn qemu_io(cmd: &str, uri: &str) -> String {
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", cmd, uri])
        .output()
        .expect("qemu-io (apt-get install qemu-utils)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("failed") && !text.contains("error"),
        "qemu-io {cmd} {uri}: {text}"
    );
    text
}

#[test]
fn point_in_time_copy_keeps_the_old_bytes_across_a_crash() {
    let mut sub = Subsystem::builder()
        .volume("PROD", "fb:64M")
        .volume("SNAP", "fb:64M")
        .boot()
        .expect("boot a virtual subsystem");
    qemu_io("write -P 0x11 0 1M", &sub.nbd_uri("PROD"));

    let map = sub
        .api()
        .post(
            "/mappings",
            json!({"source": "PROD", "target": "SNAP", "type": "nocopy"}),
        )
        .unwrap();
    let id = map["id"].as_u64().unwrap();
    sub.api()
        .post(&format!("/mappings/{id}/start"), json!({}))
        .unwrap();
    qemu_io("write -P 0x22 0 1M", &sub.nbd_uri("PROD"));

    qemu_io("read -P 0x11 0 1M", &sub.nbd_uri("SNAP"));
    qemu_io("read -P 0x22 0 1M", &sub.nbd_uri("PROD"));

    sub.crash();
    sub.ipl().expect("the same data directory boots again");
    qemu_io("read -P 0x11 0 1M", &sub.nbd_uri("SNAP"));
    qemu_io("read -P 0x22 0 1M", &sub.nbd_uri("PROD"));

    // The typed client (firmware-sim-client, re-exported by the kit): the
    // map came back with the IPL, and a map that never existed is an
    // error of kind UnknownMap.
    let api = sub.client();
    let back = api.map(&id.to_string()).unwrap();
    assert_eq!(
        (back.source.as_str(), back.state.as_str()),
        ("PROD", "copying")
    );
    match api.map("4711") {
        Err(ClientError::Api { kind, status, .. }) => {
            assert_eq!((kind, status), (ErrorKind::UnknownMap, 404))
        }
        other => panic!("expected unknown_map, got {other:?}"),
    }
}
