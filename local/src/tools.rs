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

/// The tansu broker binary, built with `cargo install` on first use.
pub fn ensure_tansu() -> Result<PathBuf> {
    let root = tools_dir().join(format!("tansu-{TANSU_VERSION}"));
    let bin = root.join("bin/tansu");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "installing tansu {TANSU_VERSION} (the Kafka-compatible broker) into {}: about 12 minutes on 2 cores, once",
        root.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "install",
            "tansu",
            "--version",
            TANSU_VERSION,
            "--locked",
            "--features",
            "dynostore,libsql",
            "--root",
        ])
        .arg(&root)
        // Its own target folder: never contend with the workspace's build lock.
        .env("CARGO_TARGET_DIR", tools_dir().join("build/tansu"))
        .status()
        .context("running `cargo install tansu` (is cargo on PATH?)")?;
    if !status.success() || !bin.exists() {
        bail!(
            "`cargo install tansu` failed ({status}); run it by hand to see why, or set KAFKA_BROKERS to use an existing broker"
        );
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

/// moto's server, the no-Docker stand-in for DynamoDB, Kinesis, S3 and SQS.
pub fn ensure_moto() -> Result<PathBuf> {
    ensure_python_tool("moto_server", &[MOTO_REQUIREMENT])
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
/// clients) and the SAM CLI (template validation).
pub fn ensure_test_tools() -> Result<()> {
    ensure_python_package("kafka", KAFKA_PYTHON_REQUIREMENT)?;
    ensure_python_package("paramiko", PARAMIKO_REQUIREMENT)?;
    ensure_python_tool("sam", &[SAM_CLI_REQUIREMENT])?;
    Ok(())
}

/// kafka-python, as the curriculum's producers use it.
pub const KAFKA_PYTHON_REQUIREMENT: &str = "kafka-python>=2.0,<4";
/// paramiko, the SFTP client the curriculum's CDR generator uploads with.
pub const PARAMIKO_REQUIREMENT: &str = "paramiko>=3,<5";
/// The SAM CLI, for `sam validate`.
pub const SAM_CLI_REQUIREMENT: &str = "aws-sam-cli>=1.120,<2";
