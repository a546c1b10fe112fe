// Interop gate (.ci/interop): the official MCP TypeScript SDK's client-side
// authorization and the MCP conformance suite's authorization-server
// scenarios, against the real authd binary on PostgreSQL, with a real
// upstream OpenID provider and an MCP server that introspects at authd.
//
// Environment: AUTHD_BIN (the built binary), AUTHD_DATABASE_URL (an empty
// database authd may migrate), CONFORMANCE_RESULTS (optional: a file to
// write the conformance outcome table to). Exits non-zero on any failure.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Browser } from './browser.mjs';
import { freePort, startAuthd, startMCP, startMetadataDocument, startOP } from './servers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();
const log = (...a) => console.log(`interop [${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function check(cond, what, detail) {
  if (!cond) throw new Error(`FAILED: ${what}${detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  log(`ok: ${what}`);
}

for (const k of ['AUTHD_BIN', 'AUTHD_DATABASE_URL', 'INTEROP_TLS_CERT', 'INTEROP_TLS_KEY']) {
  if (!process.env[k]) throw new Error(`${k} must be set (run .ci/interop)`);
}

// An OAuthClientProvider as a native MCP client implements it: state in
// memory, the "browser" opened on redirectToAuthorization, a loopback
// redirect URI.
class InteropClientProvider {
  constructor(redirectUrl, clientMetadataUrl) {
    this.redirect = redirectUrl;
    // Set: the SDK uses it as the client_id when the server advertises
    // client_id_metadata_document_supported, instead of registering.
    this.clientMetadataUrl = clientMetadataUrl;
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.pendingAuthorization = undefined;
  }
  get redirectUrl() {
    return this.redirect;
  }
  get clientMetadata() {
    return {
      client_name: 'authd interop (MCP TypeScript SDK)',
      redirect_uris: [this.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(url) {
    this.pendingAuthorization = url;
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

async function whoami(mcpURL, transportOpts) {
  const client = new Client({ name: 'authd-interop', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpURL), transportOpts);
  await client.connect(transport);
  try {
    const res = await client.callTool({ name: 'whoami', arguments: {} });
    return JSON.parse(res.content[0].text);
  } finally {
    await client.close();
  }
}

// rawMCP posts an initialize request with a bearer token and returns the
// status and challenge, to see exactly what the resource server answers.
async function rawMCP(mcpURL, token) {
  const resp = await fetch(mcpURL, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
  await resp.text();
  return { status: resp.status, challenge: resp.headers.get('www-authenticate') ?? '' };
}

// sdkFlow runs the SDK's authorization with a registered client, or, with
// cimd, with a client ID metadata document as its client_id.
async function sdkFlow(authdURL, mcp, redirect, cimd) {
  log(`--- MCP TypeScript SDK client authorization (auth()), ${cimd ? 'client ID metadata document' : 'dynamic registration'} ---`);
  const provider = new InteropClientProvider(redirect, cimd?.url);
  const browser = new Browser(cimd ? 'sdk-cimd' : 'sdk');

  // 1. Unauthenticated connect: 401 -> protected-resource metadata ->
  //    authorization-server metadata -> dynamic registration -> PKCE
  //    authorization request handed to the "browser".
  let err;
  try {
    await whoami(mcp.url, { authProvider: provider });
  } catch (e) {
    err = e;
  }
  check(err instanceof UnauthorizedError, 'unauthenticated connect makes the SDK start authorization', String(err));
  if (cimd) {
    check(provider.client?.client_id === cimd.url, 'the SDK uses its metadata document URL as client_id (no registration)', provider.client);
  } else {
    check(provider.client?.client_id && !provider.client.client_id.startsWith('https:'), 'the SDK registered a client at authd (RFC 7591)', provider.client);
  }
  const authURL = new URL(provider.pendingAuthorization);
  check(authURL.href.startsWith(`${authdURL}/authorize?`), 'the authorization request goes to authd', authURL.href);
  check(authURL.searchParams.get('code_challenge_method') === 'S256', 'with PKCE S256');
  check(authURL.searchParams.get('resource') === mcp.url, 'and the MCP server as resource (RFC 8707)', authURL.searchParams.get('resource'));

  // 2. The user signs in at the upstream OP and approves at authd.
  const callback = new URL(await browser.authorize(authURL.href, redirect));
  check(callback.searchParams.get('iss') === authdURL, 'the authorization response carries iss (RFC 9207)', callback.href);
  check(callback.searchParams.get('state') === authURL.searchParams.get('state'), 'and the state');
  const code = callback.searchParams.get('code');
  check(code, 'and a code');

  // 3. Code + verifier -> tokens, through the SDK.
  await new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider }).finishAuth(code);
  const first = provider.saved;
  check(first?.access_token && first?.refresh_token, 'the SDK exchanged the code for an access and a refresh token');

  // 4. A tool call with the token succeeds.
  const me = await whoami(mcp.url, { authProvider: provider });
  check(me.sub && me.client_id === provider.client.client_id, 'tools/call whoami succeeds with the token', me);
  if (cimd) check(cimd.stats.fetches >= 1, 'authd fetched the metadata document', cimd.stats);

  // 5. Refresh through the SDK: rotated tokens, and they work.
  check((await auth(provider, { serverUrl: mcp.url })) === 'AUTHORIZED', 'the SDK refreshes (auth() with a refresh token)');
  const second = provider.saved;
  check(second.access_token !== first.access_token && second.refresh_token !== first.refresh_token, 'refresh rotated both tokens');
  check((await whoami(mcp.url, { authProvider: provider })).sub === me.sub, 'tools/call succeeds with the refreshed token');

  // 6. Revoke the access token (RFC 7009): the MCP server refuses it.
  const rv = await fetch(`${authdURL}/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: second.access_token, client_id: provider.client.client_id }).toString(),
  });
  check(rv.status === 200, 'authd revokes the access token', rv.status);
  const refused = await rawMCP(mcp.url, second.access_token);
  check(refused.status === 401 && refused.challenge.includes('invalid_token') && refused.challenge.includes('resource_metadata='), 'the revoked token is refused with 401 invalid_token', refused);

  // 7. The SDK recovers by itself: 401 -> refresh -> retry.
  check((await whoami(mcp.url, { authProvider: provider })).sub === me.sub, 'the SDK recovers from the 401 by refreshing');
  const third = provider.saved;
  check(third.refresh_token !== second.refresh_token, 'with a newly rotated refresh token');

  // 8. Replaying a spent refresh token is refused and revokes the grant:
  //    the newest token stops working too.
  const replay = await fetch(`${authdURL}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: provider.client.client_id }).toString(),
  });
  const replayBody = await replay.json();
  check(replay.status === 400 && replayBody.error === 'invalid_grant', 'a spent refresh token is refused (invalid_grant)', replayBody);
  check((await rawMCP(mcp.url, third.access_token)).status === 401, 'and the reuse revoked the grant: the newest access token is refused');
  return { clientID: provider.client.client_id };
}

// conformance runs @modelcontextprotocol/conformance's authorization-server
// scenarios against authd, signing in when its authorization-code-grant
// scenario prints the authorization URL. It returns the checks.
async function conformance(authdURL, mcp) {
  log('--- MCP conformance suite: authorization-server scenarios ---');
  const port = await freePort();
  const redirect = `http://127.0.0.1:${port}/callback`;
  const reg = await fetch(`${authdURL}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'MCP conformance suite', redirect_uris: [redirect], grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'none' }),
  });
  const client = await reg.json();
  check(reg.status === 201, 'registered a public client for the conformance suite', client);
  const out = mkdtempSync(path.join(tmpdir(), 'authd-conformance-'));
  const bin = path.join(here, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
  const args = [bin, 'authorization', '--url', authdURL, '--client-id', client.client_id, '--port', String(port), '--resource', mcp.url, '-o', out];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let signIn;
  const browser = new Browser('conformance');
  const onData = (d) => {
    output += d.toString();
    if (!signIn) {
      const m = output.match(new RegExp(`^(${authdURL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/authorize\\?\\S+)$`, 'm'));
      if (m) {
        signIn = (async () => {
          const cb = await browser.authorize(m[1], redirect, { login: 'conformance' });
          const r = await fetch(cb); // deliver the response to the suite's callback listener
          await r.text();
        })();
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const code = await new Promise((ok) => child.on('exit', (c) => ok(c)));
  if (signIn) await signIn;
  const checks = [];
  const walk = (dir) => {
    for (const f of readdirSync(dir)) {
      const p = path.join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f === 'checks.json') checks.push(...JSON.parse(readFileSync(p, 'utf8')));
    }
  };
  walk(out);
  rmSync(out, { recursive: true, force: true });
  const rows = checks.filter((c) => c.status !== 'INFO').map((c) => `${c.status.padEnd(8)} ${c.id}${c.errorMessage ? ` — ${c.errorMessage}` : ''}`);
  log(`conformance (exit ${code}), results:\n  ${rows.join('\n  ')}`);
  if (process.env.CONFORMANCE_RESULTS) writeFileSync(process.env.CONFORMANCE_RESULTS, rows.join('\n') + '\n');
  check(checks.length > 0, 'the conformance suite produced results', output.slice(-3000));
  const failed = checks.filter((c) => c.status === 'FAILURE');
  check(failed.length === 0, 'no conformance check failed', failed.map((c) => `${c.id}: ${c.errorMessage}`).join('; ') + '\n' + output.slice(-3000));
  for (const id of ['authorization-server-metadata', 'authorization-code-grant']) {
    check(checks.some((c) => c.id === id && c.status === 'SUCCESS'), `conformance check ${id} passed`);
  }
}

async function main() {
  const authdPort = await freePort();
  const authdURL = `http://127.0.0.1:${authdPort}`;
  const op = await startOP(await freePort(), `${authdURL}/callback/op`);
  const introspectToken = 'interop-introspection-token-0123456789abcdef';
  const mcp = await startMCP(await freePort(), authdURL, introspectToken);
  const cimdRedirect = `http://127.0.0.1:${await freePort()}/callback`;
  const cimd = await startMetadataDocument(await freePort(), readFileSync(process.env.INTEROP_TLS_CERT), readFileSync(process.env.INTEROP_TLS_KEY), cimdRedirect);
  const authd = await startAuthd(process.env.AUTHD_BIN, authdURL, {
    // The metadata document's server: its certificate is the only root
    // authd trusts for it (Go reads SSL_CERT_FILE), on loopback.
    SSL_CERT_FILE: process.env.INTEROP_TLS_CERT,
    AUTHD_CLIENT_METADATA_DOCUMENTS_ALLOW_LOOPBACK: 'true',
    AUTHD_ISSUER: authdURL,
    AUTHD_LISTEN: `127.0.0.1:${authdPort}`,
    AUTHD_DATABASE_URL: process.env.AUTHD_DATABASE_URL,
    AUTHD_MIGRATE_ON_START: 'true',
    AUTHD_KEYS_ENCRYPTION_SECRET: 'interop-encryption-secret-0123456789abcdef',
    AUTHD_UPSTREAMS: JSON.stringify([{ id: 'op', type: 'oidc', name: 'Interop OP', client_id: op.clientID, client_secret: op.clientSecret, oidc: { issuer: op.issuer } }]),
    AUTHD_ALLOWLIST_EMAILS: 'alice@example.com,conformance@example.com',
    AUTHD_RESOURCES: JSON.stringify([{ uri: mcp.url, name: 'Interop MCP server' }]),
    AUTHD_INTROSPECTION_BEARER_TOKENS: introspectToken,
    AUTHD_LOG_LEVEL: 'info',
  });
  log(`authd ${authdURL}, upstream OP ${op.issuer}, MCP server ${mcp.url}`);
  try {
    await sdkFlow(authdURL, mcp, `http://127.0.0.1:${await freePort()}/callback`);
    await sdkFlow(authdURL, mcp, cimdRedirect, cimd);
    await conformance(authdURL, mcp);
    check(mcp.stats.calls >= 3 && mcp.stats.refused >= 2, 'the MCP server saw the tool calls and the refusals', mcp.stats);
  } catch (e) {
    console.error(`authd logs:\n${authd.logs.join('').split('\n').slice(-60).join('\n')}`);
    throw e;
  } finally {
    await authd.stop();
    mcp.close();
    op.close();
    cimd.close();
  }
  log('interop: all passed');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
