//! The fuzz harness's corpus as a test (issue 12): every entry point of `probed::fuzz` over
//! every seed (`fuzz/seeds/<target>/`) and every crashing input kept
//! (`fuzz/regressions/<target>/`). A panic fails the test, named by its file. CI runs this,
//! never the fuzzer itself (that is `fuzz/run.sh`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// An entry point of `probed::fuzz`.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("config_loader", probed::fuzz::config_loader),
    ("units", probed::fuzz::units),
    ("push_url", probed::fuzz::push_url),
    ("api_request", probed::fuzz::api_request),
    ("http_reply", probed::fuzz::http_reply),
    ("redis_reply", probed::fuzz::redis_reply),
];

/// The files of `dir`, by name; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// One test, the targets one after the other: the entry points share their peers and
/// scratch folders, removed at the end.
#[test]
fn every_seed_and_kept_crasher_runs_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for (target, run) in TARGETS {
        let seeds = files(&fuzz.join("seeds").join(target));
        assert!(
            !seeds.is_empty(),
            "no seeds for {target} in fuzz/seeds/{target}"
        );
        let kept = files(&fuzz.join("regressions").join(target));
        for file in seeds.iter().chain(&kept) {
            let data = std::fs::read(file).expect("read a corpus file");
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(format!("{target}: {}", file.display()));
            }
        }
    }
    probed::fuzz::remove_scratch();
    assert!(failures.is_empty(), "panicked on:\n{}", failures.join("\n"));
}
