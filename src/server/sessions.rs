//! The web UI's state in the database: sign-ins under way (keyed by the SHA-256 of their OIDC
//! `state`, taken once) and sessions (keyed by the SHA-256 of the session id; the id itself is
//! only ever in the browser's cookie). Every write goes through the single writer.

use sqlx::Row as _;

use super::db::Result;
use super::oidc::Identity;
use super::store::Store;

/// A sign-in under way expires after this long (ms).
pub const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;
/// At most this many sign-ins are under way at once.
pub const MAX_LOGINS: i64 = 10_000;

/// A sign-in under way, as stored.
#[derive(Debug, Clone)]
pub struct Login {
    /// SHA-256 of the random value in the cookie of the browser that started it: the callback
    /// must come from that browser (no login CSRF).
    pub browser_sha256: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// The page to return to afterwards (a local path).
    pub return_to: String,
    /// The `max_age` asked of the provider (seconds), for a fresh sign-in.
    pub max_age: Option<i64>,
    pub created_at: i64,
}

/// A signed-in person's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_sha256: String,
    /// Who signed in, as the provider vouched for it (with their groups and `auth_time`).
    pub who: Identity,
    pub created_at: i64,
    pub last_seen: i64,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// The approver as the store and the audit log name them.
    pub fn actor(&self) -> String {
        self.who.actor()
    }
}

impl Store {
    /// Stores a sign-in under way, and drops those older than [`LOGIN_TTL_MS`]. Returns false
    /// (and stores nothing) when [`MAX_LOGINS`] are already under way: anyone can start a
    /// sign-in, and each is a write.
    pub async fn put_login(&self, state_sha256: String, login: Login) -> Result<bool> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM logins WHERE created_at < $1")
                        .bind(login.created_at - LOGIN_TTL_MS)
                        .execute(&mut *c)
                        .await?;
                    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM logins")
                        .fetch_one(&mut *c)
                        .await?;
                    if open >= MAX_LOGINS {
                        return Ok(false);
                    }
                    sqlx::query(
                        "INSERT INTO logins (state_sha256, browser_sha256, nonce, pkce_verifier, \
                         return_to, max_age, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&state_sha256)
                    .bind(&login.browser_sha256)
                    .bind(&login.nonce)
                    .bind(&login.pkce_verifier)
                    .bind(&login.return_to)
                    .bind(login.max_age)
                    .bind(login.created_at)
                    .execute(&mut *c)
                    .await?;
                    Ok(true)
                })
            })
            .await
    }

    /// Takes (and deletes) the sign-in stored under `state_sha256`, if it exists and is not
    /// older than [`LOGIN_TTL_MS`]: a `state` works once.
    pub async fn take_login(&self, state_sha256: String, now: i64) -> Result<Option<Login>> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "DELETE FROM logins WHERE state_sha256 = $1 RETURNING browser_sha256, \
                         nonce, pkce_verifier, return_to, max_age, created_at",
                    )
                    .bind(&state_sha256)
                    .fetch_optional(&mut *c)
                    .await?;
                    Ok(row
                        .map(|r| Login {
                            browser_sha256: r.get(0),
                            nonce: r.get(1),
                            pkce_verifier: r.get(2),
                            return_to: r.get(3),
                            max_age: r.get(4),
                            created_at: r.get(5),
                        })
                        .filter(|l| l.created_at >= now - LOGIN_TTL_MS))
                })
            })
            .await
    }

    /// Stores a new session, and drops those that ended before `ended_before` (their absolute
    /// lifetime is over).
    pub async fn put_session(&self, s: Session, ended_before: i64) -> Result<()> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM sessions WHERE created_at < $1")
                        .bind(ended_before)
                        .execute(&mut *c)
                        .await?;
                    sqlx::query(
                        "INSERT INTO sessions (id_sha256, issuer, subject, email, name, groups, \
                         auth_time, created_at, last_seen, csrf) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&s.id_sha256)
                    .bind(&s.who.issuer)
                    .bind(&s.who.subject)
                    .bind(&s.who.email)
                    .bind(&s.who.name)
                    .bind(serde_json::to_string(&s.who.groups).unwrap_or_else(|_| "[]".into()))
                    .bind(s.who.auth_time)
                    .bind(s.created_at)
                    .bind(s.last_seen)
                    .bind(&s.csrf)
                    .execute(&mut *c)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The session stored under `id_sha256`, if any.
    pub async fn session(&self, id_sha256: &str) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT id_sha256, issuer, subject, email, name, groups, auth_time, created_at, \
             last_seen, csrf FROM sessions WHERE id_sha256 = $1",
        )
        .bind(id_sha256)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| Session {
            id_sha256: r.get(0),
            who: Identity {
                issuer: r.get(1),
                subject: r.get(2),
                email: r.get(3),
                name: r.get(4),
                groups: serde_json::from_str(r.get::<&str, _>(5)).unwrap_or_default(),
                auth_time: r.get(6),
            },
            created_at: r.get(7),
            last_seen: r.get(8),
            csrf: r.get(9),
        }))
    }

    /// Records that the session was used at `now`.
    pub async fn touch_session(&self, id_sha256: String, now: i64) -> Result<()> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_sha256 = $2")
                        .bind(now)
                        .bind(&id_sha256)
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Ends a session (logout, or found expired).
    pub async fn end_session(&self, id_sha256: String) -> Result<()> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
                        .bind(&id_sha256)
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
            })
            .await
    }
}
