//! The layers of `src/`, kept: a tidy test in the spirit of rust-analyzer's.
//!
//! A module is the first path part under `src/` (`src/alert/outbox.rs` is `alert`). Each
//! module sits in one layer of [`LAYERS`], bottom to top, the same table as the README's
//! codemap. Non-test code may name (`crate::x`) a module of a *lower* layer only: never its
//! own layer's neighbours, never a layer above. So the modules form a DAG and every line has
//! a layer a newcomer can name. Test code (`#[cfg(test)]` items, the `mod tests;` files it
//! declares) is left out: a test may reach anywhere.
//!
//! And no `sqlx` outside `src/store/`, but for the probe of a target's own database and the
//! fault lab.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top. Keep in step with the README's codemap.
const LAYERS: &[&[&str]] = &[
    &["units", "hash", "text"],
    &["time", "redact"],
    &["clock", "lab"],
    &["probe"],
    &["slo"],
    &["config"],
    &["evaluate", "metrics", "paging"],
    &["store", "report"],
    &["alert", "public"],
    &["schedule"],
    &["watchdog"],
    &["api"],
    &["daemon"],
    &["cli", "fuzz"],
];

/// Where `sqlx` may be used outside `src/store/`: a target's own database, the lab.
const SQLX_ALLOWED: &[&str] = &["src/probe/db_write.rs", "src/lab/"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The non-test lines of a file, numbered from 1, comments dropped; and the files its
/// `#[cfg(test)] mod x;` declarations name (test code too).
fn code_lines(path: &Path, text: &str) -> (Vec<(usize, String)>, Vec<PathBuf>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut test_files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            // Skip the item: more attributes, then one line ending in `;`, or up to the
            // closing brace at the attribute's indentation (rustfmt puts it there).
            let indent = &line[..line.len() - t.len()];
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim_start().starts_with("#[") {
                j += 1;
            }
            if j < lines.len() && lines[j].trim_end().ends_with(';') {
                let decl = lines[j].trim();
                if let Some(name) = decl
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ")
                    .strip_prefix("mod ")
                    .and_then(|r| r.strip_suffix(';'))
                {
                    let stem = path.file_stem().unwrap();
                    let dir = if stem == "mod" || stem == "lib" {
                        path.parent().unwrap().to_path_buf()
                    } else {
                        path.with_extension("")
                    };
                    test_files.push(dir.join(format!("{name}.rs")));
                    test_files.push(dir.join(name).join("mod.rs"));
                }
            } else {
                while j < lines.len() {
                    let l = lines[j];
                    if l == format!("{indent}}}") || l == format!("{indent}}};") {
                        break;
                    }
                    j += 1;
                }
            }
            i = j + 1;
            continue;
        }
        if !t.starts_with("//") {
            let code = match line.find("//") {
                // A trailing comment; `://` is part of a URL in a string, keep it.
                Some(k) if !line[..k].ends_with(':') => &line[..k],
                _ => line,
            };
            out.push((i + 1, code.to_string()));
        }
        i += 1;
    }
    (out, test_files)
}

/// Every module a line names as `crate::x` (`crate::{a, b::c}` names `a` and `b`).
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(k) = rest.find("crate::") {
        let before = rest[..k].chars().last();
        rest = &rest[k + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `probed_crate::`, `$crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("");
                if !first.is_empty() {
                    out.push(first.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

struct Scan {
    /// (from, to) -> where, as `src/file.rs:line`.
    edges: BTreeMap<(String, String), Vec<String>>,
    /// Files outside the store that use sqlx, with the first line.
    sqlx: BTreeMap<String, usize>,
    modules: BTreeSet<String>,
}

fn scan() -> Scan {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut texts = Vec::new();
    let mut test_files = BTreeSet::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        let (lines, tests) = code_lines(f, &text);
        test_files.extend(tests);
        texts.push((f.clone(), lines));
    }
    let mut s = Scan {
        edges: BTreeMap::new(),
        sqlx: BTreeMap::new(),
        modules: BTreeSet::new(),
    };
    for (f, lines) in texts {
        if test_files.contains(&f) {
            continue;
        }
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        if first == "bin" || first == "lib.rs" {
            continue; // the binaries see the library from outside, as `probed::`
        }
        let module = first.trim_end_matches(".rs").to_string();
        s.modules.insert(module.clone());
        let shown = format!("src/{}", rel.display());
        for (n, line) in &lines {
            for to in named_modules(line) {
                if to != module && to != "self" && to != "super" {
                    s.edges
                        .entry((module.clone(), to))
                        .or_default()
                        .push(format!("{shown}:{n}"));
                }
            }
            if module != "store" && line.contains("sqlx::") {
                s.sqlx.entry(shown.clone()).or_insert(*n);
            }
        }
    }
    s
}

fn layer(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&m))
}

#[test]
fn every_module_has_a_layer() {
    let s = scan();
    let missing: Vec<_> = s.modules.iter().filter(|m| layer(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules in no layer of tests/layers.rs LAYERS (and the README codemap): {missing:?}"
    );
    let listed: BTreeSet<_> = LAYERS.iter().flat_map(|l| l.iter()).collect();
    let gone: Vec<_> = listed
        .iter()
        .filter(|m| !s.modules.contains(**m as &str))
        .collect();
    assert!(
        gone.is_empty(),
        "LAYERS lists modules that are gone: {gone:?}"
    );
}

/// The README's codemap table is [`LAYERS`], row for row, and `lib.rs`'s layout names every
/// module: the docs a newcomer reads first say what this test enforces.
#[test]
fn the_docs_name_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let mut wrong = Vec::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        let row = format!("| {} |", i + 1);
        let Some(line) = readme.lines().find(|l| l.starts_with(&row)) else {
            wrong.push(format!("README codemap has no row {row}"));
            continue;
        };
        let cell = line.split('|').nth(2).unwrap_or_default();
        let named: Vec<&str> = cell
            .split(',')
            .map(|m| m.trim().trim_matches('`'))
            .collect();
        if named != *layer {
            wrong.push(format!(
                "README codemap row {}: {named:?}, LAYERS: {layer:?}",
                i + 1
            ));
        }
    }
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    for m in scan().modules {
        if !lib.contains(&format!("//! - [`{m}`]")) && !lib.contains(&format!(", [`{m}`]")) {
            wrong.push(format!("src/lib.rs's layout does not list `{m}`"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_import_points_up_or_sideways() {
    let s = scan();
    let mut bad = Vec::new();
    for ((from, to), at) in &s.edges {
        let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
            continue; // every_module_has_a_layer names it
        };
        if lt < lf {
            continue;
        }
        let how = if lt == lf { "beside it" } else { "above it" };
        for a in at {
            bad.push(format!(
                "{a}: `{from}` imports `{to}`, {how} (layers, bottom to top: {LAYERS:?})"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the layers; move the piece down instead:\n{}",
        bad.join("\n")
    );
}

#[test]
fn sqlx_only_in_the_store() {
    let s = scan();
    let mut bad = Vec::new();
    for (f, n) in &s.sqlx {
        if SQLX_ALLOWED.iter().any(|a| f.starts_with(a)) {
            continue;
        }
        bad.push(format!(
            "{f}:{n}: sqlx outside src/store/; give the store a method"
        ));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_scanner_sees_what_it_must() {
    assert_eq!(
        named_modules("use crate::{alert::Alert, store::Store};"),
        ["alert", "store"]
    );
    assert_eq!(named_modules("let x = crate::time::now_ms();"), ["time"]);
    assert!(named_modules("$crate::x; probed_crate::y").is_empty());
    let text = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n// crate::c\nfn f() {} // crate::d\n#[cfg(test)]\nmod kit;\n";
    let (lines, tests) = code_lines(Path::new("/x/src/m.rs"), text);
    let all: Vec<_> = lines.iter().flat_map(|(_, l)| named_modules(l)).collect();
    assert_eq!(all, ["a"]);
    assert!(tests.contains(&PathBuf::from("/x/src/m/kit.rs")));
}
