//! `kind: tls` probe (not implemented yet: `validate` rejects it, so no config can use it).

use serde::Deserialize;

use super::{CheckCx, FieldError, Observation};

/// Settings of a `tls` probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {}

impl Spec {
    pub fn validate(&self) -> Vec<FieldError> {
        vec![FieldError::new("kind", "kind tls is not implemented yet")]
    }
    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}
    pub fn target_host(&self) -> Option<String> {
        None
    }
    pub fn build(&self) -> Result<Check, String> {
        Err("kind tls is not implemented yet".into())
    }
}

/// A runnable `tls` probe.
pub struct Check {}

impl Check {
    pub async fn check(&self, _cx: &CheckCx<'_>) -> Observation {
        Observation::default().fail("kind tls is not implemented yet")
    }
}
