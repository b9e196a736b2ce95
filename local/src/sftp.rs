//! The curriculum's SFTP drop, served in this process: password login, one folder (`/upload`), and
//! every completed upload stored in the local bucket under `upload/` and announced, as an S3
//! notification announces a new object.
//!
//! The tree a client sees is `/` holding `upload`; `upload` lists the bucket's objects under
//! `upload/`. Files can be written (created, truncated, written at any offset), listed and
//! stat'ed; reading, removing and renaming are refused with a reason, as the drop only takes
//! uploads. An upload is spooled to a temporary file (never held in memory), stored when the
//! client closes it, and the close answers only after the object is stored.

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::server::{Auth, ChannelOpenHandle, Msg, Server as _, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use russh_sftp::protocol::{
    Attrs, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The curriculum's port.
pub const DEFAULT_PORT: u16 = 10022;
/// The curriculum's user and password when `SFTP_USERNAME` / `SFTP_PASSWORD` are not set
/// (local only).
pub const DEFAULT_USER: (&str, &str) = ("cdr_data", "password");
/// The folder uploads go to, and the prefix of their objects.
pub const UPLOAD_DIR: &str = "upload";

/// Where uploads go and who hears of them.
#[derive(Debug)]
pub struct DropTarget {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// Uploads are spooled here until the client closes them.
    pub spool_dir: PathBuf,
    /// Receives the key of every stored upload.
    pub uploaded: mpsc::UnboundedSender<String>,
}

#[derive(Debug, Clone)]
pub struct SftpOptions {
    pub port: u16,
    pub username: String,
    pub password: String,
    /// The host key, kept here so that clients see the same key on every run; created on first use.
    pub host_key_path: PathBuf,
}

/// A running SFTP drop.
#[derive(Debug)]
pub struct SftpDrop {
    pub address: SocketAddr,
    /// The host key's SHA-256 fingerprint, as `ssh` shows it.
    pub fingerprint: String,
    task: tokio::task::JoinHandle<()>,
}

impl SftpDrop {
    /// Binds `127.0.0.1:port` and serves until [`SftpDrop::stop`] or the process ends.
    pub async fn start(options: SftpOptions, target: DropTarget) -> Result<Self> {
        let key = host_key(&options.host_key_path)?;
        let fingerprint = key
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        std::fs::create_dir_all(&target.spool_dir)
            .with_context(|| format!("creating {}", target.spool_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .with_context(|| {
                format!(
                    "binding the SFTP drop to 127.0.0.1:{} (is it in use? --sftp-port)",
                    options.port
                )
            })?;
        let address = listener.local_addr()?;
        let config = Arc::new(russh::server::Config {
            methods: password_only(),
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(600)),
            keys: vec![key],
            ..Default::default()
        });
        let mut server = Server {
            shared: Arc::new(Shared {
                username: options.username,
                password: options.password,
                target,
                spooled: AtomicU64::new(0),
            }),
        };
        let task = tokio::spawn(async move {
            if let Err(e) = server.run_on_socket(config, &listener).await {
                tracing::error!(error = %e, "the SFTP drop stopped");
            }
        });
        Ok(Self {
            address,
            fingerprint,
            task,
        })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

fn password_only() -> MethodSet {
    MethodSet::from(&[MethodKind::Password][..])
}

/// Reads the Ed25519 host key at `path`, or creates it (mode 0600).
pub fn host_key(path: &Path) -> Result<PrivateKey> {
    if path.exists() {
        return PrivateKey::read_openssh_file(path)
            .with_context(|| format!("reading the SFTP host key {}", path.display()));
    }
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let pem = key
        .to_openssh(LineEnding::LF)
        .context("encoding the SFTP host key")?;
    write_private(path, pem.as_bytes())
        .with_context(|| format!("writing the SFTP host key {}", path.display()))?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

struct Shared {
    username: String,
    password: String,
    target: DropTarget,
    /// Names the spool files.
    spooled: AtomicU64,
}

#[derive(Clone)]
struct Server {
    shared: Arc<Shared>,
}

impl russh::server::Server for Server {
    type Handler = Connection;

    fn new_client(&mut self, _: Option<SocketAddr>) -> Connection {
        Connection {
            shared: self.shared.clone(),
            channels: HashMap::new(),
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        // Both compared whatever the first one gives, each in constant time.
        let user_ok = api::constant_time_eq(user.as_bytes(), self.shared.username.as_bytes());
        let password_ok =
            api::constant_time_eq(password.as_bytes(), self.shared.password.as_bytes());
        Ok(if user_ok & password_ok {
            Auth::Accept
        } else {
            tracing::warn!(user, "SFTP login refused");
            Auth::Reject {
                proceed_with_methods: Some(password_only()),
                partial_success: false,
            }
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&channel_id) {
            Some(channel) if name == "sftp" => {
                session.channel_success(channel_id)?;
                russh_sftp::server::run(
                    channel.into_stream(),
                    SftpSession {
                        shared: self.shared.clone(),
                        handles: HashMap::new(),
                        next_handle: 0,
                    },
                )
                .await;
            }
            _ => session.channel_failure(channel_id)?,
        }
        Ok(())
    }
}

/// Where a path points in the drop's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Root,
    Upload,
    /// A file in `/upload`.
    File(String),
}

/// Resolves `path` (absolute, or relative to `/`) with `.` and `..`, or `None` outside the tree.
fn place(path: &str) -> Option<Place> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    match parts.as_slice() {
        [] => Some(Place::Root),
        [dir] if *dir == UPLOAD_DIR => Some(Place::Upload),
        [dir, name] if *dir == UPLOAD_DIR => Some(Place::File((*name).to_owned())),
        _ => None,
    }
}

impl Place {
    fn path(&self) -> String {
        match self {
            Place::Root => "/".to_owned(),
            Place::Upload => format!("/{UPLOAD_DIR}"),
            Place::File(name) => format!("/{UPLOAD_DIR}/{name}"),
        }
    }
}

enum OpenHandle {
    Upload {
        name: String,
        spool: PathBuf,
        file: tokio::fs::File,
    },
    Dir {
        place: Place,
        listed: bool,
    },
}

struct SftpSession {
    shared: Arc<Shared>,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
}

impl Drop for SftpSession {
    /// A client that goes away without closing an upload leaves nothing stored: its spool goes.
    fn drop(&mut self) {
        for handle in self.handles.values() {
            if let OpenHandle::Upload { name, spool, .. } = handle {
                tracing::warn!(
                    name,
                    "SFTP upload abandoned before it was closed; not stored"
                );
                let _ = std::fs::remove_file(spool);
            }
        }
    }
}

fn status(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

fn refused(code: StatusCode, message: impl Into<String>) -> StatusReply {
    code.with_message(message)
}

fn dir_attrs() -> FileAttributes {
    let mut attrs = FileAttributes::empty();
    attrs.permissions = Some(0o040_755);
    attrs
}

fn file_attrs(size: u64, mtime: Option<u32>) -> FileAttributes {
    let mut attrs = FileAttributes::empty();
    attrs.size = Some(size);
    attrs.permissions = Some(0o100_644);
    attrs.mtime = mtime;
    attrs.atime = mtime;
    attrs
}

const ONLY_UPLOADS: &str = "this drop only takes uploads into /upload";

impl SftpSession {
    fn new_handle(&mut self, open: OpenHandle) -> String {
        self.next_handle += 1;
        let handle = format!("h{}", self.next_handle);
        self.handles.insert(handle.clone(), open);
        handle
    }

    fn key(name: &str) -> String {
        format!("{UPLOAD_DIR}/{name}")
    }

    async fn stat_place(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        match place(path) {
            Some(Place::Root | Place::Upload) => Ok(dir_attrs()),
            Some(Place::File(name)) => {
                let target = &self.shared.target;
                let head = target
                    .s3
                    .head_object()
                    .bucket(&target.bucket)
                    .key(Self::key(&name))
                    .send()
                    .await;
                match head {
                    Ok(object) => Ok(file_attrs(
                        object.content_length().unwrap_or(0).max(0) as u64,
                        object.last_modified().map(|t| t.secs().max(0) as u32),
                    )),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Err(
                        refused(StatusCode::NoSuchFile, format!("no such file: {path}")),
                    ),
                    Err(e) => Err(refused(
                        StatusCode::Failure,
                        aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                    )),
                }
            }
            None => Err(refused(
                StatusCode::NoSuchFile,
                format!("no such file: {path}"),
            )),
        }
    }

    /// The objects under `upload/`, as directory entries.
    async fn list_uploads(&self) -> Result<Vec<File>, StatusReply> {
        let target = &self.shared.target;
        let mut files = Vec::new();
        let mut pages = target
            .s3
            .list_objects_v2()
            .bucket(&target.bucket)
            .prefix(format!("{UPLOAD_DIR}/"))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                refused(
                    StatusCode::Failure,
                    aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
            for object in page.contents() {
                let Some(name) = object
                    .key()
                    .and_then(|k| k.strip_prefix(&format!("{UPLOAD_DIR}/")))
                    .filter(|n| !n.is_empty() && !n.contains('/'))
                else {
                    continue;
                };
                files.push(File::new(
                    name,
                    file_attrs(
                        object.size().unwrap_or(0).max(0) as u64,
                        object.last_modified().map(|t| t.secs().max(0) as u32),
                    ),
                ));
            }
        }
        Ok(files)
    }

    /// Stores a closed upload and announces it.
    async fn store(&self, name: &str, spool: &Path) -> Result<(), StatusReply> {
        let target = &self.shared.target;
        let key = Self::key(name);
        let failed = |reason: String| {
            tracing::error!(key, reason, "storing an SFTP upload failed");
            refused(
                StatusCode::Failure,
                format!("storing {key} failed: {reason}"),
            )
        };
        let body = ByteStream::from_path(spool)
            .await
            .map_err(|e| failed(e.to_string()))?;
        target
            .s3
            .put_object()
            .bucket(&target.bucket)
            .key(&key)
            .body(body)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        let _ = target.uploaded.send(key);
        Ok(())
    }
}

impl russh_sftp::server::Handler for SftpSession {
    type Error = StatusReply;

    fn unimplemented(&self) -> StatusReply {
        refused(StatusCode::OpUnsupported, ONLY_UPLOADS)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, StatusReply> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusReply> {
        let resolved = match place(&path) {
            Some(p) => p.path(),
            None => {
                return Err(refused(
                    StatusCode::NoSuchFile,
                    format!("no such path: {path}"),
                ));
            }
        };
        Ok(Name {
            id,
            files: vec![File::new(resolved, FileAttributes::empty())],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let attrs = self.stat_place(&path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        self.stat(id, path).await
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusReply> {
        let attrs = match self.handles.get(&handle) {
            Some(OpenHandle::Upload { file, .. }) => {
                let size = file
                    .metadata()
                    .await
                    .map_err(|e| refused(StatusCode::Failure, e.to_string()))?
                    .len();
                file_attrs(size, None)
            }
            Some(OpenHandle::Dir { .. }) => dir_attrs(),
            None => return Err(refused(StatusCode::Failure, "unknown handle")),
        };
        Ok(Attrs { id, attrs })
    }

    async fn setstat(
        &mut self,
        id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        // Modes and times are not kept (an S3 object has none); accepted so that `put -p` works.
        Ok(status(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        Ok(status(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusReply> {
        match place(&path) {
            Some(p @ (Place::Root | Place::Upload)) => Ok(Handle {
                id,
                handle: self.new_handle(OpenHandle::Dir {
                    place: p,
                    listed: false,
                }),
            }),
            Some(Place::File(_)) => Err(refused(
                StatusCode::NoSuchFile,
                format!("not a directory: {path}"),
            )),
            None => Err(refused(
                StatusCode::NoSuchFile,
                format!("no such directory: {path}"),
            )),
        }
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, StatusReply> {
        let dir = match self.handles.get_mut(&handle) {
            Some(OpenHandle::Dir { place, listed }) if !*listed => {
                *listed = true;
                place.clone()
            }
            Some(OpenHandle::Dir { .. }) => return Err(StatusCode::Eof.into()),
            _ => return Err(refused(StatusCode::Failure, "not a directory handle")),
        };
        let mut files = vec![File::new(".", dir_attrs()), File::new("..", dir_attrs())];
        match dir {
            Place::Root => files.push(File::new(UPLOAD_DIR, dir_attrs())),
            _ => files.extend(self.list_uploads().await?),
        }
        Ok(Name { id, files })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, StatusReply> {
        let name = match place(&filename) {
            Some(Place::File(name)) => name,
            Some(_) => {
                return Err(refused(
                    StatusCode::Failure,
                    format!("{filename} is a directory"),
                ));
            }
            None => return Err(refused(StatusCode::PermissionDenied, ONLY_UPLOADS)),
        };
        if pflags.contains(OpenFlags::READ) || !pflags.contains(OpenFlags::WRITE) {
            return Err(refused(
                StatusCode::PermissionDenied,
                "files in this drop can be written, not read",
            ));
        }
        let n = self.shared.spooled.fetch_add(1, Ordering::Relaxed);
        let spool = self
            .shared
            .target
            .spool_dir
            .join(format!("{}-{n}.part", std::process::id()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&spool)
            .await
            .map_err(|e| refused(StatusCode::Failure, format!("spooling {name}: {e}")))?;
        Ok(Handle {
            id,
            handle: self.new_handle(OpenHandle::Upload { name, spool, file }),
        })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, StatusReply> {
        let Some(OpenHandle::Upload { file, name, .. }) = self.handles.get_mut(&handle) else {
            return Err(refused(StatusCode::Failure, "not an upload handle"));
        };
        let written = async {
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            file.write_all(&data).await
        }
        .await;
        written.map_err(|e| refused(StatusCode::Failure, format!("spooling {name}: {e}")))?;
        Ok(status(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, StatusReply> {
        match self.handles.remove(&handle) {
            Some(OpenHandle::Upload {
                name,
                spool,
                mut file,
            }) => {
                let flushed = file.flush().await;
                drop(file);
                let stored = match flushed {
                    Ok(()) => self.store(&name, &spool).await,
                    Err(e) => Err(refused(
                        StatusCode::Failure,
                        format!("spooling {name}: {e}"),
                    )),
                };
                let _ = tokio::fs::remove_file(&spool).await;
                stored.map(|()| status(id))
            }
            Some(OpenHandle::Dir { .. }) => Ok(status(id)),
            None => Err(refused(StatusCode::Failure, "unknown handle")),
        }
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        Err(match place(&path) {
            Some(Place::Root | Place::Upload) => {
                refused(StatusCode::Failure, format!("{path} exists"))
            }
            _ => refused(StatusCode::PermissionDenied, ONLY_UPLOADS),
        })
    }

    async fn remove(&mut self, _id: u32, _filename: String) -> Result<Status, StatusReply> {
        Err(refused(StatusCode::PermissionDenied, ONLY_UPLOADS))
    }

    async fn rename(
        &mut self,
        _id: u32,
        _oldpath: String,
        _newpath: String,
    ) -> Result<Status, StatusReply> {
        Err(refused(StatusCode::PermissionDenied, ONLY_UPLOADS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_tree_only() {
        assert_eq!(place("."), Some(Place::Root));
        assert_eq!(place("/"), Some(Place::Root));
        assert_eq!(place("upload"), Some(Place::Upload));
        assert_eq!(place("/upload/./"), Some(Place::Upload));
        assert_eq!(
            place("upload/cdr_data_20240101_000320.csv"),
            Some(Place::File("cdr_data_20240101_000320.csv".to_owned()))
        );
        assert_eq!(
            place("/upload/../upload/a.csv"),
            Some(Place::File("a.csv".to_owned()))
        );
        assert_eq!(place("/../.."), Some(Place::Root));
        assert_eq!(place("/etc/passwd"), None);
        assert_eq!(place("/upload/a/b.csv"), None);
        assert_eq!(place("a.csv"), None);
    }

    #[test]
    fn the_host_key_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("wtc-sftp-key-{}", std::process::id()));
        let path = dir.join("host_ed25519_key");
        let _ = std::fs::remove_dir_all(&dir);
        let first = host_key(&path).unwrap();
        let again = host_key(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
