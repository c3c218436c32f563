/**
 * The fake WhatsApp Web server: a WebSocket endpoint on 127.0.0.1 that
 * speaks WhatsApp's Noise and binary-node protocol to a real Baileys client,
 * hosts one account (its phone and linked companions) and its contacts, and
 * lets a test script each connection.
 *
 * Without a script it behaves like WhatsApp for a healthy account: a fresh
 * client is offered QR refs, a linked companion logging in gets `success`
 * and the offline marker, an unknown one gets failure 401, and every
 * message is acked. A listener for 'register', 'login' or 'message' takes
 * that decision over:
 *
 *     wa.on('login', conn => conn.fail(403));
 *     wa.on('message', msg => msg.reject(479));
 *
 * `wa.startMediaHost()` adds the HTTPS host media messages are uploaded to
 * (media.js); `wa.refuseIqs(xmlns, code)` answers that namespace's iqs with
 * an error (e.g. 'usync', for a failing number check).
 *
 * Events: 'connection' (every completed handshake), 'register' and 'login'
 * (the same, by kind), 'message' (an OutgoingMessage, decrypted),
 * 'pairing-code-request' (connection, request), 'logout' (the companion
 * that unlinked itself) and 'fault' (error, connection).
 */
import { EventEmitter, once } from 'node:events';
import { WebSocketServer } from 'ws';
import { Curve } from 'baileys/lib/Utils/crypto.js';
import { issueCertChain } from './certs.js';
import { FakeConnection } from './connection.js';
import { FakeContact } from './contact.js';
import { Directory } from './directory.js';
import { FakeMediaHost } from './media.js';
import { OutgoingMessage, openParticipants } from './messages.js';
import { FakePhone } from './phone.js';

export class FakeWhatsApp extends EventEmitter {
    /**
     * @param {{ root: { privateKey: Buffer, serial: number }, pnUser?: string, lidUser?: string }} options
     */
    constructor({ root, pnUser = '6281234567890', lidUser = '112233445566778' }) {
        super();
        this.staticKeyPair = Curve.generateKeyPair();
        this.certChain = issueCertChain(root, this.staticKeyPair.public);
        this.phone = new FakePhone({ pnUser, lidUser });
        this.directory = new Directory(this.phone);
        /** @type {Set<FakeConnection>} */
        this.connections = new Set();
        /** Protocol errors that ended a connection, for tests to assert on. */
        this.faults = [];
        /** iq namespace -> the error every iq of it is answered with. */
        this.iqRefusals = new Map();
        /** @type {FakeMediaHost | undefined} */
        this.mediaHost = undefined;
        this.wss = undefined;
    }

    /** Starts the media host that media_conn names; resolves with it. */
    async startMediaHost() {
        if (!this.mediaHost) {
            this.mediaHost = await new FakeMediaHost().listen();
        }
        return this.mediaHost;
    }

    /** Answers every iq of `xmlns` with error `code` until the returned function runs. */
    refuseIqs(xmlns, code = 500, text = 'internal-server-error') {
        this.iqRefusals.set(xmlns, { code, text });
        return () => this.iqRefusals.delete(xmlns);
    }

    async listen() {
        this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
        this.wss.on('connection', socket => {
            const connection = new FakeConnection(socket, this);
            this.connections.add(connection);
            connection.closed.then(() => this.connections.delete(connection));
        });
        await once(this.wss, 'listening');
        return this;
    }

    /** The URL to give Baileys as `waWebSocketUrl`. */
    get url() {
        return `ws://127.0.0.1:${this.wss.address().port}/ws/chat`;
    }

    /** A contact on WhatsApp with its own phone number, LID and Signal keys. */
    addContact(pnUser, lidUser = String(900000000000000 + this.directory.contacts.length + 1)) {
        const contact = new FakeContact({ pnUser, lidUser });
        this.directory.contacts.push(contact);
        return contact;
    }

    /** Called by a connection once its handshake completed. */
    accept(connection) {
        if (connection.kind === 'login') {
            connection.companion = this.phone.companionFor(connection.payload, connection.clientStatic);
        }
        this.emit('connection', connection);
        if (this.emit(connection.kind, connection)) {
            return;
        }
        if (connection.kind === 'register') {
            connection.offerQr();
        } else if (connection.companion) {
            connection.succeed();
        } else {
            connection.fail(401);
        }
    }

    async onOutgoingMessage(connection, stanza) {
        const sender = connection.companion?.lidJid ?? 'unlinked';
        const recipients = await openParticipants(stanza, sender, jid => this.directory.primaryDevice(jid));
        const message = new OutgoingMessage(connection, stanza, recipients);
        if (!this.emit('message', message)) {
            message.ack();
        }
    }

    recordFault(connection, error) {
        this.faults.push(error);
        this.emit('fault', error, connection);
    }

    /** The phone scans a QR a client shows. */
    scanQr(qr) {
        const connection = [...this.connections].find(c => c.offeredRefs.some(ref => qr.includes(`#${ref},`)));
        if (!connection) {
            return Promise.reject(new Error('no connected client shows this QR'));
        }
        return connection.pairWithQr(qr);
    }

    /** The user types a pairing code on the phone, for the client that asked for one. */
    enterPairingCode(code) {
        const connection = [...this.connections].find(c => c.codePairing);
        if (!connection) {
            return Promise.reject(new Error('no connected client asked for a pairing code'));
        }
        return connection.enterPairingCode(code);
    }

    /** The open connection of a logged-in companion: the one a script talks to. */
    loggedIn() {
        return [...this.connections].find(c => c.companion && c.isOpen);
    }

    async close() {
        for (const connection of this.connections) {
            connection.socket.terminate();
        }
        await new Promise(resolve => this.wss.close(resolve));
        await this.mediaHost?.close();
    }
}

/**
 * Starts a fake WhatsApp server on 127.0.0.1 and an ephemeral port, with a
 * certificate chain under `root` (see certs.js).
 * @returns {Promise<FakeWhatsApp>}
 */
export function startFakeWhatsApp(options) {
    return new FakeWhatsApp(options).listen();
}
