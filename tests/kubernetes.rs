//! The Kubernetes manifests of `deploy/kubernetes/`, checked offline: every manifest by
//! PyPI's kubernetes-validate (`--strict`: unknown fields are errors; schemas bundled, no
//! cluster), the ConfigMap's probed.yaml by the real `probectl check-config` with each
//! Deployment's environment, and the pieces that must agree with each other and with the
//! image (ports, labels, secrets, the config's path, the locked-down pod).
//!
//! kubernetes-validate must be installed (deploy/test.sh installs it): without it these
//! tests fail, saying so, rather than skipping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every manifest the kustomization applies, in its order.
fn resources() -> Vec<String> {
    load("kustomization.yaml")["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file name").to_owned())
        .collect()
}

/// The Deployments, by file name.
fn deployments() -> Vec<(String, Value)> {
    let list: Vec<(String, Value)> = resources()
        .into_iter()
        .map(|f| {
            let v = load(&f);
            (f, v)
        })
        .filter(|(_, v)| v["kind"] == "Deployment")
        .collect();
    assert!(list.len() >= 2, "a Deployment per location, at least two");
    list
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v:?}"))
}

fn kubernetes_validate(files: &[PathBuf]) -> Output {
    let present = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .output();
    assert!(
        present.as_ref().is_ok_and(|o| o.status.success()),
        "PyPI kubernetes-validate is not installed (deploy/test.sh installs it: \
         python3 -m pip install kubernetes-validate): {present:?}"
    );
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(files)
        .output()
        .expect("run kubernetes-validate")
}

/// Every manifest passes kubernetes-validate --strict, and the kustomization lists exactly
/// the manifests of the directory. A Deployment with a misspelt field fails it (so the
/// validator does see the files).
#[test]
fn manifests_pass_kubernetes_validate_strict() {
    let mut on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    assert!(on_disk.remove("kustomization.yaml"));
    let listed: BTreeSet<String> = resources().into_iter().collect();
    assert_eq!(listed, on_disk, "kustomization.yaml's resources");

    let files: Vec<PathBuf> = resources().iter().map(|f| dir().join(f)).collect();
    let out = kubernetes_validate(&files);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate --strict: {text}");
    for f in &files {
        assert!(
            text.lines()
                .any(|l| l.contains(&*f.to_string_lossy()) && l.contains(" passed ")),
            "{} not reported as passed: {text}",
            f.display()
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("deployment-typo.yaml");
    let text = std::fs::read_to_string(dir().join(&deployments()[0].0)).unwrap();
    let typo = text.replacen("imagePullPolicy:", "imagePullPolcy:", 1);
    assert_ne!(typo, text);
    std::fs::write(&bad, typo).unwrap();
    let out = kubernetes_validate(&[bad]);
    assert!(
        !out.status.success(),
        "a misspelt field passed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The config in the ConfigMap is valid for probed itself, with the environment each
/// Deployment gives it (its location, its instance, the Secret's placeholders).
#[test]
fn configmap_config_is_valid_for_probed_at_every_location() {
    let cm = load("configmap.yaml");
    let secret = load("secret.yaml");
    let tmp = tempfile::tempdir().unwrap();
    let data = cm["data"].as_mapping().expect("ConfigMap data");
    for (file, text) in data {
        std::fs::write(tmp.path().join(s(file)), s(text)).unwrap();
    }
    let config = tmp.path().join("probed.yaml");
    assert!(config.exists(), "the ConfigMap holds probed.yaml");

    for (name, d) in deployments() {
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for e in container["env"].as_sequence().expect("env") {
            let value = if let Some(v) = e["value"].as_str() {
                v.to_owned()
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                assert_eq!(r["name"], secret["metadata"]["name"], "{name}: {e:?}");
                s(&secret["stringData"][s(&r["key"])]).to_owned()
            };
            env.insert(s(&e["name"]).to_owned(), value);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_probectl"))
            .arg("-c")
            .arg(&config)
            .args(["check-config", "--json"])
            .env_remove("PROBED_CONFIG")
            .env_remove("PROBED_URL")
            .envs(&env)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(out.status.code(), Some(0), "{name}: {v:#}");
        assert_eq!(v["ok"], true, "{name}: {v:#}");
        assert!(v["probes"].as_u64() > Some(0), "{name}: {v:#}");
    }

    // What the config itself must say in a pod (read as YAML; check-config read the rest).
    let yaml: Value = serde_yaml::from_str(s(&data[&Value::from("probed.yaml")])).unwrap();
    assert_eq!(
        yaml["listen"], "0.0.0.0:9797",
        "beyond loopback, for probes and Service"
    );
    assert_eq!(
        yaml["admin_token"], "${PROBED_ADMIN_TOKEN}",
        "writes need the token"
    );
    assert_eq!(yaml["location"], "${PROBED_LOCATION}");
    assert_eq!(
        yaml["store"]["url"], "${PROBED_STORE_URL}",
        "every location on the shared PostgreSQL"
    );
}

/// The Deployments run one locked-down daemon each at distinct locations, with limits,
/// probes and mounts that fit the image and the config; the PodDisruptionBudget and the
/// Service select exactly their pods.
#[test]
fn deployments_are_locked_down_and_agree_with_the_rest() {
    // The image reads its config from PROBED_CONFIG (deploy/Containerfile): the ConfigMap
    // must be mounted at that file's directory.
    let containerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Containerfile"))
            .unwrap();
    let config_path = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENV PROBED_CONFIG="))
        .expect("ENV PROBED_CONFIG= in the Containerfile");
    let config_dir = Path::new(config_path).parent().unwrap().to_str().unwrap();
    let user = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the Containerfile");

    let pdb = load("poddisruptionbudget.yaml");
    let svc = load("service.yaml");
    let cm = load("configmap.yaml");
    let matches = |selector: &Value, labels: &Value| {
        selector
            .as_mapping()
            .unwrap()
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    let mut locations = BTreeSet::new();
    for (name, d) in deployments() {
        let spec = &d["spec"];
        let pod = &spec["template"]["spec"];
        let labels = &spec["template"]["metadata"]["labels"];
        let c = &pod["containers"][0];
        assert_eq!(pod["containers"].as_sequence().unwrap().len(), 1, "{name}");
        assert_eq!(spec["replicas"], 1, "{name}: one daemon per location");
        assert_eq!(spec["strategy"]["type"], "Recreate", "{name}");
        assert!(
            matches(&spec["selector"]["matchLabels"], labels),
            "{name}: selector"
        );
        assert!(
            matches(&pdb["spec"]["selector"]["matchLabels"], labels),
            "{name}: PDB"
        );
        assert!(matches(&svc["spec"]["selector"], labels), "{name}: Service");

        // One location each, said the same way in the env, the label and the name.
        let env = |k: &str| {
            c["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|e| e["name"] == k)
                .and_then(|e| e["value"].as_str())
                .unwrap_or_else(|| panic!("{name}: env {k}"))
                .to_owned()
        };
        let location = env("PROBED_LOCATION");
        assert!(
            locations.insert(location.clone()),
            "{name}: {location} twice"
        );
        assert_eq!(labels["probed.example.com/location"], location.as_str());
        assert_eq!(d["metadata"]["name"], format!("probed-{location}").as_str());
        assert_eq!(env("PROBED_INSTANCE"), format!("probed-{location}"));

        // Non-root, as the image's user, nothing to escalate to, read-only root.
        let (uid, gid) = user.split_once(':').unwrap();
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{name}");
        assert_eq!(
            psc["runAsUser"].as_u64().unwrap().to_string(),
            uid,
            "{name}"
        );
        assert_eq!(
            psc["runAsGroup"].as_u64().unwrap().to_string(),
            gid,
            "{name}"
        );
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        let csc = &c["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(csc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(csc["capabilities"]["drop"][0], "ALL", "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        assert_eq!(pod["enableServiceLinks"], false, "{name}");

        for kind in ["requests", "limits"] {
            for r in ["cpu", "memory"] {
                assert!(
                    c["resources"][kind][r].as_str().is_some(),
                    "{name}: resources.{kind}.{r}"
                );
            }
        }

        // The port the config listens on, probed by the kubelet: ready on /healthz.
        let port = &c["ports"][0];
        assert_eq!(port["containerPort"], 9797, "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(
            c["readinessProbe"]["httpGet"]["port"], port["name"],
            "{name}"
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"]["port"], port["name"],
            "{name}"
        );
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], port["name"]);

        // The ConfigMap where the image looks for its config; /data and /tmp writable.
        let mounts: BTreeMap<String, String> = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| (s(&m["mountPath"]).to_owned(), s(&m["name"]).to_owned()))
            .collect();
        let volume = |mount: &str| {
            let v = mounts
                .get(mount)
                .unwrap_or_else(|| panic!("{name}: nothing mounted at {mount}"));
            pod["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|x| x["name"] == v.as_str())
                .unwrap_or_else(|| panic!("{name}: no volume {v}"))
                .clone()
        };
        assert_eq!(
            volume(config_dir)["configMap"]["name"],
            cm["metadata"]["name"],
            "{name}"
        );
        for writable in ["/data", "/tmp"] {
            assert!(
                volume(writable).get("emptyDir").is_some(),
                "{name}: {writable}"
            );
        }
    }
}
