//! blackbox_exporter modules for `GET /probe` (`modules:`, `modules_file:`) and the allow
//! list that keeps the endpoint from probing anything a caller names (`probe_endpoint:`).
//!
//! A module is loaded once into probed YAML of its kind without the target
//! ([`Module::base`]); each `/probe` request adds its target there ([`Module::spec`]) and
//! parses the result with the kind's own `Spec`, so a module checks exactly as a probe of
//! that kind written by hand would. The loader (`config/load/modules.rs`) maps blackbox's
//! keys and refuses what probed cannot honour.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::probe::ProbeSpec;

/// One blackbox module, mapped onto a probed kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// The probed kind it runs: `http`, `tcp` or `dns`.
    pub kind: &'static str,
    /// `timeout:` of the module. Without it: the scrape's own timeout (from Prometheus'
    /// `X-Prometheus-Scrape-Timeout-Seconds`) less 0.5 s, else `defaults.timeout`.
    pub timeout: Option<Duration>,
    /// The kind's fields, as probed YAML, without the target.
    pub base: Mapping,
    /// `fail_if_ssl`: fail when the final response came over TLS.
    pub fail_if_ssl: bool,
    /// `fail_if_not_ssl`: fail when the final response did not come over TLS.
    pub fail_if_not_ssl: bool,
    /// Directory of the file that defines it: relative paths (`ca_file`) start there.
    pub dir: PathBuf,
    /// Where it was defined (`file:line:col`), for messages.
    pub source: String,
}

impl Module {
    /// The spec of one check of `target`, as blackbox reads a target for the kind: a URL
    /// for http (`http://` is added when the target has no scheme), `host:port` for tcp,
    /// the nameserver (`ip` or `ip:port`) for dns. `Err` says why the target does not fit.
    pub fn spec(&self, target: &str) -> Result<ProbeSpec, String> {
        let mut m = self.base.clone();
        match self.kind {
            "http" => {
                let url = if target.contains("://") {
                    target.to_string()
                } else {
                    format!("http://{target}")
                };
                let request = m
                    .entry("request".into())
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if let Value::Mapping(r) = request {
                    r.insert("url".into(), url.into());
                }
            }
            "tcp" => {
                let (host, port) = split_host_port(target)?;
                m.insert("host".into(), host.into());
                m.insert("port".into(), port.into());
            }
            "dns" => {
                m.insert("nameservers".into(), vec![target.to_string()].into());
            }
            other => return Err(format!("no /probe mapping for kind {other}")),
        }
        let mut spec = match ProbeSpec::from_value(self.kind, Value::Mapping(m)) {
            Ok(Ok(spec)) => spec,
            Ok(Err(e)) => return Err(e.inner().to_string()),
            Err(()) => return Err(format!("unknown kind {}", self.kind)),
        };
        spec.resolve_paths(&self.dir);
        let errors = spec.validate();
        if errors.is_empty() {
            Ok(spec)
        } else {
            let msgs: Vec<String> = errors.into_iter().map(|e| e.message).collect();
            Err(format!(
                "invalid target for a {} module: {}",
                self.kind,
                msgs.join("; ")
            ))
        }
    }

    /// A stand-in target of the kind, to check a module at load time.
    pub(crate) fn placeholder_target(kind: &str) -> &'static str {
        match kind {
            "tcp" => "127.0.0.1:1",
            "dns" => "127.0.0.1",
            _ => "http://127.0.0.1/",
        }
    }
}

/// `host:port`, `[v6]:port`: the host (brackets removed) and the port.
fn split_host_port(target: &str) -> Result<(String, u16), String> {
    let bad = || format!("target {target:?} is not host:port");
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !target.starts_with('[') {
        return Err(bad());
    }
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((host.to_string(), port))
}

/// `probe_endpoint:`. Without it `/probe` is off: an open `/probe` lets anyone who reaches
/// the API make this daemon connect anywhere it can (server-side request forgery).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeEndpoint {
    /// Patterns a target must match, as given in `?target=` ([`allow_match`]).
    pub allow: Vec<String>,
}

impl ProbeEndpoint {
    /// Whether `target` matches one of the `allow` patterns.
    pub fn allows(&self, target: &str) -> bool {
        self.allow.iter().any(|p| allow_match(p, target))
    }
}

/// Characters a `*` of an allow pattern never stands for: with them a `*` could step out of
/// a host label into another host (`https://*.example.com/` against
/// `https://evil.test/x.example.com/` or `https://evil.test@x.example.com/`), or out of an
/// octet into a name (`10.0.0.*` against `10.0.0.1.evil.test`).
const STAR_STOPS: &[char] = &['.', '/', ':', '@', '\\', '?', '#', '[', ']', '%'];

/// Whether `target` matches the allow `pattern`: characters match themselves; `*` matches
/// one or more characters within one host label, address octet, port or path segment (never
/// `.`, `/`, `:`, `@`, `\`, `?`, `#`, `[`, `]`, `%`, nor whitespace); a pattern ending in
/// `/*` matches any rest after that `/` (every path and query below it).
pub fn allow_match(pattern: &str, target: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = target.chars().collect();
    if t.iter().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    // A final `/*`: the rest of the target after that `/`, whatever it holds.
    let (p, tail_any) = match p.len() {
        n if n >= 2 && p[n - 2] == '/' && p[n - 1] == '*' => (&p[..n - 1], true),
        _ => (&p[..], false),
    };
    // reach[j]: the pattern read so far can match exactly t[..j]. Linear in the target for
    // each pattern character.
    let mut reach = vec![false; t.len() + 1];
    reach[0] = true;
    for &pc in p {
        let mut next = vec![false; t.len() + 1];
        if pc == '*' {
            // One or more characters from a reachable start, up to the next stop.
            let mut active = false;
            for j in 0..t.len() {
                active |= reach[j];
                if STAR_STOPS.contains(&t[j]) {
                    active = false;
                } else {
                    next[j + 1] = active;
                }
            }
        } else {
            for j in 0..t.len() {
                if reach[j] && t[j] == pc {
                    next[j + 1] = true;
                }
            }
        }
        reach = next;
    }
    if tail_any {
        reach.iter().any(|r| *r)
    } else {
        reach[t.len()]
    }
}

/// Why `pattern` cannot be an allow pattern, if it cannot.
pub fn allow_pattern_error(pattern: &str) -> Option<String> {
    if pattern.trim().is_empty() {
        return Some("allow pattern is empty".into());
    }
    if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("allow pattern {pattern:?} holds whitespace"));
    }
    if pattern.contains("**") {
        return Some(format!(
            "allow pattern {pattern:?}: write one * (it matches one host label, octet, port or \
             path segment; a final /* matches every path below)"
        ));
    }
    if let Some(c) = pattern.chars().find(|c| matches!(c, '?' | '{' | '}')) {
        return Some(format!(
            "allow pattern {pattern:?}: {c:?} is not a wildcard here (patterns take * only)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_patterns_keep_a_star_inside_its_label() {
        for (p, t, want) in [
            (
                "https://*.example.com/*",
                "https://api.example.com/health",
                true,
            ),
            (
                "https://*.example.com/*",
                "https://api.example.com/a/b?x=1",
                true,
            ),
            ("https://*.example.com/*", "https://api.example.com", false),
            (
                "https://*.example.com/*",
                "https://evil.test/x.example.com/",
                false,
            ),
            (
                "https://*.example.com/*",
                "https://evil.test@x.example.com/",
                false,
            ),
            ("https://*.example.com/*", "https://a.b.example.com/", false),
            (
                "https://*.example.com/*",
                "https://api.example.com:8443/",
                false,
            ),
            ("10.0.0.*:443", "10.0.0.7:443", true),
            ("10.0.0.*:443", "10.0.0.1.evil.test:443", false),
            ("10.0.0.*:443", "10.0.0.7:4430", false),
            ("10.0.0.*:443", "10.0.0.:443", false),
            ("127.0.0.1:*", "127.0.0.1:8080", true),
            ("http://127.0.0.1:*/*", "http://127.0.0.1:8080/", true),
            (
                "http://127.0.0.1:*/*",
                "http://127.0.0.1:8080@10.0.0.1/",
                false,
            ),
            ("exact:53", "exact:53", true),
            ("exact:53", "exact:530", false),
        ] {
            assert_eq!(allow_match(p, t), want, "{p} ~ {t}");
        }
        // Linear enough for a hostile pattern.
        let hostile = "*-".repeat(200);
        assert!(!allow_match(&hostile, &("a-".repeat(1000) + "a")));
    }

    #[test]
    fn targets_per_kind() {
        assert_eq!(split_host_port("db:5432").unwrap(), ("db".into(), 5432));
        assert_eq!(split_host_port("[::1]:53").unwrap(), ("::1".into(), 53));
        assert!(split_host_port("::1").is_err());
        assert!(split_host_port("db").is_err());
        assert!(split_host_port("db:x").is_err());
    }
}
