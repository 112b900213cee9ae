//! docs/openapi.json is the document the code generates: `firmware-sim
//! openapi` prints it from the handlers' annotations and the wire types, and
//! the checked-in copy must not drift from it.

mod common;

use std::path::Path;

use common::{assert_success, run, BIN};

#[test]
fn the_checked_in_openapi_document_is_the_generated_one() {
    let out = run(BIN, &["openapi"]);
    assert_success(&out, "firmware-sim openapi");
    let generated = String::from_utf8(out.stdout).expect("UTF-8 document");
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("a JSON document");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document: {}",
        &generated[..generated.len().min(200)]
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json differs from the document the code generates (a handler's \
         #[utoipa::path] or a wire type changed). Regenerate it with\n    \
         cargo run -q -p firmware-sim -- openapi > docs/openapi.json\nor\n    \
         UPDATE_OPENAPI=1 cargo test -p firmware-sim --test openapi\nand commit the result."
    );
}
