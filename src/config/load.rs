//! Reading and validating config files. See the module docs of `config`.

use std::path::Path;

use super::{Config, ConfigErrors};

/// Loads `path` (and the probes file or folder it names), interpolates, validates.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let _ = path;
    todo!("config load")
}

/// Loads from a string, as if read from `path` (which names the file in messages and
/// anchors relative paths). `env` stands in for the process environment.
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let _ = (text, path, env);
    todo!("config load_str")
}
