//! What the runner tests share: the runner binary started as a user starts it, on free ports.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wtc_local::services::free_port;

pub fn runner(args: &[&str], kafka_port: u16, aws_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wtc-local"));
    let (api_port, sftp_port) = (free_port().unwrap(), free_port().unwrap());
    cmd.args(args)
        .args([
            "--sftp-port",
            &sftp_port.to_string(),
            "--kafka-port",
            &kafka_port.to_string(),
            "--aws-port",
            &aws_port.to_string(),
            "--api-port",
            &api_port.to_string(),
        ])
        .env_remove("KAFKA_BROKERS")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("WTC_INVOKE_URL")
        .stdin(Stdio::null());
    cmd
}

/// A running runner whose standard output is collected as it comes.
pub struct Running {
    pub child: Child,
    pub stdout: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let pipe = child.stdout.take().unwrap();
        let sink = stdout.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            child,
            stdout,
            reader,
        }
    }

    /// Waits until the output contains `needle`.
    pub fn wait_for(&mut self, needle: &str, within: Duration) {
        let started = Instant::now();
        while !self.stdout.lock().unwrap().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "runner exited ({status}) before printing {needle:?}:\n{}",
                    self.stdout.lock().unwrap()
                );
            }
            assert!(
                started.elapsed() < within,
                "no {needle:?} within {within:?}:\n{}",
                self.stdout.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the runner to exit; returns whether it succeeded and all it printed.
    pub fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        let out = self.stdout.lock().unwrap().clone();
        (status.success(), out)
    }
}

pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}
