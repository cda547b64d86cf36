//! The OpenAPI document describes the API as it behaves: schemathesis (PyPI,
//! installed by `scripts/setup.sh`) generates requests from `/v1/openapi.json` —
//! valid ones and ones that break the schema — against a real `sluice up`, and
//! checks that nothing answers 5xx, that status codes and content types are the
//! documented ones, that answers match their schemas, and that data the schema
//! rules out is refused. A run whose generated data the API mostly rejects (the
//! "schema validation mismatch" warning: the schema is looser than the
//! validation) fails too.
//!
//! The seed is fixed, so a run is repeatable; `SLUICE_SCHEMATHESIS_SEED=N` picks
//! another, `SLUICE_SCHEMATHESIS_EXAMPLES=N` more examples per operation.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{python_with, Sluice};

#[test]
fn schemathesis_finds_the_api_as_its_openapi_document_describes_it() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let seed = std::env::var("SLUICE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("SLUICE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/schemathesis.toml");
    let out = dir.path().join("schemathesis.txt");
    let mut run = python_with("schemathesis")
        .args(["-m", "schemathesis.cli", "--config-file", config, "run"])
        .arg(format!("{}/v1/openapi.json", sluice.url))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .args(["--seed", &seed, "--max-examples", &examples])
        // Hypothesis keeps its example database in the working directory.
        .current_dir(dir.path())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = run.kill();
            panic!("schemathesis ran for over 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&out).unwrap();
    let summary = report
        .rfind("SUMMARY")
        .map_or(report.as_str(), |at| &report[at..]);
    eprintln!("schemathesis (seed {seed}):\n{summary}");
    assert!(
        status.success(),
        "schemathesis found failures (seed {seed}):\n{report}"
    );
    assert!(
        !report.contains("Schema validation mismatch"),
        "operations whose generated data was mostly rejected (seed {seed}):\n{report}"
    );
    assert!(report.contains(" passed"), "{report}");
}
