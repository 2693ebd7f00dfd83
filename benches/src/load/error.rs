//! The load tool's one error type.

/// Why a load run could not be set up or carried out. Failures of single
/// calls are not errors: they are counted in the report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The options cannot describe a run (zero calls, bad URL, missing credentials, ...).
    #[error("invalid load options: {0}")]
    Options(String),
    /// The profile file (`load.json`) could not be read.
    #[error("profile {path}: {reason}")]
    Profile { path: String, reason: String },
    /// The engine's `/stats` endpoint could not be read.
    #[error("stats at {url}: {reason}")]
    Stats { url: String, reason: String },
    /// The baseline server could not be started.
    #[error("baseline server: {0}")]
    Baseline(String),
    /// A WAV file for the caller audio could not be loaded.
    #[error(transparent)]
    Audio(#[from] switchboard_caller::CallerError),
}
