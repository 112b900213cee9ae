//! Config parsing: the embedded default, and errors that name line and field.

use controller::{DurabilityMode, SubsystemConfig};

#[test]
fn embedded_default_has_the_documented_volumes() {
    let c = SubsystemConfig::embedded_default();
    let ids: Vec<&str> = c.volumes.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        ["CKD00", "CKD01", "CKD02", "CKD03", "FB00", "FB01", "FB02", "FB03"]
    );
    assert_eq!(c.volumes[0].model.to_string(), "3390-3");
    assert_eq!(c.volumes[4].model.to_string(), "fb:1G");
    assert_eq!(c.listen.nbd.as_deref(), Some("127.0.0.1:10809"));
    assert_eq!(c.listen.api.as_deref(), Some("127.0.0.1:10810"));
    assert_eq!(c.durability, DurabilityMode::Strict);
}

#[test]
fn round_trips_through_toml() {
    let c = SubsystemConfig::embedded_default();
    let again = SubsystemConfig::from_toml_str(&c.to_toml_string()).unwrap();
    assert_eq!(c, again);
}

#[test]
fn all_model_forms_parse() {
    let c = SubsystemConfig::from_toml_str(
        "id = \"X\"\ndurability = \"nosync\"\n[rates]\ncopy_mib_per_s_max = 100\n\
         [[volumes]]\nid = \"A\"\nmodel = \"3390-A:70000\"\n\
         [[volumes]]\nid = \"B\"\nmodel = \"fb:16M:4K\"\n[[volumes]]\nid = \"C\"\nmodel = \"3390-54\"\n",
    )
    .unwrap();
    assert_eq!(c.durability, DurabilityMode::Nosync);
    assert_eq!(c.rates.copy_mib_per_s_max, Some(100));
    assert_eq!(c.volumes.len(), 3);
}

fn err(text: &str) -> controller::ConfigError {
    SubsystemConfig::from_toml_str(text).unwrap_err()
}

#[test]
fn duplicate_volume_names_both_lines() {
    let e = err("id = \"S\"\n[[volumes]]\nid = \"V\"\nmodel = \"3390-1\"\n[[volumes]]\nid = \"V\"\nmodel = \"3390-1\"\n");
    assert_eq!(e.line, Some(6));
    assert_eq!(e.field, "volumes[1].id");
    assert!(e.to_string().contains("first defined at line 3"), "{e}");
}

#[test]
fn bad_model_names_line_and_field() {
    let e = err("id = \"S\"\n\n[[volumes]]\nid = \"V\"\nmodel = \"3390-7\"\n");
    assert_eq!(e.line, Some(5));
    assert_eq!(e.field, "volumes[0].model");
    let e = err("id = \"S\"\n[[volumes]]\nid = \"V\"\nmodel = \"fb:1G:3K\"\n");
    assert_eq!((e.line, e.field.as_str()), (Some(4), "volumes[0].model"));
}

#[test]
fn unsafe_ids_are_rejected() {
    for bad in ["", "a/b", "-x", ".hidden", "a b", &"x".repeat(65)] {
        let e = err(&format!(
            "id = \"S\"\n[[volumes]]\nid = \"{bad}\"\nmodel = \"3390-1\"\n"
        ));
        assert_eq!(e.field, "volumes[0].id", "{bad}: {e}");
        assert_eq!(e.line, Some(3));
    }
    let e = err("id = \"S S\"\n");
    assert_eq!((e.line, e.field.as_str()), (Some(1), "id"));
}

#[test]
fn syntax_and_unknown_field_errors_carry_lines() {
    let e = err("id = \"S\"\nbogus = 3\n");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.field, "bogus");
    assert!(e.message.contains("bogus"), "{e}");
    let e = err("id = \"S\"\ndurability = \"fast\"\n");
    assert_eq!((e.line, e.field.as_str()), (Some(2), "durability"));
    let e = err("id = \"S\"\n[listen]\nnbd = \"nohostport\"\n");
    assert_eq!((e.line, e.field.as_str()), (Some(3), "listen.nbd"));
    let e = err("durability = \"strict\"\n");
    assert!(e.message.contains("id"), "{e}");
    let e = err("id = \"S\"\n[rates]\nclean_mib_per_s_max = 0\n");
    assert_eq!(e.field, "rates.clean_mib_per_s_max");
    assert_eq!(e.line, Some(3), "{e}");
    // Type errors name the whole path, with the table (QA).
    let e = err("id = \"S\"\n[nbd]\nidle_timeout_s = \"x\"\n");
    assert_eq!((e.line, e.field.as_str()), (Some(3), "nbd.idle_timeout_s"));
    let e = err("id = \"S\"\n[[volumes]]\nid = \"A\"\nmodel = \"fb:1M\"\n[[volumes]]\nid = \"B\"\nmodel = 5\n");
    assert_eq!((e.line, e.field.as_str()), (Some(7), "volumes[1].model"));
}

#[test]
fn nbd_section_and_read_only_volumes_parse_and_round_trip() {
    let c = SubsystemConfig::from_toml_str(
        "id = \"X\"\n[nbd]\nidle_timeout_s = 300\nhandshake_timeout_s = 5\nmax_conns_per_peer = 4\nread_only = true\n\
         [[volumes]]\nid = \"A\"\nmodel = \"fb:16M\"\nread_only = true\n\
         [[volumes]]\nid = \"B\"\nmodel = \"fb:16M\"\n",
    )
    .unwrap();
    assert_eq!(c.nbd.idle_timeout_s, Some(300));
    assert_eq!(c.nbd.handshake_timeout_s, Some(5));
    assert_eq!(c.nbd.max_conns_per_peer, Some(4));
    assert!(c.nbd.read_only);
    assert!(c.volumes[0].read_only && !c.volumes[1].read_only);
    let again = SubsystemConfig::from_toml_str(&c.to_toml_string()).unwrap();
    assert_eq!(c, again);
    // Absent, the section is all defaults and not written back.
    let plain = SubsystemConfig::from_toml_str("id = \"X\"\n").unwrap();
    assert!(!plain.to_toml_string().contains("[nbd]"));
}

#[test]
fn a_bad_nbd_section_names_its_field() {
    let e = err("id = \"X\"\n[nbd]\nmax_conns_per_peer = 65\n");
    assert_eq!(e.field, "nbd.max_conns_per_peer", "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().contains("1..=64"), "{e}");
    let e = err("id = \"X\"\n[nbd]\nidle_timeout_s = 300\nhandshake_timeout_s = 0\n");
    assert_eq!(e.field, "nbd.handshake_timeout_s", "{e}");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.to_string().contains("line 4"), "{e}");
    let e = err("id = \"X\"\nnbd.handshake_timeout_s = 0\n");
    assert_eq!(e.line, Some(2), "a dotted key: {e}");
    assert!(e.to_string().contains("1..=3600"), "{e}");
    let e = err("id = \"X\"\n[nbd]\nidle_timeout = 5\n");
    assert!(e.to_string().contains("idle_timeout"), "{e}");
    // QA: accepted, then every NBD request failed on an overflowed deadline.
    let e = err("id = \"X\"\n[nbd]\nidle_timeout_s = 18446744073709551615\n");
    assert_eq!(e.field, "nbd.idle_timeout_s", "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().contains("at most a year"), "{e}");
}
