//! probed: a synthetic health-monitoring daemon that runs outside the serving path of what
//! it watches, probes it the way users do, keeps every result in its own SQLite file, and
//! (in later modules) pages through its own path.
//!
//! # Layout
//!
//! - [`config`]: YAML into a validated [`config::Config`]; every error at once, as
//!   `file:line:col: message`. The loader (`config/load.rs`) reads each group of sections in
//!   a file of its own: `load/probes.rs`, `load/alerting.rs`, `load/watchdog.rs`. The
//!   notifiers' settings are the config's ([`config::notify`]); `alert` builds them into
//!   senders.
//! - [`probe`]: the closed set of probe kinds ([`probe::ProbeSpec`]), what a check returns
//!   ([`probe::Observation`]); one file per kind (`probe/http.rs`, ...).
//! - [`schedule`]: one timer per probe: spread starts, deadlines, no overlap, caps.
//! - [`evaluate`]: the per-probe state machine (`pending` / `up` / `down` / `degraded`) and
//!   [`evaluate::judge`], the rules between objectives and down.
//! - [`store`]: SQLite through sqlx, every query of probed's own database: one batching
//!   writer (`store/writer.rs`: results, state, and in the same transaction incidents and
//!   their first page), a read pool, retention, rollups, the outbox's deliveries.
//! - [`slo`]: objectives: error-budget burn rates (multi-window), Apdex, when a working
//!   probe is degraded.
//! - [`metrics`]: Prometheus registry with the blackbox_exporter names.
//! - [`alert`]: notifier senders, one file per kind; routes and maintenance
//!   (`alert::plan`), the dispatcher that delivers from the outbox (escalation, reminders,
//!   retries, fallbacks).
//! - [`public`]: what the public sees: the status page, its Statuspage-compatible JSON,
//!   feeds and badges, from one cached view.
//! - [`paging`]: what a page is ([`paging::Alert`], [`paging::PagePlan`], [`paging::Page`]),
//!   as data below the store that persists it and the alert path that sends it.
//! - [`api`]: axum routes: `/metrics`, `/healthz`, `/api/v1/...`.
//! - [`daemon`]: wiring, reload and shutdown.
//! - [`cli`]: the `probectl` subcommands.
//! - [`fuzz`]: the entry points the fuzz targets and their regression tests call.
//! - [`watchdog`]: the running daemon's state ([`watchdog::Shared`]) and its self-checks
//!   (`/healthz`); runtime pulse, systemd readiness and watchdog, outbound heartbeats.
//! - [`units`], [`time`]: durations, sizes, secrets; wall-clock display helpers.
//! - [`redact`]: every form a secret takes on the wire, blanked from what is shown or kept.
//! - [`clock`]: wall-clock steps: detected, and pending timers shifted by as much.
//! - [`lab`]: the fault lab, a target that misbehaves on demand (tests, `probectl lab`).
//! - [`report`]: the status report's wire types (`/api/v1/status`, `/healthz`), shared by
//!   the API, `probectl`, the self-checks and the public views.
//! - [`hash`]: a hash stable across builds, for the scheduler's phases and public ids.
//! - [`text`]: [`text::FieldError`] (a spec's problem, reported by config validation for
//!   probes and notifiers alike) and the words of reasons (I/O and TLS errors, causes).
pub mod alert;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod evaluate;
#[doc(hidden)]
pub mod fuzz;
pub mod hash;
pub mod lab;
pub mod metrics;
pub mod paging;
pub mod probe;
pub mod public;
pub mod redact;
pub mod report;
pub mod schedule;
pub mod slo;
pub mod store;
pub mod text;
pub mod time;
pub mod units;
pub mod watchdog;
