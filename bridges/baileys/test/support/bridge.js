/**
 * Starting the real bridge process for a test, and speaking to it as Blast's
 * worker does.
 *
 * `startBridge(env)` spawns `node src/main.js` with BRIDGE_PORT=0, a fresh
 * store in a temporary directory and a random store key (unless `env` gives
 * them), waits for the `bridge listening on HOST:PORT` line and returns a
 * handle: `url`, `port`, `lines()` (the parsed log), `health()`, `connect()`,
 * `stop()` (SIGTERM, resolves with the exit code). `connect(key, token)`
 * opens a worker-side session and returns a `WorkerClient`.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const BRIDGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const START_TIMEOUT_MS = 15000;

/** Resolves when `predicate()` is truthy; rejects after `timeoutMs`, naming `what`. */
export async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function tempDir(prefix = 'bridge-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function newStoreKey() {
  return randomBytes(32).toString('hex');
}

export function newInstanceKey() {
  return randomUUID();
}

export function newToken() {
  return randomBytes(24).toString('base64url');
}

/** Runs the bridge to its exit with `env` (no defaults added): `{code, stdout, stderr}`. */
export function runBridge(env, timeoutMs = START_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['src/main.js'], { cwd: BRIDGE_DIR, env: { PATH: process.env.PATH, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bridge did not exit within ${timeoutMs} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Starts the bridge; see the module docstring. `nodeArgs` go before the
 * script (e.g. a test-only `--import` preload).
 */
export async function startBridge(env = {}, { nodeArgs = [] } = {}) {
  const dir = tempDir();
  const fullEnv = {
    PATH: process.env.PATH,
    BRIDGE_PORT: '0',
    BRIDGE_HOST: '127.0.0.1',
    BRIDGE_STORE: `sqlite:${path.join(dir, 'bridge.sqlite3')}`,
    BRIDGE_STORE_KEY: newStoreKey(),
    BRIDGE_LOG_LEVEL: 'debug',
    ...env,
  };
  const child = spawn(process.execPath, [...nodeArgs, 'src/main.js'], { cwd: BRIDGE_DIR, env: fullEnv });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  let exitCode;
  exited.then((code) => {
    exitCode = code;
  });
  const listening = await waitFor(
    () => stdout.match(/bridge listening on ([0-9.]+):([0-9]+)/) || exitCode !== undefined,
    START_TIMEOUT_MS,
    'the bridge to listen',
  ).catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
  if (exitCode !== undefined) throw new Error(`bridge exited with ${exitCode}: ${stderr}`);
  const port = Number(listening[2]);
  const bridge = {
    env: fullEnv,
    dir,
    child,
    port,
    url: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    get running() {
      return exitCode === undefined;
    },
    /** The log as parsed JSON lines. */
    lines: () =>
      stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line)),
    health: async () => (await fetch(`${bridge.httpUrl}/health`)).json(),
    connect: (key, token, options) => WorkerClient.open(`${bridge.url}/v1/instances/${key}/socket`, token, options),
    /** SIGTERM; resolves with the exit code (SIGKILL after 10 s). */
    stop: async () => {
      if (exitCode !== undefined) return exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  return bridge;
}

/**
 * A worker-side session: frames are queued as they arrive; `next(type)`
 * takes the next frame (of that type, skipping none silently: it fails on a
 * frame of another type unless `skip` lists it); `closed` resolves with the
 * close code.
 */
export class WorkerClient {
  static open(url, token, { protocol = 'blast-gateway.v1', headers = {} } = {}) {
    return new Promise((resolve, reject) => {
      const allHeaders = token === undefined ? headers : { Authorization: `Bearer ${token}`, ...headers };
      const ws = new WebSocket(url, protocol ? [protocol] : [], { headers: allHeaders });
      const client = new WorkerClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => {
          const err = new Error(`upgrade refused with ${res.statusCode}`);
          err.status = res.statusCode;
          err.body = body;
          reject(err);
        });
      });
      ws.once('error', reject);
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.waiting = null;
    this.closeCode = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code) => {
        this.closeCode = code;
        resolve(code);
        this.wake();
      });
    });
    ws.on('message', (data, isBinary) => {
      this.frames.push(isBinary ? { binary: data } : JSON.parse(data.toString()));
      this.wake();
    });
    ws.on('error', () => {});
  }

  wake() {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }

  get protocol() {
    return this.ws.protocol;
  }

  /** The next frame; it must be of `type` (frames of a type in `skip` are passed over). */
  async next(type, { timeoutMs = 10000, skip = [] } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.frames.length) {
        const frame = this.frames.shift();
        if (frame.type === type) return frame;
        if (!skip.includes(frame.type)) throw new Error(`expected a ${type} frame, got ${JSON.stringify(frame)}`);
      }
      if (this.closeCode !== null) throw new Error(`session closed with ${this.closeCode} while waiting for ${type}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} frame within ${timeoutMs} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The close code, within `timeoutMs`. */
  async closedWith(timeoutMs = 10000) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`session not closed within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  send(frame) {
    this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  close(code = 1000) {
    this.ws.close(code);
    return this.closed;
  }
}
