//! Tests of the built `switchboard` binary: subcommands, exit codes, config
//! layering from the real environment, and SIGTERM handling.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard_testkit::{postgres_url_for_test, redis_prefix_for_test, redis_url};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Upper bound for start-up and shutdown waits; a safety net against hangs, not a performance check.
const PATIENCE: Duration = Duration::from_secs(60);

/// The binary with a clean environment: no inherited `SWITCHBOARD*` or
/// `RUST_LOG` variable can change what a test means.
fn switchboard(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd);
    for (name, _) in std::env::vars() {
        if name.starts_with("SWITCHBOARD") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run switchboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `switchboard serve` whose stderr is collected line by line.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    startup_line: String,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            lines,
            seen: Vec::new(),
            startup_line: String::new(),
        };
        let line = server.wait_for_line("listening on http://");
        // Works for both log formats: the address follows the marker up to the first non-address character.
        let start = line
            .find("listening on http://")
            .map_or(0, |i| i + "listening on http://".len());
        let addr: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':'))
            .collect();
        server.addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("no address in startup line: {line}"));
        server.startup_line = line;
        server
    }

    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no line containing {needle:?}; stderr so far:\n{}",
            self.seen.join("\n")
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Send SIGTERM and wait for the exit; returns the exit code and all stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        let code = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break status.code(),
                None if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!("no exit after SIGTERM; stderr:\n{}", self.seen.join("\n"));
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        // The reader thread forwards stderr until EOF: wait for it, so the
        // last lines written before exit are not missed. (A grandchild that
        // kept the pipe open would only delay this by the timeout.)
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (code, self.seen.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn serve_with_no_config_is_ready_and_exits_0_on_sigterm() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut cmd = switchboard(cwd.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let server = Server::start(cmd);
    let (status, body) = get_json(&server.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bus"], "in-process");
    // The embedded defaults put everything under ./data.
    assert!(cwd.path().join("data/switchboard.db").is_file());
    assert!(cwd.path().join("data/secrets/jwt.secret").is_file());

    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains("received SIGTERM"), "{stderr}");
    assert!(stderr.contains("shutdown complete"), "{stderr}");
}

#[tokio::test]
async fn serve_on_postgres_and_redis_reports_redis_bus() {
    let database = postgres_url_for_test().await.expect("fresh PostgreSQL database");
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut cmd = switchboard(cwd.path());
    cmd.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        &database.url,
        "--redis-url",
        &redis_url(),
    ])
    .env("SWITCHBOARD__REDIS__KEY_PREFIX", redis_prefix_for_test());
    let server = Server::start(cmd);
    let (status, body) = get_json(&server.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bus"], "redis");
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("postgres"),
        "startup log should name the backend:\n{stderr}"
    );
    assert!(
        !cwd.path().join("data/switchboard.db").exists(),
        "SQLite used despite --database-url"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_credentials() {
    let database = postgres_url_for_test().await.expect("fresh PostgreSQL database");
    // Give the URL a password if it has none (trust auth ignores it), so there is one to leak.
    let (scheme, rest) = database.url.split_once("://").expect("URL");
    let (userinfo, host) = rest.split_once('@').expect("test URL names a user");
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user.to_owned(), password.to_owned()),
        None => (userinfo.to_owned(), "pg-pass-not-logged".to_owned()),
    };
    let with_password = format!("{scheme}://{user}:{password}@{host}");
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut cmd = switchboard(cwd.path());
    cmd.args(["serve", "--log-format", "json", "--bind", "127.0.0.1:0"])
        .env("SWITCHBOARD__DATABASE__URL", &with_password);
    let server = Server::start(cmd);
    let startup: serde_json::Value = serde_json::from_str(&server.startup_line).expect("startup line is JSON");
    assert_eq!(startup["addr"], server.addr.to_string());
    assert_eq!(startup["database"], "postgres");
    assert_eq!(startup["bus"], "in-process");
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    for line in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(
        startup["database_url"].as_str().is_some_and(|u| u.contains(":***@")),
        "{startup}"
    );
    assert!(!stderr.contains(&format!(":{password}@")), "{stderr}");
}

#[test]
fn config_prints_layers_and_redacts_secrets_from_env() {
    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        cwd.path().join("switchboard.toml"),
        "[http]\nbind = \"127.0.0.1:7001\"\n",
    )
    .expect("write toml");
    let secret = "env-jwt-secret-value-that-must-not-print-0123456789";
    let out = run(switchboard(cwd.path())
        .args([
            "config",
            "--public-base-url",
            "https://voice.example.com/",
            "--data-dir",
            "custom-data",
        ])
        .env("SWITCHBOARD__SECURITY__JWT_SECRET", secret)
        .env("SWITCHBOARD__LIMITS__CALL_MAILBOX", "9"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !stdout.contains(secret) && !text(&out.stderr).contains(secret),
        "{stdout}"
    );
    assert!(stdout.contains("jwt_secret = \"[REDACTED]\""), "{stdout}");
    assert!(
        stdout.contains("bind = \"127.0.0.1:7001\""),
        "./switchboard.toml not read:\n{stdout}"
    );
    assert!(stdout.contains("call_mailbox = 9"), "{stdout}");
    assert!(stdout.contains("data_dir = \"custom-data\""), "{stdout}");
    assert!(
        stdout.contains("public_base_url = \"https://voice.example.com\""),
        "{stdout}"
    );
}

#[test]
fn invalid_config_exits_2_naming_every_bad_key() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = run(switchboard(cwd.path())
        .args(["serve", "--database-url", "mysql://root:hunter2@db/x"])
        .env("SWITCHBOARD__HTTP__BIND", "not-an-address"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("http.bind") && stderr.contains("database.url"),
        "{stderr}"
    );
    assert!(stderr.contains("env SWITCHBOARD__HTTP__BIND"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!cwd.path().join("data").exists(), "started despite bad config");
}

#[test]
fn missing_config_file_and_unknown_key_exit_2() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = run(switchboard(cwd.path()).args(["config", "--config", "nope.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope.toml"), "{}", text(&out.stderr));

    let out = run(switchboard(cwd.path())
        .arg("config")
        .env("SWITCHBOARD__HTTP__PORT", "80"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("http.port"), "{}", text(&out.stderr));
}

#[test]
fn invalid_log_filter_exits_2() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = run(switchboard(cwd.path()).args(["migrate", "--log-filter", "info,[="]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("log.filter"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn admin_create_user_then_login_over_http() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let password = "owner-password-long-enough";
    let out = run(switchboard(cwd.path())
        .args([
            "admin",
            "create-user",
            "--email",
            "Owner@Acme.test",
            "--role",
            "owner",
            "--tenant",
            "Acme Dental",
        ])
        .env("SWITCHBOARD_ADMIN_PASSWORD", password));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let user_id = text(&out.stdout).trim().to_owned();
    assert!(uuid_like(&user_id), "stdout should be the user id: {user_id:?}");
    assert!(!text(&out.stderr).contains(password));

    // A second user in the same tenant reuses it rather than failing.
    let out = run(switchboard(cwd.path()).args([
        "admin",
        "create-user",
        "--email",
        "agent@acme.test",
        "--password",
        "agent-password-long",
        "--role",
        "agent",
        "--tenant",
        "Acme Dental",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut cmd = switchboard(cwd.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let server = Server::start(cmd);
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": "owner@acme.test", "password": password }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["user"]["id"], user_id.as_str());
    assert_eq!(body["user"]["role"], "owner");
    let tenants_seen = body["user"]["tenant_id"].as_str().map(str::to_owned);
    assert!(tenants_seen.is_some());
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn admin_create_user_rejects_inconsistent_tenant_use() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = run(switchboard(cwd.path())
        .args([
            "admin",
            "create-user",
            "--email",
            "root@x.test",
            "--role",
            "system_admin",
            "--tenant",
            "Acme",
        ])
        .env("SWITCHBOARD_ADMIN_PASSWORD", "root-password-long"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--tenant"), "{}", text(&out.stderr));

    let out = run(switchboard(cwd.path())
        .args(["admin", "create-user", "--email", "a@x.test", "--role", "admin"])
        .env("SWITCHBOARD_ADMIN_PASSWORD", "admin-password-long"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = run(switchboard(cwd.path())
        .args([
            "admin",
            "create-user",
            "--email",
            "root@x.test",
            "--role",
            "system_admin",
        ])
        .env("SWITCHBOARD_ADMIN_PASSWORD", "root-password-long"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The same email again is a conflict: a runtime failure, exit 1.
    let out = run(switchboard(cwd.path())
        .args([
            "admin",
            "create-user",
            "--email",
            "ROOT@x.test",
            "--role",
            "system_admin",
        ])
        .env("SWITCHBOARD_ADMIN_PASSWORD", "root-password-long"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn admin_create_user_needs_a_password() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out =
        run(switchboard(cwd.path()).args(["admin", "create-user", "--email", "r@x.test", "--role", "system_admin"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--password"), "{}", text(&out.stderr));
}

#[test]
fn migrate_on_sqlite_is_idempotent() {
    let cwd = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let out = run(switchboard(cwd.path()).arg("migrate"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("migrations applied (sqlite"),
            "{}",
            text(&out.stdout)
        );
    }
    assert!(cwd.path().join("data/switchboard.db").is_file());
    assert!(
        !cwd.path().join("data/secrets").exists(),
        "migrate should not generate secrets"
    );
}

#[tokio::test]
async fn migrate_on_postgres() {
    let database = postgres_url_for_test().await.expect("fresh PostgreSQL database");
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = run(switchboard(cwd.path())
        .arg("migrate")
        .env("SWITCHBOARD__DATABASE__URL", &database.url));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("migrations applied (postgres"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn help_lists_subcommands_and_examples() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = run(switchboard(cwd.path()).arg("--help"));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "serve",
        "migrate",
        "admin",
        "config",
        "--database-url",
        "SWITCHBOARD__",
        "Examples:",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    // No subcommand: show help rather than guess.
    let out = run(&mut switchboard(cwd.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("serve"));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
