//! The bundled local speech server (`speech/server.py`: Whisper tiny.en +
//! espeak-ng behind OpenAI's speech API) as a supervised child process.
//!
//! Guarantees:
//! - [`SpeechServer::start`] never fails the engine: with `speech.autostart`
//!   off it returns `None` with an info line; when the command is not
//!   installed it returns `None` with exactly one warn line naming
//!   `scripts/install-speech`.
//! - The child gets `--host`/`--port` from `speech.base_url`; its stdout and
//!   stderr become tracing lines with target `speech`.
//! - When the child exits it is logged with its exit status and restarted
//!   after a backoff of 1 s doubling to 30 s; a run of 60 s or more resets the
//!   backoff.
//! - [`SpeechServerHandle::shutdown`] (and dropping the handle) sends SIGTERM,
//!   waits up to 10 s, then kills; no child outlives the handle's task.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use switchboard_config::SpeechSettings;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// The bundled server, relative to the working directory.
const DEFAULT_PROGRAM: &str = "speech/.venv/bin/python";
const DEFAULT_SCRIPT: &str = "speech/server.py";
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run at least this long counts as healthy and resets the backoff.
const STABLE_UPTIME: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd child may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
const HEALTH_POLL: Duration = Duration::from_millis(100);
const HEALTH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the local speech server is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SpeechServerError {
    /// `GET /health` did not answer 200 within the wait.
    #[error("local speech server at {url} not ready after {waited:?}")]
    NotReady { url: String, waited: Duration },
    /// `speech.base_url` has no usable host and port.
    #[error("speech.base_url {0:?} is not an http://host:port URL")]
    BadBaseUrl(String),
}

/// Starts the local speech server; see the module docs.
#[derive(Debug)]
pub struct SpeechServer;

impl SpeechServer {
    /// Spawns and supervises the server described by `settings`, or returns
    /// `None` (logged) when it is disabled, misconfigured or not installed.
    /// Must be called inside a tokio runtime.
    pub fn start(settings: &SpeechSettings) -> Option<SpeechServerHandle> {
        if !settings.autostart {
            info!(target: "speech", "local speech server autostart is off (speech.autostart = false)");
            return None;
        }
        let (host, port) = match host_port(&settings.base_url) {
            Ok(hp) => hp,
            Err(e) => {
                warn!(target: "speech", error = %e, "local speech server not started");
                return None;
            }
        };
        let Some((program, mut args)) = resolve_command(&settings.command) else {
            warn!(
                target: "speech",
                command = %display_command(&settings.command),
                "local speech server is not installed (run scripts/install-speech); agents using the local provider will fail"
            );
            return None;
        };
        args.extend(["--host".to_owned(), host.clone(), "--port".to_owned(), port.to_string()]);
        let (stop_tx, stop_rx) = watch::channel(false);
        let starts = Arc::new(AtomicU32::new(0));
        let (pid_tx, pid_rx) = watch::channel(None);
        let supervisor = Supervisor {
            program,
            args,
            starts: starts.clone(),
            pid: pid_tx,
        };
        info!(target: "speech", url = %settings.base_url, "starting local speech server");
        let task = tokio::spawn(supervisor.run(stop_rx));
        Some(SpeechServerHandle {
            base_url: settings.base_url.clone(),
            host,
            port,
            starts,
            pid: pid_rx,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A running, supervised local speech server. Dropping it stops the server
/// (in the background); prefer [`shutdown`](Self::shutdown) to wait for it.
#[derive(Debug)]
pub struct SpeechServerHandle {
    base_url: String,
    host: String,
    port: u16,
    starts: Arc<AtomicU32>,
    pid: watch::Receiver<Option<u32>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SpeechServerHandle {
    /// The server's base URL (`speech.base_url`, without `/v1`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How many times the child has been spawned (1 + restarts).
    pub fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }

    /// The current child's process ID, while one is running.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }

    /// Waits until `GET {base_url}/health` answers 200, polling every 100 ms,
    /// for at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), SpeechServerError> {
        self.ready_probe().wait(timeout).await
    }

    /// A readiness check that does not borrow the handle (to wait in a task).
    pub fn ready_probe(&self) -> ReadyProbe {
        ReadyProbe {
            base_url: self.base_url.clone(),
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// Stops supervising, sends the child SIGTERM, and waits until it has
    /// exited (killed after 10 s if it ignores the signal).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            warn!(target: "speech", error = %e, "speech server supervisor ended abnormally");
        }
    }
}

/// See [`SpeechServerHandle::ready_probe`].
#[derive(Debug, Clone)]
pub struct ReadyProbe {
    base_url: String,
    host: String,
    port: u16,
}

impl ReadyProbe {
    /// Waits until the server's health check answers 200, for at most `timeout`.
    pub async fn wait(&self, timeout: Duration) -> Result<(), SpeechServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if health_ok(&self.host, self.port).await {
                return Ok(());
            }
            if Instant::now() + HEALTH_POLL > deadline {
                return Err(SpeechServerError::NotReady {
                    url: self.base_url.clone(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }
}

impl Drop for SpeechServerHandle {
    fn drop(&mut self) {
        // The supervisor sees the signal (or the closed channel) and stops the child.
        let _ = self.stop.send(true);
    }
}

/// Restarts the child until told to stop.
struct Supervisor {
    program: PathBuf,
    args: Vec<String>,
    starts: Arc<AtomicU32>,
    pid: watch::Sender<Option<u32>>,
}

impl Supervisor {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if *stop.borrow() {
                return;
            }
            let started = Instant::now();
            match self.spawn() {
                Ok(mut child) => {
                    let attempt = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
                    let pid = child.id();
                    let _ = self.pid.send(pid);
                    info!(target: "speech", pid, attempt, "local speech server process started");
                    tokio::select! {
                        status = child.wait() => {
                            let _ = self.pid.send(None);
                            let uptime = started.elapsed();
                            log_exit(status, uptime);
                            if uptime >= STABLE_UPTIME {
                                backoff = FIRST_BACKOFF;
                            }
                        }
                        _ = stopped(&mut stop) => {
                            terminate(&mut child).await;
                            let _ = self.pid.send(None);
                            return;
                        }
                    }
                }
                Err(e) => {
                    warn!(target: "speech", program = %self.program.display(), error = %e, "cannot start local speech server");
                }
            }
            warn!(target: "speech", retry_in = ?backoff, "restarting local speech server");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, "stdout"));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, "stderr"));
        }
        Ok(child)
    }
}

/// Resolves once a stop was requested or the handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender (the handle) was dropped: stop as well.
    let _ = stop.wait_for(|&s| s).await;
}

fn log_exit(status: std::io::Result<ExitStatus>, uptime: Duration) {
    match status {
        Ok(status) => warn!(target: "speech", %status, uptime_secs = uptime.as_secs(), "local speech server exited"),
        Err(e) => warn!(target: "speech", error = %e, "lost track of the local speech server process"),
    }
}

/// SIGTERM, a grace period, then SIGKILL.
async fn terminate(child: &mut Child) {
    let Some(pid) = child.id() else {
        return;
    };
    // The engine does not link libc directly; `kill` (procps / util-linux) is on
    // every system that can run the Python server.
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if sent {
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(Ok(status)) => {
                info!(target: "speech", pid, %status, "local speech server stopped");
                return;
            }
            Ok(Err(e)) => warn!(target: "speech", pid, error = %e, "waiting for the local speech server failed"),
            Err(_) => warn!(target: "speech", pid, "local speech server ignored SIGTERM; killing it"),
        }
    }
    if let Err(e) = child.kill().await {
        warn!(target: "speech", pid, error = %e, "cannot kill the local speech server");
    } else {
        info!(target: "speech", pid, "local speech server killed");
    }
}

async fn forward_lines(pipe: impl AsyncRead + Unpin, stream: &'static str) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains(" ERROR ") || line.starts_with("Traceback") {
            warn!(target: "speech", stream, "{line}");
        } else {
            info!(target: "speech", stream, "{line}");
        }
    }
}

/// Program and arguments: `command` split on whitespace, or the bundled
/// default. `None` when the program (or the bundled script) does not exist.
/// Where the bundled server lives: the working directory when it holds
/// `speech/server.py`, else the checkout the binary was built in
/// (`<repo>/target/{release,debug}/switchboard`).
fn bundled_root() -> Option<PathBuf> {
    if Path::new(DEFAULT_SCRIPT).is_file() {
        return Some(PathBuf::new());
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(4)
        .find(|dir| dir.join(DEFAULT_SCRIPT).is_file())
        .map(Path::to_path_buf)
}

fn resolve_command(command: &str) -> Option<(PathBuf, Vec<String>)> {
    let mut words = command.split_whitespace().map(str::to_owned);
    let (program, args) = match words.next() {
        Some(program) => (PathBuf::from(program), words.collect()),
        None => {
            let root = bundled_root()?;
            (
                root.join(DEFAULT_PROGRAM),
                vec![root.join(DEFAULT_SCRIPT).display().to_string()],
            )
        }
    };
    let found = if program.components().count() > 1 || program.is_absolute() {
        program.is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&program).is_file()))
    };
    found.then_some((program, args))
}

fn display_command(command: &str) -> String {
    if command.trim().is_empty() {
        format!("{DEFAULT_PROGRAM} {DEFAULT_SCRIPT}")
    } else {
        command.trim().to_owned()
    }
}

/// Host and port of an `http://host[:port][/path]` URL (`[v6]` hosts too).
fn host_port(base_url: &str) -> Result<(String, u16), SpeechServerError> {
    let bad = || SpeechServerError::BadBaseUrl(base_url.to_owned());
    let rest = base_url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains('@') {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => 80,
    };
    Ok((host.to_owned(), port))
}

/// One `GET /health` over plain HTTP/1.1; true on a 200.
async fn health_ok(host: &str, port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((host, port)).await.ok()?;
        let host_header = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let request = format!("GET /health HTTP/1.1\r\nHost: {host_header}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let mut read = 0;
        while read < head.len() {
            let n = stream.read(&mut head[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let status_line = std::str::from_utf8(&head[..read]).ok()?;
        let mut parts = status_line.split_whitespace();
        let version = parts.next()?;
        let code = parts.next()?;
        Some(version.starts_with("HTTP/1.") && code == "200")
    };
    matches!(
        tokio::time::timeout(HEALTH_ATTEMPT_TIMEOUT, attempt).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_the_base_url() {
        assert_eq!(
            host_port("http://127.0.0.1:8790").unwrap(),
            ("127.0.0.1".to_owned(), 8790)
        );
        assert_eq!(host_port("http://localhost:9/v1").unwrap(), ("localhost".to_owned(), 9));
        assert_eq!(host_port("http://speech").unwrap(), ("speech".to_owned(), 80));
        assert_eq!(host_port("http://[::1]:8790/").unwrap(), ("::1".to_owned(), 8790));
        for bad in [
            "https://x:1",
            "127.0.0.1:8790",
            "http://:80",
            "http://h:port",
            "http://u@h:1",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_resolve_on_path_or_by_file() {
        let (program, args) = resolve_command("sh -c true").expect("sh is on PATH");
        assert_eq!(program, PathBuf::from("sh"));
        assert_eq!(args, vec!["-c", "true"]);
        assert!(resolve_command("/no/such/program --flag").is_none());
        assert!(resolve_command("no-such-program-on-path-xyz").is_none());
    }
}
