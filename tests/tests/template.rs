//! The SAM template passes both of SAM's checks, offline.

use std::path::Path;
use std::process::Command;
use wtc_local::tools::{SAM_CLI_REQUIREMENT, ensure_python_tool};

fn sam_validate(args: &[&str]) {
    let sam = ensure_python_tool("sam", &[SAM_CLI_REQUIREMENT]).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(sam)
        .current_dir(&root)
        .arg("validate")
        .args(args)
        .args(["--template", "infra/template.yaml"])
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sam validate {args:?} failed:\n{text}"
    );
    assert!(text.contains("is a valid SAM Template"), "{text}");
}

#[test]
fn template_passes_sam_lint() {
    sam_validate(&["--lint"]);
}

#[test]
fn template_passes_sam_validate() {
    sam_validate(&["--region", "us-east-1"]);
}
