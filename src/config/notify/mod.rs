//! The notifiers' settings: what `notifiers:` in the config may say, one file per kind,
//! each with its `///` docs and a `validate` that finds every problem without I/O. The
//! config owns them so it can check them; `alert/` builds each into its sender
//! (`NotifierSpec::build`) and sends.
//!
//! Adding a notifier kind: its `Spec` in a file here, one line in [`for_each_kind`]'s list,
//! its sender in `alert/`.

pub mod alertmanager;
pub mod email;
pub mod pagerduty;
pub mod twilio;
pub mod webhook;

use reqwest::Url;

use crate::text::FieldError;
use crate::units::Dur;

macro_rules! kinds {
    ($($name:literal => $variant:ident($module:ident)),* $(,)?) => {
        /// A notifier's settings, by kind.
        #[derive(Debug, Clone)]
        pub enum NotifierSpec { $($variant($module::Spec)),* }

        /// Every notifier kind name.
        pub const KINDS: &[&str] = &[$($name),*];

        /// Each kind's settings (its `Spec`) as a JSON Schema, by kind name, for
        /// `probectl schema`. Nested types land in `generator`'s definitions.
        pub fn kind_schemas(
            generator: &mut schemars::SchemaGenerator,
        ) -> Vec<(&'static str, schemars::Schema)> {
            vec![$(($name, <$module::Spec as schemars::JsonSchema>::json_schema(generator))),*]
        }

        impl NotifierSpec {
            /// Deserializes the kind-specific settings (everything but `kind`). `Err(())`
            /// means `kind` names no kind.
            #[allow(clippy::result_unit_err)]
            pub fn from_value(kind: &str, v: serde_yaml::Value)
                -> Result<Result<NotifierSpec, serde_path_to_error::Error<serde_yaml::Error>>, ()> {
                match kind {
                    $($name => Ok(serde_path_to_error::deserialize(v).map(NotifierSpec::$variant)),)*
                    _ => Err(()),
                }
            }
            pub fn kind(&self) -> &'static str {
                match self { $(NotifierSpec::$variant(_) => $name),* }
            }
            /// Every problem in the settings, found without I/O.
            pub fn validate(&self) -> Vec<FieldError> {
                match self { $(NotifierSpec::$variant(s) => s.validate()),* }
            }
            /// Makes relative file paths in the settings relative to `base` (the config
            /// file's directory).
            pub fn resolve_paths(&mut self, base: &std::path::Path) {
                match self { $(NotifierSpec::$variant(s) => s.resolve_paths(base)),* }
            }
        }
    };
}

/// The notifier kinds, once: hands the list to `$each!` (this module's `kinds!`, and
/// `alert`'s, which builds the senders), as `"name" => Variant(module)`, `module` naming the
/// kind's file both here and in `alert/`.
macro_rules! for_each_kind {
    ($each:ident) => {
        $each! {
            "email" => Email(email),
            "twilio" => Twilio(twilio),
            "pagerduty" => Pagerduty(pagerduty),
            "webhook" => Webhook(webhook),
            "alertmanager" => Alertmanager(alertmanager),
        }
    };
}
pub(crate) use for_each_kind;

for_each_kind!(kinds);

/// Parses an `http`/`https` URL with a host and no fragment. Errors are lower-case and never
/// repeat the URL (it may hold a password or a token).
pub(crate) fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| {
        format!(
            "invalid url ({}); write e.g. https://api.example.com",
            e.to_string().to_lowercase()
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported url scheme {:?} (use http or https)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    if url.fragment().is_some() {
        return Err("url must not have a fragment (#...)".into());
    }
    Ok(url)
}

/// A base URL an API path is appended to: [`parse_url`], and no query either.
pub(crate) fn parse_base_url(s: &str) -> Result<Url, String> {
    let url = parse_url(s)?;
    if url.query().is_some() {
        return Err("url must not have a query (?...)".into());
    }
    Ok(url)
}

/// A zero `timeout` would fail every send.
pub(crate) fn check_timeout(t: Option<Dur>) -> Option<&'static str> {
    match t {
        Some(Dur(d)) if d.is_zero() => Some("must be more than 0s"),
        _ => None,
    }
}
