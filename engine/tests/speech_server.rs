//! The local speech server supervisor against a fake server: a small Python
//! HTTP server that answers `/health`, exits on `/exit`, and records SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard_config::SpeechSettings;
use switchboard_engine::speech::{self, SpeechServer};

/// Generous upper bounds that only stop a broken test from hanging; nothing
/// asserts on how fast things happen.
const READY_WAIT: Duration = Duration::from_secs(30);

const FAKE_SERVER: &str = r#"
import os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
host = args[args.index("--host") + 1]
port = int(args[args.index("--port") + 1])
marker_dir = os.environ.get("FAKE_MARKERS") or sys.argv[1]

with open(os.path.join(marker_dir, "started-%d" % os.getpid()), "w") as f:
    f.write(" ".join(args))

def on_term(signum, frame):
    open(os.path.join(marker_dir, "sigterm-%d" % os.getpid()), "w").close()
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/exit":
            self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
            self.wfile.flush()
            os._exit(3)
        body = b'{"status":"ok"}' if self.path == "/health" else b"no"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

HTTPServer.allow_reuse_address = True
srv = HTTPServer((host, port), H)
print("fake speech server listening on http://%s:%d" % (host, port), flush=True)
srv.serve_forever()
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn settings(command: String, port: u16) -> SpeechSettings {
    SpeechSettings {
        base_url: format!("http://127.0.0.1:{port}"),
        autostart: true,
        command,
        tts_sample_rate: 22_050,
    }
}

fn fake_command(dir: &Path) -> String {
    let script = dir.join("fake_speech.py");
    std::fs::write(&script, FAKE_SERVER).expect("write fake server");
    // The marker directory is the script's first argument; --host/--port follow.
    format!("python3 {} {}", script.display(), dir.display())
}

fn markers(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

async fn get(port: u16, path: &str) -> Result<reqwest::StatusCode, reqwest::Error> {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_server_starts_restarts_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let handle = SpeechServer::start(&settings(fake_command(dir.path()), port)).expect("started");
    assert_eq!(handle.base_url(), format!("http://127.0.0.1:{port}"));

    // Started with --host/--port from base_url, and ready.
    handle.ready(READY_WAIT).await.expect("ready");
    assert_eq!(handle.starts(), 1);
    let started = markers(dir.path(), "started-");
    assert_eq!(started.len(), 1);
    let args = std::fs::read_to_string(&started[0]).expect("args");
    assert!(args.ends_with(&format!("--host 127.0.0.1 --port {port}")), "{args}");
    let first_pid = handle.pid().expect("running");

    // It dies; the supervisor starts a new one.
    let _ = get(port, "/exit").await;
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    while handle.starts() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.ready(READY_WAIT).await.expect("ready again after the restart");
    let second_pid = handle.pid().expect("running again");
    assert_ne!(first_pid, second_pid);
    assert_eq!(markers(dir.path(), "started-").len(), 2);

    // Shutdown sends SIGTERM to the live child and waits for it.
    handle.shutdown().await;
    let termed = markers(dir.path(), "sigterm-");
    assert_eq!(termed, vec![dir.path().join(format!("sigterm-{second_pid}"))]);
    assert!(get(port, "/health").await.is_err(), "nothing listens after shutdown");
    assert!(
        !Path::new(&format!("/proc/{second_pid}")).exists(),
        "the child was reaped"
    );
}

#[tokio::test]
async fn missing_command_or_autostart_off_starts_nothing() {
    let port = free_port();
    assert!(SpeechServer::start(&settings("/no/such/speech-server --flag".to_owned(), port)).is_none());

    let mut off = settings("python3 -c pass".to_owned(), port);
    off.autostart = false;
    assert!(SpeechServer::start(&off).is_none());

    let bad_url = SpeechSettings {
        base_url: "ftp://127.0.0.1:1".to_owned(),
        ..settings("python3 -c pass".to_owned(), port)
    };
    assert!(SpeechServer::start(&bad_url).is_none());
}

#[tokio::test]
async fn ready_times_out_when_health_never_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // A command that runs but never serves HTTP.
    let script = dir.path().join("silent.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let handle = SpeechServer::start(&settings(script.display().to_string(), port)).expect("started");
    let err = handle.ready(Duration::from_millis(300)).await.expect_err("never ready");
    assert!(matches!(err, speech::SpeechServerError::NotReady { .. }), "{err}");
    assert_eq!(
        handle.starts(),
        1,
        "the silent server keeps running; it is not restarted"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let handle = SpeechServer::start(&settings(fake_command(dir.path()), port)).expect("started");
    handle.ready(READY_WAIT).await.expect("ready");
    let pid = handle.pid().expect("running");
    drop(handle);
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    while markers(dir.path(), "sigterm-").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "child {pid} was not stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_server_becomes_ready_and_stops() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("speech/.venv/bin/python");
    assert!(
        python.exists(),
        "the local speech server is not installed: {} is missing. Run scripts/install-speech first.",
        python.display()
    );
    let port = free_port();
    let command = format!("{} {}", python.display(), root.join("speech/server.py").display());
    let handle = SpeechServer::start(&settings(command, port)).expect("started");
    handle
        .ready(Duration::from_secs(120))
        .await
        .expect("the real server answers /health");
    let pid = handle.pid().expect("running");
    handle.shutdown().await;
    assert!(get(port, "/health").await.is_err(), "nothing listens after shutdown");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the child was reaped");
}
