//! `kind: backup`: the files a backup job leaves behind, judged on what goes wrong with
//! backups in practice: they silently stop (the newest is too old, or there is none), they
//! shrink (a dump that failed half-way, an empty table), or they grow until they eat the disk
//! or the RAM of the machine that makes them (the Wisembly postmortem: Redis dumps every two
//! minutes that starved MySQL and took the backends down). Phase `scan`.
//!
//! A check lists the files that match `path` (a file or a glob) and reads their size and
//! modification time, on a blocking thread, within the deadline and up to
//! [`MAX_FILES`] files. "Newest" means the latest modification time.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use super::{CheckCx, Observation, until};
use crate::text::FieldError;
use crate::text::io_text;
use crate::units::{ByteSize, Dur, format_bytes};

/// Most files a check lists; a pattern matching more fails the check (narrow it).
pub const MAX_FILES: usize = 100_000;
/// Largest `change.window`.
const MAX_WINDOW: usize = 1000;

/// Settings of a `backup` probe. Every check given must hold.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The backup file, or a glob pattern matching the backups: `/backups/app-*.sql.gz`
    /// (`*`, `?`, `[a-z]`, and `**` for any depth of folders). Relative to the probe file's
    /// directory. Only regular files count: folders never match, nor do hidden files (a
    /// leading dot, as in-progress dumps often have) unless the pattern spells the dot.
    pub path: String,
    /// Fail when the newest match was last modified longer ago than this: the backup job
    /// stopped. E.g. `26h` for a nightly dump.
    pub max_age: Option<Dur>,
    /// Fail when the newest match is smaller than this: a dump that broke off or came out
    /// empty.
    pub min_size: Option<ByteSize>,
    /// Fail when the newest match is larger than this.
    pub max_size: Option<ByteSize>,
    /// Fail when all matches together are larger than this: backups that are never rotated
    /// fill the disk.
    pub dir_total_max: Option<ByteSize>,
    /// Fail when the newest match's size jumps against the ones before it.
    pub change: Option<Change>,
    /// Fail when fewer files than this match: rotation kept too few.
    pub min_files: Option<usize>,
}

/// A sudden change in size: the newest match's size against the median size of the
/// `window` matches before it (by modification time). The history is the matching files
/// themselves: the daemon keeps no record of sizes for this (yet), so the check needs the
/// older backups to still be there, and a file that is rewritten in place has no history.
/// With no older match, the check passes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackupChange")]
pub struct Change {
    /// Largest drop below the median, e.g. `"50%"`.
    pub max_drop: Option<Percent>,
    /// Largest growth above the median, e.g. `"200%"` (three times the median).
    pub max_growth: Option<Percent>,
    /// How many earlier matches make the median. Default: 7.
    #[serde(default = "seven")]
    pub window: usize,
}

fn seven() -> usize {
    7
}

/// A percentage, written `"50%"` or `50`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl schemars::JsonSchema for Percent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A percentage: 50% or 50.",
            "type": ["string", "number"],
            "minimum": 0,
            "pattern": format!(r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*%?\s*${}", crate::units::INTERP_ALT),
            "examples": ["50%"],
            "patternErrorMessage": "not a percentage: write e.g. 50%",
        })
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        let n = match Raw::deserialize(d)? {
            Raw::N(n) => n,
            Raw::S(s) => s
                .trim()
                .trim_end_matches('%')
                .trim_end()
                .parse::<f64>()
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "invalid percentage {s:?} (write e.g. \"50%\")"
                    ))
                })?,
        };
        if !n.is_finite() || n < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "invalid percentage {n}: must be 0 or more"
            )));
        }
        Ok(Percent(n))
    }
}

impl Spec {
    /// Every problem, without I/O.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let path = self.path.trim();
        if path.is_empty() {
            errs.push(FieldError::new("path", "path is empty"));
        } else if let Err(e) = glob::Pattern::new(path) {
            errs.push(FieldError::new(
                "path",
                format!("invalid pattern: {} (at character {})", e.msg, e.pos + 1),
            ));
        } else if path.ends_with('/') {
            errs.push(FieldError::new(
                "path",
                format!("path names a folder: match the files in it, e.g. {path}*.sql.gz"),
            ));
        }
        if self.max_age.is_some_and(|d| d.0.is_zero()) {
            errs.push(FieldError::new("max_age", "must be more than 0"));
        }
        if let (Some(min), Some(max)) = (self.min_size, self.max_size)
            && min > max
        {
            errs.push(FieldError::new(
                "max_size",
                format!("max_size {max} is below min_size {min}"),
            ));
        }
        if let Some(ByteSize(0)) = self.dir_total_max {
            errs.push(FieldError::new(
                "dir_total_max",
                "must be more than 0 bytes",
            ));
        }
        if self.min_files == Some(0) {
            errs.push(FieldError::new("min_files", "must be at least 1"));
        }
        if let Some(c) = &self.change {
            if c.max_drop.is_none() && c.max_growth.is_none() {
                errs.push(FieldError::new(
                    "change",
                    "set max_drop, max_growth or both",
                ));
            }
            if let Some(p) = c.max_drop
                && !(p.0 > 0.0 && p.0 < 100.0)
            {
                errs.push(FieldError::new(
                    "change.max_drop",
                    format!(
                        "{p} is not a drop a size can make (use more than 0% and less than 100%)"
                    ),
                ));
            }
            if let Some(p) = c.max_growth
                && p.0 <= 0.0
            {
                errs.push(FieldError::new("change.max_growth", "must be more than 0%"));
            }
            if c.window == 0 || c.window > MAX_WINDOW {
                errs.push(FieldError::new(
                    "change.window",
                    format!("{} earlier files: use 1 to {MAX_WINDOW}", c.window),
                ));
            }
        }
        errs
    }

    /// Makes a relative `path` relative to `base` (the directory of the probe's file); the
    /// base's own glob characters are escaped, so a folder named `dumps[1]` works.
    pub fn resolve_paths(&mut self, base: &Path) {
        let path = self.path.trim();
        if path.is_empty() || Path::new(path).is_absolute() || base.as_os_str().is_empty() {
            return;
        }
        let base = glob::Pattern::escape(&base.to_string_lossy());
        self.path = format!("{}/{path}", base.trim_end_matches('/'));
    }

    /// Backups are local: no host.
    pub fn target_host(&self) -> Option<String> {
        None
    }

    /// The dumps' path (pattern), as written.
    pub fn instance(&self) -> Option<String> {
        Some(self.path.trim().to_owned())
    }

    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        Ok(Check {
            spec: self.clone(),
            pattern: self.path.trim().to_string(),
            max_files: MAX_FILES,
        })
    }
}

/// A runnable `backup` probe.
pub struct Check {
    spec: Spec,
    pattern: String,
    max_files: usize,
}

/// One matching file.
#[derive(Debug, Clone)]
struct Found {
    path: PathBuf,
    size: u64,
    modified: SystemTime,
}

impl Check {
    /// Lists the matches (phase `scan`), then judges them; `size` is the newest match's.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let (pattern, max_files, stop) =
            (self.pattern.clone(), self.max_files, cx.deadline.into_std());
        let scanned = until(
            cx,
            started,
            &format!("scanning {}", self.pattern),
            tokio::task::spawn_blocking(move || scan(&pattern, max_files, stop)),
        )
        .await;
        obs.phase("scan", started.elapsed());
        obs.duration = started.elapsed();
        let verdict = match scanned {
            Err(timeout) => Err(timeout),
            Ok(Err(e)) => Err(format!("scanning {}: {e}", self.pattern)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Ok(Ok(mut files))) => {
                files.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
                obs.size = files.last().map(|f| f.size);
                self.judge(&files, SystemTime::now())
            }
        };
        match verdict {
            Ok(()) => {
                obs.ok = true;
                obs
            }
            Err(reason) => obs.fail(reason),
        }
    }

    /// Every check that fails, joined with `; `. `files` are sorted oldest first.
    fn judge(&self, files: &[Found], now: SystemTime) -> Result<(), String> {
        let spec = &self.spec;
        let pattern = &self.pattern;
        let Some(newest) = files.last() else {
            return Err(no_match(pattern));
        };
        let name = newest.path.file_name().map_or_else(
            || newest.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut failed = Vec::new();
        if let Some(min) = spec.min_files
            && files.len() < min
        {
            failed.push(format!(
                "only {} match {pattern} (min_files {min})",
                files_count(files.len())
            ));
        }
        if let Some(max) = spec.max_age {
            let age = now.duration_since(newest.modified).unwrap_or_default();
            if age > max.0 {
                failed.push(format!(
                    "newest backup {name} is {} old (max_age {})",
                    age_text(age),
                    age_text(max.0)
                ));
            }
        }
        if let Some(min) = spec.min_size
            && newest.size < min.0
        {
            failed.push(format!(
                "newest backup {name} is {} (min_size {min})",
                format_bytes(newest.size)
            ));
        }
        if let Some(max) = spec.max_size
            && newest.size > max.0
        {
            failed.push(format!(
                "newest backup {name} is {} (max_size {max})",
                format_bytes(newest.size)
            ));
        }
        if let Some(change) = &spec.change
            && let Some(reason) = size_change(change, files, &name)
        {
            failed.push(reason);
        }
        if let Some(max) = spec.dir_total_max {
            let total: u64 = files.iter().map(|f| f.size).sum();
            if total > max.0 {
                failed.push(format!(
                    "the {} matching {pattern} total {} (dir_total_max {max})",
                    files_count(files.len()),
                    format_bytes(total)
                ));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

/// The newest size against the median of the `window` before it, when it moved too far.
fn size_change(change: &Change, files: &[Found], name: &str) -> Option<String> {
    let (newest, before) = files.split_last()?;
    let earlier = &before[before.len().saturating_sub(change.window)..];
    if earlier.is_empty() {
        return None;
    }
    let mut sizes: Vec<u64> = earlier.iter().map(|f| f.size).collect();
    sizes.sort_unstable();
    let mid = sizes.len() / 2;
    let median = if sizes.len() % 2 == 1 {
        sizes[mid]
    } else {
        sizes[mid - 1] / 2 + sizes[mid] / 2 + (sizes[mid - 1] % 2 + sizes[mid] % 2) / 2
    };
    if median == 0 {
        return None;
    }
    let of = if earlier.len() == 1 {
        "of the previous one".to_string()
    } else {
        format!("of the previous {}", earlier.len())
    };
    let pct = |a: u64, b: u64| (a - b) as f64 / median as f64 * 100.0;
    if let Some(max) = change.max_drop
        && newest.size < median
        && pct(median, newest.size) > max.0
    {
        return Some(format!(
            "newest backup {name} is {}, {:.0}% below the median {} {of} (max_drop {max})",
            format_bytes(newest.size),
            pct(median, newest.size),
            format_bytes(median)
        ));
    }
    if let Some(max) = change.max_growth
        && newest.size > median
        && pct(newest.size, median) > max.0
    {
        return Some(format!(
            "newest backup {name} is {}, {:.0}% above the median {} {of} (max_growth {max})",
            format_bytes(newest.size),
            pct(newest.size, median),
            format_bytes(median)
        ));
    }
    None
}

/// Lists the regular files matching `pattern` with their size and modification time, on a
/// blocking thread. Stops at `stop` (the check has given up by then) and past `max_files`.
fn scan(pattern: &str, max_files: usize, stop: std::time::Instant) -> Result<Vec<Found>, String> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let entries = glob::glob_with(pattern, options)
        .map_err(|e| format!("invalid pattern {pattern}: {}", e.msg))?;
    let mut files = Vec::new();
    for (i, entry) in entries.enumerate() {
        if i % 256 == 255 && std::time::Instant::now() >= stop {
            return Err(format!("scanning {pattern}: out of time"));
        }
        let path = entry
            .map_err(|e| format!("cannot read {}: {}", e.path().display(), io_text(e.error())))?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            // Rotated away between the listing and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {}", path.display(), io_text(&e))),
        };
        if !meta.is_file() {
            continue;
        }
        if files.len() == max_files {
            return Err(format!(
                "more than {max_files} files match {pattern}: narrow the pattern"
            ));
        }
        let modified = meta.modified().map_err(|e| {
            format!(
                "cannot read the time of {}: {}",
                path.display(),
                io_text(&e)
            )
        })?;
        files.push(Found {
            path,
            size: meta.len(),
            modified,
        });
    }
    if files.is_empty() {
        let dir = literal_dir(pattern);
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(format!(
                "{} (folder {} does not exist)",
                no_match(pattern),
                dir.display()
            ));
        }
    }
    Ok(files)
}

fn no_match(pattern: &str) -> String {
    format!("no file matches {pattern}")
}

/// The folder part of a pattern before any glob character: `/backups` of
/// `/backups/app-*.sql.gz`.
fn literal_dir(pattern: &str) -> PathBuf {
    let path = Path::new(pattern);
    let parts: Vec<_> = path.components().collect();
    let mut dir = PathBuf::new();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if part.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            break;
        }
        dir.push(part);
    }
    dir
}

fn files_count(n: usize) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

/// `45s`, `30m`, `31h`, `2h30m`, `4d3h`: an age as people say it, rounded down.
fn age_text(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins) = (s / 86_400, s / 3600, s / 60);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{mins}m")
    } else if hours < 10 && mins % 60 != 0 {
        format!("{hours}h{}m", mins % 60)
    } else if hours < 72 {
        format!("{hours}h")
    } else if hours % 24 == 0 {
        format!("{days}d")
    } else {
        format!("{days}d{}h", hours % 24)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;
    use crate::probe::testkit::{assert_field_errors, check_in, env, reason};

    const HOUR: u64 = 3600;

    /// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
    fn spec(yaml: &str) -> Spec {
        crate::probe::testkit::spec(yaml)
    }

    /// Writes `size` bytes to `dir/name`, last modified `age` ago.
    fn file(dir: &Path, name: &str, size: usize, age: Duration) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, vec![b'x'; size]).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        path
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * HOUR)
    }

    async fn run_check(check: &Check) -> Observation {
        check_in(check, &env(), Duration::from_secs(5)).await
    }

    async fn run(yaml: &str) -> Observation {
        run_check(&spec(yaml).build().expect("build")).await
    }

    #[test]
    fn validate_reports_every_problem_with_its_path() {
        let good = spec(
            "path: /backups/app-*.sql.gz\nmax_age: 26h\nmin_size: 10MB\nmax_size: 2GB\n\
             dir_total_max: 50GB\nchange: { max_drop: '50%', max_growth: 200, window: 7 }\n\
             min_files: 3",
        );
        assert_eq!(good.validate(), vec![]);
        assert_eq!(good.target_host(), None);
        let c = good.change.as_ref().unwrap();
        assert_eq!(
            (c.max_drop, c.max_growth, c.window),
            (Some(Percent(50.0)), Some(Percent(200.0)), 7)
        );
        let c = spec("path: x\nchange: { max_drop: 12.5% }").change.unwrap();
        assert_eq!((c.max_drop, c.window), (Some(Percent(12.5)), 7));

        let cases: &[(&str, &[(&str, &str)])] = &[
            ("path: ''", &[("path", "path is empty")]),
            ("path: '/backups/[a-'", &[("path", "invalid pattern")]),
            ("path: '/backups/'", &[("path", "path names a folder")]),
            ("path: x\nmax_age: 0s", &[("max_age", "more than 0")]),
            (
                "path: x\nmin_size: 2MB\nmax_size: 1MB",
                &[("max_size", "is below min_size")],
            ),
            (
                "path: x\ndir_total_max: 0",
                &[("dir_total_max", "more than 0 bytes")],
            ),
            ("path: x\nmin_files: 0", &[("min_files", "at least 1")]),
            (
                "path: x\nchange: {}",
                &[("change", "set max_drop, max_growth or both")],
            ),
            (
                "path: x\nchange: { max_drop: 100%, max_growth: 0%, window: 0 }",
                &[
                    ("change.max_drop", "less than 100%"),
                    ("change.max_growth", "more than 0%"),
                    ("change.window", "use 1 to 1000"),
                ],
            ),
        ];
        for (yaml, want) in cases {
            assert_field_errors(yaml, &spec(yaml).validate(), want);
        }
        for (yaml, msg) in [
            ("path: x\nchange: { max_drop: lots }", "invalid percentage"),
            ("path: x\nchange: { max_drop: -5 }", "must be 0 or more"),
            (
                "path: x\nchange: { max_drop: 5%, days: 3 }",
                "unknown field `days`",
            ),
            ("path: x\nmax_age: forever", "invalid duration"),
            ("max_age: 1h", "missing field `path`"),
        ] {
            let e = serde_yaml::from_str::<Spec>(yaml).unwrap_err().to_string();
            assert!(e.contains(msg), "{yaml}: {e}");
        }
    }

    #[tokio::test]
    async fn relative_paths_follow_the_probe_file() {
        let mut s = spec("path: dumps/app-*.sql.gz");
        s.resolve_paths(Path::new("/srv/probes [v1]"));
        assert_eq!(s.path, "/srv/probes [[]v1[]]/dumps/app-*.sql.gz");
        assert_eq!(s.validate(), vec![]);
        // The base's glob characters are its own, not a pattern.
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("probes [v1]");
        std::fs::create_dir_all(base.join("dumps")).unwrap();
        file(&base.join("dumps"), "app-1.sql.gz", 42, hours(1));
        let mut s = spec("path: dumps/app-*.sql.gz");
        s.resolve_paths(&base);
        let obs = run_check(&s.build().unwrap()).await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(obs.size, Some(42));
        let mut s = spec("path: /abs/app-*.sql.gz");
        s.resolve_paths(Path::new("/srv/probes"));
        assert_eq!(s.path, "/abs/app-*.sql.gz");
        let mut s = spec("path: app.sql.gz");
        s.resolve_paths(Path::new(""));
        assert_eq!(s.path, "app.sql.gz");
    }

    #[tokio::test]
    async fn newest_by_mtime_age_and_size() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // Names sort one way, times another: the newest is app-b.
        file(dir, "app-a.sql.gz", 100, hours(3));
        file(dir, "app-b.sql.gz", 200, hours(1) + Duration::from_secs(60));
        file(dir, "app-c.sql.gz", 300, hours(2));
        // Never counted: an in-progress hidden dump, a folder, another name.
        file(dir, ".app-d.sql.gz", 5, Duration::ZERO);
        std::fs::create_dir(dir.join("app-e.sql.gz")).unwrap();
        file(dir, "other.log", 7, Duration::ZERO);
        let p = format!("path: '{}/app-*.sql.gz'", dir.display());

        let obs = run(&format!(
            "{p}\nmax_age: 2h\nmin_size: 200\nmax_size: 200\nmin_files: 3"
        ))
        .await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(obs.size, Some(200));
        assert_eq!(obs.phases.len(), 1);
        assert_eq!(obs.phases[0].0, "scan");

        let obs = run(&format!("{p}\nmax_age: 30m")).await;
        assert_eq!(
            reason(&obs),
            "newest backup app-b.sql.gz is 1h1m old (max_age 30m)"
        );
        let obs = run(&format!("{p}\nmin_size: 1KB")).await;
        assert_eq!(
            reason(&obs),
            "newest backup app-b.sql.gz is 200 B (min_size 1000 B)"
        );
        let obs = run(&format!("{p}\nmax_size: 150")).await;
        assert_eq!(
            reason(&obs),
            "newest backup app-b.sql.gz is 200 B (max_size 150 B)"
        );
        let obs = run(&format!("{p}\nmin_files: 4")).await;
        assert_eq!(
            reason(&obs),
            format!(
                "only 3 files match {}/app-*.sql.gz (min_files 4)",
                dir.display()
            )
        );
        let obs = run(&format!("{p}\ndir_total_max: 599")).await;
        assert_eq!(
            reason(&obs),
            format!(
                "the 3 files matching {}/app-*.sql.gz total 600 B (dir_total_max 599 B)",
                dir.display()
            )
        );
        let obs = run(&format!("{p}\ndir_total_max: 600")).await;
        assert!(obs.ok, "{:?}", obs.error);
        // Several failures at once: all of them.
        let obs = run(&format!("{p}\nmax_age: 1h\nmin_size: 1KB")).await;
        assert_eq!(
            reason(&obs),
            "newest backup app-b.sql.gz is 1h1m old (max_age 1h); \
             newest backup app-b.sql.gz is 200 B (min_size 1000 B)"
        );
        assert_eq!(obs.size, Some(200));

        // A plain file path.
        let obs = run(&format!(
            "path: '{}/app-c.sql.gz'\nmax_age: 3h",
            dir.display()
        ))
        .await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(obs.size, Some(300));
    }

    #[tokio::test]
    async fn drop_and_growth_against_the_median() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // Eight nightly dumps; the oldest is outside a window of 7 and would move the median.
        file(dir, "db-00.dump", 1, hours(24 * 9));
        for (i, size) in [1000, 1100, 900, 1000, 1050, 950, 1000].iter().enumerate() {
            file(
                dir,
                &format!("db-{:02}.dump", i + 1),
                *size,
                hours(24 * (8 - i as u64)),
            );
        }
        let p = format!("path: '{}/db-*.dump'", dir.display());
        let newest = |size: usize| file(dir, "db-99.dump", size, hours(1));

        newest(200);
        let obs = run(&format!("{p}\nchange: {{ max_drop: 50% }}")).await;
        assert_eq!(
            reason(&obs),
            "newest backup db-99.dump is 200 B, 80% below the median 1000 B of the previous 7 \
             (max_drop 50%)"
        );
        assert!(run(&format!("{p}\nchange: {{ max_drop: 85% }}")).await.ok);
        assert!(run(&format!("{p}\nchange: {{ max_growth: 10% }}")).await.ok);

        newest(3500);
        let obs = run(&format!(
            "{p}\nchange: {{ max_drop: 50%, max_growth: 200% }}"
        ))
        .await;
        assert_eq!(
            reason(&obs),
            "newest backup db-99.dump is 3.4 KiB, 250% above the median 1000 B of the previous 7 \
             (max_growth 200%)"
        );
        assert!(
            run(&format!("{p}\nchange: {{ max_growth: 300% }}"))
                .await
                .ok
        );
        // A window of 2: the median of 950 and 1000.
        let obs = run(&format!("{p}\nchange: {{ max_growth: 200%, window: 2 }}")).await;
        assert!(
            reason(&obs).contains("above the median 975 B of the previous 2"),
            "{}",
            reason(&obs)
        );

        // One file has no history: nothing to compare with.
        let one = tempfile::tempdir().unwrap();
        file(one.path(), "only.dump", 10, hours(1));
        let obs = run(&format!(
            "path: '{}/*.dump'\nchange: {{ max_drop: 10% }}",
            one.path().display()
        ))
        .await;
        assert!(obs.ok, "{:?}", obs.error);
    }

    #[tokio::test]
    async fn nothing_matching_is_down() {
        let tmp = tempfile::tempdir().unwrap();
        file(tmp.path(), "app.log", 10, hours(1));
        let obs = run(&format!("path: '{}/app-*.sql.gz'", tmp.path().display())).await;
        assert!(!obs.ok);
        assert_eq!(
            reason(&obs),
            format!("no file matches {}/app-*.sql.gz", tmp.path().display())
        );
        assert_eq!(obs.size, None);
        let obs = run("path: /nonexistent/backups/app-*.sql.gz").await;
        assert_eq!(
            reason(&obs),
            "no file matches /nonexistent/backups/app-*.sql.gz \
             (folder /nonexistent/backups does not exist)"
        );
    }

    #[tokio::test]
    async fn too_many_files_is_down_with_a_reason() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..3 {
            file(tmp.path(), &format!("f{i}.gz"), 1, hours(1));
        }
        let mut check = spec(&format!("path: '{}/*.gz'", tmp.path().display()))
            .build()
            .unwrap();
        check.max_files = 2;
        let obs = run_check(&check).await;
        assert_eq!(
            reason(&obs),
            format!(
                "more than 2 files match {}/*.gz: narrow the pattern",
                tmp.path().display()
            )
        );
        check.max_files = 3;
        assert!(run_check(&check).await.ok);
    }

    #[test]
    fn ages_read_as_people_say_them() {
        let cases = [
            (45, "45s"),
            (30 * 60, "30m"),
            (HOUR, "1h"),
            (2 * HOUR + 30 * 60, "2h30m"),
            (31 * HOUR + 59, "31h"),
            (26 * HOUR, "26h"),
            (7 * 24 * HOUR, "7d"),
            (99 * HOUR, "4d3h"),
        ];
        for (secs, want) in cases {
            assert_eq!(age_text(Duration::from_secs(secs)), want, "{secs}");
        }
    }
}
