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

/// Refuses a network URL whose password holds `/`, `?` or `#` unencoded: parsers cut the
/// URL there, so the password would be read as a host or a path — and echoed back in their
/// errors. The message shows the URL masked and says how to write it.
pub fn check_credentials(setting: &str, url: &str) -> ConfigResult<()> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(());
    };
    if matches!(
        scheme.to_ascii_lowercase().as_str(),
        "sqlite" | "memory" | "file"
    ) {
        return Ok(()); // paths, no credentials
    }
    match rest.rfind('@') {
        Some(at) if rest[..at].contains(['/', '?', '#']) => Err(ConfigError::invalid(
            setting,
            redact_url(url),
            "a URL whose password has / ? # percent-encoded (%2F %3F %23)",
        )),
        _ => Ok(()),
    }
}

/// `url` with everything between `://` and the **last** `@` masked, for messages and logs:
/// `redis://:***@host:6379/0`. The last `@`, not the first `/`: a password may hold `/`, `?`,
/// `#` or `@` (RFC 3986 wants them percent-encoded, people do not always), and the part
/// before the host then looks like a path to a URL parser. A URL without `@` is returned as
/// it is. (It may over-mask a URL whose path holds an `@`: better than a leak.)
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            // Keep a plain user name (`app:***`): it helps, and it holds nothing secret.
            let user = userinfo
                .split_once(':')
                .map(|(user, _)| user)
                .filter(|user| !user.is_empty() && !user.contains(['/', '?', '#', '@', '%']))
                .map_or_else(String::new, |user| format!("{user}:"));
            format!("{scheme}://{user}***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

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
    fn unencoded_delimiters_in_a_password_are_refused_with_the_url_masked() {
        for password in ["p/ss", "p?ss", "p#ss", "/?#"] {
            let url = format!("redis://:{password}@redis.internal:6379/0");
            let error = check_credentials("queue URL", &url)
                .unwrap_err()
                .to_string();
            assert!(!error.contains(password), "{error}");
            assert!(
                error.contains("%2F") && error.contains("redis.internal"),
                "{error}"
            );
        }
        for fine in [
            "redis://:p%2Fss@h/0",
            "redis://:p@ss@h/0",
            "redis://h:6379/0",
            "sqlite:///tmp/a@b/queue.db",
            "memory://",
        ] {
            assert!(check_credentials("queue URL", fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn every_password_is_masked_whatever_it_holds() {
        for password in [
            "s3cret",
            "p/ss",
            "p?ss",
            "p#ss",
            "p@ss",
            "p%2Fss",
            "/?#@%2F:x",
        ] {
            for url in [
                format!("redis://:{password}@redis.internal:6379/0"),
                format!("rediss://app:{password}@redis.internal/1?x=1#y"),
                format!("redis://{password}@h"),
                format!("http://user:{password}@proxy:3128"),
            ] {
                let masked = redact_url(&url);
                assert!(!masked.contains(password), "{url} -> {masked}");
                assert!(masked.contains("***@"), "{masked}");
            }
        }
        assert_eq!(
            redact_url("redis://:s3cret@h:6379/0"),
            "redis://***@h:6379/0"
        );
        assert_eq!(
            redact_url("rediss://app:s3cret@h/1"),
            "rediss://app:***@h/1"
        );
        assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_url("not a url"), "not a url");
    }

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
