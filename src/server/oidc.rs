//! OpenID Connect sign-in for the web UI (the server is the relying party): the provider's
//! discovery document and signing keys, the authorization request (code flow with PKCE S256,
//! `state` and `nonce`), and the code exchange; the ID token's check is `id_token.rs`.
//!
//! - The HTTP client never follows redirects (a redirect from the provider could point the
//!   server anywhere).
//! - An unknown key id fetches the provider's keys again, at most once a minute (key rotation).
//! - The identity is the issuer and `sub` ([`Identity::actor`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::core::{CoreClient, CoreJsonWebKeySet, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope,
};

use super::clock::Clock;
pub use super::id_token::Identity;
use super::id_token::{check, Refused};
use crate::policy::schema::Oidc as OidcConfig;

/// The provider's keys are fetched again at most this often.
const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// The path of the redirect URI under the public URL.
pub const CALLBACK_PATH: &str = "/auth/callback";

/// The client as discovery configures it: an authorization endpoint, maybe a token and a
/// user-info endpoint.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What the provider published.
struct Provider {
    metadata: CoreProviderMetadata,
    end_session: Option<String>,
}

/// A sign-in under way: what the callback needs, stored server-side under the hash of `state`.
#[derive(Debug, Clone)]
pub struct Pending {
    pub nonce: String,
    pub pkce_verifier: String,
    pub max_age: Option<Duration>,
}

/// The relying party.
pub struct Oidc {
    config: OidcConfig,
    secret: ClientSecret,
    redirect: RedirectUrl,
    http: reqwest::Client,
    provider: tokio::sync::RwLock<Option<Arc<Provider>>>,
    /// When the keys were last fetched (unix ms by [`Clock`]).
    last_jwks_fetch: Mutex<Option<i64>>,
    key_refresh: Duration,
    clock: Clock,
}

impl Oidc {
    /// Checks the configuration and reads the client secret. Nothing is fetched yet: the
    /// provider is asked on the first sign-in, so the server starts while it is down.
    pub fn new(config: &OidcConfig, public_url: &str) -> Result<Oidc, String> {
        let secret = read_secret(
            &config.client_secret_file,
            "[serve.oidc] client_secret_file",
        )?;
        if config.approver_groups.is_empty() {
            return Err("[serve.oidc] approver_groups is empty: nobody could decide".into());
        }
        IssuerUrl::new(config.issuer.clone())
            .map_err(|e| format!("[serve.oidc] issuer {:?}: {e}", config.issuer))?;
        // Discovery, the keys and the code exchange (with the client secret) go to the issuer:
        // over plain HTTP anyone on the path could swap the keys and forge sign-ins.
        let issuer = reqwest::Url::parse(&config.issuer)
            .map_err(|e| format!("[serve.oidc] issuer {:?}: {e}", config.issuer))?;
        if issuer.scheme() != "https" && !is_loopback(issuer.host_str().unwrap_or_default()) {
            return Err(format!(
                "[serve.oidc] issuer {:?} must be https:// (plain http:// only on 127.0.0.1, \
                 [::1] or localhost, for development)",
                config.issuer
            ));
        }
        let redirect = RedirectUrl::new(format!(
            "{}{CALLBACK_PATH}",
            public_url.trim_end_matches('/')
        ))
        .map_err(|e| format!("[serve] public_url {public_url:?}: {e}"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the OIDC HTTP client: {e}"))?;
        Ok(Oidc {
            config: config.clone(),
            secret: ClientSecret::new(secret),
            redirect,
            http,
            provider: tokio::sync::RwLock::new(None),
            last_jwks_fetch: Mutex::new(None),
            key_refresh: JWKS_REFRESH,
            clock: Clock::system(),
        })
    }

    /// Checks ID tokens at `clock`'s time (the server's; the system clock by default).
    pub fn with_clock(mut self, clock: Clock) -> Oidc {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// How often the provider's keys may be fetched again on an unknown key id (a minute by
    /// default; tests shorten it).
    pub fn set_key_refresh_interval(&mut self, every: Duration) {
        self.key_refresh = every;
    }

    /// The provider's metadata and keys, fetched on first use.
    async fn provider(&self) -> Result<Arc<Provider>, String> {
        if let Some(p) = self.provider.read().await.clone() {
            return Ok(p);
        }
        let mut slot = self.provider.write().await;
        if let Some(p) = slot.clone() {
            return Ok(p);
        }
        let p = Arc::new(self.fetch_provider().await?);
        *slot = Some(p.clone());
        Ok(p)
    }

    async fn fetch_provider(&self) -> Result<Provider, String> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let unreachable = |e: &dyn std::fmt::Display| {
            format!("the identity provider's discovery document ({url}) could not be read: {e}")
        };
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(unreachable(&resp.status()));
        }
        let text = resp.text().await.map_err(|e| unreachable(&e))?;
        let metadata: CoreProviderMetadata =
            serde_json::from_str(&text).map_err(|e| unreachable(&e))?;
        if metadata.issuer().as_str() != self.config.issuer {
            return Err(format!(
                "the identity provider calls itself {:?}, not the configured issuer {:?}",
                metadata.issuer().as_str(),
                self.config.issuer
            ));
        }
        let end_session = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["end_session_endpoint"].as_str().map(String::from));
        let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| format!("the identity provider's keys could not be read: {e}"))?;
        *self
            .last_jwks_fetch
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(self.clock.now_ms());
        Ok(Provider {
            metadata: metadata.set_jwks(jwks),
            end_session,
        })
    }

    /// Fetches the provider's keys again, unless that happened less than a minute ago.
    async fn refresh_keys(&self) -> Result<Option<Arc<Provider>>, String> {
        {
            let mut last = self
                .last_jwks_fetch
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = self.clock.now_ms();
            let every = i64::try_from(self.key_refresh.as_millis()).unwrap_or(i64::MAX);
            // (A clock that went back allows a fetch rather than blocking them for longer.)
            if last.is_some_and(|t| (t..t.saturating_add(every)).contains(&now)) {
                return Ok(None);
            }
            *last = Some(now);
        }
        let current = self.provider().await?;
        let jwks = CoreJsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| format!("the identity provider's keys could not be read: {e}"))?;
        let p = Arc::new(Provider {
            metadata: current.metadata.clone().set_jwks(jwks),
            end_session: current.end_session.clone(),
        });
        *self.provider.write().await = Some(p.clone());
        Ok(Some(p))
    }

    /// This server as the provider's client, with its secret and redirect URI.
    async fn client(&self) -> Result<Client, String> {
        let p = self.provider().await?;
        Ok(CoreClient::from_provider_metadata(
            p.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(self.secret.clone()),
        )
        .set_redirect_uri(self.redirect.clone()))
    }

    /// Where to send the browser to sign in, the `state` to store it under, and what the
    /// callback needs. `max_age` asks the provider for a fresh authentication.
    pub async fn begin(
        &self,
        max_age: Option<Duration>,
    ) -> Result<(String, String, Pending), String> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.config.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if let Some(age) = max_age {
            req = req.set_max_age(age);
        }
        let (url, state, nonce) = req.url();
        Ok((
            url.to_string(),
            state.secret().clone(),
            Pending {
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                max_age,
            },
        ))
    }

    /// Exchanges the authorization code (with the PKCE verifier) and checks the ID token.
    pub async fn finish(&self, code: &str, pending: &Pending) -> Result<Identity, String> {
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| format!("the provider has no token endpoint: {e}"))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| format!("the provider refused the authorization code: {e}"))?;
        let raw = openidconnect::TokenResponse::id_token(&response)
            .ok_or("the provider sent no ID token")?
            .to_string();
        self.verify_id_token(&raw, &pending.nonce, pending.max_age)
            .await
    }

    /// Checks an ID token completely (see the module doc) and returns who it names. An unknown
    /// key id fetches the provider's keys again first (at most once a minute).
    pub async fn verify_id_token(
        &self,
        raw: &str,
        nonce: &str,
        max_age: Option<Duration>,
    ) -> Result<Identity, String> {
        let p = self.provider().await?;
        let now = self.clock.now_ms();
        match check(&self.config, &p.metadata, raw, nonce, max_age, now) {
            Err(Refused::UnknownKey) => match self.refresh_keys().await? {
                Some(p) => check(&self.config, &p.metadata, raw, nonce, max_age, now),
                None => Err(Refused::UnknownKey),
            },
            r => r,
        }
        .map_err(|e| match e {
            Refused::UnknownKey => "the ID token is signed with a key the provider does not \
                                    publish"
                .to_string(),
            Refused::Other(m) => m,
        })
    }

    /// The origins a form of the UI may lead to besides its own, once the provider is known:
    /// its authorization endpoint (signing in again after a form) and its logout endpoint.
    pub fn form_origins(&self) -> Vec<String> {
        let Ok(guard) = self.provider.try_read() else {
            return Vec::new();
        };
        let Some(p) = guard.as_ref() else {
            return Vec::new();
        };
        let mut out: Vec<String> = [
            Some(p.metadata.authorization_endpoint().url().as_str()),
            p.end_session.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|u| reqwest::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect();
        out.sort();
        out.dedup();
        out
    }

    /// True when `who` may decide: a member of one of `approver_groups`.
    pub fn is_approver(&self, groups: &[String]) -> bool {
        groups
            .iter()
            .any(|g| self.config.approver_groups.iter().any(|a| a == g))
    }

    /// The provider's logout endpoint, if it has one (RP-initiated logout), with this client's
    /// id and where to come back to.
    pub async fn end_session_url(&self, back_to: &str) -> Option<String> {
        let p = self.provider.read().await.clone()?;
        let mut url = reqwest::Url::parse(p.end_session.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", back_to);
        Some(url.to_string())
    }
}

/// Reads a secret's first line from a file only its owner can read; `what` names the setting
/// in errors (`[serve.oidc] client_secret_file`).
pub(super) fn read_secret(path: &std::path::Path, what: &str) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{what} {} can be read by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(format!("{what} {} is empty", path.display()));
    }
    Ok(secret)
}

/// True for `localhost` and loopback addresses (`127.0.0.1`, `[::1]`).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
