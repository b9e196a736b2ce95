//! The runner binary as a user runs it: one command, a finite run, everything stopped after.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use wtc_local::services::free_port;
use wtc_local::tools::{KAFKA_PYTHON_REQUIREMENT, ensure_python_package};

fn runner(args: &[&str], kafka_port: u16, aws_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wtc-local"));
    cmd.args(args)
        .args([
            "--kafka-port",
            &kafka_port.to_string(),
            "--aws-port",
            &aws_port.to_string(),
        ])
        .env_remove("KAFKA_BROKERS")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("WTC_INVOKE_URL")
        .stdin(Stdio::null());
    cmd
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

#[test]
fn a_finite_run_stores_every_generated_tick_and_stops_everything() {
    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let out = runner(
        &[
            "--ticks",
            "1500",
            "--exit-when-done",
            "--batching-window-ms",
            "200",
        ],
        kafka_port,
        aws_port,
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runner failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("summary: produced 1,500 | processed 1,500 | stored 1,500 | duplicates 0 | rejected 0 | failed 0"),
        "{stdout}"
    );
    assert!(stdout.contains("stopped tansu, moto_server"), "{stdout}");
    assert!(
        !listening(kafka_port) && !listening(aws_port),
        "a started service is still listening"
    );
}

#[test]
fn an_unchanged_kafka_python_producer_is_consumed_and_stored() {
    let python = ensure_python_package("kafka", KAFKA_PYTHON_REQUIREMENT).unwrap();
    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let child = runner(
        &[
            "--external-producer",
            "--exit-when-done",
            "--idle-secs",
            "3",
        ],
        kafka_port,
        aws_port,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait for the runner to have created the topic before producing (the curriculum's broker
    // auto-creates it; ours is created by the runner).
    let started = std::time::Instant::now();
    while !listening(kafka_port) || !listening(aws_port) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the stack did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/forex_producer.py");
    let producer = Command::new(python)
        .arg(script)
        .args(["--ticks", "2000"])
        .env("KAFKA_BROKERS", format!("localhost:{kafka_port}"))
        .output()
        .unwrap();
    assert!(
        producer.status.success(),
        "producer failed: {}{}",
        String::from_utf8_lossy(&producer.stdout),
        String::from_utf8_lossy(&producer.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&producer.stdout).trim(),
        "sent 2000 ticks"
    );

    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runner failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("processed 2,000 | stored 2,000 | duplicates 0 | rejected 0 | failed 0"),
        "{stdout}"
    );
}
