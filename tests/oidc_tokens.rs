//! The ID token check of the web UI's sign-in (`server/oidc.rs`), against the real test
//! provider's discovery document and keys: tokens signed with the provider's own key but wrong
//! in one claim, signed with another key, unsigned (`alg: none`), or MACed with the client
//! secret are all refused; the untouched token is accepted (the positive control).

use serde_json::{json, Value};

use crate::support::clock::TestClock;
use crate::support::oidc::{hs256, rs256, rsa_key, Provider, CLIENT_ID, CLIENT_SECRET};

struct World {
    idp: Provider,
    oidc: hitl_gate::server::oidc::Oidc,
    /// The verifier's clock (and the provider's).
    clock: TestClock,
    _dir: tempfile::TempDir,
}

fn world(oidc_extra: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let idp = Provider::start(dir.path(), "http://127.0.0.1:9");
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let policy = hitl_gate::policy::load::parse(&format!(
        "version = 1\n[serve.oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\napprover_groups = [\"approvers\"]\n{oidc_extra}\n",
        idp.issuer,
        secret.display()
    ))
    .unwrap();
    let cfg = policy.serve().oidc.clone().unwrap();
    let clock = TestClock::in_dir(dir.path());
    let oidc = hitl_gate::server::oidc::Oidc::new(&cfg, "http://127.0.0.1:9")
        .unwrap()
        .with_clock(clock.server_clock());
    World {
        idp,
        oidc,
        clock,
        _dir: dir,
    }
}

fn now() -> i64 {
    hitl_gate::api::now_ms() / 1000
}

fn header() -> Value {
    json!({"alg": "RS256", "kid": "test-key-1", "typ": "JWT"})
}

fn claims(w: &World) -> Value {
    json!({
        "iss": w.idp.issuer, "sub": "alice", "aud": CLIENT_ID, "azp": CLIENT_ID,
        "exp": now() + 300, "iat": now(), "auth_time": now() - 5, "nonce": "the-nonce",
        "email": "alice@example.com", "email_verified": true, "name": "Alice",
        "groups": ["approvers"],
    })
}

fn with(mut v: Value, edits: &[(&str, Value)]) -> Value {
    for (k, x) in edits {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(*k);
        } else {
            v[*k] = x.clone();
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_that_fail_any_check_are_refused() {
    let w = world("");
    let key = w.idp.key_der.clone();
    let good = rs256(&key, &header(), &claims(&w));
    let who = w
        .oidc
        .verify_id_token(&good, "the-nonce", None)
        .await
        .expect("the untouched token is accepted");
    assert_eq!(who.subject, "alice");
    assert_eq!(who.issuer, w.idp.issuer);
    assert_eq!(who.email.as_deref(), Some("alice@example.com"));
    assert_eq!(who.groups, ["approvers"]);
    assert_eq!(who.actor(), format!("oidc:{}#alice", w.idp.issuer));

    let other_dir = tempfile::tempdir().unwrap();
    let (_, other_key) = rsa_key(other_dir.path(), "other");
    let c = || claims(&w);
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            rs256(&key, &header(), &with(c(), &[("exp", json!(now() - 120))])),
        ),
        (
            "issued in the future",
            rs256(&key, &header(), &with(c(), &[("iat", json!(now() + 600))])),
        ),
        (
            "issued long ago",
            rs256(&key, &header(), &with(c(), &[("iat", json!(now() - 7200))])),
        ),
        (
            "another audience",
            rs256(
                &key,
                &header(),
                &with(c(), &[("aud", json!("someone-else")), ("azp", Value::Null)]),
            ),
        ),
        (
            "an extra, untrusted audience",
            rs256(
                &key,
                &header(),
                &with(c(), &[("aud", json!([CLIENT_ID, "someone-else"]))]),
            ),
        ),
        (
            "another authorized party",
            rs256(
                &key,
                &header(),
                &with(
                    c(),
                    &[("aud", json!([CLIENT_ID, "x"])), ("azp", json!("x"))],
                ),
            ),
        ),
        (
            "issued to another client",
            rs256(
                &key,
                &header(),
                &with(c(), &[("azp", json!("someone-else"))]),
            ),
        ),
        (
            "another issuer",
            rs256(
                &key,
                &header(),
                &with(c(), &[("iss", json!("http://evil.example"))]),
            ),
        ),
        ("another key, same kid", rs256(&other_key, &header(), &c())),
        (
            "an unknown kid",
            rs256(
                &other_key,
                &json!({"alg": "RS256", "kid": "rotated-away", "typ": "JWT"}),
                &c(),
            ),
        ),
        (
            "wrong nonce",
            rs256(&key, &header(), &with(c(), &[("nonce", json!("other"))])),
        ),
        (
            "no nonce",
            rs256(&key, &header(), &with(c(), &[("nonce", Value::Null)])),
        ),
        (
            "no subject",
            rs256(&key, &header(), &with(c(), &[("sub", Value::Null)])),
        ),
        ("alg none", {
            let h = crate::support::oidc::b64url(
                json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes(),
            );
            let b = crate::support::oidc::b64url(c().to_string().as_bytes());
            format!("{h}.{b}.")
        }),
        (
            "HS256 with the client secret",
            hs256(
                CLIENT_SECRET.as_bytes(),
                &json!({"alg": "HS256", "typ": "JWT"}),
                &c(),
            ),
        ),
        (
            "a signature cut off",
            good.rsplit_once('.').unwrap().0.to_string() + ".",
        ),
        ("not a JWT", "x.y".to_string()),
    ];
    let n = cases.len();
    for (what, token) in cases {
        let r = w.oidc.verify_id_token(&token, "the-nonce", None).await;
        assert!(r.is_err(), "{what}: accepted {r:?}");
    }
    assert_eq!(n, 17);

    // A fresh sign-in was asked for (max_age): auth_time must be recent and present.
    let fresh = Some(std::time::Duration::ZERO);
    assert!(w
        .oidc
        .verify_id_token(&good, "the-nonce", fresh)
        .await
        .is_ok());
    let old = rs256(
        &key,
        &header(),
        &with(c(), &[("auth_time", json!(now() - 3600))]),
    );
    assert!(w
        .oidc
        .verify_id_token(&old, "the-nonce", fresh)
        .await
        .is_err());
    let none = rs256(&key, &header(), &with(c(), &[("auth_time", Value::Null)]));
    assert!(w
        .oidc
        .verify_id_token(&none, "the-nonce", fresh)
        .await
        .is_err());
    // Without it, and without max_age or with an everyday one (the web UI asks for a session's
    // life on every sign-in), the sign-in is accepted, but never counts as recent.
    for max_age in [None, Some(std::time::Duration::from_secs(8 * 3600))] {
        let who = w
            .oidc
            .verify_id_token(&none, "the-nonce", max_age)
            .await
            .unwrap_or_else(|e| panic!("max_age {max_age:?}: {e:?}"));
        assert_eq!(who.auth_time, 0);
    }

    // An unverified email is not kept; the identity still is.
    let unverified = rs256(
        &key,
        &header(),
        &with(c(), &[("email_verified", json!(false))]),
    );
    let who = w
        .oidc
        .verify_id_token(&unverified, "the-nonce", None)
        .await
        .unwrap();
    assert_eq!(who.email, None);
}

#[test]
fn a_client_secret_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    for (mode, ok) in [(0o644, false), (0o640, false), (0o600, true), (0o400, true)] {
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
        let policy = hitl_gate::policy::load::parse(&format!(
            "version = 1\n[serve.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"x\"\nclient_secret_file = \"{}\"\napprover_groups = [\"a\"]\n",
            secret.display()
        ))
        .unwrap();
        let cfg = policy.serve().oidc.clone().unwrap();
        let r = hitl_gate::server::oidc::Oidc::new(&cfg, "https://gate.example");
        assert_eq!(r.is_ok(), ok, "mode {mode:o}: {:?}", r.err());
        if !ok {
            assert!(r.err().unwrap().contains("chmod 600"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_fetches_the_keys_again_at_most_once_per_interval() {
    // Longer than the provider could take to restart, however busy the machine: the verifier's
    // clock is moved past it.
    let every = std::time::Duration::from_secs(3600);
    let mut w = world("");
    w.oidc.set_key_refresh_interval(every);
    // Generated before the first fetch, so the rotation below is quick.
    let dir = tempfile::tempdir().unwrap();
    let key2 = rsa_key(dir.path(), "rotated");
    let der2 = key2.1.clone();
    let first = w
        .oidc
        .verify_id_token(
            &rs256(&w.idp.key_der, &header(), &claims(&w)),
            "the-nonce",
            None,
        )
        .await;
    assert!(first.is_ok(), "{first:?}");
    // The provider rotates its key: the same issuer (same port) now signs with a new one.
    let port = reqwest::Url::parse(&w.idp.issuer).unwrap().port().unwrap();
    let gate = "http://127.0.0.1:9";
    let c = claims(&w);
    w.idp.stop();
    w.idp = Provider::start_with(gate, port, key2, "test-key-2");
    let rotated = rs256(
        &der2,
        &json!({"alg": "RS256", "kid": "test-key-2", "typ": "JWT"}),
        &c,
    );
    // Within the interval of the last fetch: the keys are not fetched again, so it is refused.
    let r = w.oidc.verify_id_token(&rotated, "the-nonce", None).await;
    assert!(r.unwrap_err().contains("does not publish"));
    // After it: the unknown kid fetches the keys once, and a token of that time verifies.
    w.clock.advance(every + std::time::Duration::from_secs(1));
    let at = w.clock.now_ms() / 1000;
    let rotated = rs256(
        &der2,
        &json!({"alg": "RS256", "kid": "test-key-2", "typ": "JWT"}),
        &with(
            c,
            &[
                ("iat", json!(at)),
                ("exp", json!(at + 300)),
                ("auth_time", json!(at - 5)),
            ],
        ),
    );
    let r = w.oidc.verify_id_token(&rotated, "the-nonce", None).await;
    assert!(r.is_ok(), "{r:?}");
}
