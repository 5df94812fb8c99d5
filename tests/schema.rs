//! `probectl schema` judged by a real validator: python-jsonschema (PyPI `jsonschema`, the
//! Draft202012Validator, through tests/peers/validate_schema.py), as an editor's language
//! server would judge a file. Every example config in the repository must pass it and
//! `probectl check-config` both; each broken config here must fail both. So the schema and
//! the loader agree, both ways.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A value for each `${VAR}` an example leaves to the environment: long enough for any key
/// or token check.
const ENV_VALUE: &str = "0123456789abcdef0123456789abcdef";

fn probectl(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probectl"))
        .args(args)
        .env_remove("PROBED_URL")
        .env_remove("PROBED_CONFIG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run probectl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `probectl schema [extra]` written to `dir/name`.
fn schema(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["schema", "--out", path.to_str().unwrap()];
    args.extend(extra);
    let out = probectl(&args, &[]);
    assert!(
        out.status.success(),
        "probectl schema: {}",
        text(&out.stderr)
    );
    path
}

/// python-jsonschema's verdict on each file: `file -> errors` (none when valid).
fn validate(schema: &Path, files: &[PathBuf]) -> BTreeMap<String, Vec<String>> {
    let script = Path::new(ROOT).join("tests/peers/validate_schema.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(schema)
        .args(files)
        .output()
        .expect("run python3 (deploy/test.sh installs jsonschema)");
    assert!(
        out.status.success(),
        "validate_schema.py: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let mut verdicts = BTreeMap::new();
    for line in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let errors = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect();
        verdicts.insert(v["file"].as_str().unwrap().to_owned(), errors);
    }
    assert_eq!(verdicts.len(), files.len(), "one verdict per file");
    verdicts
}

/// `probectl check-config` on `file`, with `${VAR}`s it names (without a default) set.
fn check_config(file: &Path) -> Output {
    let body = std::fs::read_to_string(file).unwrap();
    let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").unwrap();
    let env: Vec<(String, String)> = re
        .captures_iter(&body)
        .map(|c| (c[1].to_owned(), ENV_VALUE.to_owned()))
        .collect();
    probectl(&["-c", file.to_str().unwrap(), "check-config"], &env)
}

/// The README's ```yaml blocks that are whole configs (mappings whose every key is a
/// top-level key of the config), and those that are lists of probes made one (`probes:`
/// over them). Blocks that mix files or show a part of a probe are left out.
fn readme_configs(top_keys: &[String]) -> Vec<(usize, String)> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        match &mut block {
            None if line.trim_start().starts_with("```yaml") => {
                block = Some((n + 1, String::new()))
            }
            None => {}
            Some(_) if line.trim_start().starts_with("```") => {
                let (at, body) = block.take().unwrap();
                match serde_yaml::from_str(&body) {
                    Ok(serde_yaml::Value::Mapping(m)) => {
                        let whole = !m.is_empty()
                            && m.keys().all(|k| {
                                k.as_str().is_some_and(|k| {
                                    top_keys.iter().any(|t| t == k) || k.starts_with("x-")
                                })
                            });
                        if whole {
                            out.push((at, body));
                        }
                    }
                    Ok(serde_yaml::Value::Sequence(items))
                        if items.iter().all(|i| i.get("kind").is_some()) =>
                    {
                        let indented: String = body.lines().map(|l| format!("  {l}\n")).collect();
                        out.push((at, format!("probes:\n{indented}")));
                    }
                    _ => {}
                }
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// The schema is a valid draft 2020-12 schema (check_schema, in the script), and every
/// example passes it and the loader: probed.yaml, the probe files under probes/ (against
/// `--probes-file`), and the README's whole configs and probe lists. (The fuzz harness's
/// config seeds are copies of these, some made to fail.)
#[test]
fn every_example_config_passes_the_schema_and_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let config_schema = schema(dir.path(), "probed.schema.json", &[]);
    let probes_schema = schema(dir.path(), "probes.schema.json", &["--probes-file"]);
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_schema).unwrap()).unwrap();
    assert_eq!(
        parsed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let top_keys: Vec<String> = parsed["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();

    // What the README's configs name beside them: a probes/ folder and a blackbox.yml.
    let root = Path::new(ROOT);
    std::fs::create_dir(dir.path().join("probes")).unwrap();
    std::fs::copy(
        root.join("probes/demo.yaml"),
        dir.path().join("probes/demo.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("blackbox.yml"), "modules: {}\n").unwrap();
    let mut configs = vec![root.join("probed.yaml")];
    let readme = readme_configs(&top_keys);
    assert!(readme.len() >= 10, "README configs found: {}", readme.len());
    for (line, body) in &readme {
        let f = dir.path().join(format!("readme-line-{line}.yaml"));
        std::fs::write(&f, body).unwrap();
        configs.push(f);
    }
    let mut failures = Vec::new();
    for (file, errors) in validate(&config_schema, &configs) {
        if !errors.is_empty() {
            failures.push(format!("{file}: schema: {errors:#?}"));
        }
    }
    let probe_files = yaml_files(&root.join("probes"));
    assert!(!probe_files.is_empty());
    for (file, errors) in validate(&probes_schema, &probe_files) {
        if !errors.is_empty() {
            failures.push(format!("{file}: probe file schema: {errors:#?}"));
        }
    }
    let mut partial = 0;
    for f in &configs {
        let out = check_config(f);
        let said = text(&out.stdout) + &text(&out.stderr);
        // A README block that shows one section may name a notifier defined in another.
        let errors: Vec<&str> = said.lines().filter(|l| !l.ends_with(" error(s)")).collect();
        if !out.status.success() && errors.iter().all(|l| l.contains("unknown notifier \"")) {
            partial += 1;
            continue;
        }
        if !out.status.success() {
            failures.push(format!(
                "{}: check-config: {}",
                f.display(),
                text(&out.stdout) + &text(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        partial <= 1,
        "{partial} README configs name notifiers they do not define"
    );
}

/// Broken configs: each must fail the schema and `probectl check-config` both; and a config
/// that uses what the loader does before checking (`${VAR}` where a number or a boolean
/// goes, a secret read from a `_file`, `x-` anchors merged with `<<`, a serde alias) must
/// pass both.
#[test]
fn the_schema_and_the_loader_agree_on_broken_and_tricky_configs() {
    let dir = tempfile::tempdir().unwrap();
    let config_schema = schema(dir.path(), "probed.schema.json", &[]);
    let http =
        "probes:\n  - name: web\n    kind: http\n    request:\n      url: http://127.0.0.1:1/\n";
    let broken: &[(&str, String)] = &[
        (
            "unknown top-level key",
            format!("listne: 127.0.0.1:9797\n{http}"),
        ),
        (
            "misspelt field of the kind",
            format!("{http}    expectt:\n      status: [200]\n"),
        ),
        (
            "misspelt nested field",
            format!("{http}    expect:\n      statuss: [200]\n"),
        ),
        ("unknown kind", http.replace("kind: http", "kind: htpp")),
        ("a field of another kind", format!("{http}    port: 443\n")),
        (
            "wrong type: a list for every",
            format!("{http}    every: [5]\n"),
        ),
        (
            "wrong type: a word for a boolean",
            format!("{http}    public: \"yes\"\n"),
        ),
        ("not a duration", format!("{http}    every: soon\n")),
        (
            "missing name",
            http.replace("  - name: web\n    kind", "  - kind"),
        ),
        (
            "unknown notifier kind",
            "notifiers:\n  ops:\n    kind: pager\n".into(),
        ),
        (
            "misspelt notifier field",
            "notifiers:\n  hook:\n    kind: webhook\n    ulr: https://example.com/hook\n".into(),
        ),
        ("unknown key in store", "store:\n  retenion: 7d\n".into()),
        (
            "number out of range",
            format!("{http}    alert:\n      within: 65\n"),
        ),
        (
            "every and cron together",
            format!("{http}    every: 1m\n    cron: \"* * * * *\"\n"),
        ),
        (
            "maintenance mixing cron and start",
            "maintenance:\n  - cron: \"0 2 * * *\"\n    duration: 30m\n    start: \"2026-12-01T22:00:00Z\"\n"
                .into(),
        ),
    ];
    let mut files = Vec::new();
    for (i, (_, body)) in broken.iter().enumerate() {
        let f = dir.path().join(format!("broken-{i}.yaml"));
        std::fs::write(&f, body).unwrap();
        files.push(f);
    }
    std::fs::write(dir.path().join("hook.secret"), "s3cret-value\n").unwrap();
    let tricky = "x-base: &base\n  kind: http\n  timeout: ${TIMEOUT}\n\
         listen: 127.0.0.1:${PORT}\n\
         admin_token_file: hook.secret\n\
         defaults:\n  max_concurrent: ${MAX}\n\
         probes:\n  - <<: *base\n    name: web\n    public: ${PUBLIC}\n    every: 5\n    \
         request:\n      url: http://127.0.0.1:1/\n    expect:\n      status:\n        - ${STATUS}\n        - 2xx\n\
         \x20 - name: resolver\n    kind: dns\n    query_name: example.com\n    query_type: aaaa\n\
         notifiers:\n  hook:\n    kind: webhook\n    url: https://example.com/hook\n    secret_file: hook.secret\n";
    let tricky_file = dir.path().join("tricky.yaml");
    std::fs::write(&tricky_file, tricky).unwrap();
    files.push(tricky_file.clone());

    let verdicts = validate(&config_schema, &files);
    let mut failures = Vec::new();
    for (i, (what, _)) in broken.iter().enumerate() {
        let f = &files[i];
        if verdicts[f.to_str().unwrap()].is_empty() {
            failures.push(format!("{what}: the schema accepts it"));
        }
        if check_config(f).status.success() {
            failures.push(format!("{what}: check-config accepts it"));
        }
    }
    let errors = &verdicts[tricky_file.to_str().unwrap()];
    if !errors.is_empty() {
        failures.push(format!("tricky: the schema refuses it: {errors:#?}"));
    }
    let env: Vec<(String, String)> = [
        ("TIMEOUT", "2s"),
        ("PORT", "9797"),
        ("MAX", "10"),
        ("PUBLIC", "true"),
        ("STATUS", "204"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = probectl(&["-c", tricky_file.to_str().unwrap(), "check-config"], &env);
    if !out.status.success() {
        failures.push(format!(
            "tricky: check-config refuses it: {}",
            text(&out.stdout)
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What an editor makes of the schema: yaml-language-server (npm, VS Code's YAML extension
/// and Neovim's and Helix's YAML support, through tests/peers/yaml_ls_check.js) finds nothing
/// wrong with the examples, flags each broken key, type and kind where it stands, and
/// completes the keys of the probe's own kind beside the common ones.
#[test]
fn an_editor_checks_and_completes_with_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config_schema = schema(dir.path(), "probed.schema.json", &[]);
    let probes_schema = schema(dir.path(), "probes.schema.json", &["--probes-file"]);
    let root = Path::new(ROOT);
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let http = "probes:\n  - name: web\n    kind: http\n    request:\n      url: http://x/\n";
    let cases = serde_json::json!([
        { "name": "probed", "text": read("probed.yaml") },
        { "name": "misspelt", "text": format!("{http}    expectt:\n      status: [200]\n") },
        { "name": "types", "text": format!("{http}    public: \"yes\"\n    every: soon\n") },
        { "name": "kind", "text": format!("listne: 1\n{}", http.replace("kind: http", "kind: htpp")) },
        { "name": "interpolated", "text": format!("{http}    every: 5\n    public: ${{PUBLIC}}\n") },
        { "name": "http_keys", "text": format!("{http}    \n"), "complete_at": [5, 4] },
        { "name": "redis_keys", "text": "probes:\n  - name: r\n    kind: redis\n    \n", "complete_at": [3, 4] },
        { "name": "top_keys", "text": "\n", "complete_at": [0, 0] },
    ]);
    let run = |schema: &Path, cases: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        let mut child = Command::new("node")
            .arg(root.join("tests/peers/yaml_ls_check.js"))
            .arg(schema)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run node (deploy/test.sh installs yaml-language-server)");
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(cases.to_string().as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "yaml_ls_check.js: {}",
            text(&out.stderr)
        );
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        list.into_iter()
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
            .collect()
    };
    let got = run(&config_schema, &cases);
    let strings = |name: &str, field: &str| -> Vec<String> {
        got[name][field]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut wrong = Vec::new();
    for clean in ["probed", "interpolated"] {
        let d = strings(clean, "diagnostics");
        if !d.is_empty() {
            wrong.push(format!("{clean}: {d:?}"));
        }
    }
    let flagged: &[(&str, &[&str])] = &[
        ("misspelt", &["6:5 Property expectt is not allowed"]),
        ("types", &["6:13 ", "7:12 "]),
        ("kind", &["1:1 Property listne is not allowed", "4:11 "]),
    ];
    for (name, wanted) in flagged {
        let d = strings(name, "diagnostics");
        for w in *wanted {
            if !d.iter().any(|x| x.starts_with(w)) {
                wrong.push(format!("{name}: no diagnostic at {w:?}: {d:?}"));
            }
        }
    }
    let completes: &[(&str, &[&str], &[&str])] = &[
        (
            "http_keys",
            &["expect", "follow_redirects", "every", "alert"],
            &["port", "min_headroom"],
        ),
        (
            "redis_keys",
            &["url", "min_headroom", "timeout"],
            &["expect", "request"],
        ),
        (
            "top_keys",
            &["probes", "defaults", "watchdog", "admin_token_file"],
            &[],
        ),
    ];
    for (name, has, lacks) in completes {
        let c = strings(name, "completions");
        for k in *has {
            if !c.iter().any(|x| x == k) {
                wrong.push(format!("{name}: {k} not completed: {c:?}"));
            }
        }
        for k in *lacks {
            if c.iter().any(|x| x == k) {
                wrong.push(format!("{name}: {k} completed: {c:?}"));
            }
        }
    }
    let demo = serde_json::json!([{ "name": "demo", "text": read("probes/demo.yaml") }]);
    let d = &run(&probes_schema, &demo)["demo"]["diagnostics"];
    if d.as_array().is_none_or(|a| !a.is_empty()) {
        wrong.push(format!("probes/demo.yaml: {d}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
