// A real OpenID Connect provider (panva/oidc-provider, certified) for the token exchange tests.
//
//   PORT=... KEY_FILE=key.json LOG_FILE=requests.log node provider.mjs
//
// Issuer http://127.0.0.1:PORT. Users log in through the provider's development
// interactions (any name, any password); their access tokens carry preferred_username,
// groups and sid. Resources (RFC 8707) choose the format and audience of access tokens:
//   urn:hub:opaque / urn:hub:jwt              audience "jupyterhub", 1 hour
//   urn:hub:short-opaque / urn:hub:short-jwt  audience "jupyterhub", SHORT_TTL seconds
//   urn:other:opaque / urn:other:jwt          audience "other-app"
// Clients: "jupyterhub" (the hub: introspection) and "webapp" (gets and revokes tokens).
// Every request is appended to LOG_FILE ("METHOD /path"), so tests count provider calls.
import { appendFileSync, readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const key = JSON.parse(readFileSync(process.env.KEY_FILE, 'utf8'));
const log = process.env.LOG_FILE;
const shortTtl = Number(process.env.SHORT_TTL || 3);

const GROUPS = { alice: ['staff', 'science'], bob: ['science'] };

function resource(audience, accessTokenFormat, accessTokenTTL) {
  return {
    scope: 'hub', audience, accessTokenFormat, accessTokenTTL,
    ...(accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
  };
}

const RESOURCES = {
  'urn:hub:opaque': resource('jupyterhub', 'opaque', 3600),
  'urn:hub:jwt': resource('jupyterhub', 'jwt', 3600),
  'urn:hub:short-opaque': resource('jupyterhub', 'opaque', shortTtl),
  'urn:hub:short-jwt': resource('jupyterhub', 'jwt', shortTtl),
  'urn:other:opaque': resource('other-app', 'opaque', 3600),
  'urn:other:jwt': resource('other-app', 'jwt', 3600),
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'jupyterhub',
      client_secret: 'hub-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'webapp',
      client_secret: 'webapp-secret',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
  ],
  jwks: { keys: [key] },
  cookies: { keys: ['a test cookie key'] },
  scopes: ['openid', 'profile', 'hub'],
  claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, preferred_username: id, groups: GROUPS[id] || [] }),
  }),
  extraTokenClaims: async (ctx, token) => {
    if (!token.accountId) return undefined;
    return {
      preferred_username: token.accountId,
      groups: GROUPS[token.accountId] || [],
      sid: token.sessionUid,
    };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        const info = RESOURCES[indicator];
        if (!info) throw new errors.InvalidTarget();
        return info;
      },
    },
  },
});

provider.use(async (ctx, next) => {
  appendFileSync(log, `${ctx.method} ${ctx.path}\n`);
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
