//! Interpolation of one parsed document: `${VAR}`, `${VAR:-default}` and `$$` in every
//! string value, and `x_file: path` keys replaced by `x: <the file's contents>`.
//!
//! Every value that came from the environment or from a file is remembered as a secret, so
//! the loader can keep it out of every error message.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::index::{At, Index, Seg};

/// Keys ending in `_file` that name a file the daemon reads itself (TLS material, a Redis
/// dump it only measures, a blackbox.yml), rather than a secret to inline. Every `_file` field of a spec must
/// be here (`every_path_field_is_a_path_key` checks the sources).
pub(super) const PATH_KEYS: &[&str] = &[
    "ca_file",
    "cert_file",
    "key_file",
    "dump_file",
    "modules_file",
];

/// Most bytes of a secret read from a `x_file` key: a token, a password, a key. A bigger file
/// is not a secret but a mistake (a dump, a log, `/dev/zero`), and is never read whole.
pub const MAX_SECRET_FILE: u64 = 64 << 10;

/// Interpolates one document in place.
pub struct Interp<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Base of relative `_file` paths: the main config's directory.
    pub dir: &'a Path,
    /// Values that came from the environment or from files.
    pub secrets: &'a mut Vec<String>,
    /// Problems found, by path.
    pub errors: Vec<(Vec<Seg>, At, String)>,
    /// Values left as written (a variable not set, a file not read): whatever else is wrong
    /// with them follows from that, and is not worth a message of its own.
    pub failed: Vec<Vec<Seg>>,
}

impl Interp<'_> {
    pub fn run(&mut self, value: &mut Value, index: &mut Index) {
        self.value(value, &mut Vec::new(), index);
    }

    fn value(&mut self, v: &mut Value, path: &mut Vec<Seg>, index: &mut Index) {
        match v {
            Value::String(s) => {
                if !s.contains('$') {
                    return;
                }
                match expand(s, self.env) {
                    Ok(x) => {
                        if x.inserted.is_empty() && !x.whole {
                            *s = x.text;
                            return;
                        }
                        self.secrets
                            .extend(x.inserted.into_iter().filter(|p| !p.is_empty()));
                        self.secrets.push(x.text.clone());
                        // `port: ${PORT}` becomes a number; `"${PORT}"` (quoted) stays text.
                        let plain = index.get(path).is_none_or(|e| e.plain);
                        if x.whole && plain {
                            if let Ok(typed @ (Value::Number(_) | Value::Bool(_))) =
                                serde_yaml::from_str::<Value>(&x.text)
                            {
                                *v = typed;
                                return;
                            }
                        }
                        *s = x.text;
                    }
                    Err(msgs) => {
                        self.failed.push(path.clone());
                        for m in msgs {
                            self.errors.push((path.clone(), At::Value, m));
                        }
                    }
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(Seg::Idx(i));
                    self.value(item, path, index);
                    path.pop();
                }
            }
            Value::Mapping(m) => {
                for (k, item) in m.iter_mut() {
                    path.push(Seg::Key(key_text(k)));
                    self.value(item, path, index);
                    path.pop();
                }
                self.files(m, path, index);
            }
            Value::Tagged(t) => self.value(&mut t.value, path, index),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Replaces each `x_file: path` of `m` by `x: <contents of path>`.
    fn files(&mut self, m: &mut Mapping, path: &mut Vec<Seg>, index: &mut Index) {
        let file_keys: Vec<String> = m
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| k.len() > "_file".len() && k.ends_with("_file"))
            .filter(|k| !PATH_KEYS.contains(k))
            .map(String::from)
            .collect();
        if file_keys.is_empty() {
            return;
        }
        let old = std::mem::take(m);
        let conflicts: Vec<bool> = file_keys
            .iter()
            .map(|k| old.contains_key(base_of(k)))
            .collect();
        for (k, v) in old {
            let Some(i) = k
                .as_str()
                .and_then(|ks| file_keys.iter().position(|f| f == ks))
            else {
                m.insert(k, v);
                continue;
            };
            let key = &file_keys[i];
            let base = base_of(key);
            path.push(Seg::Key(key.clone()));
            if conflicts[i] {
                self.errors.push((
                    path.clone(),
                    At::Key,
                    format!("both \"{base}\" and \"{key}\" are set; keep one"),
                ));
            } else {
                let mut failed = false;
                let contents = match &v {
                    Value::String(p) => {
                        let full = self.dir.join(p);
                        match read_secret(&full) {
                            Ok(text) => text.trim_end_matches(['\n', '\r']).to_string(),
                            Err(e) => {
                                self.errors.push((
                                    path.clone(),
                                    At::Value,
                                    format!("cannot read {key} {:?}: {e}", full.display()),
                                ));
                                failed = true;
                                String::new()
                            }
                        }
                    }
                    _ => {
                        self.errors.push((
                            path.clone(),
                            At::Value,
                            format!("{key} must be a file path"),
                        ));
                        failed = true;
                        String::new()
                    }
                };
                if !contents.is_empty() {
                    self.secrets.push(contents.clone());
                }
                let mut to = path.clone();
                to.pop();
                to.push(Seg::Key(base.to_string()));
                if failed {
                    self.failed.push(to.clone());
                }
                index.alias(path, to);
                m.insert(Value::String(base.to_string()), Value::String(contents));
            }
            path.pop();
        }
    }
}

/// The contents of a secret file: a regular file (not a device, a pipe or a folder) of at
/// most [`MAX_SECRET_FILE`] bytes, in UTF-8. Read through a bounded reader, so a file that
/// grows after its size was looked at still costs no more.
fn read_secret(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| super::io_words(&e))?;
    let meta = file.metadata().map_err(|e| super::io_words(&e))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let too_big = || {
        format!(
            "larger than {} KiB (a secret file holds one token or password)",
            MAX_SECRET_FILE >> 10
        )
    };
    if meta.len() > MAX_SECRET_FILE {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| super::io_words(&e))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

fn base_of(key: &str) -> &str {
    &key[..key.len() - "_file".len()]
}

/// A mapping key as text (the form paths use).
pub fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// One string after interpolation.
#[derive(Debug, PartialEq)]
pub struct Expanded {
    pub text: String,
    /// The string was exactly one `${...}`.
    pub whole: bool,
    /// What each `${...}` was replaced with.
    pub inserted: Vec<String>,
}

/// Expands `${VAR}`, `${VAR:-default}` (the default also when VAR is empty) and `$$`. A `$`
/// followed by anything else is kept as is. Errors name the variable, never a value.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Expanded, Vec<String>> {
    let mut out = String::with_capacity(s.len());
    let mut inserted = Vec::new();
    let mut errors = Vec::new();
    let mut whole = false;
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                errors.push(
                    "unterminated \"${\" (close it with \"}\", or write $$ for a dollar)".into(),
                );
                rest = "";
                break;
            };
            let inner = &r[..end];
            whole = at == 0 && end + 1 == r.len() && out.is_empty();
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !valid_var(name) {
                errors.push(format!(
                    "invalid variable name {name:?} in \"${{...}}\" (use letters, digits and _)"
                ));
            } else {
                let value = match (env(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => Some(d.to_string()),
                    (Some(v), _) => Some(v),
                    (None, Some(d)) => Some(d.to_string()),
                    (None, None) => None,
                };
                match value {
                    Some(v) => {
                        out.push_str(&v);
                        inserted.push(v);
                    }
                    None => errors.push(format!(
                        "environment variable {name} is not set (use ${{{name}:-default}} for a fallback)"
                    )),
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Expanded {
        text: out,
        whole: whole && inserted.len() == 1,
        inserted,
    })
}

fn valid_var(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
