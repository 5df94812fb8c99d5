//! The four postmortems in `../shared/incidents/` replayed against the real `probed`, on a
//! compressed clock: targets fail the way those systems failed (the fault lab, a real
//! PostgreSQL and Redis), and each scenario measures how fast on-call is paged through the
//! daemon's own path, and that nothing else pages.
//!
//! Each prints its figures (detection, time to page, false and duplicate pages) and appends
//! them to `target/scenarios.md`. Run them alone with
//! `cargo test --test scenarios -- --nocapture --test-threads 1`.

#[path = "../support/mod.rs"]
mod support;

mod exalate;
mod mural;
mod ovice;
mod wisembly;
