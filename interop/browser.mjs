// A form-following HTTP client standing in for the user's browser: it
// follows redirects, keeps cookies per host, and submits the pages' forms
// (the upstream OpenID provider's sign-in and consent, authd's consent) the
// way a user clicking "continue"/"approve" would. It stops at the first
// redirect to the client's redirect URI and returns that URL, without
// fetching it, as a native MCP client's loopback listener would receive it.

export class Browser {
  constructor(name) {
    this.name = name;
    this.jar = new Map(); // host -> Map(cookie name -> value)
    this.trail = []; // "GET url -> status" for failure messages
  }

  cookiesFor(url) {
    const jar = this.jar.get(url.host);
    if (!jar) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  store(url, headers) {
    for (const line of headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let jar = this.jar.get(url.host);
      if (!jar) this.jar.set(url.host, (jar = new Map()));
      const expired = attrs.some((a) => /^\s*max-age=(0|-)/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a));
      if (expired || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }

  async request(method, url, body) {
    const u = new URL(url);
    const headers = { 'user-agent': 'authd-interop-browser', accept: 'text/html' };
    const cookie = this.cookiesFor(u);
    if (cookie) headers.cookie = cookie;
    if (body) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const resp = await fetch(u, { method, headers, body, redirect: 'manual' });
    this.store(u, resp.headers);
    const text = await resp.text();
    this.trail.push(`${method} ${u.origin}${u.pathname} -> ${resp.status}`);
    return { url: u, status: resp.status, location: resp.headers.get('location'), text };
  }

  // authorize opens authURL and signs in until a redirect to a URL that
  // starts with redirectPrefix; it returns that URL.
  async authorize(authURL, redirectPrefix, { login = 'alice' } = {}) {
    let resp = await this.request('GET', authURL);
    for (let step = 0; step < 25; step++) {
      if (resp.status >= 300 && resp.status < 400 && resp.location) {
        const next = new URL(resp.location, resp.url).href;
        if (next.startsWith(redirectPrefix)) return next;
        resp = await this.request('GET', next);
        continue;
      }
      if (resp.status === 200) {
        const form = parseForm(resp.text, resp.url);
        if (form) {
          for (const [k, v] of Object.entries({ login, password: 'interop' })) {
            if (form.fields.has(k) && !form.fields.get(k)) form.fields.set(k, v);
          }
          // authd's consent page: approve; oidc-provider's pages have one
          // submit button.
          if (form.buttons.has('decision')) form.fields.set('decision', 'approve');
          resp = await this.request(form.method, form.action, form.method === 'POST' ? new URLSearchParams([...form.fields]).toString() : undefined);
          continue;
        }
      }
      throw new Error(`${this.name}: sign-in stopped at ${resp.status} ${resp.url.href}\n${this.trail.join('\n')}\n${resp.text.slice(0, 2000)}`);
    }
    throw new Error(`${this.name}: sign-in did not reach ${redirectPrefix}:\n${this.trail.join('\n')}`);
  }
}

const unescape = (s) =>
  s.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#0?39;/g, "'").replace(/&#x27;/g, "'").replace(/&#43;/g, '+');

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i'));
  return m ? unescape(m[2] ?? m[3] ?? m[4]) : undefined;
}

// parseForm reads the first form of a page: its action, method, the
// fields it would submit (inputs with their values) and its named buttons.
function parseForm(html, base) {
  const m = html.match(/<form\b[^>]*>([\s\S]*?)<\/form>/i);
  if (!m) return undefined;
  const open = m[0].match(/<form\b[^>]*>/i)[0];
  const action = new URL(attr(open, 'action') ?? base.href, base).href;
  const method = (attr(open, 'method') ?? 'GET').toUpperCase();
  const fields = new Map();
  const buttons = new Set();
  for (const tag of m[1].match(/<input\b[^>]*>/gi) ?? []) {
    const name = attr(tag, 'name');
    if (!name) continue;
    const type = (attr(tag, 'type') ?? 'text').toLowerCase();
    if (type === 'submit') {
      buttons.add(name);
      continue;
    }
    if ((type === 'checkbox' || type === 'radio') && !/\schecked\b/i.test(tag)) continue;
    fields.set(name, attr(tag, 'value') ?? '');
  }
  for (const tag of m[1].match(/<button\b[^>]*>/gi) ?? []) {
    const name = attr(tag, 'name');
    if (name) buttons.add(name);
  }
  return { action, method, fields, buttons };
}
