/**
 * One client connection to the fake server: the Noise handshake, then
 * binary nodes both ways, the server's default answers to the client's iqs,
 * and the stanzas a test scripts the server to send.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { decodeBinaryNode, encodeBinaryNode, getBinaryNodeChild, getBinaryNodeChildBuffer } from 'baileys/lib/WABinary/index.js';
import { answerIq } from './answers.js';
import { ClientFrameReader, encodeFrame } from './frames.js';
import { inboundStanza } from './messages.js';
import { NoiseResponder } from './noise.js';

const SERVER = 's.whatsapp.net';
const DEFAULT_WAIT_MS = 5000;
const QR_REFS = 6;

function stanzaId() {
    return randomBytes(6).toString('hex');
}

function describe(match) {
    return typeof match === 'string' ? `<${match}>` : 'a matching node';
}

export class FakeConnection extends EventEmitter {
    /**
     * @param {WebSocket} socket
     * @param {import('./server.js').FakeWhatsApp} server
     */
    constructor(socket, server) {
        super();
        this.socket = socket;
        this.server = server;
        this.reader = new ClientFrameReader();
        this.noise = new NoiseResponder({ staticKeyPair: server.staticKeyPair, certChain: server.certChain });
        this.stage = 'hello';
        /** Every node the client sent after the handshake, in order. */
        this.received = [];
        this.waiters = new Set();
        /** The ClientPayload of the handshake: a registration or a login. */
        this.payload = undefined;
        /** The client's static Noise key, i.e. its creds.noiseKey. */
        this.clientStatic = undefined;
        /** The linked companion this connection logged in as, if any. */
        this.companion = undefined;
        this.answersPings = true;
        this.offlineOnActive = false;
        this.offeredRefs = [];
        this.codePairing = undefined;
        this.inbox = Promise.resolve();
        this.closed = new Promise(resolve => socket.once('close', resolve));
        this.closed.then(() => this.rejectWaiters(new Error('the client connection closed')));
        socket.on('message', data => {
            this.inbox = this.inbox.then(() => this.receive(Buffer.from(data))).catch(error => this.fault(error));
        });
    }

    /** 'register' for a fresh client asking to be linked, 'login' for a linked one. */
    get kind() {
        return this.payload?.devicePairingData ? 'register' : 'login';
    }

    get isOpen() {
        return this.socket.readyState === WebSocket.OPEN;
    }

    async receive(bytes) {
        for (const frame of this.reader.push(bytes)) {
            if (this.stage === 'hello') {
                this.socket.send(encodeFrame(this.noise.respond(frame)));
                this.stage = 'finish';
            } else if (this.stage === 'finish') {
                const { clientStatic, payload, incoming, outgoing } = this.noise.finish(frame);
                Object.assign(this, { clientStatic, payload, incoming, outgoing, stage: 'open' });
                this.server.accept(this);
            } else {
                await this.dispatch(await decodeBinaryNode(this.incoming.open(frame)));
            }
        }
    }

    /** A protocol error ends the connection; the server keeps it for the test to see. */
    fault(error) {
        this.server.recordFault(this, error);
        this.socket.terminate();
    }

    async dispatch(node) {
        this.received.push(node);
        this.emit('node', node);
        for (const waiter of this.waiters) {
            if (waiter.matches(node)) {
                waiter.resolve(node);
            }
        }
        if (node.tag === 'iq' && (node.attrs.type === 'get' || node.attrs.type === 'set')) {
            const reply = answerIq(node, this);
            if (reply) {
                this.send(reply);
            }
        } else if (node.tag === 'message') {
            await this.server.onOutgoingMessage(this, node);
        }
    }

    /** Sends one binary node; false when the client is already gone. */
    send(node) {
        if (!this.isOpen || this.stage !== 'open') {
            return false;
        }
        this.socket.send(encodeFrame(this.outgoing.seal(encodeBinaryNode(node))));
        return true;
    }

    /**
     * The first node from the client, past or future, that matches a tag or
     * a predicate; rejects after `timeoutMs` or when the connection closes.
     */
    waitFor(match, timeoutMs = DEFAULT_WAIT_MS) {
        const matches = typeof match === 'string' ? node => node.tag === match : match;
        const seen = this.received.find(matches);
        if (seen) {
            return Promise.resolve(seen);
        }
        return new Promise((resolve, reject) => {
            const waiter = {
                matches,
                resolve: node => {
                    clearTimeout(timer);
                    this.waiters.delete(waiter);
                    resolve(node);
                },
                reject: error => {
                    clearTimeout(timer);
                    this.waiters.delete(waiter);
                    reject(error);
                }
            };
            const timer = setTimeout(
                () => waiter.reject(new Error(`no ${describe(match)} from the client within ${timeoutMs} ms`)),
                timeoutMs
            );
            this.waiters.add(waiter);
        });
    }

    rejectWaiters(error) {
        for (const waiter of this.waiters) {
            waiter.reject(error);
        }
    }

    /** Sends an iq and resolves with the client's result (or error) for it. */
    async query(iq) {
        const id = stanzaId();
        const reply = this.waitFor(n => n.tag === 'iq' && n.attrs.id === id && n.attrs.type !== 'get' && n.attrs.type !== 'set');
        this.send({ ...iq, attrs: { ...iq.attrs, id, from: SERVER } });
        return reply;
    }

    // What a test can script the server to do.

    /** `<failure reason=...>`: how WhatsApp refuses a login (401, 403, 405, 411, 500, 503...). */
    fail(reason) {
        this.send({ tag: 'failure', attrs: { reason: String(reason), location: 'frc' } });
    }

    /** `<stream:error code=...>`, e.g. 515 (restart required) or 503. */
    streamError(code) {
        this.send({ tag: 'stream:error', attrs: { code: String(code) } });
    }

    /** The stream error of another client logging in as the same device. */
    replaced() {
        this.send({ tag: 'stream:error', attrs: {}, content: [{ tag: 'conflict', attrs: { type: 'replaced' } }] });
    }

    /** The server's orderly end of the XML stream. */
    endStream() {
        this.send({ tag: 'xmlstreamend', attrs: {} });
    }

    /** The TCP connection lost without a close frame. */
    drop() {
        this.socket.terminate();
    }

    /** From now on keepalive pings go unanswered, as over a dead link. */
    stopAnsweringPings() {
        this.answersPings = false;
    }

    /** `pair-device` with QR refs, which the client shows as QR codes in turn. */
    offerQr(refs = Array.from({ length: QR_REFS }, () => `2@${randomBytes(24).toString('base64')}`)) {
        this.offeredRefs.push(...refs);
        // The client's result only acknowledges the refs; nothing waits on it.
        void this.query({
            tag: 'iq',
            attrs: { type: 'set', xmlns: 'md' },
            content: [{ tag: 'pair-device', attrs: {}, content: refs.map(ref => ({ tag: 'ref', attrs: {}, content: Buffer.from(ref) })) }]
        }).catch(() => undefined);
        return refs;
    }

    /**
     * The phone scanned `qr` shown by this client: pair-success, the
     * client's countersignature, then stream error 515 as WhatsApp sends.
     * @returns {Promise<import('./phone.js').Companion>}
     */
    async pairWithQr(qr) {
        const link = this.server.phone.scan(qr);
        if (!this.offeredRefs.includes(link.ref)) {
            throw new Error(`this connection never offered the ref in ${qr}`);
        }
        if (!link.companion.noiseKey.equals(this.clientStatic)) {
            throw new Error('the QR carries another noise key than the client that showed it');
        }
        return this.completePairing(link);
    }

    async completePairing({ companion, deviceIdentity }) {
        const { phone } = this.server;
        const reply = await this.query({
            tag: 'iq',
            attrs: { type: 'set', xmlns: 'md', t: String(Math.floor(Date.now() / 1000)) },
            content: [
                {
                    tag: 'pair-success',
                    attrs: {},
                    content: [
                        { tag: 'device-identity', attrs: { 'key-index': String(companion.keyIndex) }, content: deviceIdentity },
                        { tag: 'platform', attrs: { name: phone.platform } },
                        { tag: 'device', attrs: { jid: companion.pnJid, lid: companion.lidJid } }
                    ]
                }
            ]
        });
        const signed = getBinaryNodeChildBuffer(getBinaryNodeChild(reply, 'pair-device-sign'), 'device-identity');
        if (!signed || !phone.confirm(companion, signed)) {
            phone.unlink(companion.deviceId);
            throw new Error('the client did not countersign its device identity');
        }
        this.streamError(515);
        return companion;
    }

    /**
     * `<success>` for a login; then, once the client reports itself active,
     * the end of pending offline notifications unless `offline` is false.
     */
    succeed({ offline = true } = {}) {
        this.offlineOnActive = offline;
        const attrs = { t: String(Math.floor(Date.now() / 1000)), props: '1', location: 'frc' };
        if (this.companion) {
            attrs.lid = this.companion.lidJid;
        }
        this.send({ tag: 'success', attrs });
    }

    /** The marker that all offline messages and notifications were delivered. */
    deliverOffline(count = 0) {
        this.send({ tag: 'ib', attrs: { from: SERVER }, content: [{ tag: 'offline', attrs: { count: String(count) } }] });
    }

    /** A text message from `contact` to this client, really encrypted for it. */
    async deliverText(contact, text) {
        if (!this.companion) {
            throw new Error('only a logged-in companion receives messages');
        }
        const companion = this.companion;
        const enc = await contact.device.encryptFor(companion.lidJid, () => companion.keys.claim(), { conversation: text });
        const stanza = inboundStanza({ contact, enc });
        this.send(stanza);
        return stanza.attrs.id;
    }

    // Hooks the default answers call (see answers.js).

    onActive() {
        if (this.offlineOnActive) {
            this.offlineOnActive = false;
            queueMicrotask(() => this.deliverOffline());
        }
    }

    onPairingCodeRequest(stage) {
        const ref = randomBytes(16).toString('base64');
        this.codePairing = {
            ref,
            jid: stage.attrs.jid,
            wrappedCompanionEphemeral: getBinaryNodeChildBuffer(stage, 'link_code_pairing_wrapped_companion_ephemeral_pub'),
            noiseKey: getBinaryNodeChildBuffer(stage, 'companion_server_auth_key_pub')
        };
        queueMicrotask(() => this.server.emit('pairing-code-request', this, this.codePairing));
        return ref;
    }

    /**
     * The user typed `code` on the phone: the phone answers the client's
     * request, and once the client sent its key bundle, pairs it.
     * @returns {Promise<import('./phone.js').Companion>}
     */
    enterPairingCode(code) {
        const request = this.codePairing;
        if (!request) {
            return Promise.reject(new Error('this client never asked for a pairing code'));
        }
        const { phone } = this.server;
        Object.assign(request, phone.enterCode(code, request.wrappedCompanionEphemeral));
        const paired = new Promise((resolve, reject) => Object.assign(request, { resolve, reject }));
        this.send({
            tag: 'notification',
            attrs: { from: SERVER, type: 'link_code_companion_reg', id: stanzaId(), t: String(Math.floor(Date.now() / 1000)) },
            content: [
                {
                    tag: 'link_code_companion_reg',
                    attrs: {},
                    content: [
                        { tag: 'link_code_pairing_ref', attrs: {}, content: Buffer.from(request.ref) },
                        { tag: 'primary_identity_pub', attrs: {}, content: phone.identity.public },
                        { tag: 'link_code_pairing_wrapped_primary_ephemeral_pub', attrs: {}, content: request.wrappedPhoneEphemeral }
                    ]
                }
            ]
        });
        return paired;
    }

    onPairingCodeFinish(stage) {
        const request = this.codePairing;
        if (!request?.resolve) {
            return;
        }
        this.codePairing = undefined;
        try {
            const link = this.server.phone.finishCode({
                ...request,
                wrappedBundle: getBinaryNodeChildBuffer(stage, 'link_code_pairing_wrapped_key_bundle')
            });
            queueMicrotask(() => this.completePairing(link).then(request.resolve, request.reject));
        } catch (error) {
            request.reject(error);
        }
    }

    onLogout() {
        if (this.companion) {
            this.server.phone.unlink(this.companion.deviceId);
            this.server.emit('logout', this.companion);
        }
    }
}
