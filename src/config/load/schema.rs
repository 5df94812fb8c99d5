//! The JSON Schema of a config file and of a probe file (`probectl schema`), for editors to
//! complete and check `probed.yaml` with.
//!
//! Made from the same things the loader checks against, so the two cannot drift apart:
//! - the sections the loader reads by hand are described key by key here, each mapping
//!   built from the loader's own key table ([`Build::closed`]); a key in a table without a
//!   description, or a description without its key, fails `every_table_key_is_described`;
//! - each probe kind's and notifier kind's own fields come from its `Spec` through
//!   schemars (`JsonSchema` derived beside `Deserialize`, so serde's `rename`, `default`,
//!   `deny_unknown_fields` and `alias` are honoured and the `///` docs become descriptions);
//!   a probe is one of the kinds (`oneOf`, told apart by `kind`), the common keys
//!   ([`PROBE_KEYS`]) beside that kind's own.
//!
//! Two things the loader does to a file before checking it are mirrored over the whole
//! schema at the end ([`finish`]), so the schema never refuses what the loader accepts:
//! - `${VAR}` interpolation: wherever a number, a boolean or one of a few words is
//!   expected, a string holding `${...}` is accepted too (the loader makes `port: ${PORT}`
//!   a number after interpolation; the value is only known then);
//! - `key_file: path`, read into `key`: every key that takes a string may be written with
//!   `_file` appended instead.
//!
//! Patterns carry `patternErrorMessage` (yaml-language-server's and VS Code's keyword for a
//! readable message; validators that do not know it ignore it).
//!
//! The schema is looser than the loader where only the loader can judge: values that need
//! the environment or the file system, names that must be unique, cross-field rules
//! (`every` and `cron` together, `alert.within` below `alert.after`), URL and cron syntax.

use serde_json::{Map, Value, json};

use super::STORE_KEYS;
use super::TOP_KEYS;
use super::alerting::{ALERTING_KEYS, ROUTE_KEYS, STATUS_PAGE_KEYS, STEP_KEYS};
use super::interp::PATH_KEYS;
use super::modules::{
    DNS_KEYS, ENDPOINT_KEYS, HTTP_KEYS, MODULE_KEYS, QUERY_KEYS, TCP_KEYS, TLS_KEYS,
};
use super::probes::{ALERT_KEYS, DEFAULTS_KEYS, MAINTENANCE_KEYS, PROBE_KEYS};
use super::watchdog::{BLIND_KEYS, HEARTBEAT_KEYS, PEER_KEYS, WATCHDOG_ALERT_KEYS, WATCHDOG_KEYS};
use crate::units::{ByteSize, Dur, INTERP_ALT};

/// The schema's `$id`: where an editor may say it came from. Not fetched by anything.
pub const SCHEMA_ID: &str = "https://probed.invalid/schema/probed.schema.json";

/// A whole `${VAR}` or `${VAR:-default}`: what the loader may turn into a number or a boolean.
const INTERPOLATED: &str = r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$";

/// Fields serde also reads under another name (`#[serde(alias)]`), which schemars leaves
/// out: `(kind, field, alias)`. `every_serde_alias_is_listed` finds each alias in the sources.
const ALIASES: &[(&str, &str, &str)] = &[("dns", "type", "query_type")];

/// One schema build: the generator of the kinds' schemas, and what it found wrong with its
/// own tables (see [`Build::closed`]).
struct Build {
    generator: schemars::SchemaGenerator,
    /// `table: key` for each key a table has and no description has, and the reverse.
    mismatches: Vec<String>,
}

/// The JSON Schema (draft 2020-12) of a config file, `probed.yaml`.
pub fn config_schema() -> Value {
    build().0
}

/// The JSON Schema of a probe file (what `probes: path` names): a mapping with a `probes`
/// list. The same probe schema as in [`config_schema`].
pub fn probes_file_schema() -> Value {
    let mut root = config_schema();
    let obj = root.as_object_mut().expect("the schema is an object");
    obj.insert(
        "$id".into(),
        json!(SCHEMA_ID.replace("probed.schema", "probes.schema")),
    );
    obj.insert("title".into(), json!("probed probe file"));
    obj.insert(
        "description".into(),
        json!(
            "A probe file of probed, named by probes: in probed.yaml (a file, or a folder of \
               *.yaml and *.yml files)."
        ),
    );
    let probes = obj["$defs"]["probe_file"]["properties"].clone();
    for k in ["properties", "patternProperties", "required"] {
        obj.remove(k);
    }
    obj.insert("properties".into(), probes);
    obj.insert("patternProperties".into(), json!({ "^x-": {} }));
    root
}

fn build() -> (Value, Vec<String>) {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let mut b = Build {
        generator: settings.into_generator(),
        mismatches: Vec::new(),
    };
    let mut defs = Map::new();
    let duration = b.sub::<Dur>();
    let size = b.sub::<ByteSize>();
    let alert = b.closed(
        "ALERT_KEYS",
        ALERT_KEYS,
        vec![
            ("after", int(1, 10_000, "Failed runs in a row (or within `within` runs) before the probe is down. Default: 2.")),
            ("within", int(1, 64, "Count `after` failures within this many latest runs, not in a row.")),
            ("recover_after", int(1, 10_000, "Successful runs in a row before a down probe is up again. Default: 1.")),
            ("severity", string("Severity of its alerts: a free word, matched by routes (e.g. page, ticket). Default: page.")),
            ("resolve_hold", with(&duration, "How long the probe must stay up before its incident is resolved.")),
            ("locations", json!({
                "description": "How many locations must see the probe down before it alerts: a number (1 to 1000) or a share of those reporting (50%).",
                "type": ["integer", "string"],
                "minimum": 1,
                "maximum": 1000,
                "pattern": format!(r"^\s*[0-9]+\s*%\s*${INTERP_ALT}"),
                "examples": [2, "50%"],
                "patternErrorMessage": "write a number of locations (2) or a share (50%)",
            })),
        ],
    );
    defs.insert("alert".into(), alert);
    let alert_ref = json!({ "$ref": "#/$defs/alert" });

    // Probes: the common keys, then one branch per kind with that kind's own fields.
    let slo = b.sub::<crate::slo::SloSpec>();
    let common = b.closed(
        "PROBE_KEYS",
        PROBE_KEYS,
        vec![
            ("name", string("Unique name of the probe: letters, digits and _ . : -")),
            ("kind", json!({ "description": "What the probe checks.", "type": "string", "enum": crate::probe::KINDS })),
            ("every", with(&duration, "How often the probe runs (at least 100ms). Default: defaults.every. Not with cron.")),
            ("cron", string("When the probe runs, as a cron expression: 5 fields (minutes first) or 6 to 7 (seconds first). Not with every.")),
            ("timeout", with(&duration, "Deadline of one run; not longer than the interval. Default: defaults.timeout.")),
            ("alert", with(&alert_ref, "When the probe is down and whom it pages, over defaults.alert.")),
            ("group", string("Group of the probe on the status page.")),
            ("public", boolean("Show the probe on the public status page. Default: false.")),
            ("labels", string_map("Labels of the probe's series and alerts.")),
            ("description", string("What the probe watches, shown on the status page.")),
            ("title", string("Name shown on the status page (default: the name).")),
            ("slo", with(&slo, "Service level objective: error budget burn-rate alerts and Apdex.")),
            ("locations", string_list("Locations that run the probe (default: every location).")),
        ],
    );
    let common_props = common["properties"].clone();
    let mut branches = Vec::new();
    let kind_schemas = crate::probe::kind_schemas(b.generator());
    for (kind, spec) in kind_schemas {
        let name = format!("probe_{kind}");
        let mut spec = spec.to_value();
        for (_, field, alias) in ALIASES.iter().filter(|(k, _, _)| *k == kind) {
            let same = spec["properties"][*field].clone();
            spec["properties"][*alias] = same;
        }
        defs.insert(
            name.clone(),
            kind_branch(kind, &common_props, &["name", "kind"], spec),
        );
        branches.push(json!({ "$ref": format!("#/$defs/{name}") }));
    }
    defs.insert(
        "probe".into(),
        json!({
            "description": "One probe: name and kind, when it runs and alerts, and the fields of its kind.",
            "type": "object",
            "required": ["kind"],
            "properties": { "kind": common_props["kind"].clone() },
            "oneOf": branches,
            "not": { "required": ["every", "cron"] },
        }),
    );
    let probe_list = json!({
        "description": "The probes.",
        "type": ["array", "null"],
        "items": { "$ref": "#/$defs/probe" },
    });
    defs.insert(
        "probe_file".into(),
        json!({
            "description": "A probe file: a mapping with a probes list.",
            "type": ["object", "null"],
            "properties": { "probes": probe_list.clone() },
            "patternProperties": { "^x-": {} },
            "additionalProperties": false,
        }),
    );

    // Notifiers, by kind.
    let mut nbranches = Vec::new();
    let notifier_schemas = crate::config::notify::kind_schemas(b.generator());
    for (kind, spec) in notifier_schemas {
        let name = format!("notifier_{kind}");
        let kprop =
            json!({ "kind": { "description": "What the notifier sends with.", "type": "string" } });
        defs.insert(
            name.clone(),
            kind_branch(kind, &kprop, &["kind"], spec.to_value()),
        );
        nbranches.push(json!({ "$ref": format!("#/$defs/{name}") }));
    }
    defs.insert(
        "notifier".into(),
        json!({
            "description": "One notifier: its kind and that kind's settings.",
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": { "type": "string", "enum": crate::config::notify::KINDS },
            },
            "oneOf": nbranches,
        }),
    );

    let defaults = b.closed(
        "DEFAULTS_KEYS",
        DEFAULTS_KEYS,
        vec![
            ("every", with(&duration, "Interval of probes that set neither every nor cron (at least 100ms). Default: 30s.")),
            ("timeout", with(&duration, "Timeout of probes that set none (cut to the interval). Default: 10s.")),
            ("alert", with(&alert_ref, "Alert settings every probe starts from.")),
            ("max_concurrent", int(1, 100_000, "Most checks in flight at once.")),
            ("max_per_host", int(1, 100_000, "Most checks in flight at once against one host.")),
            ("nameservers", string_list("Nameservers to resolve with instead of the system's: ip or ip:port.")),
        ],
    );
    let store = b.closed(
        "STORE_KEYS",
        STORE_KEYS,
        vec![
            ("url", secret_string("A shared PostgreSQL store: postgres://user:password@host/database (default: the SQLite file under data_dir).")),
            ("retention", with(&duration, "How long results are kept.")),
            ("queue", int(1, 10_000_000, "Most results queued for the store's writer.")),
            ("buffer", int(0, 10_000_000, "Most results held in memory while the store cannot be written.")),
        ],
    );
    let step = b.closed(
        "STEP_KEYS",
        STEP_KEYS,
        vec![
            (
                "after",
                with(
                    &duration,
                    "How long an incident stays open before this step pages.",
                ),
            ),
            (
                "notify",
                string_list("Notifiers this step pages (names under notifiers)."),
            ),
        ],
    );
    let mut step = step;
    step["required"] = json!(["after", "notify"]);
    let route = b.closed(
        "ROUTE_KEYS",
        ROUTE_KEYS,
        vec![
            ("match", string_map("Labels an alert must have for this route (first match wins): probe labels, severity, probe, kind, group; globs allowed.")),
            ("notify", string_list("Notifiers to page (names under notifiers).")),
            ("fallback", string_list("When a channel keeps failing, the page moves down this chain of notifiers.")),
            ("escalate", json!({ "description": "Further notifiers to page while the incident stays open and unacknowledged.", "type": ["array", "null"], "items": step })),
            ("remind_every", with(&duration, "Page again this often while the incident stays open.")),
            ("resolve", boolean("Send resolve notices on recovery. Default: true.")),
        ],
    );
    let alerting = b.closed(
        "ALERTING_KEYS",
        ALERTING_KEYS,
        vec![
            (
                "max_attempts",
                int(1, 1_000, "Tries on one channel before the fallback takes over."),
            ),
            (
                "retry_base",
                with(
                    &duration,
                    "Wait before the first retry; doubles each try, with jitter (Retry-After is honoured).",
                ),
            ),
            (
                "retry_max",
                with(&duration, "Longest wait between attempts."),
            ),
        ],
    );
    let status_page = b.closed(
        "STATUS_PAGE_KEYS",
        STATUS_PAGE_KEYS,
        vec![
            (
                "title",
                string("Title of the public status page (default: \"<instance> status\")."),
            ),
            ("description", string("Text under the title.")),
            (
                "url",
                string("The page's public address (default: external_url + /status)."),
            ),
            (
                "history_days",
                int(1, 400, "Days of uptime bars and past incidents."),
            ),
        ],
    );
    let heartbeat = b.closed(
        "HEARTBEAT_KEYS",
        HEARTBEAT_KEYS,
        vec![
            (
                "url",
                string("URL the daemon GETs to say it is alive (a dead man's switch)."),
            ),
            ("every", with(&duration, "How often.")),
            ("timeout", with(&duration, "Timeout of one request.")),
        ],
    );
    let mut heartbeat = heartbeat;
    heartbeat["required"] = json!(["url"]);
    let peer = b.closed(
        "PEER_KEYS",
        PEER_KEYS,
        vec![
            ("name", string("Name of the probe that watches the peer.")),
            (
                "url",
                string("The peer daemon's base URL (its /healthz is probed)."),
            ),
            (
                "after",
                with(
                    &duration,
                    "How long the peer may be unreachable before it is down.",
                ),
            ),
            ("every", with(&duration, "How often the peer is probed.")),
            ("severity", string("Severity of the peer's alerts.")),
            ("labels", string_map("Labels of the peer's probe.")),
        ],
    );
    let mut peer = peer;
    peer["required"] = json!(["name", "url"]);
    let blind = b.closed(
        "BLIND_KEYS",
        BLIND_KEYS,
        vec![
            ("failing", json!({ "description": "Share of the hosts reached that failed every probe for this daemon to be blind. Default: 80%.", "type": "string", "pattern": format!(r"^\s*[0-9]+\s*%\s*${INTERP_ALT}"), "examples": ["80%"], "patternErrorMessage": "write a share, e.g. 80%" })),
            ("min_hosts", int(1, 1_000_000, "Fewest hosts counted before blindness is judged. Default: 3.")),
            ("within", with(&duration, "Results within this window are counted. Default: 1m.")),
        ],
    );
    let wd_alert = b.closed(
        "WATCHDOG_ALERT_KEYS",
        WATCHDOG_ALERT_KEYS,
        vec![
            (
                "notify",
                string_list("Notifiers of kind alertmanager to send it through."),
            ),
            (
                "every",
                with(&duration, "How often it is sent. Default: 1m."),
            ),
        ],
    );
    let mut wd_alert = wd_alert;
    wd_alert["required"] = json!(["notify"]);
    let watchdog = b.closed(
        "WATCHDOG_KEYS",
        WATCHDOG_KEYS,
        vec![
            ("heartbeat", json!({ "description": "Outbound heartbeats: one, or a list.", "anyOf": [heartbeat.clone(), { "type": "array", "items": heartbeat }] })),
            ("peers", json!({ "description": "Other probed daemons to watch.", "type": ["array", "null"], "items": peer })),
            ("max_lag", with(&duration, "Self-check: the scheduler's start lag (p99 over the last minute) above this makes the daemon unhealthy. Default: 1s.")),
            ("max_undelivered_age", with(&duration, "Self-check: a page still undelivered after this long makes the daemon unhealthy. Default: 5m.")),
            ("alertmanager", with(&wd_alert, "An always-firing Watchdog alert to Alertmanager while the daemon is healthy.")),
            ("blind", with(&blind, "When this daemon counts as blind (cut off itself) rather than its targets down.")),
            ("reference", string_list("Absolute http(s) URLs that should always answer: one answering means not blind, all failing means blind.")),
            ("lost_after", with(&duration, "A location none of whose daemons wrote to the store for this long is down. Default: 1m.")),
        ],
    );

    // modules: blackbox_exporter's module format, the keys probed maps.
    let tls_config = b.closed(
        "TLS_KEYS",
        TLS_KEYS,
        vec![
            (
                "insecure_skip_verify",
                boolean("Skip certificate verification."),
            ),
            ("ca_file", string("PEM file of CA certificates to trust.")),
            (
                "server_name",
                string("Name to send as SNI and verify the certificate against."),
            ),
        ],
    );
    let ip_protocol =
        json!({ "description": "ip4 or ip6 first.", "type": "string", "enum": ["ip4", "ip6"] });
    let http_module = b.closed(
        "HTTP_KEYS",
        HTTP_KEYS,
        vec![
            ("valid_status_codes", json!({ "description": "Accepted status codes (default: 2xx).", "type": ["array", "null"], "items": { "type": "integer", "minimum": 100, "maximum": 599 } })),
            ("method", string("Request method. Default: GET.")),
            ("headers", string_map("Request headers.")),
            ("body", string("Request body.")),
            ("follow_redirects", boolean("Follow redirects. Default: true.")),
            ("no_follow_redirects", boolean("Do not follow redirects (blackbox's older key).")),
            ("fail_if_ssl", boolean("Fail when the final response came over TLS.")),
            ("fail_if_not_ssl", boolean("Fail when the final response did not come over TLS.")),
            ("fail_if_body_not_matches_regexp", string_list("A regular expression the body must match (one).")),
            ("fail_if_header_not_matches", json!({ "description": "Headers that must match a regular expression.", "type": ["array", "null"], "items": { "type": "object", "properties": { "header": { "type": "string" }, "regexp": { "type": "string" }, "allow_missing": { "type": "boolean" } }, "additionalProperties": false } })),
            ("tls_config", tls_config.clone()),
            ("preferred_ip_protocol", ip_protocol.clone()),
            ("ip_protocol_fallback", boolean("Fall back to the other IP protocol.")),
            ("body_size_limit", with(&size, "Most bytes of body read.")),
            ("basic_auth", json!({ "description": "HTTP basic authentication.", "type": ["object", "null"], "properties": { "username": { "type": "string" }, "password": { "type": "string", "writeOnly": true } }, "additionalProperties": false })),
            ("bearer_token", secret_string("Bearer token to send.")),
        ],
    );
    let query = b.closed(
        "QUERY_KEYS",
        QUERY_KEYS,
        vec![
            ("expect", string("Regular expression the reply must match.")),
            ("send", string("Text to send.")),
        ],
    );
    let tcp_module = b.closed(
        "TCP_KEYS",
        TCP_KEYS,
        vec![
            ("query_response", json!({ "description": "Steps to send and expect, in order.", "type": ["array", "null"], "items": query })),
            ("tls", boolean("Connect with TLS.")),
            ("tls_config", tls_config),
            ("preferred_ip_protocol", ip_protocol.clone()),
            ("ip_protocol_fallback", boolean("Fall back to the other IP protocol.")),
        ],
    );
    let dns_module = b.closed(
        "DNS_KEYS",
        DNS_KEYS,
        vec![
            ("query_name", string("Name to ask about.")),
            (
                "query_type",
                string("Record type. Default: ANY in blackbox; probed asks A."),
            ),
            (
                "valid_rcodes",
                string_list("Accepted response codes: NOERROR, NXDOMAIN."),
            ),
            ("preferred_ip_protocol", ip_protocol),
            (
                "ip_protocol_fallback",
                boolean("Fall back to the other IP protocol."),
            ),
            ("transport_protocol", string("udp or tcp.")),
            ("recursion_desired", boolean("Ask for recursion.")),
            ("query_class", string("Query class (IN only).")),
            (
                "dns_over_tls",
                boolean("Ask over TLS (not supported by probed)."),
            ),
        ],
    );
    let mut dns_module = dns_module;
    dns_module["required"] = json!(["query_name"]);
    let module = b.closed(
        "MODULE_KEYS",
        MODULE_KEYS,
        vec![
            ("prober", json!({ "description": "blackbox prober: http, tcp or dns (icmp and grpc are not in probed).", "type": "string", "enum": ["http", "tcp", "dns", "icmp", "grpc"] })),
            ("timeout", with(&duration, "Timeout of one probe.")),
            ("http", http_module),
            ("tcp", tcp_module),
            ("dns", dns_module),
            ("icmp", json!({ "description": "Not in probed (an error)." })),
            ("grpc", json!({ "description": "Not in probed (an error)." })),
        ],
    );
    let mut module = module;
    module["required"] = json!(["prober"]);
    defs.insert("module".into(), module);
    let endpoint = b.closed(
        "ENDPOINT_KEYS",
        ENDPOINT_KEYS,
        vec![(
            "allow",
            string_list("Targets /probe may be asked about: host names or patterns."),
        )],
    );
    let mut endpoint = endpoint;
    endpoint["required"] = json!(["allow"]);

    let maintenance = b.closed(
        "MAINTENANCE_KEYS",
        MAINTENANCE_KEYS,
        vec![
            ("name", string("Name of the window, in logs.")),
            (
                "probes",
                string_list("Probes it mutes: names or globs (api-*). Default: every probe."),
            ),
            (
                "cron",
                string("When each window starts, as a cron expression (with duration)."),
            ),
            (
                "duration",
                with(&duration, "How long each window lasts (with cron)."),
            ),
            (
                "start",
                string(
                    "Start of a one-off window, RFC 3339 (with end), e.g. 2026-12-01T22:00:00Z.",
                ),
            ),
            (
                "end",
                string("End of a one-off window, RFC 3339 (with start)."),
            ),
        ],
    );

    // A window is cron and duration, or start and end: never a mix (the loader also wants
    // each pair whole, which a `_file` key could stand in for, so that is left to it).
    let mut maintenance = maintenance;
    maintenance["not"] = json!({ "anyOf": [
        { "required": ["cron", "start"] },
        { "required": ["cron", "end"] },
        { "required": ["duration", "start"] },
        { "required": ["duration", "end"] },
    ] });
    let modules_ref = json!({ "$ref": "#/$defs/module" });
    let root = b.closed(
        "TOP_KEYS",
        TOP_KEYS,
        vec![
            ("listen", string("Address of the HTTP API, metrics and status page: ip:port. Default: 127.0.0.1:9797.")),
            ("data_dir", string("Folder of the SQLite store and state, relative to this file. Default: data.")),
            ("admin_token", secret_string("Bearer token the write API (ack, pause, silence) requires.")),
            ("probes", json!({
                "description": "The probes: a list, or a probe file or a folder of them (relative to this file).",
                "anyOf": [probe_list, { "type": "string" }],
            })),
            ("defaults", defaults),
            ("store", store),
            ("notifiers", json!({ "description": "Notifiers by name (letters, digits and _ . : -), named by routes.", "type": ["object", "null"], "additionalProperties": { "$ref": "#/$defs/notifier" } })),
            ("routes", json!({ "description": "Which notifiers each alert pages, first match wins.", "type": ["array", "null"], "items": route })),
            ("watchdog", watchdog),
            ("maintenance", json!({ "description": "Windows in which probes do not page.", "type": ["array", "null"], "items": maintenance })),
            ("alerting", alerting),
            ("instance", string("Name of this daemon in alerts and metrics. Default: the host name.")),
            ("location", string("Where this daemon probes from: letters, digits and _ . : - Default: the instance.")),
            ("external_url", string("Absolute http(s) URL this daemon is reached at, for links in alerts.")),
            ("status_page", status_page),
            ("modules", json!({ "description": "blackbox_exporter modules by name, for /probe.", "type": ["object", "null"], "additionalProperties": modules_ref })),
            ("modules_file", string("A blackbox_exporter blackbox.yml whose modules are read as well.")),
            ("probe_endpoint", with(&endpoint, "Serve /probe?target=&module= as blackbox_exporter does.")),
        ],
    );
    let mut gen_defs = b.generator().take_definitions(true);
    defs.append(&mut gen_defs);
    defs.insert(
        "interpolated".into(),
        json!({
            "description": "A value from the environment, ${VAR} or ${VAR:-default}, checked after interpolation.",
            "type": "string",
            "pattern": INTERPOLATED,
        }),
    );
    let mut doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "probed config",
        "description": "The config file of probed, the synthetic health-monitoring daemon (probed.yaml). Made by `probectl schema` from the types the daemon reads it with.",
    });
    let root_obj = root.as_object().expect("closed gives an object").clone();
    for (k, v) in root_obj {
        doc[k] = v;
    }
    doc["patternProperties"] =
        json!({ "^x-": { "description": "Free: a place for anchors to merge with <<: *name." } });
    doc["$defs"] = Value::Object(defs);
    finish(&mut doc);
    (doc, b.mismatches)
}

impl Build {
    fn generator(&mut self) -> &mut schemars::SchemaGenerator {
        &mut self.generator
    }

    /// The schema of `T`: a `$ref` into the definitions, or inline for a simple type.
    fn sub<T: schemars::JsonSchema>(&mut self) -> Value {
        self.generator().subschema_for::<T>().to_value()
    }

    /// A mapping the loader checks against `table` (named `name`), with the keys of
    /// `props`: any difference between the two is a mismatch. Every key may be null, as the
    /// loader reads a null value as an absent one.
    fn closed(&mut self, name: &str, table: &[&str], props: Vec<(&str, Value)>) -> Value {
        for k in table {
            if !props.iter().any(|(p, _)| p == k) {
                self.mismatches.push(format!("{name}: {k} has no schema"));
            }
        }
        let mut properties = Map::new();
        for (k, v) in props {
            if !table.contains(&k) {
                self.mismatches
                    .push(format!("{name}: {k} is not in the table"));
            }
            properties.insert(k.to_string(), nullable(v));
        }
        json!({
            "type": ["object", "null"],
            "properties": properties,
            "additionalProperties": false,
        })
    }
}

/// One kind's branch of `oneOf`: `kind` fixed to it, the common keys beside the kind's own
/// (`spec`, the schema schemars made for its `Spec`), nothing else.
fn kind_branch(kind: &str, common: &Value, required: &[&str], spec: Value) -> Value {
    let mut props = common.as_object().cloned().unwrap_or_default();
    let spec_props = spec
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in spec_props {
        props.insert(k, v);
    }
    let kind_desc = props
        .get("kind")
        .and_then(|k| k.get("description"))
        .cloned()
        .unwrap_or(Value::Null);
    props.insert(
        "kind".into(),
        json!({ "description": kind_desc, "const": kind }),
    );
    let mut req: Vec<Value> = required.iter().map(|r| json!(r)).collect();
    if let Some(Value::Array(r)) = spec.get("required") {
        req.extend(r.iter().cloned());
    }
    let mut branch = json!({
        "type": "object",
        "properties": props,
        "required": req,
        "additionalProperties": false,
    });
    if let Some(d) = spec.get("description") {
        branch["description"] = d.clone();
    }
    branch
}

/// A key whose value may be null: the loader reads a null value as an absent one.
fn nullable(mut v: Value) -> Value {
    let null = Value::String("null".into());
    match v.get_mut("type") {
        Some(Value::Array(ts)) => {
            if !ts.contains(&null) {
                ts.push(null);
            }
        }
        Some(t @ Value::String(_)) => {
            let first = t.take();
            *t = Value::Array(vec![first, null]);
        }
        _ => {
            if let Some(Value::Array(any)) = v.get_mut("anyOf") {
                any.push(json!({ "type": "null" }));
            }
        }
    }
    v
}

/// `schema` with its own description (a `$ref` is wrapped, as keys beside it may be
/// ignored by older tools).
fn with(schema: &Value, description: &str) -> Value {
    let mut s = match schema {
        Value::Object(_) if schema.get("$ref").is_none() => schema.clone(),
        _ => json!({ "anyOf": [schema] }),
    };
    s["description"] = json!(description);
    s
}

/// A string that is a secret: `writeOnly`, and its `key_file` named (see [`add_file_keys`]).
fn secret_string(description: &str) -> Value {
    json!({ "description": description, "type": "string", "writeOnly": true })
}

fn string(description: &str) -> Value {
    json!({ "description": description, "type": "string" })
}

fn boolean(description: &str) -> Value {
    json!({ "description": description, "type": "boolean" })
}

fn int(min: u64, max: u64, description: &str) -> Value {
    json!({ "description": description, "type": "integer", "minimum": min, "maximum": max })
}

fn string_list(description: &str) -> Value {
    json!({ "description": description, "type": ["array", "null"], "items": { "type": "string" } })
}

fn string_map(description: &str) -> Value {
    json!({ "description": description, "type": ["object", "null"], "additionalProperties": { "type": "string" } })
}

/// Mirrors interpolation over the whole schema: `_file` keys first (they need to see which
/// keys take a string), then `${...}` where a string is not otherwise taken.
fn finish(doc: &mut Value) {
    let defs = doc["$defs"].clone();
    add_file_keys(doc, &defs);
    allow_interpolation(doc);
}

/// `key_file: path` in a closed mapping: the loader reads the file into `key` (except for the
/// keys that name a file the daemon reads itself), anywhere. So each closed mapping takes any
/// `*_file` key with a path, a required key that takes a string may come as `key_file`
/// instead, and each secret (`writeOnly`) gets its `key_file` named, for completion.
fn add_file_keys(v: &mut Value, defs: &Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                add_file_keys(child, defs);
            }
            if m.get("additionalProperties") != Some(&Value::Bool(false)) {
                return;
            }
            let Some(Value::Object(props)) = m.get("properties") else {
                return;
            };
            let from_file = |k: &str| {
                !k.ends_with("_file") && !PATH_KEYS.contains(&format!("{k}_file").as_str())
            };
            let mut adds = Map::new();
            for (k, s) in props {
                if from_file(k) && !props.contains_key(&format!("{k}_file")) && secret(s, defs) {
                    let d = format!("{k}, read from this file (its trailing newline cut)");
                    adds.insert(
                        format!("{k}_file"),
                        json!({ "description": d, "type": "string" }),
                    );
                }
            }
            let either: Vec<(String, bool)> = match m.get("required") {
                Some(Value::Array(req)) => req
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|k| {
                        let takes =
                            from_file(k) && props.get(k).is_some_and(|s| takes_string(s, defs, 0));
                        (k.to_string(), takes)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                props.append(&mut adds);
            }
            let pattern = json!({
                "description": "Any key with _file appended: the key's value read from this file.",
                "type": "string",
            });
            let pp = m.entry("patternProperties").or_insert_with(|| json!({}));
            pp["_file$"] = pattern;
            if either.iter().any(|(_, t)| *t) {
                let req: Vec<&String> = either.iter().filter(|(_, t)| !t).map(|(k, _)| k).collect();
                m.insert("required".into(), json!(req));
                let all: Vec<Value> = either
                    .iter()
                    .filter(|(_, t)| *t)
                    .map(|(k, _)| json!({ "anyOf": [{ "required": [k] }, { "required": [format!("{k}_file")] }] }))
                    .collect();
                match m.get_mut("allOf") {
                    Some(Value::Array(a)) => a.extend(all),
                    _ => {
                        m.insert("allOf".into(), json!(all));
                    }
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                add_file_keys(i, defs);
            }
        }
        _ => {}
    }
}

/// Whether `s` is a secret (marked `writeOnly`), through `$ref` and `anyOf`.
fn secret(s: &Value, defs: &Value) -> bool {
    if s.get("writeOnly") == Some(&Value::Bool(true)) {
        return true;
    }
    if let Some(Value::String(r)) = s.get("$ref") {
        let name = r.trim_start_matches("#/$defs/");
        return defs
            .get(name)
            .is_some_and(|d| d.get("writeOnly") == Some(&Value::Bool(true)));
    }
    ["anyOf", "allOf", "oneOf"].iter().any(|k| {
        s.get(*k).and_then(Value::as_array).is_some_and(|a| {
            a.iter()
                .any(|x| x.get("writeOnly") == Some(&Value::Bool(true)))
        })
    })
}

/// Whether `s` accepts some string, following `$ref`, `allOf`, `anyOf` and `oneOf`.
fn takes_string(s: &Value, defs: &Value, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    if let Some(Value::String(r)) = s.get("$ref") {
        let name = r.trim_start_matches("#/$defs/");
        return defs
            .get(name)
            .is_some_and(|d| takes_string(d, defs, depth + 1));
    }
    let typed = match s.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    typed
        || ["allOf", "anyOf", "oneOf"].iter().any(|k| {
            s.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| takes_string(x, defs, depth + 1)))
        })
}

/// Where a schema takes a number, a boolean or one of some words and no string besides,
/// it also takes a whole `${VAR}`: the value is only known after interpolation.
fn allow_interpolation(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                allow_interpolation(child);
            }
            let scalar = |t: &Value| matches!(t.as_str(), Some("integer" | "number" | "boolean"));
            let needs = match m.get("type") {
                Some(Value::String(t)) if t == "string" => m.contains_key("enum"),
                Some(t @ Value::String(_)) => scalar(t),
                Some(Value::Array(ts)) => {
                    (ts.iter().any(scalar) && !ts.iter().any(|t| t == "string"))
                        || (ts.iter().any(|t| t == "string") && m.contains_key("enum"))
                }
                None => m.contains_key("enum"),
                _ => false,
            };
            if !needs {
                return;
            }
            let mut inner = std::mem::take(m);
            for k in ["description", "default", "examples", "title"] {
                if let Some(x) = inner.remove(k) {
                    m.insert(k.into(), x);
                }
            }
            m.insert(
                "anyOf".into(),
                json!([Value::Object(inner), { "$ref": "#/$defs/interpolated" }]),
            );
        }
        Value::Array(items) => {
            for i in items {
                allow_interpolation(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of every table the loader checks against has a schema, and every key the
    /// schema describes is in its table.
    #[test]
    fn every_table_key_is_described() {
        let (_, mismatches) = build();
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    /// Each probe kind and notifier kind has its branch, with the common keys beside its own.
    #[test]
    fn every_kind_has_a_branch() {
        let s = config_schema();
        for k in crate::probe::KINDS {
            let b = &s["$defs"][format!("probe_{k}")];
            assert_eq!(b["properties"]["kind"]["const"], json!(k), "{k}");
            for common in PROBE_KEYS {
                assert!(b["properties"].get(common).is_some(), "{k}: {common}");
            }
        }
        for k in crate::config::notify::KINDS {
            let b = &s["$defs"][format!("notifier_{k}")];
            assert_eq!(b["properties"]["kind"]["const"], json!(k), "{k}");
        }
        assert!(s["$defs"]["probe_http"]["properties"]["expect"].is_object());
    }

    /// Every `#[serde(alias = ...)]` of a probe or notifier kind's types is in [`ALIASES`],
    /// so the schema takes the other name too.
    #[test]
    fn every_serde_alias_is_listed() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for dir in ["probe", "config/notify"] {
            for e in std::fs::read_dir(src.join(dir)).unwrap() {
                let path = e.unwrap().path();
                if path.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split("alias = \"").skip(1) {
                    let alias = part.split('"').next().unwrap().to_owned();
                    found.push((path.display().to_string(), alias));
                }
            }
        }
        let schema = config_schema();
        for (file, alias) in &found {
            let listed = ALIASES.iter().find(|(_, _, a)| a == alias);
            assert!(
                listed.is_some(),
                "{file}: serde alias {alias:?} is not in ALIASES"
            );
            let (kind, _, _) = listed.unwrap();
            let props = &schema["$defs"][format!("probe_{kind}")]["properties"];
            assert!(
                props.get(alias).is_some(),
                "{alias} missing from probe_{kind}"
            );
        }
        assert_eq!(found.len(), ALIASES.len(), "{found:?}");
    }

    /// A number or a boolean may come from `${VAR}`; a secret may come from a file.
    #[test]
    fn interpolation_and_file_keys_are_mirrored() {
        let s = config_schema();
        let public = &s["$defs"]["probe_http"]["properties"]["public"];
        assert_eq!(
            public["anyOf"][1]["$ref"], "#/$defs/interpolated",
            "{public}"
        );
        assert!(s["properties"]["admin_token_file"].is_object());
        assert!(
            s["$defs"]["probe_tls"]["properties"]
                .get("ca_file_file")
                .is_none()
        );
        assert!(s["properties"].get("listen_file").is_none());
        assert_eq!(s["patternProperties"]["_file$"]["type"], "string");
    }
}
