// The real processes around authd: an upstream OpenID provider
// (panva's oidc-provider, OpenID Certified) and an MCP server that accepts
// only tokens authd's /introspect says are active.

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { spawn } from 'node:child_process';
import Provider from 'oidc-provider';
import express from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';

export async function freePort() {
  const srv = net.createServer();
  await new Promise((ok) => srv.listen(0, '127.0.0.1', ok));
  const { port } = srv.address();
  await new Promise((ok) => srv.close(ok));
  return port;
}

// startOP runs oidc-provider on port with one confidential client, authd,
// whose callback is redirectURI. Any login name signs in as that user, with
// the verified email <login>@example.com in the ID token.
export async function startOP(port, redirectURI) {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'authd',
        client_secret: 'interop-upstream-secret-0123456789',
        redirect_uris: [redirectURI],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: `op-${id}`, email: `${id}@example.com`, email_verified: true, name: id, preferred_username: id }),
    }),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
    // authd reads the identity from the ID token.
    conformIdTokenClaims: false,
    cookies: { keys: ['interop-cookie-key-0123456789abcdef'] },
    features: { devInteractions: { enabled: true } },
    pkce: { required: () => true },
  });
  provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));
  const server = provider.listen(port, '127.0.0.1');
  await new Promise((ok) => server.once('listening', ok));
  return { issuer, clientID: 'authd', clientSecret: 'interop-upstream-secret-0123456789', close: () => server.close() };
}

// startMCP runs an MCP server at http://127.0.0.1:<port>/mcp with one tool,
// whoami. Every request's bearer token is introspected at authd (RFC 7662)
// with introspectToken; an inactive one gets 401 with a WWW-Authenticate
// challenge pointing at the resource metadata, which this host proxies to
// authd as docs/proxies.md describes.
export async function startMCP(port, authdURL, introspectToken) {
  const resource = `http://127.0.0.1:${port}/mcp`;
  const resourceMetadataUrl = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;
  const stats = { introspections: 0, refused: 0, calls: 0 };
  const verifier = {
    async verifyAccessToken(token) {
      stats.introspections++;
      const resp = await fetch(`${authdURL}/introspect`, {
        method: 'POST',
        headers: { authorization: `Bearer ${introspectToken}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      });
      if (resp.status !== 200) throw new Error(`introspection answered ${resp.status}`);
      const info = await resp.json();
      const aud = [].concat(info.aud ?? []);
      if (!info.active || !aud.includes(resource)) {
        stats.refused++;
        throw new InvalidTokenError('token is not active for this resource');
      }
      return { token, clientId: info.client_id, scopes: (info.scope ?? '').split(' ').filter(Boolean), expiresAt: info.exp, resource: new URL(resource), extra: { sub: info.sub } };
    },
  };
  const app = express();
  app.get('/.well-known/oauth-protected-resource/mcp', (req, res) => {
    const up = http.request(`${authdURL}/.well-known/oauth-protected-resource/mcp`, { headers: { host: `127.0.0.1:${port}` } }, (r) => {
      res.status(r.statusCode);
      res.set('content-type', r.headers['content-type']);
      r.pipe(res);
    });
    up.on('error', (e) => res.status(502).send(String(e)));
    up.end();
  });
  app.post('/mcp', express.json(), requireBearerAuth({ verifier, resourceMetadataUrl }), async (req, res) => {
    const server = new McpServer({ name: 'authd-interop-mcp', version: '1.0.0' });
    server.registerTool('whoami', { description: 'who the token belongs to' }, async (extra) => {
      stats.calls++;
      return { content: [{ type: 'text', text: JSON.stringify({ sub: extra.authInfo?.extra?.sub, client_id: extra.authInfo?.clientId }) }] };
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  const server = app.listen(port, '127.0.0.1');
  await new Promise((ok) => server.once('listening', ok));
  return { url: resource, stats, close: () => server.close() };
}

// startMetadataDocument serves a client ID metadata document
// (draft-ietf-oauth-client-id-metadata-document) over https at
// https://127.0.0.1:<port>/client.json, with the given certificate, for a
// public client whose redirect URI is redirectURI. It counts fetches.
export async function startMetadataDocument(port, cert, key, redirectURI) {
  const url = `https://127.0.0.1:${port}/client.json`;
  const doc = {
    client_id: url,
    client_name: 'authd interop (MCP TypeScript SDK, client ID metadata document)',
    redirect_uris: [redirectURI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };
  const stats = { fetches: 0 };
  const server = https.createServer({ cert, key }, (req, res) => {
    if (req.url !== '/client.json') {
      res.writeHead(404).end();
      return;
    }
    stats.fetches++;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(JSON.stringify(doc));
  });
  server.listen(port, '127.0.0.1');
  await new Promise((ok) => server.once('listening', ok));
  return { url, stats, close: () => server.close() };
}

// startAuthd runs the authd binary with env and waits for /ready.
export async function startAuthd(bin, url, env) {
  const logs = [];
  const child = spawn(bin, ['serve'], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [child.stdout, child.stderr]) s.on('data', (d) => logs.push(d.toString()));
  let exited = null;
  child.on('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
  // However this process ends, authd does not outlive it.
  process.on('exit', () => exited || child.kill('SIGKILL'));
  const deadline = Date.now() + 30000;
  for (;;) {
    if (exited) throw new Error(`authd ${exited} before it was ready:\n${logs.join('')}`);
    try {
      if ((await fetch(`${url}/ready`)).status === 200) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`authd not ready after 30s:\n${logs.join('')}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
  return {
    logs,
    stop: async () => {
      if (exited) return;
      const done = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      await done;
    },
  };
}
