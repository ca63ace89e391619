// The parts of the browser suite that are not checks: a lighttpd + responder
// on a free port with a temporary database, Chromium from Debian driven by
// playwright-core, a log of every request the pages make, and small helpers
// for curl and sqlite3.

import { spawn, execFile as execFileCb } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const execFile = promisify(execFileCb);

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../..');
export const FCGI = path.resolve(process.env.ORDERS_FCGI || path.join(REPO, 'src/orders.fcgi'));
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const LIGHTTPD = process.env.LIGHTTPD_BIN || (fs.existsSync('/usr/sbin/lighttpd') ? '/usr/sbin/lighttpd' : 'lighttpd');
const SQLITE3 = process.env.SQLITE3_BIN || 'sqlite3';
// What a sanitizer or a crash writes: the bats suites' expression, shared.
const SANITIZER_REPORT = new RegExp(fs.readFileSync(path.join(REPO, 'tests/lib/sanitizer-report.ere'), 'utf8').trim());

export const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const q = (s) => `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** lighttpd serving www/ and /api/v1/ (conf/lighttpd-orders.conf) on 127.0.0.1. */
export class Server {
  constructor() {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orders-browser-'));
    this.db = path.join(this.tmp, 'orders.db');
    this.proc = null;
    this.port = null;
    this.stderr = ''; // lighttpd's and so its responders', across restarts
    this.stderrClosed = null;
  }

  get origin() { return `http://127.0.0.1:${this.port}`; }

  async setup() {
    if (!fs.existsSync(FCGI)) throw new Error(`responder not found: ${FCGI} (run make, or set ORDERS_FCGI)`);
    await execFile(FCGI, ['--migrate'], { env: { ...process.env, ORDERS_DB: this.db } });
    await this.sqlFile(path.join(REPO, 'sql/demo.sql'));
    this.port = await freePort();
    fs.writeFileSync(path.join(this.tmp, 'lighttpd.conf'), [
      `var.orders_fcgi = ${q(FCGI)}`,
      `var.orders_db   = ${q(this.db)}`,
      `var.orders_run  = ${q(this.tmp)}`,
      `server.port          = ${this.port}`,
      'server.bind          = "127.0.0.1"',
      `server.document-root = ${q(path.join(REPO, 'www'))}`,
      `server.errorlog      = ${q(path.join(this.tmp, 'lighttpd-error.log'))}`,
      'index-file.names     = ( "index.html" )',
      'mimetype.assign      = ( ".html" => "text/html; charset=utf-8", ".js" => "text/javascript; charset=utf-8",',
      '                         ".css" => "text/css; charset=utf-8", ".svg" => "image/svg+xml", ".png" => "image/png" )',
      `include ${q(path.join(REPO, 'conf/lighttpd-orders.conf'))}`,
      '',
    ].join('\n'));
  }

  async start() {
    this.proc = spawn(LIGHTTPD, ['-D', '-f', path.join(this.tmp, 'lighttpd.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    this.proc.stderr.on('data', (d) => { stderr += d; this.stderr += d; });
    // The pipe closes once lighttpd and every responder it spawned have
    // exited: LeakSanitizer writes its report just before that.
    this.stderrClosed = new Promise((resolve) => this.proc.stderr.once('close', resolve));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`lighttpd exited: ${stderr}${this.errorLog()}`);
      try {
        const res = await fetch(`${this.origin}/api/v1/health`);
        if (res.ok) return;
      } catch {
        // not up yet
      }
      await sleep(100);
    }
    throw new Error(`lighttpd did not come up on ${this.origin}: ${stderr}${this.errorLog()}`);
  }

  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    await Promise.race([this.stderrClosed, sleep(10_000)]);
    this.proc = null;
  }

  /** Lines of what the responders wrote (lighttpd's stderr and error log)
   *  that show a sanitizer report or a crash; complete once stop() returned. */
  sanitizerReports() {
    return `${this.stderr}\n${this.errorLog()}`.split('\n').filter((l) => SANITIZER_REPORT.test(l));
  }

  /** PIDs of the responders lighttpd spawned (its children). */
  responderPids() {
    if (!this.proc) return [];
    const pids = [];
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === this.proc.pid) pids.push(Number(name));
      } catch {
        // gone meanwhile
      }
    }
    return pids;
  }

  errorLog() {
    try {
      return fs.readFileSync(path.join(this.tmp, 'lighttpd-error.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async sql(statement) {
    const { stdout } = await execFile(SQLITE3, ['-cmd', '.timeout 5000', this.db, statement]);
    return stdout.trim();
  }

  async sqlFile(file) {
    return new Promise((resolve, reject) => {
      const child = spawn(SQLITE3, ['-cmd', '.timeout 5000', this.db], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => { err += d; });
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sqlite3 < ${file}: ${err}`))));
      fs.createReadStream(file).pipe(child.stdin);
    });
  }

  /** curl against the API; returns {status, headers, body} (body parsed when JSON). */
  async curl(method, apiPath, { body, headers = {} } = {}) {
    const args = ['-sS', '-i', '-X', method, `${this.origin}/api/v1/${apiPath}`];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
    const { stdout } = await execFile('curl', args);
    const split = stdout.indexOf('\r\n\r\n');
    const head = stdout.slice(0, split).split('\r\n');
    const text = stdout.slice(split + 4);
    const status = Number(head[0].split(' ')[1]);
    const hdrs = Object.fromEntries(head.slice(1).map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
    }));
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON
    }
    return { status, headers: hdrs, body: parsed };
  }

  cleanup() {
    if (process.env.ORDERS_TEST_KEEP === '1') {
      process.stderr.write(`# kept ${this.tmp}\n`);
      return;
    }
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Chromium (Debian's) with a fresh profile; every request of every page is logged. */
export class Browser {
  constructor() {
    this.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'orders-chromium-'));
    this.requests = [];
    this.console = [];
    this.pageErrors = [];
  }

  async launch() {
    this.context = await chromium.launchPersistentContext(this.userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 860 },
      locale: 'en-GB',
      timezoneId: 'UTC',
    });
    // Keep a handle on every EventSource a page makes, to inject a broken event.
    await this.context.addInitScript(() => {
      const Native = window.EventSource;
      window.__eventSources = [];
      window.EventSource = class extends Native {
        constructor(...args) {
          super(...args);
          window.__eventSources.push(this);
        }
      };
    });
    this.context.on('request', (r) => {
      let page = null;
      try {
        page = r.frame().page();
      } catch {
        // not from a page
      }
      this.requests.push({ t: Date.now(), method: r.method(), url: new URL(r.url()), headers: r.headers(), page });
    });
    this.context.on('console', (m) => this.console.push({ t: Date.now(), type: m.type(), text: m.text(), page: m.page() }));
    this.context.on('weberror', (e) => this.pageErrors.push(e.error()));
  }

  /** Requests since t (ms), optionally of one page, matching fn(url, request). */
  requestsSince(t, fn = () => true, page = null) {
    return this.requests.filter((r) => r.t >= t && (!page || r.page === page) && fn(r.url, r));
  }

  async close() {
    await this.context?.close().catch(() => {});
    fs.rmSync(this.userDataDir, { recursive: true, force: true });
  }
}

export const isStream = (url) => url.pathname === '/api/v1/stream/events';
export const isList = (url) => url.pathname === '/api/v1/orders';
export const isDetail = (id) => (url) => url.pathname === `/api/v1/orders/${id}`;
