//! The data directory and the engine's two root secrets.
//!
//! When `security.encryption_key` or `security.jwt_secret` is unset, the
//! engine keeps a generated value in `<data_dir>/secrets/` so restarts reuse
//! it. Guarantees:
//! - new secrets come from the operating system's CSPRNG;
//! - the directory is created `0700` and each file `0600`;
//! - a file appears complete or not at all (written to a temporary name, then
//!   hard-linked into place, which never replaces an existing file), so two
//!   processes starting at once agree on one value;
//! - errors name the file, never its contents.

use crate::EngineError;
use base64::Engine as _;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use switchboard_config::{SecretKey, SecretString, Settings};

/// File name of the generated encryption key, under `<data_dir>/secrets/`.
pub const ENCRYPTION_KEY_FILE: &str = "encryption.key";
/// File name of the generated JWT secret, under `<data_dir>/secrets/`.
pub const JWT_SECRET_FILE: &str = "jwt.secret";
/// Random bytes in a generated JWT secret (64 base64url characters).
const JWT_SECRET_BYTES: usize = 48;
/// Shortest JWT secret accepted from a file; matches the API's minimum.
const MIN_JWT_SECRET_LEN: usize = 32;

/// The secrets the engine runs with, from settings or from the data directory.
#[derive(Clone)]
pub struct ResolvedSecrets {
    pub encryption_key: SecretKey,
    pub jwt_secret: SecretString,
}

impl std::fmt::Debug for ResolvedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolvedSecrets([REDACTED])")
    }
}

/// Create the data directory if needed and return it as an absolute path, so
/// the SQLite URL and secret paths do not depend on a later working directory.
pub fn prepare_data_dir(dir: &Path) -> Result<PathBuf, EngineError> {
    let err = |source| EngineError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(err)?;
    fs::canonicalize(dir).map_err(err)
}

/// The configured secrets, or the ones kept in `<data_dir>/secrets/`, created on first use.
pub fn resolve_secrets(settings: &Settings) -> Result<ResolvedSecrets, EngineError> {
    let dir = settings.storage.data_dir.join("secrets");
    let encryption_key = match &settings.security.encryption_key {
        Some(key) => key.clone(),
        None => {
            let path = dir.join(ENCRYPTION_KEY_FILE);
            let text = load_or_create(&dir, &path, || {
                random_bytes::<32>().map(|b| SecretKey::from_bytes(b).to_base64())
            })?;
            SecretKey::parse_base64(&text).map_err(|e| secret_error(&path, e.to_string()))?
        }
    };
    let jwt_secret = match &settings.security.jwt_secret {
        Some(secret) => secret.clone(),
        None => {
            let path = dir.join(JWT_SECRET_FILE);
            let text = load_or_create(&dir, &path, || {
                random_bytes::<JWT_SECRET_BYTES>().map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
            })?;
            if text.len() < MIN_JWT_SECRET_LEN {
                return Err(secret_error(
                    &path,
                    format!("must hold at least {MIN_JWT_SECRET_LEN} characters"),
                ));
            }
            SecretString::new(text)
        }
    };
    Ok(ResolvedSecrets {
        encryption_key,
        jwt_secret,
    })
}

fn secret_error(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::SecretFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], EngineError> {
    let mut bytes = [0u8; N];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| EngineError::SecretFile {
        path: PathBuf::from("(os randomness)"),
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

/// The trimmed contents of `path`, creating it with `generate()` when missing.
fn load_or_create(
    dir: &Path,
    path: &Path,
    generate: impl FnOnce() -> Result<String, EngineError>,
) -> Result<String, EngineError> {
    match read_secret(path) {
        Ok(text) => return Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(secret_error(path, format!("cannot read: {e}"))),
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| secret_error(dir, format!("cannot create directory: {e}")))?;
    let value = generate()?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("secret"),
        hex_suffix()?
    ));
    let written = write_private(&tmp, &value).and_then(|()| fs::hard_link(&tmp, path));
    // The temporary name is only a staging area; a failure to remove it is harmless.
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new secret");
            Ok(value)
        }
        // Another process won the race: use its value, which is complete.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_secret(path).map_err(|e| secret_error(path, format!("cannot read: {e}")))
        }
        Err(e) => Err(secret_error(path, format!("cannot write: {e}"))),
    }
}

fn read_secret(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    if let Ok(meta) = fs::metadata(path)
        && meta.mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "secret file is readable by other users; run chmod 600 on it");
    }
    Ok(text.trim().to_owned())
}

fn write_private(path: &Path, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn hex_suffix() -> Result<String, EngineError> {
    Ok(random_bytes::<8>()?.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_in(dir: &Path) -> Settings {
        let mut s = Settings::default();
        s.storage.data_dir = dir.to_path_buf();
        s
    }

    #[test]
    fn generates_private_files_once_and_reuses_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings_in(tmp.path());
        let first = resolve_secrets(&s).expect("first");
        let second = resolve_secrets(&s).expect("second");
        assert_eq!(first.encryption_key, second.encryption_key);
        assert_eq!(first.jwt_secret, second.jwt_secret);
        assert!(first.jwt_secret.expose().len() >= MIN_JWT_SECRET_LEN);

        let secrets = tmp.path().join("secrets");
        assert_eq!(fs::metadata(&secrets).expect("dir").mode() & 0o777, 0o700);
        for name in [ENCRYPTION_KEY_FILE, JWT_SECRET_FILE] {
            assert_eq!(
                fs::metadata(secrets.join(name)).expect("file").mode() & 0o777,
                0o600,
                "{name}"
            );
        }
        let on_disk = fs::read_to_string(secrets.join(ENCRYPTION_KEY_FILE)).expect("read");
        assert_eq!(on_disk.trim(), first.encryption_key.to_base64());
        let leftovers: Vec<_> = fs::read_dir(&secrets).expect("ls").filter_map(Result::ok).collect();
        assert_eq!(leftovers.len(), 2, "temporary files left behind");
    }

    #[test]
    fn different_data_dirs_get_different_secrets() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let sa = resolve_secrets(&settings_in(a.path())).expect("a");
        let sb = resolve_secrets(&settings_in(b.path())).expect("b");
        assert_ne!(sa.encryption_key, sb.encryption_key);
        assert_ne!(sa.jwt_secret, sb.jwt_secret);
    }

    #[test]
    fn configured_secrets_win_and_write_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = settings_in(tmp.path());
        s.security.encryption_key = Some(SecretKey::from_bytes([7; 32]));
        s.security.jwt_secret = Some(SecretString::new("x".repeat(40)));
        let r = resolve_secrets(&s).expect("resolves");
        assert_eq!(r.encryption_key.expose(), &[7; 32]);
        assert_eq!(r.jwt_secret.expose(), "x".repeat(40));
        assert!(!tmp.path().join("secrets").exists());
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_naming_the_file_not_the_value() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let secrets = tmp.path().join("secrets");
        fs::create_dir_all(&secrets).expect("mkdir");
        fs::write(secrets.join(ENCRYPTION_KEY_FILE), "not-a-key-value\n").expect("write");
        let err = resolve_secrets(&settings_in(tmp.path())).expect_err("corrupt");
        let text = err.to_string();
        assert!(text.contains(ENCRYPTION_KEY_FILE), "{text}");
        assert!(!text.contains("not-a-key-value"), "{text}");
    }

    #[test]
    fn debug_never_shows_the_values() {
        let r = ResolvedSecrets {
            encryption_key: SecretKey::from_bytes([1; 32]),
            jwt_secret: SecretString::new("visible-if-leaked-0123456789abcdef"),
        };
        let text = format!("{r:?}");
        assert!(
            !text.contains("visible-if-leaked") && !text.contains(&r.encryption_key.to_base64()),
            "{text}"
        );
    }

    #[test]
    fn prepare_data_dir_creates_and_absolutizes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let nested = tmp.path().join("a/b");
        let dir = prepare_data_dir(&nested).expect("prepare");
        assert!(dir.is_absolute() && dir.is_dir());
    }
}
