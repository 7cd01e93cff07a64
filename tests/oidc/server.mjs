// A real OpenID provider for the tests: oidc-provider with its development login and consent
// forms, one confidential client, on 127.0.0.1. Started by tests/oidc_support.py; install the
// packages first with `npm ci --prefix tests/oidc`.
//
// Environment:
//   PORT               the port to listen on (default 0: any free port; the ready line names it)
//   ISSUER             default http://127.0.0.1:<port>
//   CLIENT_ID          the one registered client: confidential (client_secret_basic, and oidc-provider
//                      takes client_secret_post too), authorization_code with PKCE + refresh_token
//   CLIENT_SECRET
//   REDIRECT_URIS      comma-separated
//   APPLICATION_TYPE   web (default), or native: loopback redirect URIs then match on any port (RFC 8252)
//   ACCESS_TOKEN_TTL   seconds (default 3600)
//   REFRESH_TOKEN_TTL  seconds (default 14 days)
//   RESOURCE           opt-in: one protected resource (RFC 8707), e.g. http://127.0.0.1:<port>/mcp. The
//                      client may then also use client_credentials, and every access token is a JWT
//                      (RFC 9068, typ at+jwt, RS256, aud the resource, client_id and scope claims) for
//                      that resource, which is the default when a request names none; any other resource
//                      is refused (invalid_target). ACCESS_TOKEN_TTL applies to client_credentials too
//   RESOURCE_SCOPES    the resource's scopes, space-separated (default "notes:read notes:write"); a
//                      token carries only those of the requested scopes
//   DPOP               opt-in: 1 enables DPoP (RFC 9449): a token request with a DPoP proof gets a token
//                      bound to its key (token_type DPoP, cnf.jkt); one without gets a bearer token.
//                      "nonce" also requires a server nonce in every proof (section 8): the first proof
//                      is refused with use_dpop_nonce and a DPoP-Nonce header to retry with
//
// Any login name signs in (the password is not checked): the account's subject is the login
// name, its email <login>@example.com (verified), its name the login name capitalised.
//
// Refresh tokens: the client gets one with every authorization code it redeems, whether or not
// it asked for offline_access (oidc-provider's default issues one only for offline_access, and
// keeps that scope only with prompt=consent); each refresh rotates the refresh token, and a replayed
// one revokes the whole grant. Tokens do not end with the browser session. Access tokens are opaque
// (no resource indicators) unless RESOURCE is set. Cookies need no https: oidc-provider marks them
// secure only behind an https issuer, and signs them with a key made at start.
//
// Prints "ready <issuer>" on stdout once listening; exits on SIGTERM or SIGINT.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

function seconds(name, fallback) {
  const raw = process.env[name];
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`${name} must be a positive whole number of seconds`);
    process.exit(2);
  }
  return value;
}

const clientId = required('CLIENT_ID');
const clientSecret = required('CLIENT_SECRET');
const redirectUris = required('REDIRECT_URIS').split(',').map((uri) => uri.trim()).filter(Boolean);
const applicationType = process.env.APPLICATION_TYPE || 'web';
const accessTokenTtl = seconds('ACCESS_TOKEN_TTL', 3600);
const refreshTokenTtl = seconds('REFRESH_TOKEN_TTL', 14 * 24 * 3600);
const port = Number(process.env.PORT || 0);
const resource = process.env.RESOURCE || null;
const resourceScopes = process.env.RESOURCE_SCOPES || 'notes:read notes:write';
const dpop = process.env.DPOP || null;
if (resource !== null && !URL.canParse(resource)) {
  console.error('RESOURCE must be an absolute URL');
  process.exit(2);
}
if (dpop !== null && dpop !== '1' && dpop !== 'nonce') {
  console.error('DPOP must be 1 or nonce');
  process.exit(2);
}

// A fresh signing key each run: nothing signed by one test run verifies in another.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'RS256',
};

function account(id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: `${id}@example.com`,
        email_verified: true,
        name: id.charAt(0).toUpperCase() + id.slice(1),
      };
    },
  };
}

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token', ...(resource ? ['client_credentials'] : [])],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      application_type: applicationType,
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // The scope's claims go into the ID token too, as most identity providers do.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: { enabled: false },
  },
  responseTypes: ['code'],
  pkce: { methods: ['S256'], required: () => true },
  ttl: {
    AccessToken: accessTokenTtl,
    RefreshToken: refreshTokenTtl,
    Grant: refreshTokenTtl,
    Session: refreshTokenTtl,
    IdToken: 3600,
    AuthorizationCode: 60,
    Interaction: 600,
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  expiresWithSession: async () => false,
  findAccount: async (_ctx, id) => account(id),
};

if (resource !== null) {
  // oidc-provider's own default for these is 600 s, whatever ttl.AccessToken says.
  configuration.ttl.ClientCredentials = accessTokenTtl;
  Object.assign(configuration.features, {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      // A refresh or code exchange without resource= still gets a token for the granted resource.
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: resourceScopes,
          audience: resource,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  });
}

if (dpop !== null) {
  configuration.features.dPoP = dpop === 'nonce'
    ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true }
    : { enabled: true };
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = process.env.ISSUER || `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  server.on('request', provider.callback());
  process.stdout.write(`ready ${issuer}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);
