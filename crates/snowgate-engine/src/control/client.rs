//! The CLI's side of the control socket.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::protocol::{ControlError, ErrorKind, Request, Response};

/// Why the client could not reach a broker.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no Snowgate broker is running (nothing listens on {}); start one with `snowgate up` or the Snowgate tray app", path.display())]
    NotRunning { path: PathBuf },
    #[error("can't open the control socket {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A connection to the broker.
pub struct ControlClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl ControlClient {
    /// Connects to the broker's socket at `path`.
    pub async fn connect(path: &Path) -> Result<ControlClient, ConnectError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ConnectError::NotRunning {
                        path: path.to_path_buf(),
                    }
                }
                _ => ConnectError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let (read, writer) = stream.into_split();
        Ok(ControlClient {
            reader: BufReader::new(read),
            writer,
        })
    }

    /// Sends one request and reads its answer as `T`, the type written on the request's
    /// [`Request`] variant (see [`super::answers`]).
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<T, ControlError> {
        let value = self.call(request).await?;
        serde_json::from_value(value).map_err(|e| {
            ControlError::new(
                ErrorKind::Internal,
                format!("the broker's answer to {} can't be read ({e}); are the CLI and the broker the same version?", request.method()),
            )
        })
    }

    /// Sends one request and waits for its answer, as JSON.
    pub async fn call(&mut self, request: &Request) -> Result<serde_json::Value, ControlError> {
        let broken = |e: io::Error| {
            ControlError::new(
                ErrorKind::Unavailable,
                format!("the broker closed the control connection: {e}"),
            )
        };
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        // A broker that refuses the connection (another OS user) answers and closes at once,
        // so the write may fail after the refusal is already waiting to be read.
        let written = self.writer.write_all(&line).await;
        let mut answer = String::new();
        let n = match self.reader.read_line(&mut answer).await {
            Ok(n) => n,
            Err(e) => return Err(broken(written.err().unwrap_or(e))),
        };
        if n == 0 {
            return Err(broken(
                written
                    .err()
                    .unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into()),
            ));
        }
        match serde_json::from_str::<Response>(&answer) {
            Ok(Response::Ok(value)) => Ok(value),
            Ok(Response::Error(e)) => Err(e),
            Err(e) => Err(ControlError::new(
                ErrorKind::Internal,
                format!("the broker sent an answer this CLI can't read ({e}); are both the same version?"),
            )),
        }
    }
}
