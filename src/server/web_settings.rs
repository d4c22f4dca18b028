//! The web UI's settings as `hitl-gate serve` checks them at start (`[serve] public_url` and
//! `[serve.oidc]`): the public origin every form must come from, whether cookies are `Secure`,
//! and the OIDC relying party. Kept apart from the pages (`web/`) so the server's shared state
//! (`app.rs`) can hold them without importing the pages.

use super::clock::Clock;
use super::oidc::Oidc;
use crate::policy::schema::Serve;

/// The web UI's settings, checked at start.
pub struct Web {
    pub oidc: Oidc,
    /// `[serve] public_url`, without a trailing slash.
    pub public_url: String,
    /// `scheme://host[:port]` of the public URL: every form must come from it.
    pub origin: String,
    /// The issuer's origin, where sign-in forms may lead (CSP `form-action`).
    pub issuer_origin: String,
    /// HTTPS: cookies are `Secure` and `__Host-` prefixed. Plain HTTP is allowed on loopback
    /// only, for development.
    pub secure: bool,
}

impl Web {
    /// The web UI for `[serve]`, or `None` without `[serve.oidc]`; ID tokens are checked at
    /// `clock`'s time.
    pub fn from_config(serve: &Serve, clock: &Clock) -> Result<Option<Web>, String> {
        let Some(oidc) = &serve.oidc else {
            return Ok(None);
        };
        let public_url = serve
            .public_url
            .as_deref()
            .ok_or("[serve.oidc] needs [serve] public_url, the URL approvers open")?
            .trim_end_matches('/')
            .to_string();
        let url = reqwest::Url::parse(&public_url)
            .map_err(|e| format!("[serve] public_url {public_url:?}: {e}"))?;
        let loopback = super::oidc::is_loopback(url.host_str().unwrap_or_default());
        let secure = match url.scheme() {
            "https" => true,
            "http" if loopback => false,
            _ => {
                return Err(format!(
                    "[serve] public_url {public_url:?} must be https:// (plain http:// only on \
                     127.0.0.1, [::1] or localhost, for development)"
                ))
            }
        };
        if url.path() != "/" || url.query().is_some() {
            return Err(format!(
                "[serve] public_url {public_url:?} must be an origin without a path (the UI \
                 lives under /ui)"
            ));
        }
        let issuer = reqwest::Url::parse(&oidc.issuer)
            .map_err(|e| format!("[serve.oidc] issuer {:?}: {e}", oidc.issuer))?;
        Ok(Some(Web {
            oidc: Oidc::new(oidc, &public_url)?.with_clock(clock.clone()),
            origin: url.origin().ascii_serialization(),
            issuer_origin: issuer.origin().ascii_serialization(),
            public_url,
            secure,
        }))
    }
}
