// A real OpenID Connect provider (panva/oidc-provider, certified) for the token exchange tests
// and the upstream-token tests.
//
//   PORT=... KEY_FILE=key.json LOG_FILE=requests.log [STORE_FILE=store.jsonl] node provider.mjs
//
// Issuer http://127.0.0.1:PORT. Users log in through the provider's development
// interactions (any name, any password); their access tokens carry preferred_username,
// groups and sid. Resources (RFC 8707) choose the format and audience of access tokens:
//   urn:hub:opaque / urn:hub:jwt              audience "jupyterhub", 1 hour
//   urn:hub:short-opaque / urn:hub:short-jwt  audience "jupyterhub", SHORT_TTL seconds
//   urn:other:opaque / urn:other:jwt          audience "other-app"
//   urn:target:s3 / urn:target:api           audience "s3" / "internal-api" (JWT,
//                                             TARGET_TTL seconds): the hub's targets
// Clients: "jupyterhub" (the hub: introspection), "webapp" (gets and revokes tokens) and
// "hub-login" (the hub's GenericOAuthenticator: the code flow with refresh tokens, which
// are rotated at every use; a spent one revokes its whole grant, as oidc-provider does;
// access tokens live HUB_ACCESS_TTL seconds). hub-login may also use:
//   - RFC 8693 token exchange (grant_type urn:ietf:params:oauth:grant-type:token-exchange):
//     one of its own access tokens for a target's token (audience "s3"/"internal-api", or
//     resource urn:target:*), with the requested scopes that target has;
//   - Globus' dependent token grant (urn:globus:auth:grant_type:dependent_token): one of its
//     own access tokens for a list of tokens, one per target resource server;
//   - RFC 8707 resources on the refresh grant: its authorization requests ask for every
//     target resource (oauthenticator's extra_authorize_params holds one value per name).
// Every request is appended to LOG_FILE, once answered: "METHOD /path", then for the token
// endpoint the grant type, and the status (and the error code of a refusal); a revoked grant
// is "GRANT-REVOKED". Tests count provider calls from it.
// Its userinfo takes an access token up to CLOCK_TOLERANCE seconds past its expiry (default 15,
// oidc-provider's own clockTolerance); its introspection does not. oauthenticator's
// refresh_user asks userinfo, so JupyterHub refreshes only once that has passed.
// With STORE_FILE, everything the provider keeps (grants, tokens, sessions) is also written
// there and read back at start, so a provider killed and started again knows its grants,
// as a real one with a database does.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const key = JSON.parse(readFileSync(process.env.KEY_FILE, 'utf8'));
const log = process.env.LOG_FILE;
const shortTtl = Number(process.env.SHORT_TTL || 3);
const hubAccessTtl = Number(process.env.HUB_ACCESS_TTL || 3600);
const targetTtl = Number(process.env.TARGET_TTL || 600);
const storeFile = process.env.STORE_FILE;
const clockTolerance = Number(process.env.CLOCK_TOLERANCE || 15);

const GROUPS = { alice: ['staff', 'science'], bob: ['science'] };
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const DEPENDENT = 'urn:globus:auth:grant_type:dependent_token';
const ACCESS = 'urn:ietf:params:oauth:token-type:access_token';

function resource(audience, accessTokenFormat, accessTokenTTL, scope = 'hub') {
  return {
    scope, audience, accessTokenFormat, accessTokenTTL,
    ...(accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
  };
}

const TARGETS = {
  'urn:target:s3': resource('s3', 'jwt', targetTtl, 's3:read s3:write'),
  'urn:target:api': resource('internal-api', 'jwt', targetTtl, 'api:read api:write'),
};
const RESOURCES = {
  'urn:hub:opaque': resource('jupyterhub', 'opaque', 3600),
  'urn:hub:jwt': resource('jupyterhub', 'jwt', 3600),
  'urn:hub:short-opaque': resource('jupyterhub', 'opaque', shortTtl),
  'urn:hub:short-jwt': resource('jupyterhub', 'jwt', shortTtl),
  'urn:other:opaque': resource('other-app', 'opaque', 3600),
  'urn:other:jwt': resource('other-app', 'jwt', 3600),
  ...TARGETS,
};
const BY_AUDIENCE = Object.fromEntries(
  Object.entries(TARGETS).map(([indicator, info]) => [info.audience, indicator]),
);

// -- a store that outlives the process (STORE_FILE) ----------------------------------------

function persistentAdapter(file) {
  const memory = createMemoryAdapter(clockTolerance);  // as the provider's own memory adapter
  const adapters = new Map();
  const adapterFor = (model) => {
    if (!adapters.has(model)) adapters.set(model, memory(model));
    return adapters.get(model);
  };
  const record = (entry) => appendFileSync(file, `${JSON.stringify(entry)}\n`);
  if (existsSync(file)) {  // replay what the last process kept
    const now = Date.now() / 1000;
    for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
      const { model, op, id, payload, until, grantId } = JSON.parse(line);
      const adapter = adapterFor(model);
      if (op === 'upsert' && (until === null || until > now)) {
        adapter.upsert(id, payload, until === null ? undefined : Math.ceil(until - now));
      } else if (op === 'consume') adapter.find(id).then((p) => { if (p) p.consumed = payload; });
      else if (op === 'destroy') adapter.destroy(id);
      else if (op === 'revoke') adapter.revokeByGrantId(grantId);
    }
  }
  return (model) => {
    const adapter = adapterFor(model);
    return {
      async upsert(id, payload, expiresIn) {
        const until = typeof expiresIn === 'number' ? Date.now() / 1000 + expiresIn : null;
        record({ model, op: 'upsert', id, payload, until });
        return adapter.upsert(id, payload, expiresIn);
      },
      find: (id) => adapter.find(id),
      findByUid: (uid) => adapter.findByUid(uid),
      findByUserCode: (code) => adapter.findByUserCode(code),
      async consume(id) {
        await adapter.consume(id);
        record({ model, op: 'consume', id, payload: (await adapter.find(id))?.consumed });
      },
      async destroy(id) {
        record({ model, op: 'destroy', id });
        return adapter.destroy(id);
      },
      async revokeByGrantId(grantId) {
        record({ model, op: 'revoke', grantId });
        return adapter.revokeByGrantId(grantId);
      },
    };
  };
}

// -- grants of the hub's login client --------------------------------------------------------

async function subjectToken(ctx, value) {
  const token = value && await ctx.oidc.provider.AccessToken.find(value);
  if (!token || token.isExpired || token.clientId !== ctx.oidc.client.clientId) {
    throw new errors.InvalidGrant('subject token is not active');
  }
  if (!await ctx.oidc.provider.Grant.find(token.grantId)) {
    throw new errors.InvalidGrant('grant revoked');
  }
  return token;
}

async function targetToken(ctx, subject, indicator, requested) {
  const { provider } = ctx.oidc;
  const info = TARGETS[indicator];
  const at = new provider.AccessToken({
    accountId: subject.accountId,
    client: ctx.oidc.client,
    grantId: subject.grantId,
    gty: ctx.oidc.params.grant_type,
    sessionUid: subject.sessionUid,
    sid: subject.sid,
  });
  at.resourceServer = new provider.ResourceServer(indicator, info);
  const scopes = requested ? requested.split(' ') : [...at.resourceServer.scopes];
  at.scope = scopes.filter((s) => at.resourceServer.scopes.has(s)).join(' ') || undefined;
  const value = await at.save();
  return { at, value };
}

async function tokenExchange(ctx) {
  const { params } = ctx.oidc;
  if (params.subject_token_type !== ACCESS) {
    throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS}`);
  }
  const subject = await subjectToken(ctx, params.subject_token);
  const indicator = params.resource || BY_AUDIENCE[params.audience];
  if (!TARGETS[indicator]) throw new errors.InvalidTarget();
  const { at, value } = await targetToken(ctx, subject, indicator, params.scope);
  ctx.body = {
    access_token: value, issued_token_type: ACCESS, token_type: 'Bearer',
    expires_in: at.expiration, scope: at.scope,
  };
}

async function dependentTokens(ctx) {
  const subject = await subjectToken(ctx, ctx.oidc.params.token);
  const tokens = [];
  for (const [indicator, info] of Object.entries(TARGETS)) {
    const { at, value } = await targetToken(ctx, subject, indicator, undefined);
    tokens.push({
      access_token: value, expires_in: at.expiration, resource_server: info.audience,
      scope: at.scope, token_type: 'Bearer',
    });
  }
  ctx.body = tokens;
}

const provider = new Provider(issuer, {
  ...(storeFile ? { adapter: persistentAdapter(storeFile) } : {}),
  clockTolerance,
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
    {
      client_id: 'hub-login',
      client_secret: 'hub-login-secret',
      application_type: 'native',  // a loopback redirect on any port: hubs pick free ports
      grant_types: ['authorization_code', 'refresh_token', EXCHANGE, DEPENDENT],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/hub/oauth_callback'],
    },
  ],
  jwks: { keys: [key] },
  cookies: { keys: ['a test cookie key'] },
  scopes: ['openid', 'profile', 'offline_access', 'hub', 's3:read', 's3:write', 'api:read',
           'api:write'],
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
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: (ctx, token, client) => token.resourceServer?.accessTokenTTL
      || (client?.clientId === 'hub-login' ? hubAccessTtl : 3600),
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      // hub-login's code and plain refreshes give userinfo tokens, as a login needs
      useGrantedResource: async (ctx) => ctx.oidc.client?.clientId !== 'hub-login',
      getResourceServerInfo: async (ctx, indicator) => {
        const info = RESOURCES[indicator];
        if (!info) throw new errors.InvalidTarget();
        return info;
      },
    },
  },
});

provider.registerGrantType(EXCHANGE, tokenExchange, [
  'subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
]);
provider.registerGrantType(DEPENDENT, dependentTokens, ['token', 'access_type']);
provider.on('grant.revoked', () => appendFileSync(log, 'GRANT-REVOKED\n'));

provider.use(async (ctx, next) => {
  if (ctx.path === '/auth' && ctx.query.client_id === 'hub-login' && !ctx.query.resource) {
    ctx.querystring += Object.keys(TARGETS).map((r) => `&resource=${encodeURIComponent(r)}`)
      .join('');
  }
  try {
    await next();
  } finally {
    const grant = ctx.path === '/token' ? ` ${ctx.oidc?.params?.grant_type ?? '-'}` : '';
    const error = ctx.status >= 400 && ctx.body?.error ? ` ${ctx.body.error}` : '';
    appendFileSync(log, `${ctx.method} ${ctx.path}${grant} ${ctx.status}${error}\n`);
  }
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
// Idle connections are kept 65 s, as behind nginx or a cloud load balancer: node's 5 s
// timer, fired first when a frozen provider (SIGSTOP) is thawed, closed a client's
// connection before reading the request that had waited in it, so that a refresh sent
// while frozen never reached the provider.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
