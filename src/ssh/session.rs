//! One authenticated russh connection to a host, and running commands over it.
//!
//! A [`Session`] is opened once per host and shared by every step: each command gets its
//! own channel on it. Reading never stops at EOF (the exit status often comes after it),
//! stdin is written while output is drained (so neither side can stall), and a channel
//! that closes without an exit status is a failure.

use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};

use super::command::{Command, Output, tail};
use super::connect::ClientHandler;
use super::error::Error;

/// Which stream a line of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// An open, authenticated connection to one host.
pub struct Session {
    /// The inventory name of the host (used in every message).
    pub host: String,
    /// The login user.
    pub user: String,
    pub(super) handle: Handle<ClientHandler>,
    /// Keeps a bastion's connection open while this one tunnels through it.
    pub(super) _jump: Option<Arc<Session>>,
    /// Whether sudo can be skipped (the login user is root).
    pub login_is_root: bool,
    /// Called with the displayable form of every command before it runs (`-v`).
    pub(super) trace: Option<super::Trace>,
}

impl Session {
    /// Runs a command and returns its output, whatever its exit status.
    pub async fn output(&self, cmd: &Command) -> Result<Output, Error> {
        self.stream(cmd, None, |_, _| {}).await
    }

    /// Like [`Session::output`], with more stdin once `later` yields it (then stdin
    /// closes; nothing more is sent if its sender is dropped), calling `on_line` for every
    /// line as it arrives: a program started ahead of its moment (psql, say) is told what
    /// to do when it comes.
    pub async fn output_with(
        &self,
        cmd: &Command,
        later: Option<tokio::sync::oneshot::Receiver<Vec<u8>>>,
        on_line: impl FnMut(Stream, &str) + Send,
    ) -> Result<Output, Error> {
        self.stream(cmd, later, on_line).await
    }

    /// Runs a command and fails unless it exits 0.
    pub async fn run(&self, cmd: &Command) -> Result<Output, Error> {
        let out = self.output(cmd).await?;
        self.check(cmd, out)
    }

    /// Like [`Session::run`], calling `on_line` for every line (split at `\n` or `\r`) as it arrives.
    pub async fn run_streaming(
        &self,
        cmd: &Command,
        on_line: impl FnMut(Stream, &str) + Send,
    ) -> Result<Output, Error> {
        let out = self.stream(cmd, None, on_line).await?;
        self.check(cmd, out)
    }

    fn check(&self, cmd: &Command, out: Output) -> Result<Output, Error> {
        if out.success() {
            return Ok(out);
        }
        if out.stderr.contains("sudo: a password is required")
            || out.stderr.contains("sudo: a terminal is required")
        {
            return Err(Error::SudoNeedsPassword {
                host: self.host.clone(),
                user: self.user.clone(),
            });
        }
        Err(Error::CommandFailed {
            host: self.host.clone(),
            command: cmd.display(self.login_is_root),
            status: out.status,
            stderr: tail(&out.stderr, 6),
            stdout: tail(&out.stdout, 3),
        })
    }

    async fn stream(
        &self,
        cmd: &Command,
        later: Option<tokio::sync::oneshot::Receiver<Vec<u8>>>,
        on_line: impl FnMut(Stream, &str) + Send,
    ) -> Result<Output, Error> {
        let display = cmd.display(self.login_is_root);
        if let Some(trace) = &self.trace {
            trace(&self.host, &display);
        }
        let work = self.exchange(cmd, later, on_line);
        match cmd.timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .map_err(|_| Error::Timeout {
                    host: self.host.clone(),
                    command: display.clone(),
                    after: limit,
                })?,
            None => work.await,
        }
    }

    async fn exchange(
        &self,
        cmd: &Command,
        later: Option<tokio::sync::oneshot::Receiver<Vec<u8>>>,
        mut on_line: impl FnMut(Stream, &str) + Send,
    ) -> Result<Output, Error> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.protocol(e))?;
        channel
            .exec(true, cmd.render(self.login_is_root))
            .await
            .map_err(|e| self.protocol(e))?;
        let (mut reader, writer) = channel.split();
        let stdin = cmd.stdin_bytes();
        let waits_for_more = later.is_some();
        let feed = async move {
            if let Some(bytes) = stdin {
                writer.data_bytes(bytes).await?;
            }
            if let Some(later) = later
                && let Ok(bytes) = later.await
            {
                writer.data_bytes(bytes).await?;
            }
            writer.eof().await?;
            Ok::<_, russh::Error>(writer)
        };
        let feeder = tokio::spawn(feed);
        let mut stdout = LineSplitter::default();
        let mut stderr = LineSplitter::default();
        let mut status = None;
        loop {
            let next = match cmd.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, reader.wait())
                    .await
                    .map_err(|_| Error::Stalled {
                        host: self.host.clone(),
                        command: cmd.display(self.login_is_root),
                        after: idle,
                    })?,
                None => reader.wait().await,
            };
            let Some(msg) = next else { break };
            match msg {
                ChannelMsg::Data { data } => {
                    stdout.push(&data, |l| on_line(Stream::Stdout, l));
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    stderr.push(&data, |l| on_line(Stream::Stderr, l));
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    stderr.push(
                        format!("\nkilled by signal {signal_name:?}\n").as_bytes(),
                        |_| {},
                    );
                    status = Some(128 + 9);
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        // The writer half must outlive the read loop, or the channel would be dropped early.
        // A command that ended before its later stdin came needs none.
        if waits_for_more {
            feeder.abort();
        }
        let _writer = feeder.await;
        stdout.finish(|l| on_line(Stream::Stdout, l));
        stderr.finish(|l| on_line(Stream::Stderr, l));
        match status {
            Some(status) => Ok(Output {
                status,
                stdout: stdout.into_text(),
                stderr: stderr.into_text(),
            }),
            None => Err(Error::NoExitStatus {
                host: self.host.clone(),
                command: cmd.display(self.login_is_root),
            }),
        }
    }

    fn protocol(&self, source: russh::Error) -> Error {
        Error::Protocol {
            host: self.host.clone(),
            source,
        }
    }

    /// Opens a TCP tunnel from this host to `address:port` (for ProxyJump).
    pub(super) async fn tunnel(
        &self,
        address: &str,
        port: u16,
    ) -> Result<russh::ChannelStream<client::Msg>, Error> {
        let channel = self
            .handle
            .channel_open_direct_tcpip(address, port.into(), "127.0.0.1", 0)
            .await
            .map_err(|e| self.protocol(e))?;
        Ok(channel.into_stream())
    }

    /// Sends a keepalive and reports whether the connection still answers.
    pub async fn is_alive(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(5), self.handle.send_keepalive(true))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Collects a stream's bytes and hands out complete lines as they arrive.
#[derive(Default)]
struct LineSplitter {
    all: Vec<u8>,
    pending: Vec<u8>,
}

impl LineSplitter {
    fn push(&mut self, data: &[u8], mut emit: impl FnMut(&str)) {
        self.all.extend_from_slice(data);
        for &b in data {
            if b == b'\n' || b == b'\r' {
                if !self.pending.is_empty() {
                    emit(&String::from_utf8_lossy(&self.pending));
                    self.pending.clear();
                }
            } else {
                self.pending.push(b);
            }
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            emit(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }

    fn into_text(self) -> String {
        String::from_utf8_lossy(&self.all).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::LineSplitter;

    #[test]
    fn lines_split_on_newline_and_carriage_return_across_chunks() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        s.push(b"10/100 kB\r20/10", |l| lines.push(l.to_string()));
        s.push(b"0 kB\nend", |l| lines.push(l.to_string()));
        s.finish(|l| lines.push(l.to_string()));
        assert_eq!(lines, ["10/100 kB", "20/100 kB", "end"]);
        assert_eq!(s.into_text(), "10/100 kB\r20/100 kB\nend");
    }
}
