//! Child processes of the local stack (broker, AWS emulators), each stopped when dropped.

use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A process the stack started; killed when stopped or dropped, so nothing outlives the run.
/// A runner killed with SIGKILL stops nothing itself, so on Linux each process is started
/// through util-linux's `setpriv --pdeathsig KILL` (util-linux is essential on Debian), and the
/// kernel kills it when the runner goes: a runner started again at once finds its ports free.
/// The signal follows the thread that started the process, so services are started from the
/// runtime's own threads (which live as long as the runner), never from `spawn_blocking`.
pub struct Service {
    pub name: &'static str,
    pub log: PathBuf,
    child: Child,
}

impl Service {
    /// Starts `program` with its output in `log`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Self> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = match parent_death_wrapper() {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self { name, log, child })
    }

    /// Starts `program` and waits, at most `within_secs`, until it listens on 127.0.0.1:`port`.
    pub async fn start(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        port: u16,
        within_secs: u64,
    ) -> Result<Self> {
        let mut service = Self::spawn(name, program, args, log)?;
        service
            .wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(within_secs),
            )
            .await?;
        Ok(service)
    }

    /// Waits until `addr` accepts connections; fails with the log's tail if the process dies first.
    pub async fn wait_for_port(&mut self, addr: SocketAddr, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on {addr}:\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {within:?}:\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process and waits for it to be gone.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `setpriv`, which starts a program with a signal the kernel sends it when its parent dies;
/// Linux only (elsewhere a runner killed with SIGKILL leaves its services running).
fn parent_death_wrapper() -> Option<PathBuf> {
    if cfg!(target_os = "linux") {
        crate::tools::find_on_path("setpriv")
    } else {
        None
    }
}

/// The last lines of a log, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Fails with a clear message when something already listens on `port`.
pub fn ensure_port_free(port: u16, what: &str, hint: &str) -> Result<()> {
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        bail!("port {port} for {what} is already in use: {hint}");
    }
    Ok(())
}

/// Starts tansu with in-memory storage on 127.0.0.1:`port`, telling clients to use
/// 127.0.0.1:`advertised` (its own port, or a proxy's).
pub async fn start_tansu(
    bin: &Path,
    port: u16,
    advertised: u16,
    run_dir: &Path,
) -> Result<Service> {
    let args = vec![
        "broker".to_owned(),
        "--listener-url".to_owned(),
        format!("tcp://127.0.0.1:{port}"),
        "--advertised-listener-url".to_owned(),
        format!("tcp://127.0.0.1:{advertised}"),
        "--storage-engine".to_owned(),
        "memory://tansu/".to_owned(),
    ];
    Service::start("tansu", bin, &args, run_dir.join("tansu.log"), port, 30).await
}

/// Starts moto's server on 127.0.0.1:`port`.
pub async fn start_moto(bin: &Path, port: u16, run_dir: &Path) -> Result<Service> {
    let args = vec![
        "-H".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
    ];
    Service::start(
        "moto_server",
        bin,
        &args,
        run_dir.join("moto.log"),
        port,
        60,
    )
    .await
}

/// Starts dynalite on 127.0.0.1:`port`, in memory, with tables active as soon as they are
/// created (its default keeps them `CREATING` for half a second).
pub async fn start_dynalite(bin: &Path, port: u16, run_dir: &Path) -> Result<Service> {
    let mut args: Vec<String> = ["--host", "127.0.0.1", "--port"]
        .map(str::to_owned)
        .to_vec();
    args.push(port.to_string());
    for setting in ["--createTableMs", "--deleteTableMs", "--updateTableMs"] {
        args.extend([setting.to_owned(), "0".to_owned()]);
    }
    Service::start(
        "dynalite",
        bin,
        &args,
        run_dir.join("dynalite.log"),
        port,
        30,
    )
    .await
}
