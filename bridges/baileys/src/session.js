/**
 * One Blast session: the worker's WebSocket and the Baileys socket behind it.
 *
 * The Baileys socket is opened when the session starts and ended when the
 * session ends; the bridge never reconnects by itself (retry timing belongs to
 * the worker). Baileys' events become protocol frames:
 *
 *   hello    first, with `paired` from the stored credentials
 *   qr       every new code Baileys emits, with its lifetime
 *   paired   when a pairing completes (`isNewLogin`), with the account's E.164
 *   ready    once the connection is open AND Baileys has received the pending
 *            (offline) notifications
 *   ack/nack WhatsApp's server ack of a sent message (outbox.js)
 *   receipt  delivered / read from `messages.update`
 *   inbound  received 1:1 text messages
 *
 * and the worker's frames become Baileys calls: `send` (a text, or a media
 * file the bridge fetches from the send's link, media.js) through the
 * outbox, `check` as `onWhatsApp` answered with `check_result`, `presence`
 * as `sendPresenceUpdate`, `pair_code` and `logout`.
 *
 * and when Baileys closes, the worker's socket is closed with the code from
 * codes.js (a 401 deletes the stored credentials first). Every handler runs
 * guarded: an error ends this session with 1011, never the process.
 */
import { makeCacheableSignalKeyStore, makeWASocket, normalizeMessageContent, isLidUser } from 'baileys';
import { accountOf, loadAuth } from './auth.js';
import { closeCodeFor, LOGGED_OUT } from './codes.js';
import { errorFields } from './log.js';
import { fetchMedia, mediaContent } from './media.js';
import {
  E164_RE,
  FEATURES,
  HEARTBEAT_S,
  PROTOCOL_VERSION,
  checkProblem,
  e164FromJid,
  echoId,
  jidFromE164,
  presenceProblem,
  readClientFrame,
  sendProblem,
} from './protocol.js';

/** Baileys shows the first QR for 60 s and each next one for 20 s (Socket/socket.js, qrTimeout unset). */
const FIRST_QR_TTL_S = 60;
const NEXT_QR_TTL_S = 20;
/** WebMessageInfo.Status values that are receipts. */
const RECEIPT_STATUS = { 3: 'delivered', 4: 'read', 5: 'read' };
/** How long ending a Baileys socket may take before the session lets go of it. */
const END_GRACE_MS = 3000;
const INTERNAL_ERROR = 1011;
/** How long a number check waits for WhatsApp: the platform gives up on an answer after 30 s. */
const CHECK_TIMEOUT_MS = 25_000;
/** How long Baileys' upload of a media file to WhatsApp may sit idle. */
const MEDIA_UPLOAD_TIMEOUT_MS = 60_000;

/** Baileys' status code of a disconnect error (a Boom), or undefined. */
function statusCodeOf(error) {
  return error?.output?.statusCode;
}

/** An error that Baileys reads like its own upgrade timeout (408). */
function upgradeRefused(status) {
  const err = new Error(`WhatsApp answered the WebSocket upgrade with HTTP ${status}`);
  err.output = { statusCode: 408 };
  return err;
}

/** `promise`, or a rejection with `message` after `ms`; a late rejection of `promise` is ignored. */
function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  promise.catch(() => {});
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class Session {
  /**
   * `instance` is the registry's `{key, outbox}`; `ws` the accepted worker
   * socket; `onMalformed` counts malformed client frames for /health.
   */
  constructor({ instance, ws, store, config, log, sessionId, onMalformed }) {
    this.instance = instance;
    this.key = instance.key;
    this.ws = ws;
    this.store = store;
    this.config = config;
    this.sessionId = sessionId;
    this.onMalformed = onMalformed;
    this.log = log.child({ instance: this.key, session: sessionId });
    this.sock = null;
    this.auth = null;
    this.opened = false;
    this.pendingReceived = false;
    this.ready = false;
    this.qrCount = 0;
    this.heldInbound = [];
    this.closing = false;
    this.closeCode = null;
    this.closeWhy = null;
    this.pairCodePending = false;
    this.baileysEnded = null;
    this.firstQr = null;
    // What the outbox may do with this session.
    this.channel = {
      transmit: (waId, to, content) => this.transmit(waId, to, content),
      reply: (frame) => this.send(frame),
    };
  }

  // frames to the worker

  send(frame) {
    if (this.ws.readyState !== this.ws.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  error(code, message, extra = {}) {
    this.send({ type: 'error', code, message, ...extra });
  }

  // guarding

  /** `fn` wrapped so that a throw or a rejection ends this session, not the process. */
  guard(where, fn) {
    return (...args) => {
      try {
        const result = fn(...args);
        if (result && typeof result.then === 'function') result.catch((err) => this.fail(where, err));
      } catch (err) {
        this.fail(where, err);
      }
    };
  }

  fail(where, err) {
    this.log.error({ where, ...errorFields(err) }, 'SESSION-ERROR');
    this.close(INTERNAL_ERROR, 'internal_error');
  }

  // the session's life

  /** Sends `hello` and opens the Baileys socket. Never throws. */
  async start() {
    try {
      this.auth = await loadAuth(this.store, this.key, this.log);
      if (this.closing) return; // the worker left while the credentials were read
      this.send({
        type: 'hello',
        v: PROTOCOL_VERSION,
        session_id: this.sessionId,
        paired: this.auth.paired,
        heartbeat_s: HEARTBEAT_S,
        features: FEATURES,
      });
      this.log.info({ paired: this.auth.paired }, 'OPEN');
      if (this.auth.credentialsCorrupt) {
        // Unusable credentials are Baileys' bad session: forget the pairing, so
        // that the worker's next session starts a new one with a QR.
        await this.auth.deleteCredentials();
        this.close(closeCodeFor(500, { credentialsCorrupt: true }), 'credentials_corrupt');
        return;
      }
      this.connect();
    } catch (err) {
      this.fail('start', err);
    }
  }

  connect() {
    const baileysLog = this.log.child({ component: 'baileys' }, { level: this.config.waLogLevel });
    const sock = makeWASocket({
      auth: { creds: this.auth.state.creds, keys: makeCacheableSignalKeyStore(this.auth.state.keys, baileysLog) },
      waWebSocketUrl: this.config.waUrl,
      connectTimeoutMs: this.config.waConnectTimeoutMs,
      logger: baileysLog,
      printQRInTerminal: false,
      markOnlineOnConnect: false,
      syncFullHistory: false,
    });
    this.sock = sock;
    let ended;
    this.baileysEnded = new Promise((resolve) => {
      ended = resolve;
    });
    this.firstQr = new Promise((resolve) => {
      this.qrSeen = resolve;
    });
    const on = (event, handler) => sock.ev.on(event, this.guard(event, handler));
    on('connection.update', (update) => this.onConnectionUpdate(update, ended));
    on('creds.update', () => this.auth.saveCreds());
    on('messages.upsert', ({ messages }) => this.onMessages(messages));
    on('messages.update', (updates) => this.onMessageUpdates(updates));
    // Baileys handles only error acks itself; the plain ack is the server's acceptance.
    sock.ws.on('CB:ack,class:message', this.guard('ack', (node) => this.onServerAck(node)));
    // Baileys forwards ws's 'unexpected-response' to nobody, which stops ws
    // from failing the upgrade: an HTTP error answer would hang until the
    // socket idles out, or forever if the server closes. End it at once, as
    // the timeout Baileys would have reported.
    sock.ws.on('unexpected-response', this.guard('upgrade', (req, res) => {
      this.log.warn({ http_status: res.statusCode }, 'WA-UPGRADE-REFUSED');
      res.resume();
      sock.end(upgradeRefused(res.statusCode));
    }));
  }

  async onConnectionUpdate(update, ended) {
    if (update.qr) this.onQr(update.qr);
    if (update.isNewLogin) this.onPaired();
    if (update.connection === 'open') {
      this.opened = true;
      this.maybeReady();
    }
    if (update.receivedPendingNotifications === true) {
      this.pendingReceived = true;
      this.maybeReady();
    }
    if (update.connection === 'close') {
      try {
        await this.onBaileysClosed(update.lastDisconnect?.error);
      } finally {
        ended();
      }
    }
  }

  onQr(code) {
    this.qrCount += 1;
    this.qrSeen();
    this.send({ type: 'qr', code, expires_s: this.qrCount === 1 ? FIRST_QR_TTL_S : NEXT_QR_TTL_S });
    this.log.info({ n: this.qrCount }, 'QR');
  }

  onPaired() {
    const account = accountOf(this.auth.state.creds);
    this.log.info({ account }, 'PAIRED');
    if (account) this.send({ type: 'paired', account });
  }

  maybeReady() {
    if (this.ready || !this.opened || !this.pendingReceived || this.closing) return;
    this.ready = true;
    this.send({ type: 'ready' });
    this.log.info('READY');
    for (const frame of this.heldInbound.splice(0)) this.send(frame);
  }

  async onBaileysClosed(error) {
    const status = statusCodeOf(error);
    const code = closeCodeFor(status, { credentialsCorrupt: this.auth.credentialsCorrupt });
    if (code === LOGGED_OUT) {
      // WhatsApp ended the pairing (or the worker asked to): it cannot be resumed.
      await this.auth.deleteCredentials();
      this.log.info({ status }, 'LOGGED-OUT credentials deleted');
    }
    if (this.closing) return; // the session ended first and ended Baileys with it
    this.log.info({ status, code, ...(error ? errorFields(error) : {}) }, 'WA-CLOSED');
    this.close(code, 'whatsapp');
  }

  // messages

  /** Hands one message to Baileys: `content` is `{text}`, or `{media}` with the content mediaContent() made. */
  async transmit(waId, to, content) {
    if (!this.sock) throw new Error('no WhatsApp connection');
    if (content.media) {
      // Baileys encrypts the file, uploads it to WhatsApp's media host, then sends the message.
      await this.sock.sendMessage(jidFromE164(to), content.media, { messageId: waId, mediaUploadTimeoutMs: MEDIA_UPLOAD_TIMEOUT_MS });
      return;
    }
    // linkPreview null: the bridge never fetches a URL that a message mentions.
    await this.sock.sendMessage(jidFromE164(to), { text: content.text, linkPreview: null }, { messageId: waId });
  }

  async onServerAck(node) {
    const { id, error } = node.attrs ?? {};
    if (typeof id === 'string') await this.instance.outbox.serverAck(id, error);
  }

  async onMessageUpdates(updates) {
    for (const { key, update } of updates) await this.onStatus(key, update?.status);
  }

  /** A delivery status of one of this account's messages: a receipt if the bridge sent it. */
  async onStatus(key, waStatus) {
    const status = RECEIPT_STATUS[waStatus];
    if (!key?.fromMe || !status || typeof key.id !== 'string') return;
    const clientId = await this.instance.outbox.receipt(key.id, status);
    if (clientId !== null) this.send({ type: 'receipt', id: clientId, status });
  }

  async onMessages(messages) {
    for (const message of messages) {
      const { key } = message;
      if (!key || typeof key.id !== 'string') continue;
      if (key.fromMe) {
        // Baileys folds a receipt that arrives while its own upsert of a sent
        // message is still buffered into that upsert's status.
        await this.onStatus(key, message.status);
        continue;
      }
      const content = normalizeMessageContent(message.message);
      const text = content?.conversation || content?.extendedTextMessage?.text;
      if (!text) continue; // media, reactions, protocol messages: not part of protocol v1
      const from = await this.senderNumber(key);
      if (!from) {
        this.log.info({ server_id: key.id, addressing: key.remoteJid?.split('@')[1] }, 'INBOUND-SKIPPED no phone number');
        continue;
      }
      const frame = { type: 'inbound', server_id: key.id, from, text };
      if (this.ready) this.send(frame);
      else this.heldInbound.push(frame); // offline messages arrive just before ready
    }
  }

  /**
   * The sender's E.164 number, or null. 1:1 chats only (groups, broadcasts
   * and newsletters are not part of the protocol). A sender known only by
   * LID (`...@lid`) is resolved with the phone-number JID WhatsApp sends
   * alongside (`remoteJidAlt`), else with Baileys' stored LID-to-PN mapping;
   * without either the message is skipped and logged, never reported under
   * a made-up number.
   */
  async senderNumber(key) {
    const jid = key.remoteJid;
    if (typeof jid !== 'string') return null;
    if (!isLidUser(jid)) return e164FromJid(jid);
    const alternate = e164FromJid(key.remoteJidAlt);
    if (alternate) return alternate;
    const mapped = await this.sock?.signalRepository?.lidMapping?.getPNForLID(jid);
    return e164FromJid(mapped);
  }

  // client frames

  /** One WebSocket message from the worker. */
  onClientMessage(data, isBinary) {
    const { frame, malformed } = readClientFrame(data, isBinary);
    if (malformed) {
      this.onMalformed();
      this.log.warn({ problem: malformed }, 'MALFORMED');
      this.error('malformed_frame', malformed);
      return;
    }
    if (frame.type === 'send') return this.onSend(frame);
    if (frame.type === 'check') return this.onCheck(frame);
    if (frame.type === 'presence') return this.onPresence(frame);
    if (frame.type === 'logout') return this.onLogout();
    if (frame.type === 'pair_code') return this.onPairCode(frame);
    // any other type is ignored (PROTOCOL.md section 2)
  }

  onSend(frame) {
    if (!this.ready) {
      this.error('not_ready', 'send is accepted only after ready', echoId(frame));
      return;
    }
    const problem = sendProblem(frame);
    if (problem) {
      this.error('invalid_send', problem, echoId(frame));
      return;
    }
    if (frame.media === undefined || frame.media === null) {
      return this.instance.outbox.submit({ id: frame.id, to: frame.to, text: frame.text }, this.channel);
    }
    // The file is fetched only once the outbox knows the id is new: a resend
    // of a message already sent is answered from its record, link unused.
    const { kind, url, mime, filename, size } = frame.media;
    const media = { kind, url, mime, filename, size };
    const caption = frame.caption ?? undefined;
    const prepare = async () => ({ media: mediaContent(media, caption, await fetchMedia(media)) });
    return this.instance.outbox.submit({ id: frame.id, to: frame.to, prepare }, this.channel);
  }

  /**
   * `check`: which of up to 50 numbers have a WhatsApp account. One
   * `check_result` with an entry for every number asked, or an `error`
   * (`not_ready`, `invalid_check`, `check_failed`). Never throws.
   */
  async onCheck(frame) {
    if (!this.ready) {
      this.error('not_ready', 'check is accepted only after ready', echoId(frame));
      return;
    }
    const problem = checkProblem(frame);
    if (problem) {
      this.error('invalid_check', problem, echoId(frame));
      return;
    }
    const { id, phones } = frame;
    let found;
    try {
      found = await withTimeout(this.sock.onWhatsApp(...phones.map(jidFromE164)), CHECK_TIMEOUT_MS, 'WhatsApp did not answer within 25 s');
      if (!Array.isArray(found)) throw new Error('WhatsApp answered the query without a result');
    } catch (err) {
      if (this.closing) return; // a request open when the session ends is not answered
      this.log.warn({ id, ...errorFields(err) }, 'CHECK-FAILED');
      this.error('check_failed', 'WhatsApp did not answer the number check', { id });
      return;
    }
    if (this.closing) return;
    // Baileys lists only the numbers that have an account ({jid, exists: true}).
    const results = Object.fromEntries(phones.map((phone) => [phone, false]));
    for (const entry of found) {
      const phone = e164FromJid(entry?.jid);
      if (phone !== null && Object.hasOwn(results, phone) && entry.exists === true) results[phone] = true;
    }
    const onWhatsApp = Object.values(results).filter(Boolean).length;
    this.log.info({ id, asked: phones.length, on_whatsapp: onWhatsApp }, 'CHECK');
    this.send({ type: 'check_result', id, results });
  }

  /**
   * `presence`: typing (`composing`) or not (`paused`) in the chat with
   * `to`. No answer; a bad frame gets an `error`, and a failure of Baileys
   * is logged. Never throws.
   */
  async onPresence(frame) {
    if (!this.ready) {
      this.error('not_ready', 'presence is accepted only after ready');
      return;
    }
    const problem = presenceProblem(frame);
    if (problem) {
      this.error('invalid_presence', problem);
      return;
    }
    try {
      await this.sock.sendPresenceUpdate(frame.state, jidFromE164(frame.to));
    } catch (err) {
      this.log.warn({ state: frame.state, ...errorFields(err) }, 'PRESENCE-FAILED');
    }
  }

  async onLogout() {
    this.log.info('LOGOUT');
    if (this.sock && this.opened) {
      try {
        // Tells WhatsApp to remove this linked device, then ends with 401.
        await this.sock.logout();
      } catch (err) {
        this.log.warn(errorFields(err), 'LOGOUT-UNCONFIRMED');
      }
    }
    await this.auth.deleteCredentials();
    this.close(LOGGED_OUT, 'logout');
  }

  async onPairCode(frame) {
    const phone = frame.phone;
    if (typeof phone !== 'string' || !E164_RE.test(phone)) {
      this.error('invalid_pair_code', 'phone must be an E.164 number: + then 8-15 digits');
      return;
    }
    if (!this.auth || this.auth.paired) {
      this.error('pair_code_unavailable', 'the account is already paired');
      return;
    }
    if (!this.sock) {
      this.error('pair_code_unavailable', 'no WhatsApp connection');
      return;
    }
    if (this.pairCodePending) {
      // A second request would make WhatsApp replace the first code while the
      // first answer is still on its way: one request at a time.
      this.error('pair_code_pending', 'a pairing code request is already in progress on this session');
      return;
    }
    // Baileys can ask for a code once WhatsApp is ready to pair, i.e. with the first QR.
    this.pairCodePending = true;
    const ready = await Promise.race([this.firstQr.then(() => true), this.baileysEnded.then(() => false)]);
    if (!this.pairCodePending) return; // answered by close()
    if (!ready) {
      this.answerPairCode(null);
      return;
    }
    try {
      const code = await this.sock.requestPairingCode(phone.slice(1));
      this.log.info('PAIR-CODE');
      this.answerPairCode(code);
    } catch (err) {
      this.log.warn(errorFields(err), 'PAIR-CODE-FAILED');
      this.answerPairCode(null);
    }
  }

  /** Answers the pending pair_code request with `code`, or with an error when null. */
  answerPairCode(code) {
    if (!this.pairCodePending) return;
    this.pairCodePending = false;
    if (code) this.send({ type: 'pair_code', code });
    else this.error('pair_code_failed', 'WhatsApp did not give a pairing code (the connection closed or refused)');
  }

  // closing

  /** Closes the worker's socket with `code` and ends the Baileys socket. */
  close(code, why) {
    if (this.closing) return;
    this.closing = true;
    this.closeCode = code;
    this.closeWhy = why;
    this.answerPairCode(null); // before the close frame, so the worker learns why
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      this.ws.close(code);
    }
    this.stopBaileys();
  }

  /** The worker's socket closed (`code`), whoever started it. */
  onWorkerClosed(code) {
    if (!this.closing) {
      this.closing = true;
      this.closeWhy = 'client';
    }
    this.log.info({ code: this.closeCode ?? code, by: this.closeWhy }, 'CLOSE');
    this.stopBaileys();
  }

  /** Ends the Baileys socket; resolves when it reported its close (or after a grace time). */
  stopBaileys() {
    this.instance.outbox.channelEnded(this.channel);
    if (!this.sock) return Promise.resolve();
    this.sock.end(undefined).catch((err) => this.log.warn(errorFields(err), 'WA-END-FAILED'));
    let timer;
    const grace = new Promise((resolve) => {
      timer = setTimeout(resolve, END_GRACE_MS);
    });
    return Promise.race([this.baileysEnded, grace]).finally(() => clearTimeout(timer));
  }
}
