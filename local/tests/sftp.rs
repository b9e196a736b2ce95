//! The curriculum's upload path end to end: CDR files put on the runner's SFTP drop by paramiko
//! (the client the curriculum's generator uses) are served by the usage API, exactly, within a
//! minute. In its own test binary so that no other stack shares the machine while it is timed.

mod common;

use common::{CsvTotals, Running, csv_totals, generate_cdr, runner};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use wtc_local::services::free_port;
use wtc_local::tools::{PARAMIKO_REQUIREMENT, ensure_python_package};

/// The port in the first `prefix<port>` of `out`.
fn port_after(out: &str, prefix: &str) -> u16 {
    let at = out
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
        + prefix.len();
    out[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// What the API answers for one MSISDN over 2024-01-01, in the same keys.
async fn api_totals(port: u16, msisdn: &str, daily: bool) -> CsvTotals {
    let mut url = format!(
        "http://127.0.0.1:{port}/data_usage?msisdn={msisdn}&start_time=20240101000000&end_time=20240101235959"
    );
    if daily {
        url.push_str("&granularity=day");
    }
    let response = reqwest::Client::new()
        .get(&url)
        .basic_auth("wtc", Some("wtc-local"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let body: serde_json::Value = response.json().await.unwrap();
    let mut totals = CsvTotals::new();
    for item in body["usage"].as_array().unwrap() {
        let text = |field: &str| item[field].as_str().unwrap().to_owned();
        totals.insert(
            (
                msisdn.to_owned(),
                text("start_time"),
                text("category"),
                text("usage_type"),
            ),
            item["total"].as_u64().unwrap(),
        );
    }
    totals
}

fn for_msisdn(totals: &CsvTotals, msisdn: &str) -> CsvTotals {
    totals
        .iter()
        .filter(|(k, _)| k.0 == msisdn)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdr_files_uploaded_over_sftp_are_served_by_the_api_within_a_minute() {
    let python = ensure_python_package("paramiko", PARAMIKO_REQUIREMENT).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/sftp_upload.py");
    let files = generate_cdr(1, 7, "sftp-files");
    let mut paths: Vec<String> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 2, "{paths:?}");

    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let mut running = Running::start(runner(
        &[
            "--ticks",
            "100",
            "--market-minutes",
            "0",
            "--cdr-files",
            "0",
        ],
        kafka_port,
        aws_port,
    ));
    running.wait_for("press Ctrl-C to stop", Duration::from_secs(180));
    running.wait_for("| API ready", Duration::from_secs(30));
    let out = running.stdout.lock().unwrap().clone();
    let sftp_port = port_after(&out, "SFTP drop on sftp://cdr_data@127.0.0.1:");
    let api_port = port_after(&out, "API on http://127.0.0.1:");
    let upload = |args: &[&str], files: &[String]| {
        let out = Command::new(&python)
            .arg(script)
            .args(["--port", &sftp_port.to_string()])
            .args(args)
            .args(files)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // Refused: a wrong password, and a file outside the upload folder.
    let (code, said) = upload(&["--password", "not-it"], &paths);
    assert_eq!(code, Some(2), "{said}");
    let (code, said) = upload(&["--folder", ""], &paths[..1]);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("only takes uploads into /upload"), "{said}");

    // The curriculum's user, password and folder.
    let (code, said) = upload(&[], &paths);
    let uploaded = Instant::now();
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(said.trim(), "uploaded 2 files");

    let hourly = csv_totals(&files, false);
    let daily = csv_totals(&files, true);
    // Every MSISDN with more than one row, and the first ones of the rest, up to 100.
    let mut rows: BTreeMap<&str, usize> = BTreeMap::new();
    for key in hourly.keys() {
        *rows.entry(key.0.as_str()).or_default() += 1;
    }
    let mut checked: Vec<&str> = rows.keys().copied().collect();
    checked.sort_by_key(|m| std::cmp::Reverse(rows[m]));
    checked.truncate(100);

    // The runner says when every row is in the totals; the API is asked then (asking all along
    // would only slow the emulator down).
    let deadline = Duration::from_secs(60);
    running.wait_for(
        "usage rows 2,000 ",
        deadline.saturating_sub(uploaded.elapsed()),
    );
    let mut pending: Vec<&str> = checked.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for msisdn in pending {
            let hourly_ok =
                api_totals(api_port, msisdn, false).await == for_msisdn(&hourly, msisdn);
            if !hourly_ok || api_totals(api_port, msisdn, true).await != for_msisdn(&daily, msisdn)
            {
                still.push(msisdn);
            }
        }
        pending = still;
        if !pending.is_empty() {
            assert!(
                uploaded.elapsed() < deadline,
                "after {:?}, {} of {} MSISDNs differ; first {}: API {:?}, CSV {:?}",
                uploaded.elapsed(),
                pending.len(),
                checked.len(),
                pending[0],
                api_totals(api_port, pending[0], false).await,
                for_msisdn(&hourly, pending[0]),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "{} MSISDNs served exactly, hourly and daily, {:.1}s after the upload",
        checked.len(),
        uploaded.elapsed().as_secs_f64()
    );

    let (ok, stdout) = running.interrupt(Duration::from_secs(120));
    assert!(ok, "runner failed:\n{stdout}");
    assert!(
        stdout.contains("SFTP upload upload/cdr_data_20240101_000320.csv: 1,000 rows, 1,000 records published, 0 rows rejected"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "usage: 2 CDR files streamed (2,000 rows, 2,000 records, 0 rejected) | 2,000 rows added to usage totals"
        ),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&files);
}
