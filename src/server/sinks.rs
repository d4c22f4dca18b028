//! The notification sinks as the server holds them (`[[serve.notify]]` with their secret files
//! read: a webhook's HMAC secret, a Slack incoming-webhook URL), loaded at start and again on
//! every reload (`live.rs`); the delivery worker (`notify.rs`) sends to them.

use crate::policy::notify::{Sink, SinkKind};

/// A sink with its secrets read.
pub struct Loaded {
    pub name: String,
    pub target: Target,
}

/// Where a sink's events go, with its secret.
pub enum Target {
    Webhook { url: String, secret: Vec<u8> },
    Slack { url: String },
}

/// Reads every sink's secret files (mode 0600 or stricter, refused otherwise).
pub fn load(sinks: &[Sink]) -> Result<Vec<Loaded>, String> {
    sinks
        .iter()
        .map(|s| {
            let what = |field: &str| format!("[[serve.notify]] {:?} {field}", s.name);
            let target = match s.kind {
                SinkKind::Webhook => Target::Webhook {
                    url: s.url.clone().unwrap_or_default(),
                    secret: super::oidc::read_secret(
                        s.secret_file.as_deref().unwrap_or(std::path::Path::new("")),
                        &what("secret_file"),
                    )?
                    .into_bytes(),
                },
                SinkKind::Slack => {
                    let url = super::oidc::read_secret(
                        s.url_file.as_deref().unwrap_or(std::path::Path::new("")),
                        &what("url_file"),
                    )?;
                    crate::policy::notify::check_url(&url)
                        .map_err(|e| format!("{}: {e}", what("url_file")))?;
                    Target::Slack { url }
                }
            };
            Ok(Loaded {
                name: s.name.clone(),
                target,
            })
        })
        .collect()
}
