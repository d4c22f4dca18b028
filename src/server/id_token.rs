//! The complete check of an ID token (`oidc.rs` fetches it and the provider's keys): an
//! asymmetric signature (RS*, PS*, ES*, EdDSA; never `none`, never HS*: the client secret is no
//! key, it is shared with the provider and sits in a file on this host) by a key the provider
//! publishes; `iss`; `aud` (this client alone: another listed audience is refused) and `azp`
//! (checked here: the library does not); `exp` and `iat` (60 s of clock skew, and not older
//! than 10 minutes); `nonce`; with `max_age` the `auth_time` (required only for a fresh
//! sign-in, `max_age=0`). `email` is kept only when `email_verified` is true; without
//! `auth_time` the sign-in never counts as recent.

use std::collections::BTreeMap;
use std::time::Duration;

use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, ClaimsVerificationError, ClientId, IdToken, Nonce, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};

use crate::policy::schema::Oidc as OidcConfig;

/// Clock skew allowed on `exp`, `iat` and `auth_time`.
const SKEW: Duration = Duration::from_secs(60);
/// An ID token issued longer ago than this is refused (a login takes seconds, not hours).
const MAX_TOKEN_AGE: Duration = Duration::from_secs(600);
/// Claims the core library does not model, by name (the groups claim is configurable).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}
impl AdditionalClaims for OtherClaims {}

type Token = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// Who signed in, as the provider vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// Only when the provider says it is verified.
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// When the user last authenticated at the provider (unix ms); 0 when the provider does not
    /// say (never recent enough for a risky decision).
    pub auth_time: i64,
}

impl Identity {
    /// The approver as the store and the audit log name them: two issuers with the same `sub`
    /// are different people.
    pub fn actor(&self) -> String {
        format!("oidc:{}#{}", self.issuer, self.subject)
    }
}

/// Checks `raw` against the provider's `metadata` (its issuer and keys) and `config` (the
/// client id, the groups claim) at `now_ms`, the server's time: see the module doc.
pub fn check(
    config: &OidcConfig,
    metadata: &CoreProviderMetadata,
    raw: &str,
    nonce: &str,
    max_age: Option<Duration>,
    now_ms: i64,
) -> Result<Identity, Refused> {
    let token: Token = raw
        .parse()
        .map_err(|e| Refused::Other(format!("the ID token is not a signed JWT: {e}")))?;
    let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let skew = chrono::Duration::from_std(SKEW).unwrap_or_default();
    let oldest = chrono::Duration::from_std(MAX_TOKEN_AGE).unwrap_or_default();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(config.client_id.clone()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs(ASYMMETRIC)
    .set_time_fn(move || now - skew)
    .set_issue_time_verifier_fn(move |iat| {
        if iat > now + skew {
            Err(format!("issued in the future ({iat})"))
        } else if iat < now - oldest {
            Err(format!("issued too long ago ({iat})"))
        } else {
            Ok(())
        }
    })
    .set_auth_time_verifier_fn(move |at| match (max_age, at) {
        (None, _) => Ok(()),
        // A fresh sign-in (`max_age=0`) must be dated; an everyday one (`max_age` = a session's
        // life) is let in undated, and then never counts as recent for a risky decision.
        (Some(age), None) if age.is_zero() => {
            Err("no auth_time, but a fresh sign-in was asked for".into())
        }
        (Some(_), None) => Ok(()),
        (Some(age), Some(at)) => {
            let age = chrono::Duration::from_std(age).unwrap_or_default();
            if at + age + skew < now {
                Err(format!("signed in at {at}, longer ago than asked for"))
            } else {
                Ok(())
            }
        }
    });
    let expected = Nonce::new(nonce.to_string());
    let claims = token.claims(&verifier, &expected).map_err(|e| match e {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => Refused::UnknownKey,
        other => Refused::Other(format!("the ID token was refused: {other}")),
    })?;
    let email = claims
        .email()
        .filter(|_| claims.email_verified() == Some(true))
        .map(|e| e.as_str().to_string());
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_string());
    let groups = match claims.additional_claims().rest.get(&config.groups_claim) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|g| g.as_str().map(String::from))
            .collect(),
        Some(serde_json::Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    };
    // The library leaves `azp` unchecked: when present it must name this client.
    if let Some(azp) = claims.authorized_party() {
        if azp.as_str() != config.client_id {
            return Err(Refused::Other(format!(
                "the ID token was refused: it was issued to {:?}, not this client",
                azp.as_str()
            )));
        }
    }
    // Without `auth_time` nobody can tell when the user authenticated: 0, which never counts as
    // a recent sign-in (a provider must send it when `max_age` was asked for).
    let auth_time = claims.auth_time().map_or(0, |t| t.timestamp_millis());
    Ok(Identity {
        issuer: claims.issuer().as_str().to_string(),
        subject: claims.subject().as_str().to_string(),
        email,
        name,
        groups,
        auth_time,
    })
}

/// Why a token was refused: a key the provider does not publish (worth fetching the keys
/// again) or anything else.
pub enum Refused {
    UnknownKey,
    Other(String),
}

/// The algorithms an ID token may be signed with: asymmetric ones only.
const ASYMMETRIC: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];
