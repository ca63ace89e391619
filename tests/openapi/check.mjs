// Checks docs/openapi.yaml, for tests/openapi.bats:
//   node check.mjs validate DOC
//       the document is valid OpenAPI 3.1 (@readme/openapi-parser);
//   node check.mjs exchanges DOC FILE
//       each exchange of FILE (JSON lines written by the suite: the request
//       and the real response) is one the document describes: its operation,
//       its status, the documented headers (required ones present, every
//       present one matching its schema), the media type and the JSON body
//       against the response schema (ajv, JSON Schema 2020-12); for a 2xx,
//       the request body and query parameters sent validate against the
//       document too, so that it is not stricter than the service;
//   node check.mjs coverage DOC FILE NOT_EXERCISED
//       every operation/status pair of the document was exercised in FILE or
//       is listed in NOT_EXERCISED ("METHOD /path STATUS  why" lines), and
//       every line of NOT_EXERCISED is a pair of the document not exercised.
// Prints what is wrong and exits 1; prints a summary and exits 0 otherwise.

import fs from 'node:fs';
import { validate, compileErrors, dereference } from '@readme/openapi-parser';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const [mode, docPath, file, notExercisedPath] = process.argv.slice(2);
const PREFIX = '/api/v1';
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
// What the document says of any path and method it does not list.
const OTHER_METHOD = 'OTHER /{path} 405';
const OTHER_PATH = 'ANY /{unlisted} 404';

const readDoc = () => YAML.parse(fs.readFileSync(docPath, 'utf8'));

function die(lines) {
  for (const l of [].concat(lines)) console.log(`# ${String(l).replace(/\n/g, '\n# ')}`);
  process.exit(1);
}

async function modeValidate() {
  const doc = readDoc();
  if (doc.openapi !== '3.1.0') die(`openapi is ${doc.openapi}, not 3.1.0`);
  const result = await validate(doc);
  if (!result.valid) die(compileErrors(result));
  if (result.warnings.length) die(compileErrors(result));
  // The OpenAPI schema leaves schema objects to JSON Schema: each must
  // compile as JSON Schema 2020-12 (so `type: integr` does not pass).
  const deref = await dereference(readDoc());
  const errs = [];
  let n = 0;
  const walk = (node, where) => {
    if (!node || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'schema' || /^components\.schemas\.[^.]+$/.test(`${where}${k}`)) && v && typeof v === 'object') {
        n++;
        try {
          check(v, null);
        } catch (e) {
          errs.push(`${where}${k}: ${e.message}`);
        }
      } else {
        walk(v, `${where}${k}.`);
      }
    }
  };
  walk(deref, '');
  if (errs.length) die(errs);
  console.log(`# ${docPath}: valid OpenAPI ${doc.openapi}, ${n} schemas valid JSON Schema 2020-12`);
}

// The operation/status pairs of the document, "GET /orders/{id} 304", and
// the responses of every path and method it does not list (OTHER_*).
function pairs(doc) {
  const out = new Map();
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      if (!item[m]) continue;
      for (const st of Object.keys(item[m].responses)) out.set(`${m.toUpperCase()} ${p} ${st}`, item[m].responses[st]);
    }
  }
  out.set(OTHER_METHOD, doc.components.responses.MethodNotAllowed);
  out.set(OTHER_PATH, doc.components.responses.NotFound);
  return out;
}

function templateRe(p) {
  return new RegExp(`^${p.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`);
}

// The document's path for a request path: a literal one before a templated one.
function findPath(doc, reqPath) {
  const paths = Object.keys(doc.paths).sort((a, b) => a.includes('{') - b.includes('{'));
  return paths.find((p) => templateRe(p).test(reqPath));
}

function parseHeaders(block) {
  const h = {};
  for (const line of block.split('\n').slice(1)) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    h[k] = k in h ? `${h[k]}, ${v}` : v;
  }
  return h;
}

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const compiled = new WeakMap();
function check(schema, value) {
  if (!compiled.has(schema)) compiled.set(schema, ajv.compile(schema));
  const v = compiled.get(schema);
  return v(value) ? null : ajv.errorsText(v.errors, { dataVar: 'value' });
}

// A query parameter's text as its schema's type: integers, comma lists (explode: false).
function queryValue(param, text) {
  const s = param.schema || {};
  if (s.type === 'array') return text.split(',').filter((x) => x !== '');
  if (s.type === 'integer' && /^[0-9]+$/.test(text)) return Number(text);
  return text;
}

// The problems with one exchange; [] when it is as documented.
function problems(doc, x, covered) {
  const errs = [];
  const url = new URL(x.path, 'http://127.0.0.1');
  const method = x.method.toLowerCase();
  const hdrs = parseHeaders(x.headers);
  let docPath = url.pathname.startsWith(`${PREFIX}/`) ? findPath(doc, url.pathname.slice(PREFIX.length)) : undefined;
  let op = docPath && doc.paths[docPath][method];
  let response;
  let key;
  if (!docPath) {
    key = OTHER_PATH;
    if (x.status !== '404') errs.push(`path ${url.pathname} is not in the document, and the answer is ${x.status}, not 404`);
    response = doc.components.responses.NotFound;
  } else if (!op) {
    key = OTHER_METHOD;
    if (x.status !== '405') errs.push(`${x.method} ${docPath} is not in the document, and the answer is ${x.status}, not 405`);
    response = doc.components.responses.MethodNotAllowed;
  } else {
    key = `${x.method} ${docPath} ${x.status}`;
    response = op.responses[x.status];
    if (!response) errs.push(`${x.method} ${docPath} does not document status ${x.status}`);
  }
  if (!response) return { errs, key };
  covered.add(key);

  for (const [name, h] of Object.entries(response.headers || {})) {
    const v = hdrs[name.toLowerCase()];
    if (v === undefined) {
      if (h.required) errs.push(`header ${name} is documented as required and is missing`);
      continue;
    }
    const e = check(h.schema, v);
    if (e) errs.push(`header ${name}: ${JSON.stringify(v)}: ${e}`);
  }

  const content = response.content || {};
  const ct = (hdrs['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (method === 'head') {
    // no body, whatever the media type
  } else if (Object.keys(content).length === 0) {
    if (x.body !== '') errs.push(`a body, documented as none: ${x.body.slice(0, 200)}`);
  } else if (!content[ct]) {
    errs.push(`Content-Type ${JSON.stringify(hdrs['content-type'])} is not one of ${Object.keys(content).join(', ')}`);
  } else if (ct === 'application/json') {
    let body;
    try {
      body = JSON.parse(x.body);
    } catch {
      errs.push(`the body is not JSON: ${x.body.slice(0, 200)}`);
    }
    if (body !== undefined) {
      const e = check(content[ct].schema, body);
      if (e) errs.push(`body ${x.body.slice(0, 300)}: ${e}`);
    }
  } else if (ct === 'text/event-stream') {
    // The description's event names, and retry: first.
    if (!/^retry: [0-9]+\n\n/.test(x.body)) errs.push(`the stream does not start with a retry: block: ${x.body.slice(0, 100)}`);
    for (const m of x.body.matchAll(/^event: (.*)$/gm)) {
      if (!['connected', 'ping', 'reset', 'order.created', 'order.updated', 'order.deleted'].includes(m[1])) errs.push(`undocumented stream event ${m[1]}`);
    }
  }

  // A request the service took must be one the document allows.
  if (op && /^2/.test(x.status)) {
    if (x.reqBody !== null && x.reqBody !== undefined && op.requestBody) {
      const rct = (x.reqContentType || '').split(';')[0].trim().toLowerCase();
      const media = op.requestBody.content[rct];
      if (!media) errs.push(`request Content-Type ${x.reqContentType} was taken but is not documented`);
      else {
        const e = check(media.schema, JSON.parse(x.reqBody));
        if (e) errs.push(`request body ${x.reqBody.slice(0, 200)} was taken but the document refuses it: ${e}`);
      }
    }
    const params = [...(doc.paths[docPath].parameters || []), ...(op.parameters || [])];
    for (const [name, text] of url.searchParams) {
      const p = params.find((q) => q.in === 'query' && q.name === name);
      const viaSecurity = Object.values(doc.components.securitySchemes)
        .some((s) => s.type === 'apiKey' && s.in === 'query' && s.name === name);
      if (!p && !viaSecurity) errs.push(`query parameter ${name} was taken but is not documented`);
      else if (p) {
        const e = check(p.schema, queryValue(p, text));
        if (e) errs.push(`query parameter ${name}=${text} was taken but the document refuses it: ${e}`);
      }
    }
  }
  return { errs, key };
}

function readExchanges(f) {
  return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function modeExchanges() {
  const doc = await dereference(readDoc());
  const covered = new Set();
  const failures = [];
  const xs = readExchanges(file);
  for (const x of xs) {
    const { errs } = problems(doc, x, covered);
    if (errs.length) failures.push(`${x.method} ${x.path} -> ${x.status}\n  ${errs.join('\n  ')}`);
  }
  if (failures.length) die([`${failures.length} of ${xs.length} responses are not as documented:`, ...failures]);
  console.log(`# ${xs.length} responses as documented`);
}

async function modeCoverage() {
  const doc = await dereference(readDoc());
  const all = pairs(doc);
  const covered = new Set();
  for (const x of readExchanges(file)) problems(doc, x, covered);
  // "METHOD /path STATUS  why", where * stands for any method or path.
  const listed = [];
  for (const line of fs.readFileSync(notExercisedPath, 'utf8').split('\n')) {
    const m = line.match(/^([A-Z]+|\*) (\S+) ([0-9]{3})\s+(\S.*)$/);
    if (m) listed.push({ line: `${m[1]} ${m[2]} ${m[3]}`, method: m[1], path: m[2], status: m[3] });
    else if (line.trim() && !line.startsWith('#')) die(`not a "METHOD /path STATUS  why" line: ${line}`);
  }
  const matches = (l, k) => {
    const [method, path, status] = k.split(' ');
    return (l.method === '*' || l.method === method) && (l.path === '*' || l.path === path) && l.status === status;
  };
  const errs = [];
  let excused = 0;
  for (const k of all.keys()) {
    if (covered.has(k)) continue;
    if (listed.some((l) => matches(l, k))) excused++;
    else errs.push(`documented, never exercised, not listed as such: ${k}`);
  }
  for (const l of listed) {
    const keys = [...all.keys()].filter((k) => matches(l, k));
    if (keys.length === 0) errs.push(`listed as not exercised, but not in the document: ${l.line}`);
    else if (keys.every((k) => covered.has(k))) errs.push(`listed as not exercised, but exercised: ${l.line}`);
  }
  if (errs.length) die(errs);
  console.log(`# ${all.size} documented responses: ${covered.size} exercised, ${excused} listed as not exercised here`);
}

const modes = { validate: modeValidate, exchanges: modeExchanges, coverage: modeCoverage };
if (!modes[mode]) die('usage: check.mjs validate|exchanges|coverage DOC [FILE [NOT_EXERCISED]]');
await modes[mode]();
