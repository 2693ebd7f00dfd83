//! The process-wide tracing subscriber: human-readable lines or one JSON
//! object per line, always on stderr so stdout stays clean for command output
//! (`switchboard config`, the user id printed by `admin create-user`).

use crate::EngineError;
use std::io::IsTerminal as _;
use switchboard_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Check a filter directive without installing anything.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, EngineError> {
    EnvFilter::try_new(filter).map_err(|e| EngineError::LogFilter(e.to_string()))
}

/// Install the global subscriber. Fails if the filter is invalid; a second
/// call in the same process keeps the first subscriber.
pub fn init(format: LogFormat, filter: &str) -> Result<(), EngineError> {
    let filter = parse_filter(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is not an error worth failing over: the first subscriber stays.
    let _ = match format {
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated() {
        assert!(parse_filter("info,switchboard_engine=debug").is_ok());
        assert!(matches!(parse_filter("info,[="), Err(EngineError::LogFilter(_))));
    }
}
