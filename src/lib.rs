//! probed: a synthetic health-monitoring daemon.
pub mod config;
pub mod probe;
pub mod units;
