//! Secrets: named in the config, read from the environment or a file, never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "path" }`.
/// The value itself never stands in a config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged, deny_unknown_fields)]
pub enum SecretRef {
    Env { env: String },
    File { file: PathBuf },
}

impl SecretRef {
    /// Where the secret comes from, for messages: `environment variable `X`` or `file `f``.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env { env } => format!("environment variable `{env}`"),
            SecretRef::File { file } => format!("file `{}`", file.display()),
        }
    }

    /// Reads the secret. Relative files are taken from `base_dir` (the config file's folder).
    /// Errors name the variable or file, never the value.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, String> {
        match self {
            SecretRef::Env { env } => match std::env::var(env) {
                Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
                Ok(_) => Err(format!("environment variable `{env}` is empty")),
                Err(_) => Err(format!("environment variable `{env}` is not set")),
            },
            SecretRef::File { file } => {
                let path = base_dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))?;
                let value = text.trim_end_matches(['\n', '\r']).to_owned();
                if value.is_empty() {
                    return Err(format!("secret file `{}` is empty", path.display()));
                }
                Ok(Secret::new(value))
            }
        }
    }
}

/// A secret value. `Debug` and `Display` print `[redacted]`, so it cannot slip
/// into logs or error messages by accident; [`Secret::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
