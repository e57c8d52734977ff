//! Reading YAML files (inventory, playbooks) with serde-saphyr, and where an error is.

use serde::de::DeserializeOwned;

/// A YAML file that does not parse into the expected shape, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: u64,
    pub column: u64,
    /// The first line of serde-saphyr's message (the rest is a source snippet).
    pub message: String,
}

/// Deserializes `text`; an error carries its line, column and a one-line message.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Located> {
    serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = e.to_string();
        Located {
            line,
            column,
            message: message.lines().next().unwrap_or_default().to_string(),
        }
    })
}
