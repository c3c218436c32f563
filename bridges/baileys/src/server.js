/**
 * The bridge's listener: one HTTP server, one `ws` WebSocketServer on it.
 *
 * `GET /v1/instances/{instance_key}/socket` with `Authorization: Bearer
 * TOKEN` upgrades to a session (PROTOCOL.md section 1): a key that is not a
 * canonical UUID is 404, a missing token or one other than the token first
 * seen for that instance is 401, a request without an upgrade is 400. The
 * subprotocol `blast-gateway.v1` is selected when offered. A second session
 * for an instance closes the older one with 4440, and the newer one opens its
 * Baileys socket only once the older one's has ended, so that WhatsApp never
 * sees two connections of one device. `GET /health` answers
 * `{status, sessions, malformed_received}`.
 *
 * `Bridge.shutdown()` closes every session with 1001, waits for their Baileys
 * sockets to end, and closes the listener and the store.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { errorFields } from './log.js';
import { Outbox } from './outbox.js';
import { MAX_FRAME_BYTES, SUBPROTOCOL, bearerToken, instanceKeyFromPath } from './protocol.js';
import { Session } from './session.js';

const REPLACED = 4440;
const GOING_AWAY = 1001;
/** How long a shutdown waits for sessions to end before it lets go. */
const SHUTDOWN_GRACE_MS = 5000;

const REASONS = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 503: 'Service Unavailable' };

/** Answers an upgrade request on its raw socket with an HTTP error and a JSON body. */
function refuseUpgrade(socket, status, error, message, headers = {}) {
  const body = JSON.stringify({ error, message });
  const lines = [
    `HTTP/1.1 ${status} ${REASONS[status]}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

export class Bridge {
  constructor({ config, store, log }) {
    this.config = config;
    this.store = store;
    this.log = log;
    this.instances = new Map(); // instance key -> { key, outbox, session }
    this.sessions = new Set();
    this.malformedReceived = 0;
    this.stopping = false;
    this.http = http.createServer((req, res) => this.onRequest(req, res));
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.http.on('upgrade', (req, socket, head) => {
      this.onUpgrade(req, socket, head).catch((err) => {
        this.log.error(errorFields(err), 'UPGRADE-FAILED');
        if (socket.writable) refuseUpgrade(socket, 503, 'unavailable', 'the bridge could not open the session');
      });
    });
    this.http.on('clientError', (err, socket) => {
      this.log.warn(errorFields(err), 'BAD-HTTP');
      socket.destroy();
    });
  }

  /** Listens on the configured host and port; resolves with the bound address. */
  listen() {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.config.port, this.config.host, () => {
        this.http.off('error', reject);
        resolve(this.http.address());
      });
    });
  }

  onRequest(req, res) {
    const { pathname } = new URL(req.url, 'http://bridge');
    if (req.method === 'GET' && pathname === '/health') {
      json(res, 200, { status: this.stopping ? 'stopping' : 'ok', sessions: this.sessions.size, malformed_received: this.malformedReceived });
    } else if (instanceKeyFromPath(pathname) !== null) {
      json(res, 400, { error: 'bad_request', message: 'expected a WebSocket upgrade' });
    } else {
      json(res, 404, { error: 'not_found', message: 'no such endpoint' });
    }
  }

  async onUpgrade(req, socket, head) {
    socket.on('error', () => {}); // a client that vanishes mid-upgrade is not an error of ours
    const key = instanceKeyFromPath(new URL(req.url, 'http://bridge').pathname);
    if (key === null) {
      this.log.info({ path: req.url.slice(0, 200) }, 'NOT-FOUND');
      refuseUpgrade(socket, 404, 'not_found', 'expected /v1/instances/{canonical UUID}/socket');
      return;
    }
    if (this.stopping) {
      refuseUpgrade(socket, 503, 'unavailable', 'the bridge is shutting down');
      return;
    }
    const token = bearerToken(req.headers.authorization);
    const binding = token === null ? 'missing' : await this.store.bindToken(key, token);
    if (binding === 'missing' || binding === 'mismatch') {
      this.log.info({ instance: key, token: binding }, 'UNAUTHORIZED');
      refuseUpgrade(socket, 401, 'unauthorized', 'missing or wrong bearer token', { 'WWW-Authenticate': 'Bearer' });
      return;
    }
    if (binding === 'bound') this.log.info({ instance: key }, 'TOKEN-BOUND');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(key, ws));
  }

  instance(key) {
    let entry = this.instances.get(key);
    if (!entry) {
      entry = { key, outbox: new Outbox({ store: this.store, instance: key, log: this.log }), session: null };
      this.instances.set(key, entry);
    }
    return entry;
  }

  onConnection(key, ws) {
    const instance = this.instance(key);
    const session = new Session({
      instance,
      ws,
      store: this.store,
      config: this.config,
      log: this.log,
      sessionId: `sess-${randomBytes(8).toString('hex')}`,
      onMalformed: () => {
        this.malformedReceived += 1;
      },
    });
    this.sessions.add(session);
    const older = instance.session;
    instance.session = session;
    ws.on('message', session.guard('frame', (data, isBinary) => session.onClientMessage(data, isBinary)));
    ws.on('error', (err) => session.log.warn(errorFields(err), 'WORKER-SOCKET-ERROR'));
    ws.on('close', (code) => {
      this.sessions.delete(session);
      if (instance.session === session) instance.session = null;
      session.onWorkerClosed(code);
    });
    let previous = Promise.resolve();
    if (older && !older.closing) {
      session.log.info({ older: older.sessionId }, 'REPLACED');
      older.close(REPLACED, 'replaced');
      previous = older.stopBaileys();
    } else if (older) {
      previous = older.stopBaileys();
    }
    previous.then(() => session.start());
  }

  /** Closes every session with 1001, then the listener and the store. */
  async shutdown() {
    this.stopping = true;
    const ending = [...this.sessions].map((session) => {
      session.close(GOING_AWAY, 'shutdown');
      return session.stopBaileys();
    });
    const closed = new Promise((resolve) => this.http.close(resolve));
    this.http.closeIdleConnections?.();
    let timer;
    await Promise.race([
      Promise.all([...ending, closed]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, SHUTDOWN_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    for (const ws of this.wss.clients) ws.terminate();
    this.http.closeAllConnections?.();
    await this.store.close();
  }
}
