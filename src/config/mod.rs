//! Validation of user-supplied settings.
//!
//! Owns [`ConfigError`], the error every subsystem returns when a setting it was given is
//! unusable, and the small parsers shared by several subsystems (log levels, durations, ...).
//! A `ConfigError` reaches Python as `scraperv4.exceptions.ConfigError`, which is also a
//! `ValueError`.

use std::fmt;

/// A setting that cannot be used, with enough context for the user to fix it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A value outside what the setting accepts.
    #[error("invalid {setting}: {value:?} ({expected})")]
    InvalidValue {
        /// The setting's name as the user wrote it (e.g. `log level`, `cpu_max`).
        setting: String,
        /// The rejected value, rendered for the message.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// An option name the component does not know (usually a typo).
    #[error("unknown {component} option {name:?}; known options: {known}")]
    UnknownOption {
        /// The component that was being configured.
        component: String,
        /// The unknown name.
        name: String,
        /// The accepted names, comma separated.
        known: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::InvalidValue`].
    pub fn invalid(
        setting: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self::InvalidValue {
            setting: setting.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Result alias for configuration parsing.
pub type ConfigResult<T> = Result<T, ConfigError>;

/// Parses a log level name as Python's `logging` and `RUST_LOG` users write it.
///
/// Accepts `trace`, `debug`, `info`, `warn`/`warning`, `error`/`critical` and `off`,
/// in any case.
pub fn parse_log_level(value: &str) -> ConfigResult<log::LevelFilter> {
    match value.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(log::LevelFilter::Trace),
        "debug" => Ok(log::LevelFilter::Debug),
        "info" => Ok(log::LevelFilter::Info),
        "warn" | "warning" => Ok(log::LevelFilter::Warn),
        "error" | "critical" => Ok(log::LevelFilter::Error),
        "off" | "none" => Ok(log::LevelFilter::Off),
        _ => Err(ConfigError::invalid(
            "log level",
            value,
            "expected one of trace, debug, info, warning, error, off",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_parse_in_any_case() {
        assert_eq!(parse_log_level("DEBUG"), Ok(log::LevelFilter::Debug));
        assert_eq!(parse_log_level(" warning "), Ok(log::LevelFilter::Warn));
        assert_eq!(parse_log_level("critical"), Ok(log::LevelFilter::Error));
    }

    #[test]
    fn unknown_log_level_names_the_setting_and_the_choices() {
        let err = parse_log_level("loud").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("log level"), "{message}");
        assert!(message.contains("\"loud\""), "{message}");
        assert!(message.contains("debug"), "{message}");
    }
}
