/**
 * The bridge's settings, read from the environment and validated.
 *
 * `loadConfig(env, cwd)` returns a plain frozen object or throws a
 * `ConfigError` naming the variable and what is wrong with it; `main.js`
 * prints that one line on stderr and exits with status 2. Defaults run one
 * bridge on one machine: 127.0.0.1:8766, an SQLite file under `./.bridge/`,
 * WhatsApp's own WebSocket URL.
 */
import path from 'node:path';
import { DEFAULT_CONNECTION_CONFIG } from 'baileys';

export class ConfigError extends Error {
  constructor(variable, problem) {
    super(`${variable}: ${problem}`);
    this.variable = variable;
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const DEFAULT_STORE = 'sqlite:./.bridge/bridge.sqlite3';
const POSTGRES_SCHEMES = ['postgres:', 'postgresql:'];
const REDIS_SCHEMES = ['redis:', 'rediss:'];
const STORE_FORMS = 'sqlite:PATH, postgres://USER@HOST:PORT/DB or redis://HOST:PORT/DB';

function setting(env, name) {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

function port(env) {
  const raw = setting(env, 'BRIDGE_PORT') ?? '8766';
  if (!/^[0-9]{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new ConfigError('BRIDGE_PORT', `must be an integer 0-65535 (0 picks a free port), got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

function host(env) {
  const raw = setting(env, 'BRIDGE_HOST') ?? '127.0.0.1';
  if (/\s|\//.test(raw)) {
    throw new ConfigError('BRIDGE_HOST', `must be a host name or IP address, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

/**
 * `{ kind, url, path }` of a server store: `url` as given (what it leaves
 * out, such as the host, takes the client's defaults), and `path` the server
 * and database it names without password or parameters: what messages show.
 */
function serverStore(kind, raw, form) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    // Never echo the value: it may hold a password.
    throw new ConfigError('BRIDGE_STORE', `is not a valid URL: expected ${form}`);
  }
  const user = url.username ? `${url.username}@` : '';
  return Object.freeze({ kind, url: raw, path: `${url.protocol}//${user}${url.host}${url.pathname}` });
}

/** `{ kind: 'sqlite', path }` (resolved against `cwd`), or a PostgreSQL or Redis spec. */
function store(env, cwd) {
  const raw = setting(env, 'BRIDGE_STORE') ?? DEFAULT_STORE;
  if (raw.startsWith('sqlite:')) {
    const file = raw.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!file) throw new ConfigError('BRIDGE_STORE', 'sqlite: needs a file path, e.g. sqlite:./.bridge/bridge.sqlite3');
    return Object.freeze({ kind: 'sqlite', path: path.resolve(cwd, file) });
  }
  if (POSTGRES_SCHEMES.some((scheme) => raw.startsWith(scheme))) return serverStore('postgres', raw, 'postgres://USER@HOST:PORT/DB');
  if (REDIS_SCHEMES.some((scheme) => raw.startsWith(scheme))) return serverStore('redis', raw, 'redis://HOST:PORT/DB');
  throw new ConfigError('BRIDGE_STORE', `must be ${STORE_FORMS}, got ${JSON.stringify(raw.split(':')[0] + ':...')}`);
}

/** The 32-byte store key, from 64 hex digits or base64 (standard or URL-safe). */
function storeKey(env) {
  const raw = setting(env, 'BRIDGE_STORE_KEY');
  if (raw === undefined) {
    throw new ConfigError('BRIDGE_STORE_KEY', 'is required: 32 random bytes as 64 hex digits or base64 (e.g. `openssl rand -hex 32`)');
  }
  let key = null;
  if (/^[0-9a-fA-F]{64}$/.test(raw)) {
    key = Buffer.from(raw, 'hex');
  } else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(raw)) {
    key = Buffer.from(raw.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  }
  if (key === null || key.length !== 32) {
    // Never echo the value: it is a secret even when malformed.
    throw new ConfigError('BRIDGE_STORE_KEY', `must be 32 bytes as 64 hex digits or base64 (got ${raw.length} characters)`);
  }
  return key;
}

function waUrl(env) {
  const raw = setting(env, 'BRIDGE_WA_URL') ?? DEFAULT_CONNECTION_CONFIG.waWebSocketUrl;
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('BRIDGE_WA_URL', `must be a ws:// or wss:// URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new ConfigError('BRIDGE_WA_URL', `must be a ws:// or wss:// URL, got ${JSON.stringify(url.protocol)}`);
  }
  return url.toString();
}

/** Seconds WhatsApp's WebSocket (TCP, TLS, upgrade, Noise handshake) may take to open. */
function waConnectTimeoutMs(env) {
  const raw = setting(env, 'BRIDGE_WA_CONNECT_TIMEOUT_S');
  if (raw === undefined) return DEFAULT_CONNECTION_CONFIG.connectTimeoutMs;
  const seconds = Number(raw);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(raw) || !(seconds > 0) || seconds > 600) {
    throw new ConfigError('BRIDGE_WA_CONNECT_TIMEOUT_S', `must be a number of seconds in (0, 600], got ${JSON.stringify(raw)}`);
  }
  return Math.round(seconds * 1000);
}

function logLevel(env, name, fallback) {
  const raw = setting(env, name) ?? fallback;
  if (!LOG_LEVELS.includes(raw)) {
    throw new ConfigError(name, `must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

/** The validated settings; throws `ConfigError` on the first bad one. */
export function loadConfig(env = process.env, cwd = process.cwd()) {
  return Object.freeze({
    port: port(env),
    host: host(env),
    store: store(env, cwd),
    storeKey: storeKey(env),
    waUrl: waUrl(env),
    waConnectTimeoutMs: waConnectTimeoutMs(env),
    logLevel: logLevel(env, 'BRIDGE_LOG_LEVEL', 'info'),
    // Baileys logs protocol detail at info and below; warn keeps its noise
    // (and any payload it prints) out of the bridge's log unless asked for.
    waLogLevel: logLevel(env, 'BRIDGE_WA_LOG_LEVEL', 'warn'),
  });
}
