// A real OpenID Connect provider for the web UI's tests: panva's oidc-provider (pinned in
// package.json / package-lock.json, installed by scripts/fetch-test-tools), started by the test
// harness (tests/support/oidc.rs) on 127.0.0.1 with a port the system picks.
//
// Environment (all set by the harness):
//   OIDC_PROVIDER_MODULE  absolute path of oidc-provider's entry point
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_URI   the gate as a client
//   KEY_PEM               a PKCS#8 RSA private key (PEM) the provider signs ID tokens with, so
//                         the tests can make tokens signed with the provider's own key
//   KID                   that key's id (default test-key-1)
//   PORT                  the port to listen on (default 0: the system picks; a test that
//                         rotates the key starts a second provider on the first one's port)
//   HITL_GATE_TEST_CLOCK  the test clock file of the server under test (tests/support/clock.rs):
//                         an offset in milliseconds added to the system time, read on every
//                         Date.now(), so the ID tokens' times move with the server's clock
// Prints "ISSUER <url>" on stdout once it listens.
//
// Users (any password): alice and carol are approvers, bob is not.
import { createServer } from 'node:http';
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

const clockFile = process.env.HITL_GATE_TEST_CLOCK;
if (clockFile) {
  const systemNow = Date.now;
  let offset = 0;
  Date.now = () => {
    try {
      const read = Number.parseInt(readFileSync(clockFile, 'utf8').trim(), 10);
      if (Number.isFinite(read)) offset = read;
    } catch {
      // No file yet: offset 0 (or the last one read).
    }
    return systemNow() + offset;
  };
}

const { default: Provider } = await import(process.env.OIDC_PROVIDER_MODULE);

const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Approver', groups: ['approvers'] },
  carol: { email: 'carol@example.com', email_verified: true, name: 'Carol Second', groups: ['sre', 'approvers'] },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob Bystander', groups: ['developers'] },
  // An unverified email must not be shown as the approver's.
  dave: { email: 'dave@example.com', email_verified: false, name: 'Dave Unverified', groups: ['approvers'] },
};

const jwk = createPrivateKey(readFileSync(process.env.KEY_PEM)).export({ format: 'jwk' });
jwk.kid = process.env.KID || 'test-key-1';
jwk.use = 'sig';
jwk.alg = 'RS256';

const server = createServer();
await new Promise((resolve) => server.listen(Number(process.env.PORT || 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    post_logout_redirect_uris: [process.env.POST_LOGOUT_URI],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
    // No require_auth_time: like most providers, this one sends auth_time only when asked
    // (max_age), so the tests see that the gate asks for it at every sign-in.
  }],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: ['hitl-gate-test-cookie-key'] },
  async findAccount(ctx, id) {
    const a = accounts[id];
    if (!a) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...a }; } };
  },
  // First-party client: no consent page.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
    await grant.save();
    return grant;
  },
});
provider.on('server_error', (ctx, err) => console.error('provider error:', err));
server.on('request', provider.callback());
console.log(`ISSUER ${issuer}`);
