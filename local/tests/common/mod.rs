//! What the runner tests share: the runner binary started as a user starts it, on free ports.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
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
            "--dynamodb-port",
            &free_port().unwrap().to_string(),
            "--api-port",
            &api_port.to_string(),
        ])
        .env_remove("KAFKA_BROKERS")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
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

    /// Stops the runner as a user does, with Ctrl-C (SIGINT), and waits at most `within` for it.
    pub fn interrupt(self, within: Duration) -> (bool, String) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -INT failed");
        self.finish_within(within)
    }

    /// Waits at most `within` for the runner to exit (then kills it and fails, with what it
    /// printed); returns whether it succeeded and all it printed.
    pub fn finish_within(mut self, within: Duration) -> (bool, String) {
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if started.elapsed() > within {
                let _ = self.child.kill();
                let (_, out) = self.finish();
                panic!("the runner did not exit within {within:?}:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.finish()
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

/// Usage totals keyed by (msisdn, bucket start, category, usage type), summed straight from CSV
/// files: hourly buckets, or daily ones with `daily`.
pub type CsvTotals = BTreeMap<(String, String, String, String), u64>;

pub fn csv_totals(dir: &Path, daily: bool) -> CsvTotals {
    let mut totals = CsvTotals::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            // data: msisdn,tower_id,up_bytes,down_bytes,data_type,ip_address,website_url,event_datetime
            // voice: msisdn,tower_id,call_type,dest_nr,call_duration_sec,start_time
            let (category, usage_type, total, at) = if name.starts_with("cdr_data_") {
                let bytes = f[2].parse::<u64>().unwrap() + f[3].parse::<u64>().unwrap();
                ("data", f[4], bytes, f[7])
            } else {
                ("call", f[2], f[4].parse::<u64>().unwrap(), f[5])
            };
            let bucket = if daily {
                format!("{} 00:00:00", &at[..10])
            } else {
                format!("{}:00:00", &at[..13])
            };
            *totals
                .entry((
                    f[0].to_owned(),
                    bucket,
                    category.to_owned(),
                    usage_type.to_owned(),
                ))
                .or_default() += total;
        }
    }
    totals
}

/// Writes `pairs` pairs of CDR files with `generate-cdr` into a fresh folder.
pub fn generate_cdr(pairs: u64, seed: u64, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wtc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_wtc-local"))
        .args([
            "generate-cdr",
            "--files",
            &pairs.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}
