//! The web UI over HTTP, without a browser: sign-in through a real OIDC provider's login form,
//! sessions, the decision form and every check that guards it (approver groups, CSRF, Origin,
//! state, replayed codes, logout, fresh sign-in for risky decisions with the real reason,
//! confirmation of destructive ones, the form only for who may decide), the audit row of a web
//! decision, refusals that keep the header, the approver's own queue, the audit page's events,
//! the field-level diff, times and durations for people, the icon, and the security headers.

use serde_json::json;

use crate::support::oidc::{agent_acting_for, WebClient, WebServer};
use crate::support::server::{audit_rows, create_body, TOKEN_A, TOKEN_B};

/// A request in `environment` (the server's classification), made through the agent API.
async fn request(w: &WebServer, argv: &[&str], kube_context: &str) -> String {
    let mut body = create_body(argv);
    body["environment"] = json!({"kube_context": kube_context, "namespace": "web"});
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

const PROD: &str = "[[environment]]\nname = \"production\"\nrisk = \"high\"\nkube_contexts = [\"prod*\"]\n\n[[environment]]\nname = \"staging\"\nrisk = \"medium\"\nkube_contexts = [\"staging\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_signs_in_decides_and_the_audit_row_names_them() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = WebClient::new(&w.url);
    // Not signed in: sent to sign in, coming back to the page.
    let r = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    assert_eq!(r.status, 303);
    assert!(
        r.location
            .as_deref()
            .unwrap()
            .contains("/ui/login?return_to="),
        "{r:?}"
    );
    c.sign_in(&w.url, "alice").await;
    let inbox = c.get(&format!("{}/ui", w.url)).await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    assert!(inbox.body.contains(&id), "the inbox lists the request");
    assert!(
        inbox.body.contains("alice@example.com"),
        "signed in as alice"
    );
    let page = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    assert_eq!(page.status, 200);
    let csrf = WebClient::csrf(&page.body);
    let r = c
        .post(
            &format!("{}/ui/requests/{id}/decision", w.url),
            &[("csrf", &csrf), ("decision", "approve"), ("comment", "ok")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, v) = w
        .srv
        .agent(TOKEN_A)
        .get(&format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(v["state"], "approved");
    let actor = format!("oidc:{}#alice", w.idp.issuer);
    assert_eq!(v["decision"]["approvers"], json!([actor]));
    let row = audit_rows(&w.srv.data)
        .into_iter()
        .find(|r| r.kind == "approved")
        .expect("an approved row");
    assert_eq!(row.actor, actor);
    let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
    let who = &body["approver"];
    assert_eq!(who["via"], "web");
    assert_eq!(who["issuer"], w.idp.issuer.as_str());
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["email"], "alice@example.com");
    assert!(who["auth_time"].as_i64().unwrap() > 0, "{who}");
    assert_eq!(who["session_sha256"].as_str().unwrap().len(), 64, "{who}");
    assert_eq!(who["source_ip"], "127.0.0.1");
    assert!(who["user_agent"].is_string() || who["user_agent"].is_null());
}

/// A client signed in as `user`.
async fn signed_in(w: &WebServer, user: &str) -> WebClient {
    let mut c = WebClient::new(&w.url);
    c.sign_in(&w.url, user).await;
    c
}

/// The request's state.
async fn state(w: &WebServer, id: &str) -> String {
    // Over the admin socket, which reads every agent's requests.
    let (_, v) = w
        .srv
        .approver()
        .request("GET", &format!("/api/v1/requests/{id}"), None)
        .await;
    v["state"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_outside_the_approver_groups_gets_403_and_decides_nothing() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = WebClient::new(&w.url);
    c.sign_in(&w.url, "bob").await;
    for page in ["/ui", "/ui/history", "/ui/audit", "/ui/inbox-rows"] {
        let r = c.get(&format!("{}{page}", w.url)).await;
        assert_eq!(r.status, 403, "{page}: {}", r.body);
        assert!(!r.body.contains(&id), "{page} shows nothing to bob");
    }
    let r = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("bob@example.com"), "says who is signed in");
    // bob's own session's CSRF token and the right Origin: still 403.
    let csrf = WebClient::csrf(&r.body);
    let r = c
        .post(
            &format!("{}/ui/requests/{id}/decision", w.url),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(state(&w, &id).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_sessions_token_or_from_another_origin_are_refused() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = signed_in(&w, "alice").await;
    let page = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    let csrf = WebClient::csrf(&page.body);
    let url = format!("{}/ui/requests/{id}/decision", w.url);
    let ours = w.url.as_str();
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Headers, &str); 8] = [
        ("no token", &[("origin", ours)], ""),
        ("a wrong token", &[("origin", ours)], "0000"),
        (
            "another origin",
            &[("origin", "http://evil.example")],
            &csrf,
        ),
        ("no origin", &[], &csrf),
        ("a null origin", &[("origin", "null")], &csrf),
        (
            "a null origin from another site",
            &[("origin", "null"), ("sec-fetch-site", "cross-site")],
            &csrf,
        ),
        (
            "a null origin from a sibling site",
            &[("origin", "null"), ("sec-fetch-site", "same-site")],
            &csrf,
        ),
        (
            "another origin claiming same-origin",
            &[
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "same-origin"),
            ],
            &csrf,
        ),
    ];
    for (what, headers, token) in cases {
        let r = c
            .post_with(&url, &[("csrf", token), ("decision", "approve")], headers)
            .await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert_eq!(state(&w, &id).await, "pending", "{what}");
    }
    // Another signed-in approver's token does not work in this session either.
    let mut carol = WebClient::new(&w.url);
    carol.sign_in(&w.url, "carol").await;
    let theirs = WebClient::csrf(&carol.get(&format!("{}/ui", w.url)).await.body);
    let r = c
        .post(&url, &[("csrf", &theirs), ("decision", "approve")])
        .await;
    assert_eq!(r.status, 403);
    // The right token from the right origin works (the positive control).
    let r = c
        .post(&url, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&w, &id).await, "approved");
    // So does what a browser sends under `Referrer-Policy: no-referrer` for its own form:
    // Origin null, and Sec-Fetch-Site same-origin (which pages cannot set).
    let id2 = request(&w, &["scale", "deploy", "api", "--replicas=2"], "staging").await;
    let r = c
        .post_with(
            &format!("{}/ui/requests/{id2}/decision", w.url),
            &[("csrf", &csrf), ("decision", "approve")],
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&w, &id2).await, "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_state_and_a_replayed_code_are_refused() {
    let w = WebServer::start(PROD, "").await;
    let mut c = WebClient::new(&w.url);
    let callback = c.login_at_provider(&w.url, "alice", "/ui").await;
    let url = reqwest::Url::parse(&callback).unwrap();
    let param = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let (code, state) = (param("code"), param("state"));
    // An error text in a callback this server did not start is not shown.
    let r = c
        .get(&format!(
            "{}/auth/callback?error=access_denied&error_description=call%20%2B1-555-PHISH&state=bogus",
            w.url
        ))
        .await;
    assert_eq!(r.status, 400);
    assert!(!r.body.contains("PHISH"), "{}", r.body);
    // A state this server never handed out.
    let forged = format!("{}/auth/callback?code={code}&state=forged-{state}", w.url);
    let r = c.get(&forged).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(c
        .cookies(&w.url)
        .keys()
        .all(|k| !k.contains("hitl_session")));
    // The real callback signs in.
    let r = c.get(&callback).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(c.cookies(&w.url).keys().any(|k| k.contains("hitl_session")));
    // The same callback again, in the same browser: its state is spent.
    let r = c.get(&callback).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("already used"), "{}", r.body);
    // Login CSRF: someone else's callback URL, opened in a victim's browser, signs nobody in.
    let mut evil = WebClient::new(&w.url);
    let theirs = evil.login_at_provider(&w.url, "bob", "/ui").await;
    let mut victim = WebClient::new(&w.url);
    let r = victim.get(&theirs).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("another browser"), "{}", r.body);
    assert!(victim
        .cookies(&w.url)
        .keys()
        .all(|k| !k.contains("hitl_session")));
    let mut other = WebClient::new(&w.url);
    // The spent code with a state this server did hand out (another sign-in under way): the
    // provider refuses the code (used, and bound to another PKCE verifier).
    let fresh = other
        .get(&format!("{}/ui/login?return_to=/ui", w.url))
        .await;
    let fresh_state = reqwest::Url::parse(fresh.location.as_deref().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let r = other
        .get(&format!(
            "{}/auth/callback?code={code}&state={fresh_state}",
            w.url
        ))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("refused"), "{}", r.body);
    assert!(other
        .cookies(&w.url)
        .keys()
        .all(|k| !k.contains("hitl_session")));
    // An answer that names another issuer (a mix-up) is refused before the code is used.
    let cb2 = other.login_at_provider(&w.url, "alice", "/ui").await;
    let mixed = cb2.replace("iss=", "iss=http%3A%2F%2Fevil.example&was=");
    let r = other.get(&mixed).await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_sessions_cookie_opens_nothing() {
    let w = WebServer::start(PROD, "").await;
    let mut c = signed_in(&w, "alice").await;
    let kept = c.cookies(&w.url);
    let inbox = c.get(&format!("{}/ui", w.url)).await;
    assert_eq!(inbox.status, 200);
    let csrf = WebClient::csrf(&inbox.body);
    let r = c
        .post(&format!("{}/ui/logout", w.url), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // RP-initiated logout: on to the provider's end_session_endpoint.
    assert!(
        r.location.as_deref().unwrap().starts_with(&w.idp.issuer),
        "{:?}",
        r.location
    );
    // The old cookie, sent again by hand: the session is gone.
    let mut replay = WebClient::new(&w.url);
    replay.set_cookies(&w.url, kept);
    let r = replay.get(&format!("{}/ui", w.url)).await;
    assert_eq!(r.status, 303);
    assert!(r.location.unwrap().contains("/ui/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risky_decision_needs_a_fresh_sign_in_and_the_environments_name() {
    let w = WebServer::start(PROD, "reauth_after = \"10m\"").await;
    let id = request(&w, &["delete", "deploy", "web"], "prod-eu").await;
    let here = format!("{}/ui/requests/{id}", w.url);
    // Every sign-in asks for max_age (here the session's longest life), so the provider, which
    // sends auth_time only when asked, dates it.
    let mut c = WebClient::new(&w.url);
    let r = c.get(&format!("{}/ui/login?return_to=/ui", w.url)).await;
    assert!(
        r.location.as_deref().unwrap().contains("max_age=43200"),
        "{r:?}"
    );
    let callback = c.provider_login(r, &w.url, "alice").await;
    assert_eq!(c.get(&callback).await.status, 303);
    // Signed in just now: that counts; the form is there, and asks for the environment's name.
    let page = c.get(&here).await;
    assert!(!page.body.contains("Sign in again"), "{}", page.body);
    assert!(
        page.body.contains("data-confirm=\"production\""),
        "{}",
        page.body
    );
    let csrf = WebClient::csrf(&page.body);
    let decide = format!("{here}/decision");
    for typed in ["", "prod", "Production"] {
        let r = c
            .post(
                &decide,
                &[("csrf", &csrf), ("decision", "approve"), ("confirm", typed)],
            )
            .await;
        assert_eq!(r.status, 400, "{typed:?}: {}", r.body);
        assert_eq!(state(&w, &id).await, "pending");
    }
    // Later than reauth_after (the clock of the server and of the provider moved, not waited
    // for): the page asks to sign in again, and the form is refused.
    w.srv.clock.advance(std::time::Duration::from_secs(11 * 60));
    let page = c.get(&here).await;
    assert!(page.body.contains("Sign in again"), "{}", page.body);
    // The real reason, in durations people read.
    assert!(
        page.body.contains(
            "you signed in 11 min ago, and a decision in production needs a sign-in within \
             the last 10 min"
        ),
        "{}",
        page.body
    );
    assert!(!page.body.contains("value=\"approve\""), "{}", page.body);
    let r = c
        .post(
            &decide,
            &[
                ("csrf", &csrf),
                ("decision", "approve"),
                ("confirm", "production"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let to_login = r.location.unwrap();
    assert!(to_login.contains("fresh=1"), "{to_login}");
    assert_eq!(state(&w, &id).await, "pending");
    // The provider is asked for max_age=0 and authenticates alice again; back on the request.
    let r = c.get(&to_login).await;
    assert!(
        r.location.as_deref().unwrap().contains("max_age=0"),
        "{r:?}"
    );
    let callback = c.provider_login(r, &w.url, "alice").await;
    let r = c.get(&callback).await;
    assert_eq!(r.location.as_deref(), Some(here.as_str()));
    let page = c.get(&here).await;
    assert!(!page.body.contains("Sign in again"), "{}", page.body);
    let csrf = WebClient::csrf(&page.body);
    let r = c
        .post(
            &decide,
            &[
                ("csrf", &csrf),
                ("decision", "approve"),
                ("confirm", "production"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&w, &id).await, "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_needs_a_reason_and_reaches_the_request() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = signed_in(&w, "alice").await;
    let page = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    let csrf = WebClient::csrf(&page.body);
    let decide = format!("{}/ui/requests/{id}/decision", w.url);
    let r = c
        .post(
            &decide,
            &[("csrf", &csrf), ("decision", "reject"), ("comment", "  ")],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post(
            &decide,
            &[
                ("csrf", &csrf),
                ("decision", "reject"),
                ("comment", "not now"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let (_, v) = w
        .srv
        .agent(TOKEN_A)
        .get(&format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(v["state"], "rejected");
    assert_eq!(v["decision"]["comment"], "not now");
    // Deciding again: a conflict, nothing changes.
    let r = c
        .post(&decide, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    assert_eq!(r.status, 409);
    // The history shows it, with the approver's email.
    let h = c.get(&format!("{}/ui/history?state=rejected", w.url)).await;
    assert!(
        h.body.contains(&id) && h.body.contains("alice@example.com"),
        "{}",
        h.body
    );
    let h = c.get(&format!("{}/ui/history?state=approved", w.url)).await;
    assert!(!h.body.contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_open_no_page_and_decide_nothing() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = WebClient::new(&w.url);
    let bearer = format!("Bearer {TOKEN_A}");
    for page in [
        "/ui",
        "/ui/history",
        "/ui/audit",
        &format!("/ui/requests/{id}"),
    ] {
        let r = c
            .get_with(&format!("{}{page}", w.url), &[("authorization", &bearer)])
            .await;
        assert_eq!(r.status, 303, "{page}");
        assert!(r.location.unwrap().contains("/ui/login"));
    }
    let r = c
        .get_with(
            &format!("{}/ui/inbox-rows", w.url),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(state(&w, &id).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_the_security_headers() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = signed_in(&w, "alice").await;
    for page in [
        "/ui".to_string(),
        format!("/ui/requests/{id}"),
        "/ui/history".into(),
        "/ui/audit".into(),
        "/ui/signed-out".into(),
        "/ui/requests/ffffffffffffffffffffffffffffffff".into(),
    ] {
        let r = c.get(&format!("{}{page}", w.url)).await;
        let h = |k: &str| r.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let csp = h("content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{page}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{page}: {csp}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{page}");
        assert_eq!(h("cache-control"), "no-store", "{page}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{page}");
        assert_eq!(h("x-frame-options"), "DENY", "{page}");
        // No inline script or style on any page.
        assert!(
            !r.body.contains("<script>") && !r.body.contains("style="),
            "{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_agent_wrote_is_escaped_and_made_visible() {
    let w = WebServer::start(PROD, "").await;
    let evil = [
        "apply",
        "-f",
        "<script>window.__pwned=1</script>",
        "\"><img src=x onerror=\"window.__pwned=2\">",
        "\u{1b}[2K\u{1b}[31mred",
        "\u{202e}txt.exe",
    ];
    let mut body = create_body(&evil);
    body["environment"] = json!({"kube_context": "staging"});
    body["diff"]["text"] = json!("+ <script>window.__pwned=3</script>\n- \u{1b}]0;title\u{7}\n");
    body["reason"] = json!("<b>trust me</b> \u{202e}");
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let mut c = signed_in(&w, "alice").await;
    for page in ["/ui".to_string(), format!("/ui/requests/{id}")] {
        let r = c.get(&format!("{}{page}", w.url)).await;
        assert!(!r.body.contains("<script>window"), "{page}");
        assert!(!r.body.contains("<img src=x"), "{page}");
        assert!(!r.body.contains("<b>trust"), "{page}");
        assert!(
            !r.body.contains('\u{1b}') && !r.body.contains('\u{202e}'),
            "{page}"
        );
        assert!(
            r.body.contains("\\u{1b}") || page == "/ui",
            "{page}: escapes are visible"
        );
        assert!(
            r.body.contains("&lt;script&gt;"),
            "{page}: the text is still there"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_email_is_not_shown_as_the_approvers() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = WebClient::new(&w.url);
    c.sign_in(&w.url, "dave").await;
    let page = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("dave@example.com"), "{}", page.body);
    let csrf = WebClient::csrf(&page.body);
    let r = c
        .post(
            &format!("{}/ui/requests/{id}/decision", w.url),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, 303);
    let row = audit_rows(&w.srv.data)
        .into_iter()
        .find(|r| r.kind == "approved")
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
    assert!(body["approver"]["email"].is_null(), "{}", body["approver"]);
    assert_eq!(row.actor, format!("oidc:{}#dave", w.idp.issuer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_approvers_can_be_turned_off_and_then_only_the_web_decides() {
    // allow_local_approvers lives in [serve], which the web policy writes: the line goes in
    // right after the table's header.
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let idp = crate::support::oidc::Provider::start(dir.path(), &url);
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, crate::support::oidc::CLIENT_SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let policy = crate::support::oidc::web_policy(&url, &idp.issuer, &secret, PROD, "")
        .replace("[serve]\n", "[serve]\nallow_local_approvers = false\n");
    let data = dir.path().join("data");
    let srv = crate::support::server::TestServer::start_on(listener, dir, data, &policy).await;
    let w = WebServer { srv, idp, url };
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let (s, v) = w.srv.approver().decide(&id, "approve", None).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("allow_local_approvers"));
    // Listing still works over the socket.
    let (s, _) = w
        .srv
        .approver()
        .request("GET", "/api/v1/requests?state=pending", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(state(&w, &id).await, "pending");
    // The web decides.
    let mut c = signed_in(&w, "alice").await;
    let r = c.decide(&w.url, &id, &[("decision", "approve")]).await;
    assert_eq!(r.status, 303);
    assert_eq!(state(&w, &id).await, "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_web_settings_cannot_work_does_not_start() {
    use crate::support::server::policy_with;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let oidc = format!(
        "[serve.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\nclient_secret_file = \"{}\"\napprover_groups = [\"a\"]\n",
        secret.display()
    );
    let cases = [
        ("no public_url", format!("[serve]\n{oidc}"), "public_url"),
        (
            "plain http off loopback",
            format!("[serve]\npublic_url = \"http://gate.example.com\"\n{oidc}"),
            "must be https",
        ),
        (
            "a path",
            format!("[serve]\npublic_url = \"https://gate.example.com/approvals\"\n{oidc}"),
            "without a path",
        ),
        (
            "nobody could decide",
            "[serve]\nallow_local_approvers = false\n".to_string(),
            "nobody could decide",
        ),
        (
            "a plain-http issuer off loopback",
            format!(
                "[serve]\npublic_url = \"https://gate.example.com\"\n{}",
                oidc.replace("https://idp.example", "http://idp.example")
            ),
            "must be https",
        ),
        (
            "no approver groups",
            format!(
                "[serve]\npublic_url = \"https://gate.example.com\"\n{}",
                oidc.replace("[\"a\"]", "[]")
            ),
            "approver_groups",
        ),
    ];
    for (what, extra, says) in cases {
        let policy = hitl_gate::policy::load::parse(&policy_with(&extra)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = hitl_gate::server::launch_with_listener(
            hitl_gate::server::Config {
                data_dir: dir.path().join(what.replace(' ', "-")),
                policy,
                tls: None,
                clock: hitl_gate::server::Clock::system(),
                reload: None,
            },
            listener,
            async {},
            |_| {},
        )
        .await;
        let e = r.expect_err(what);
        assert!(e.contains(says), "{what}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_export_downloaded_from_the_ui_verifies_offline() {
    let w = WebServer::start(PROD, "").await;
    let id = request(&w, &["scale", "deploy", "web", "--replicas=3"], "staging").await;
    let mut c = signed_in(&w, "alice").await;
    let page = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    let csrf = WebClient::csrf(&page.body);
    c.post(
        &format!("{}/ui/requests/{id}/decision", w.url),
        &[("csrf", &csrf), ("decision", "reject"), ("comment", "no")],
    )
    .await;
    let audit = c.get(&format!("{}/ui/audit", w.url)).await;
    assert!(
        audit.body.contains(&w.srv.public_key),
        "the page shows the key"
    );
    let today = chrono_today();
    let r = c
        .get(&format!(
            "{}/ui/audit/export?since={today}&until={today}",
            w.url
        ))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let lines: Vec<&str> = r.body.lines().collect();
    assert!(lines.len() >= 2, "{}", r.body);
    let file = w.srv.dir.path().join("export.jsonl");
    std::fs::write(&file, &r.body).unwrap();
    let out = crate::support::run(
        std::process::Command::new(crate::support::bin())
            .args(["audit", "verify", "--file"])
            .arg(&file)
            .args(["--public-key", &w.srv.public_key]),
    );
    assert_eq!(
        crate::support::code(&out),
        0,
        "{}",
        crate::support::stderr(&out)
    );
    // One byte changed: it no longer verifies.
    let edited = r
        .body
        .replacen("\"kind\":\"rejected\"", "\"kind\":\"approved\"", 1);
    assert_ne!(edited, r.body);
    std::fs::write(&file, edited).unwrap();
    let out = crate::support::run(
        std::process::Command::new(crate::support::bin())
            .args(["audit", "verify", "--file"])
            .arg(&file)
            .args(["--public-key", &w.srv.public_key]),
    );
    assert_ne!(crate::support::code(&out), 0);
    // Not signed in: no export.
    let mut anon = WebClient::new(&w.url);
    let r = anon.get(&format!("{}/ui/audit/export", w.url)).await;
    assert_eq!(r.status, 303);
}

/// Today (UTC) as YYYY-MM-DD.
fn chrono_today() -> String {
    let days = hitl_gate::api::now_ms() / 86_400_000;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_idle_and_at_their_maximum_age() {
    // The servers' clocks are moved, not waited for: a busy machine cannot end a session early.
    let minutes = |n: u64| std::time::Duration::from_secs(n * 60);
    // Idle: unused for longer than session_idle.
    let w = WebServer::start(PROD, "session_idle = \"10m\"").await;
    let mut c = signed_in(&w, "alice").await;
    assert_eq!(c.get(&format!("{}/ui", w.url)).await.status, 200);
    w.srv.clock.advance(minutes(11));
    let r = c.get(&format!("{}/ui", w.url)).await;
    assert_eq!(r.status, 303, "an idle session ended");
    // The inbox's automatic refreshes do not count as use: one after 6 minutes, and 5 minutes
    // later the session has been idle for 11.
    let mut c = signed_in(&w, "alice").await;
    assert_eq!(c.get(&format!("{}/ui", w.url)).await.status, 200);
    w.srv.clock.advance(minutes(6));
    let r = c.get(&format!("{}/ui/inbox-rows", w.url)).await;
    assert_eq!(r.status, 200, "not idle for long yet");
    w.srv.clock.advance(minutes(5));
    let r = c.get(&format!("{}/ui/inbox-rows", w.url)).await;
    assert_eq!(r.status, 401, "the refresh did not keep it");
    assert_eq!(c.get(&format!("{}/ui", w.url)).await.status, 303);
    // Signing in again ends the session the browser had.
    let mut c = signed_in(&w, "alice").await;
    let first = c.cookies(&w.url);
    c.sign_in(&w.url, "alice").await;
    assert_ne!(c.cookies(&w.url), first);
    assert_eq!(c.get(&format!("{}/ui", w.url)).await.status, 200);
    let mut old = WebClient::new(&w.url);
    old.set_cookies(&w.url, first);
    assert_eq!(old.get(&format!("{}/ui", w.url)).await.status, 303);
    // Maximum age: used every 20 minutes (never idle for 30), still ends session_max after
    // sign-in.
    let w = WebServer::start(PROD, "session_max = \"1h\"").await;
    let mut c = signed_in(&w, "alice").await;
    for _ in 0..3 {
        assert_eq!(c.get(&format!("{}/ui", w.url)).await.status, 200);
        w.srv.clock.advance(minutes(20));
    }
    w.srv.clock.advance(minutes(1));
    let r = c.get(&format!("{}/ui", w.url)).await;
    assert_eq!(r.status, 303, "a session past session_max ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_filters_and_pages() {
    let w = WebServer::start(PROD, "").await;
    let ap = w.srv.approver();
    // 55 decided requests: staging scales approved, production deletes rejected.
    let mut ids = Vec::new();
    for i in 0..55 {
        let (argv, ctx, verb) = if i % 5 == 0 {
            (vec!["delete", "pod", "x"], "prod-eu", "reject")
        } else {
            (
                vec!["scale", "deploy", "web", "--replicas=2"],
                "staging",
                "approve",
            )
        };
        let mut body = create_body(&argv);
        body["environment"] = json!({"kube_context": ctx});
        body["nonce"] = json!(hitl_gate::hex::sha256(format!("n{i}").as_bytes()));
        let (_, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
        let id = v["id"].as_str().unwrap().to_string();
        let (s, _) = ap.decide(&id, verb, Some("because")).await;
        assert_eq!(s, 200);
        ids.push((id, verb));
    }
    let mut c = signed_in(&w, "alice").await;
    let count = |body: &str| body.matches("href=\"/ui/requests/").count();
    let page = |q: &str| format!("{}/ui/history?{q}", w.url);
    // Fifty per page, newest first; the next page has the rest.
    let p1 = c.get(&page("")).await;
    assert_eq!(count(&p1.body), 50);
    assert!(p1.body.contains("older →"));
    assert!(p1.body.contains(&ids[54].0) && !p1.body.contains(&ids[0].0));
    let p2 = c.get(&page("page=2")).await;
    assert_eq!(count(&p2.body), 5);
    assert!(p2.body.contains(&ids[0].0));
    // Each filter narrows.
    for (q, want) in [
        ("state=rejected", 11),
        ("state=approved", 44),
        ("environment=production", 11),
        ("environment=staging", 44),
        ("tool=kubectl&state=rejected", 11),
        ("tool=terraform", 0),
        ("agent=agent-a&state=rejected", 11),
        ("agent=agent-b", 0),
        ("approver=local%3A&state=rejected", 11),
        ("approver=nobody-like-this", 0),
        ("since=2000-01-01&until=2000-01-02", 0),
    ] {
        let r = c.get(&page(q)).await;
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(count(&r.body).min(50), want.min(50), "{q}");
    }
    let today = chrono_today();
    let r = c
        .get(&page(&format!(
            "since={today}&until={today}&state=rejected"
        )))
        .await;
    assert_eq!(count(&r.body), 11);
    // A page past the end is empty, however far; a far-out time is a clear 400.
    assert_eq!(count(&c.get(&page("page=99999999999999")).await.body), 0);
    assert_eq!(c.get(&page("until=9223372036854775807")).await.status, 400);
    // A bad date or an unknown filter is a clear 400.
    assert_eq!(c.get(&page("since=yesterday")).await.status, 400);
    assert_eq!(c.get(&page("colour=red")).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_audit_export_streams_at_a_time() {
    let w = WebServer::start(PROD, "").await;
    // Big diffs make an export larger than the loopback socket buffers (about 18 MB), so the
    // first export cannot finish while nobody reads it, however fast the server writes.
    let big = "+ x\n".repeat(3 * 1024 * 1024 / 4);
    for i in 0..6 {
        let mut body = create_body(&["scale", "deploy", &format!("w{i}"), "--replicas=2"]);
        body["environment"] = json!({"kube_context": "staging", "namespace": "web"});
        body["diff"]["text"] = json!(big);
        let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
        assert_eq!(s, 201, "{v}");
    }
    let mut c = signed_in(&w, "alice").await;
    let cookie = c
        .cookies(&w.url)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    // The first export's body is not read: its stream stays open.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let held = http
        .get(format!("{}/ui/audit/export", w.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let second = c.get(&format!("{}/ui/audit/export", w.url)).await;
    assert_eq!(second.status, 503, "{}", second.body);
    // Once it is gone, the next one runs.
    drop(held);
    let start = std::time::Instant::now();
    loop {
        let r = c.get(&format!("{}/ui/audit/export", w.url)).await;
        if r.status == 200 {
            assert!(r.body.lines().count() >= 6);
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{}",
            r.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The world of the queue tests: agent-c acts for alice (by her verified email), only the
/// `sre` group may decide a drain, and a rollout needs two approvals.
async fn queue_world() -> WebServer {
    let rules = format!(
        "{PROD}\n[[rule]]\nname = \"sre-only\"\ntools = [\"kubectl\"]\nsubcommands = [\"drain\"]\naction = \"gate\"\napprovers = [\"group:sre\"]\n\n[[rule]]\nname = \"two\"\ntools = [\"kubectl\"]\nsubcommands = [\"rollout *\"]\naction = \"gate\"\napprovals = 2\n"
    );
    WebServer::start(
        &rules,
        &agent_acting_for("agent-c", TOKEN_C, "alice@example.com"),
    )
    .await
}

const TOKEN_C: &str = "token-of-agent-c";

/// A request by the agent with `token`; returns its id.
async fn request_by(w: &WebServer, token: &str, argv: &[&str], ctx: &str) -> String {
    let mut body = create_body(argv);
    body["environment"] = json!({"kube_context": ctx, "namespace": "web"});
    let (s, v) = w.srv.agent(token).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The requests of the queue tests, in this order: a scale anyone may decide, a scale by
/// agent-c (alice's agent), and a drain only `sre` may decide; returns their ids.
async fn three_requests(w: &WebServer) -> (String, String, String) {
    let scale = |d: &'static str, n: &'static str| ["scale", "deploy", d, n];
    let anyone = request_by(w, TOKEN_B, &scale("api", "--replicas=2"), "staging").await;
    let hers = request_by(w, TOKEN_C, &scale("web", "--replicas=3"), "staging").await;
    let sre = request_by(w, TOKEN_B, &["drain", "node-7"], "staging").await;
    (anyone, hers, sre)
}

/// The page shows the header with who is signed in and Sign out.
fn keeps_the_header(body: &str, email: &str) {
    assert!(
        body.contains("<header class=\"top\">")
            && body.contains(&format!("Signed in as {email}"))
            && body.contains("Sign out"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_is_offered_only_to_whom_it_belongs_and_refusals_keep_the_header() {
    let w = queue_world().await;
    let (anyone, hers, sre) = three_requests(&w).await;
    let mut alice = signed_in(&w, "alice").await;
    let mut carol = signed_in(&w, "carol").await;
    let page = |id: &str| format!("{}/ui/requests/{id}", w.url);
    // Her own agent's request: reject only, and why.
    let r = alice.get(&page(&hers)).await;
    assert!(
        r.body
            .contains("You cannot approve this: agent-c acts for you."),
        "{}",
        r.body
    );
    assert!(!r.body.contains("value=\"approve\""), "{}", r.body);
    assert!(r.body.contains("value=\"reject\""), "{}", r.body);
    // Approving anyway: refused, and the refusal keeps the header.
    let r = alice
        .decide(&w.url, &hers, &[("decision", "approve")])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    keeps_the_header(&r.body, "alice@example.com");
    assert_eq!(state(&w, &hers).await, "pending");
    // The sre's request: who may decide, and no form at all.
    let r = alice.get(&page(&sre)).await;
    assert!(
        r.body
            .contains("Only group:sre may decide this request (rule sre-only)."),
        "{}",
        r.body
    );
    assert!(!r.body.contains("name=\"decision\""), "{}", r.body);
    let r = alice
        .decide(&w.url, &sre, &[("decision", "reject"), ("comment", "no")])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    keeps_the_header(&r.body, "alice@example.com");
    // carol may decide both.
    for id in [&hers, &sre] {
        let r = carol.get(&page(id)).await;
        assert!(r.body.contains("value=\"approve\""), "{id}: {}", r.body);
    }
    // Other refusals keep it too: no such request, a bad filter, deciding twice.
    let r = alice.get(&page(&"f".repeat(32))).await;
    assert_eq!(r.status, 404);
    keeps_the_header(&r.body, "alice@example.com");
    let r = alice.get(&format!("{}/ui/history?colour=red", w.url)).await;
    assert_eq!(r.status, 400);
    keeps_the_header(&r.body, "alice@example.com");
    let r = alice.get(&format!("{}/ui/audit?colour=red", w.url)).await;
    assert_eq!(r.status, 400);
    keeps_the_header(&r.body, "alice@example.com");
    let r = carol
        .decide(&w.url, &anyone, &[("decision", "approve")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let csrf = WebClient::csrf(&carol.get(&format!("{}/ui", w.url)).await.body);
    let r = carol
        .post(
            &format!("{}/ui/requests/{anyone}/decision", w.url),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    keeps_the_header(&r.body, "carol@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_for_me_queue_holds_what_this_person_may_still_decide() {
    let w = queue_world().await;
    let (anyone, hers, sre) = three_requests(&w).await;
    let mut alice = signed_in(&w, "alice").await;
    let mut carol = signed_in(&w, "carol").await;
    let ids = |body: &str| -> Vec<String> {
        body.split("data-id=\"")
            .skip(1)
            .map(|s| s[..32].to_string())
            .collect()
    };
    let mine = |body: &str| body.matches(" data-for-me").count();
    // alice: only the first is for her (she is the human of agent-c, and not in sre).
    let r = alice.get(&format!("{}/ui?for=me", w.url)).await;
    assert_eq!(ids(&r.body), std::slice::from_ref(&anyone));
    assert!(
        r.body.contains("<title>(1) Inbox · hitl-gate</title>"),
        "{}",
        r.body
    );
    let r = alice.get(&format!("{}/ui", w.url)).await;
    assert_eq!(ids(&r.body).len(), 3);
    assert_eq!(mine(&r.body), 1, "the rows for her are marked");
    let r = alice.get(&format!("{}/ui/inbox-rows?for=me", w.url)).await;
    assert_eq!(r.headers["x-for-me"], "1");
    assert_eq!(r.headers["x-pending"], "3");
    // carol: all three.
    let r = carol.get(&format!("{}/ui?for=me", w.url)).await;
    assert_eq!(ids(&r.body).len(), 3, "{}", r.body);
    assert!(r.body.contains("<title>(3) Inbox · hitl-gate</title>"));
    // A request that needs two approvals: once carol approved it, it leaves her queue, not
    // alice's, and its page shows the progress.
    drop((hers, sre));
    let two = request_by(
        &w,
        TOKEN_B,
        &["rollout", "restart", "deploy/web"],
        "staging",
    )
    .await;
    let r = carol.decide(&w.url, &two, &[("decision", "approve")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&w, &two).await, "pending");
    let r = carol.get(&format!("{}/ui/inbox-rows?for=me", w.url)).await;
    assert_eq!(r.headers["x-for-me"], "3");
    assert!(!ids(&r.body).contains(&two));
    let r = carol.get(&format!("{}/ui/requests/{two}", w.url)).await;
    assert!(r.body.contains("You approved this at"), "{}", r.body);
    assert!(
        r.body.contains("1 of 2 approvals: carol@example.com"),
        "{}",
        r.body
    );
    let r = alice.get(&format!("{}/ui/inbox-rows?for=me", w.url)).await;
    assert_eq!(r.headers["x-for-me"], "2");
    assert!(ids(&r.body).contains(&two));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_lists_events_with_filters_and_paging_and_checks_the_head() {
    let w = WebServer::start(PROD, "").await;
    let ap = w.srv.approver();
    let mut ids = Vec::new();
    for i in 0..55 {
        let verb = if i % 5 == 0 { "reject" } else { "approve" };
        let argv = ["scale", "deploy", "web", &format!("--replicas={i}")];
        let id = request(&w, &argv, "staging").await;
        let (s, _) = ap.decide(&id, verb, Some("because")).await;
        assert_eq!(s, 200);
        ids.push(id);
    }
    let mut c = signed_in(&w, "alice").await;
    let rows = |body: &str| body.matches("<td class=\"num\">").count();
    let page = c.get(&format!("{}/ui/audit", w.url)).await;
    assert_eq!(page.status, 200);
    // The server signs a checkpoint every 100 rows (and each minute while rows are added, so a
    // slow run may have a later one): the head is checked from the newest.
    let chain = page.body.split("id=\"chain\">").nth(1).unwrap_or_default();
    let chain = chain.split("</p>").next().unwrap();
    let from: u64 = chain
        .strip_prefix("The chain's head verifies: rows ")
        .and_then(|r| {
            r.strip_suffix(
                " to 110 chain correctly, from a checkpoint signed with this server's key.",
            )
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{chain}"));
    assert!((100..=110).contains(&from), "{chain}");
    assert_eq!(rows(&page.body), 100);
    assert!(
        page.body.contains("<td class=\"num\">110</td>"),
        "newest first"
    );
    assert!(!page.body.contains("← newer"));
    let older = page
        .body
        .split("href=\"/ui/audit?")
        .find_map(|s| {
            s.split_once("\">older →")
                .map(|(q, _)| q.replace("&amp;", "&"))
        })
        .expect("an older page");
    assert!(older.ends_with("before=11"), "{older}");
    let p2 = c.get(&format!("{}/ui/audit?{older}", w.url)).await;
    assert_eq!(rows(&p2.body), 10);
    assert!(p2.body.contains("<td class=\"num\">1</td>"));
    assert!(p2.body.contains("← newer") && !p2.body.contains("older →"));
    // Filters: a kind, a request (its events link to it), an actor, a day.
    let r = c.get(&format!("{}/ui/audit?kind=rejected", w.url)).await;
    assert_eq!(rows(&r.body), 11, "{}", r.body);
    let r = c
        .get(&format!("{}/ui/audit?request={}", w.url, ids[3]))
        .await;
    assert_eq!(rows(&r.body), 2);
    assert_eq!(
        r.body
            .matches(&format!("href=\"/ui/requests/{}\"", ids[3]))
            .count(),
        2
    );
    let r = c
        .get(&format!("{}/ui/audit?actor=agent%3Aagent-a", w.url))
        .await;
    assert_eq!(rows(&r.body), 55);
    let r = c
        .get(&format!(
            "{}/ui/audit?since=2000-01-01&until=2000-01-02",
            w.url
        ))
        .await;
    assert_eq!(rows(&r.body), 0);
    assert!(r.body.contains("No events match."));
    assert_eq!(
        c.get(&format!("{}/ui/audit?before=x", w.url)).await.status,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_reads_field_by_field_and_times_and_durations_read_for_people() {
    let w = WebServer::start(PROD, "").await;
    let mut body = create_body(&["apply", "-f", "web.yaml"]);
    body["environment"] = json!({"kube_context": "prod-eu", "namespace": "web"});
    body["diff"] = json!({
        "text": "--- before Deployment web/web\n+++ after Deployment web/web\n@@ -1,2 +1,2 @@\n-        image: nginx:1.25.3\n+        image: nginx:1.26.0\n         name: web\n",
        "summary": {"complete": true, "resources": [
            {"address": "Deployment web/web", "action": "update", "attributes": [
                {"path": "spec.template.spec.containers[web].image",
                 "before": "\"nginx:1.25.3\"", "after": "\"nginx:1.26.0\""}]},
            {"address": "Secret web/creds", "action": "delete", "attributes": [
                {"path": "data (keys)", "before": "\"password, user\"", "after": null}]}]},
        "truncated": false
    });
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let mut c = signed_in(&w, "alice").await;
    let r = c.get(&format!("{}/ui/requests/{id}", w.url)).await;
    let b = &r.body;
    assert!(
        b.contains("2 changes: UPDATE Deployment web/web (image nginx:1.25.3 → nginx:1.26.0); DELETE Secret web/creds (keys password, user)"),
        "{b}"
    );
    assert!(
        b.contains("in production / web, for agent-a acting for alice, "),
        "{b}"
    );
    assert!(
        b.contains("<code>spec.template.spec.containers[web].image</code>"),
        "{b}"
    );
    assert!(b.contains("nginx:1.<del>25</del>.<del>3</del>"), "{b}");
    assert!(b.contains("nginx:1.<ins>26</ins>.<ins>0</ins>"), "{b}");
    assert!(
        b.contains("What is deleted (its key fields as they are now)"),
        "{b}"
    );
    // The timeout in minutes, times as <time> with UTC in the tooltip.
    assert!(b.contains("<dt>Timeout</dt><dd>15 min</dd>"), "{b}");
    assert!(b.contains("<time datetime=\""), "{b}");
    assert!(b.contains(" UTC\" data-local"), "{b}");
    // The inbox cuts a long command in the middle: its tail stays.
    let mut argv: Vec<String> = ["upgrade", "web", "./chart"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for i in 0..30 {
        argv.push(format!("--set=replicaCount{i}=3"));
    }
    argv.push("--set=image.tag=1.26.0".into());
    let mut body = create_body(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    body["tool"] = json!("helm");
    body["environment"] = json!({"kube_context": "staging"});
    let (s, v) = w.srv.agent(TOKEN_A).post("/api/v1/requests", body).await;
    assert_eq!(s, 201, "{v}");
    let inbox = c.get(&format!("{}/ui", w.url)).await;
    let row = inbox
        .body
        .split("<li class=\"card\"")
        .find(|r| r.contains("helm"))
        .expect("the helm row");
    let cmd = row
        .split("<code class=\"cmd\"")
        .nth(1)
        .and_then(|s| s.split_once('>'))
        .map(|(_, s)| s.split("</code>").next().unwrap())
        .unwrap();
    assert!(cmd.starts_with("helm upgrade web ./chart"), "{cmd}");
    assert!(cmd.ends_with("--set=image.tag=1.26.0"), "{cmd}");
    assert!(cmd.contains('…'), "{cmd}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_find_the_icon() {
    let w = WebServer::start(PROD, "").await;
    let mut c = WebClient::new(&w.url);
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/favicon.ico", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/x-icon");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"\x00\x00\x01\x00", "an ICO file");
    let page = c.get(&format!("{}/ui/signed-out", w.url)).await;
    assert!(page
        .body
        .contains("<link rel=\"icon\" href=\"/favicon.ico\">"));
}

/// The list item of request `id` in an inbox page.
fn inbox_row<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body
        .find(&format!("data-id=\"{id}\""))
        .unwrap_or_else(|| panic!("{id} is not in the inbox: {body}"));
    let end = body[start..]
        .find("</li>")
        .map_or(body.len(), |e| start + e);
    &body[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_shim_waits_for_is_marked_in_the_inbox_and_on_its_page() {
    let w = WebServer::start(PROD, "").await;
    let waited = request(&w, &["scale", "deploy", "a", "--replicas=2"], "staging").await;
    let alone = request(&w, &["scale", "deploy", "b", "--replicas=2"], "staging").await;
    // A shim long-polls `waited`; `alone`'s shim stopped waiting and said so (a detach).
    let (s, v) = w
        .srv
        .agent(TOKEN_A)
        .post(&format!("/api/v1/requests/{alone}/detach"), json!({}))
        .await;
    assert_eq!((s, &v["agent_waiting"]), (200, &json!(false)), "{v}");
    let agent = w.srv.agent(TOKEN_A);
    let path = format!("/api/v1/requests/{waited}?wait=60");
    let poll = tokio::spawn(async move { agent.get(&path).await });
    let mut c = signed_in(&w, "alice").await;
    let start = std::time::Instant::now();
    let inbox = loop {
        let inbox = c.get(&format!("{}/ui", w.url)).await;
        assert_eq!(inbox.status, 200, "{}", inbox.body);
        if !inbox_row(&inbox.body, &waited).contains("no agent waiting") {
            break inbox;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the long-poll never marked {waited} as waited for"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        inbox_row(&inbox.body, &alone).contains("no agent waiting"),
        "{}",
        inbox.body
    );
    let page = c.get(&format!("{}/ui/requests/{alone}", w.url)).await;
    assert!(page.body.contains("no agent waiting"), "{}", page.body);
    let page = c.get(&format!("{}/ui/requests/{waited}", w.url)).await;
    assert!(!page.body.contains("no agent waiting"), "{}", page.body);
    // Once decided, nobody needs to know.
    let r = c
        .decide(&w.url, &alone, &[("decision", "reject"), ("comment", "no")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = c.get(&format!("{}/ui/requests/{alone}", w.url)).await;
    assert!(!page.body.contains("no agent waiting"), "{}", page.body);
    poll.abort();
}
