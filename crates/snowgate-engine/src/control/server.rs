//! The broker's side of the control socket: bind safely, check every peer, answer requests.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::confirm::ConfirmGate;
use super::protocol::{ControlError, ErrorKind, Request, Response};
use crate::paths::Env;

/// The longest request line accepted; requests are small, so anything longer is a mistake.
const MAX_LINE: usize = 64 * 1024;

/// Answers control requests. The broker implements it; tests can too.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, ControlError>> + Send;
}

/// The socket's default path: `$XDG_RUNTIME_DIR/snowgate/control.sock`, overridable with
/// `$SNOWGATE_CONTROL_SOCKET`.
pub fn default_socket_path(env: &dyn Env) -> Result<PathBuf, String> {
    if let Some(path) = env.var("SNOWGATE_CONTROL_SOCKET") {
        return Ok(PathBuf::from(path));
    }
    match env.var("XDG_RUNTIME_DIR") {
        Some(dir) => Ok(PathBuf::from(dir).join("snowgate/control.sock")),
        None => Err(
            "$XDG_RUNTIME_DIR is not set, so there is no private place for the control socket; \
             log in through a session that sets it, or set $SNOWGATE_CONTROL_SOCKET"
                .into(),
        ),
    }
}

/// A bound control socket.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

impl ControlServer {
    /// Binds the socket at `path`. Its directory is created with mode 0700, or must already be
    /// owned by this user and closed to others. A live broker on the path is an error; a stale
    /// socket file left by a crash is replaced.
    pub async fn bind(path: &Path) -> io::Result<ControlServer> {
        let dir = path.parent().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket path has no directory",
            )
        })?;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let meta = std::fs::metadata(dir)?;
        if meta.uid() != my_uid() || meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} must be owned by you and closed to others (mode 0700) to hold the control socket",
                    dir.display()
                ),
            ));
        }
        if path.exists() {
            match UnixStream::connect(path).await {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "a Snowgate broker is already running for this user (control socket {}); stop it first or use it",
                            path.display()
                        ),
                    ))
                }
                Err(_) => std::fs::remove_file(path)?,
            }
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until the future is dropped. Each connection runs on its own task.
    pub async fn serve<H: Handler>(self, handler: Arc<H>) {
        self.serve_gated(handler, None).await
    }

    /// Like [`ControlServer::serve`], with the requests that hand out a secret first passed
    /// through `gate` (the person's confirmation in the tray), when there is one.
    pub async fn serve_gated<H: Handler>(self, handler: Arc<H>, gate: Option<Arc<ConfirmGate>>) {
        let uid = my_uid();
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let handler = handler.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(stream, handler, gate, uid).await {
                    tracing::debug!(error = %e, "control connection ended with an error");
                }
            });
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn write_response(
    stream: &mut (impl AsyncWriteExt + Unpin),
    response: &Response,
) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).expect("responses serialize");
    line.push(b'\n');
    stream.write_all(&line).await
}

async fn serve_connection<H: Handler>(
    stream: UnixStream,
    handler: Arc<H>,
    gate: Option<Arc<ConfirmGate>>,
    uid: u32,
) -> io::Result<()> {
    let peer = stream.peer_cred()?;
    let pid = peer.pid().and_then(|p| u32::try_from(p).ok());
    let (read, mut write) = stream.into_split();
    if peer.uid() != uid {
        tracing::warn!(
            peer_uid = peer.uid(),
            "refused a control connection from another OS user"
        );
        let refusal = Response::Error(ControlError::new(
            ErrorKind::Forbidden,
            format!(
                "this Snowgate broker belongs to another OS user (uid {uid}); each user runs their own broker"
            ),
        ));
        return write_response(&mut write, &refusal).await;
    }
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            let err = ControlError::new(ErrorKind::BadRequest, "request line is too long");
            return write_response(&mut write, &Response::Error(err)).await;
        }
        let response = match serde_json::from_slice::<Request>(&line) {
            Ok(request) => {
                let allowed = match &gate {
                    Some(gate) => gate.check(&request, pid).await,
                    None => Ok(()),
                };
                match allowed {
                    Ok(()) => match handler.handle(request).await {
                        Ok(value) => Response::Ok(value),
                        Err(e) => Response::Error(e),
                    },
                    Err(e) => Response::Error(e),
                }
            }
            Err(e) => Response::Error(ControlError::new(
                ErrorKind::BadRequest,
                format!("not a control request: {e}; is the CLI the same version as the broker?"),
            )),
        };
        write_response(&mut write, &response).await?;
    }
}
