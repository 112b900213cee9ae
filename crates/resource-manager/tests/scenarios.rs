//! Every scenario in testdata/scenarios runs against real controller subsystems and passes;
//! malformed scenarios are refused with the line and the field.

use std::path::PathBuf;

use resource_manager::{run_scenario, run_scenario_str, ScenarioError};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/scenarios")
}

fn pass(file: &str) {
    let report = run_scenario(dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
}

#[test]
fn s01_completes_normally() {
    pass("01-completes-normally.toml");
}
#[test]
fn s02_ipl_mid_copy_terminates() {
    pass("02-ipl-mid-copy-terminates.toml");
}
#[test]
fn s03_rm_restart_mid_copy_terminates() {
    pass("03-rm-restart-mid-copy-terminates.toml");
}
#[test]
fn s04_abend_terminates_only_that_program() {
    pass("04-abend-terminates-only-that-program.toml");
}
#[test]
fn s05_reset_intact_resumes() {
    pass("05-reset-intact-resumes.toml");
}
#[test]
fn s06_reset_lost_relationship_terminates() {
    pass("06-reset-lost-relationship-terminates.toml");
}
#[test]
fn s07_reset_during_ipl_replay() {
    pass("07-reset-during-ipl-replay.toml");
}
#[test]
fn s08_overlapping_one_resumes_one_terminates() {
    pass("08-overlapping-one-resumes-one-terminates.toml");
}
#[test]
fn s09_session_spanning_two_subsystems() {
    pass("09-session-spanning-two-subsystems.toml");
}

#[test]
fn every_scenario_file_has_a_test() {
    let listed = [
        "01-completes-normally.toml",
        "02-ipl-mid-copy-terminates.toml",
        "03-rm-restart-mid-copy-terminates.toml",
        "04-abend-terminates-only-that-program.toml",
        "05-reset-intact-resumes.toml",
        "06-reset-lost-relationship-terminates.toml",
        "07-reset-during-ipl-replay.toml",
        "08-overlapping-one-resumes-one-terminates.toml",
        "09-session-spanning-two-subsystems.toml",
    ];
    for e in std::fs::read_dir(dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".toml") {
            assert!(
                listed.contains(&name.as_str()),
                "{name} has no test in tests/scenarios.rs"
            );
        }
    }
}

const HEAD: &str = r#"name = "t"

[[subsystem]]
id = "SS1"
volumes = [
  { id = "SRC0", model = "fb:1M:64K" },
  { id = "TGT0", model = "fb:1M:64K" },
]
"#;

fn invalid(body: &str) -> (usize, String, String) {
    let text = format!("{HEAD}{body}");
    match run_scenario_str("t.toml", &text) {
        Err(ScenarioError::Invalid {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn malformed_scenarios_name_line_and_field() {
    // HEAD has 8 lines; the body starts on line 9.
    let (line, field, msg) =
        invalid("\n[[step]]\naction = \"write\"\nvolume = \"SRC0\"\ntracks = 7\npattern = \"x\"\n");
    assert_eq!((line, field.as_str()), (13, "tracks"), "{msg}");

    let (line, field, msg) = invalid("\n[[step]]\naction = \"explode\"\n");
    assert_eq!((line, field.as_str()), (11, "action"), "{msg}");
    assert!(msg.contains("explode"), "{msg}");

    let (line, field, msg) = invalid(
        "\n[[step]]\naction = \"write\"\nvolume = \"NOPE\"\ntracks = \"0-3\"\npattern = \"x\"\n",
    );
    assert_eq!((line, field.as_str()), (12, "volume"), "{msg}");
    assert!(msg.contains("NOPE"), "{msg}");

    let (line, field, msg) = invalid(
        "\n[[step]]\naction = \"start\"\nsession = \"S1\"\nextents = [\"SRC0:9-3\"]\ntargets = [\"SRC0=TGT0\"]\n",
    );
    assert_eq!((line, field.as_str()), (13, "extents"), "{msg}");

    let (line, field, _) = invalid("\n[[expect]]\nsession = \"S1\"\nstate = \"sleeping\"\n");
    assert_eq!((line, field.as_str()), (12, "state"));

    let (line, field, msg) = invalid("\n[[step]]\naction = \"copy\"\nspeed = 3\n");
    assert_eq!((line, field.as_str()), (12, "speed"), "{msg}");

    let (line, field, msg) = invalid("\n[[step]]\naction = \"copy\"\npattern = \"x\"\n");
    assert_eq!((line, field.as_str()), (12, "pattern"), "{msg}");

    let (line, field, msg) = invalid("\n[[step]]\naction = \"start\"\nsession = \"S1\"\n");
    assert_eq!((line, field.as_str()), (11, "extents"), "{msg}");

    // Session ids, expected outcomes and the sessions they name are
    // checked before anything runs.
    let start = "\n[[step]]\naction = \"start\"\nsession = \"B1\"\nextents = [\"SRC0:0-3\"]\ntargets = [\"SRC0=TGT0\"]\n";
    let (line, field, msg) = invalid(&start.replace("B1", "B#1"));
    assert_eq!((line, field.as_str()), (12, "session"), "{msg}");
    assert!(msg.contains('#'), "{msg}");
    let (line, field, msg) = invalid(&format!(
        "{start}\n[[step]]\naction = \"rm-restart\"\nexpect = {{ B1 = \"exploded\" }}\n"
    ));
    assert_eq!((line, field.as_str()), (18, "expect"), "{msg}");
    assert!(msg.contains("exploded"), "{msg}");
    let (_, field, msg) = invalid(&format!(
        "{start}\n[[step]]\naction = \"ipl\"\nexpect = {{ B1 = \"terminated(bogus)\" }}\n"
    ));
    assert_eq!(field, "expect", "{msg}");
    let (line, field, msg) = invalid(&format!(
        "{start}\n[[step]]\naction = \"ipl\"\nexpect = {{ B2 = \"terminated(ipl)\" }}\n"
    ));
    assert_eq!((line, field.as_str()), (16, "expect"), "{msg}");
    assert!(msg.contains("B2"), "{msg}");

    // QA: these ran, and failed later as expectations (exit 4) or did
    // something else than written.
    let start_with = |extents: &str, targets: &str| {
        format!(
            "\n[[step]]\naction = \"start\"\nsession = \"B1\"\nextents = {extents}\ntargets = {targets}\n"
        )
    };
    for (extents, targets, needle) in [
        ("[]", "[\"SRC0=TGT0\"]", "at least one extent"),
        (
            "[\"SRC0:0-3\"]",
            "[\"SRC0=TGT0\", \"SRC0=SRC0\"]",
            "its own target",
        ),
        ("[\"SRC0:0-3\"]", "[\"SRC0=SRC0\"]", "its own target"),
        (
            "[\"SRC0:0-3\"]",
            "[\"SRC0=TGT0\", \"SRC0=TGT1\"]",
            "two targets",
        ),
        (
            "[\"SRC0:0-3\"]",
            "[\"SS1/SRC0=SS2/TGT0\"]",
            "on its source's subsystem",
        ),
        (
            "[\"SRC0:0-3\"]",
            "[\"SRC0=SS2/TGT0\"]",
            "on its source's subsystem",
        ),
    ] {
        let (_, field, msg) = invalid(&start_with(extents, targets));
        assert!(
            ["extents", "targets"].contains(&field.as_str()) && msg.contains(needle),
            "{targets}: {field}: {msg}"
        );
    }

    let err = run_scenario_str("t.toml", "name = \"t\"\nsubsystem = 3\n").unwrap_err();
    assert!(
        matches!(err, ScenarioError::Invalid { line: 2, .. }),
        "{err}"
    );
}

#[test]
fn a_failed_expectation_is_reported_not_an_error() {
    let text = format!(
        "{HEAD}\n[[step]]\naction = \"start\"\nsession = \"S1\"\nextents = [\"SRC0:0-3\"]\ntargets = [\"SRC0=TGT0\"]\n\n\
         [[step]]\naction = \"ipl\"\nexpect = {{ S1 = \"resumed\" }}\n\n[[expect]]\nsession = \"S1\"\nstate = \"completed\"\n"
    );
    let report = run_scenario_str("t.toml", &text).expect("runs");
    assert!(!report.passed());
    assert_eq!(report.failures.len(), 2, "{report}");
    assert!(
        report.failures[0].contains("line 16") && report.failures[0].contains("expected resumed"),
        "{report}"
    );
    assert!(
        report.failures[1].contains("expected completed, got terminated(ipl)"),
        "{report}"
    );
}

#[test]
fn an_oversized_number_and_a_file_that_is_not_text_name_their_line() {
    // QA: "invalid type: integer `999...` as i128", and "stream did not
    // contain valid UTF-8" with no line.
    let (line, field, msg) = invalid(
        "\n[[step]]\naction = \"write\"\nvolume = \"SRC0\"\ntracks = 99999999999999999999\npattern = \"x\"\n",
    );
    assert_eq!((line, field.as_str()), (13, "tracks"), "{msg}");
    assert!(msg.contains("beyond the 64-bit range"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.toml");
    std::fs::write(&path, b"name = \"t\"\n\xff\xfe\n").unwrap();
    match run_scenario(&path) {
        Err(ScenarioError::Invalid { line, message, .. }) => {
            assert_eq!(line, 2, "{message}");
            assert!(message.contains("not UTF-8"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}
