/**
 * The fake WhatsApp server as a program of its own, driven over HTTP, for
 * tests written in another language (the platform's Python tests):
 *
 *     node test/fakewa/control.js
 *
 * It starts the fake server (server.js) under a fresh test root and a small
 * JSON control API, both on 127.0.0.1 and ephemeral ports, then prints ONE
 * line on stdout:
 *
 *     {"wa_url": "ws://127.0.0.1:P/ws/chat", "control_url": "http://127.0.0.1:Q",
 *      "account": "+6281234567890", "trust_env": {"FAKE_WA_ROOT_PUBLIC_KEY": ..., ...}}
 *
 * A bridge started with `trust_env` and `--import ./test/fakewa/trust-test-root.js`
 * and BRIDGE_WA_URL=wa_url trusts this server. SIGTERM or SIGINT ends it.
 *
 * The control API (JSON in and out; bad input is 400, an unknown id 404, a
 * request the fake cannot serve now 409):
 *
 *   GET  /health                       {"ok": true}
 *   GET  /state                        connections, linked companions, logouts, faults
 *   POST /contacts  {"phone"}          a WhatsApp user the account can message
 *   POST /scan      {"qr"}             the phone scans a QR a client shows; {"account"}
 *   GET  /messages                     every message received: {id, to, text, answer}
 *   POST /acks      {"mode", "error"}  how the server answers the next messages:
 *                                      "ack" (the default), "hold" (no answer) or
 *                                      "reject" (an ack carrying `error`, default 479)
 *   POST /receipt   {"id", "status"}   the addressee's receipt: "delivery" or "read"
 *   POST /inbound   {"from", "text"}   a text to the logged-in account; {"server_id"}
 *   POST /logins    {"fail", "count"}  the next `count` (1) logins fail with reason `fail`
 *   POST /unlink                       the phone removes every linked device
 *
 * Test-only, like the rest of this directory: nothing in src/ imports it.
 */
import http from 'node:http';
import { once } from 'node:events';
import { jidDecode } from 'baileys/lib/WABinary/index.js';
import { createTestRoot } from './certs.js';
import { startFakeWhatsApp } from './server.js';
import { rootEnvironment } from './trust.js';

const MAX_BODY_BYTES = 64 * 1024;
const ACK_MODES = ['ack', 'hold', 'reject'];
const RECEIPTS = ['delivery', 'read'];
const DEFAULT_REJECT_ERROR = 479;

class HttpError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

/** The digits of an E.164 number given as "+62..." or "62...", or a 400. */
function digitsOf(phone, field) {
    if (typeof phone !== 'string' || !/^\+?[0-9]{8,15}$/.test(phone)) {
        throw new HttpError(400, `${field} must be a phone number: 8-15 digits, optionally after +`);
    }
    return phone.replace(/^\+/, '');
}

function requireString(body, field) {
    const value = body[field];
    if (typeof value !== 'string' || value === '') {
        throw new HttpError(400, `${field} must be a non-empty string`);
    }
    return value;
}

async function readJson(req) {
    let size = 0;
    const chunks = [];
    for await (const chunk of req) {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
            throw new HttpError(400, 'body too large');
        }
        chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') {
        return {};
    }
    let body;
    try {
        body = JSON.parse(text);
    } catch {
        throw new HttpError(400, 'body is not valid JSON');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new HttpError(400, 'body must be a JSON object');
    }
    return body;
}

/** The fake server and what the control API remembers and scripts on it. */
class Control {
    constructor(wa) {
        this.wa = wa;
        /** Every message the server received, in order, with how it was answered. */
        this.received = [];
        this.ackMode = { mode: 'ack', error: DEFAULT_REJECT_ERROR };
        this.failingLogins = [];
        this.logouts = 0;
        wa.on('message', message => this.onMessage(message));
        wa.on('login', connection => this.onLogin(connection));
        wa.on('logout', () => {
            this.logouts += 1;
        });
        wa.on('fault', error => process.stderr.write(`fake WhatsApp fault: ${error.message}\n`));
    }

    onMessage(message) {
        const entry = { message, answer: this.ackMode.mode };
        this.received.push(entry);
        if (this.ackMode.mode === 'ack') {
            message.ack();
        } else if (this.ackMode.mode === 'reject') {
            message.reject(this.ackMode.error);
        }
    }

    /** A scripted failure for this login, else what WhatsApp does (see server.js). */
    onLogin(connection) {
        const reason = this.failingLogins.shift();
        if (reason !== undefined) {
            connection.fail(reason);
        } else if (connection.companion) {
            connection.succeed();
        } else {
            connection.fail(401);
        }
    }

    /** A phone number as WhatsApp's server knows the jid it was sent to. */
    numberOf(jid) {
        const account = this.wa.directory.byJid(jid);
        if (account) {
            return `+${account.pnUser}`;
        }
        const decoded = jidDecode(jid);
        return decoded?.server === 's.whatsapp.net' ? `+${decoded.user}` : jid;
    }

    contactFor(digits) {
        return this.wa.directory.contacts.find(c => c.pnUser === digits) ?? this.wa.addContact(digits);
    }

    async handle(method, path, body) {
        const route = `${method} ${path}`;
        switch (route) {
            case 'GET /health':
                return { ok: true };
            case 'GET /state':
                return this.state();
            case 'POST /contacts': {
                const contact = this.contactFor(digitsOf(body.phone, 'phone'));
                return { phone: `+${contact.pnUser}`, lid: contact.lidJid };
            }
            case 'POST /scan':
                return this.scan(requireString(body, 'qr'));
            case 'GET /messages':
                return { messages: this.received.map(entry => this.describe(entry)) };
            case 'POST /acks':
                return this.setAcks(body);
            case 'POST /receipt':
                return this.receipt(requireString(body, 'id'), body.status);
            case 'POST /inbound':
                return this.inbound(digitsOf(body.from, 'from'), requireString(body, 'text'));
            case 'POST /logins':
                return this.failLogins(body);
            case 'POST /unlink':
                return this.unlink();
            default:
                throw new HttpError(404, `no such endpoint: ${route}`);
        }
    }

    state() {
        const connections = [...this.wa.connections].map(c => ({
            kind: c.payload ? c.kind : 'handshake',
            open: c.isOpen,
            logged_in: Boolean(c.companion)
        }));
        const linked = [...this.wa.phone.companions.values()].filter(c => c.linked).map(c => c.deviceId);
        return {
            connections,
            linked_devices: linked,
            logouts: this.logouts,
            faults: this.wa.faults.map(error => error.message),
            failing_logins: [...this.failingLogins]
        };
    }

    async scan(qr) {
        let companion;
        try {
            companion = await this.wa.scanQr(qr);
        } catch (error) {
            throw new HttpError(409, error.message);
        }
        return { account: `+${this.wa.phone.pnUser}`, device: companion.deviceId };
    }

    describe({ message, answer }) {
        return { id: message.id, to: this.numberOf(message.to), text: message.text ?? null, answer };
    }

    setAcks(body) {
        if (!ACK_MODES.includes(body.mode)) {
            throw new HttpError(400, `mode must be one of ${ACK_MODES.join(', ')}`);
        }
        const error = body.error ?? DEFAULT_REJECT_ERROR;
        if (!Number.isInteger(error) || error < 1) {
            throw new HttpError(400, 'error must be a positive integer (a WhatsApp ack error code)');
        }
        this.ackMode = { mode: body.mode, error };
        return this.ackMode;
    }

    receipt(id, status) {
        if (!RECEIPTS.includes(status)) {
            throw new HttpError(400, `status must be one of ${RECEIPTS.join(', ')}`);
        }
        const entry = this.received.findLast(e => e.message.id === id);
        if (!entry) {
            throw new HttpError(404, `no message ${id} was received`);
        }
        if (!entry.message.connection.isOpen) {
            throw new HttpError(409, 'the connection that sent this message is closed');
        }
        entry.message.receipt(status);
        return { id, status };
    }

    async inbound(digits, text) {
        const connection = this.wa.loggedIn();
        if (!connection) {
            throw new HttpError(409, 'no logged-in client is connected');
        }
        const serverId = await connection.deliverText(this.contactFor(digits), text);
        return { server_id: serverId, from: `+${digits}` };
    }

    failLogins(body) {
        const reason = body.fail;
        const count = body.count ?? 1;
        if (!Number.isInteger(reason) || reason < 100 || reason > 999) {
            throw new HttpError(400, 'fail must be a failure reason such as 401, 403 or 503');
        }
        if (!Number.isInteger(count) || count < 1) {
            throw new HttpError(400, 'count must be a positive integer');
        }
        this.failingLogins.push(...Array(count).fill(reason));
        return { failing_logins: [...this.failingLogins] };
    }

    /**
     * "Log out" of every linked device on the phone: they are forgotten, and
     * an open connection of one gets the stream error WhatsApp sends then
     * (401, device_removed), which Baileys reports as logged out.
     */
    unlink() {
        const devices = [...this.wa.phone.companions.keys()];
        let notified = 0;
        for (const connection of this.wa.connections) {
            if (connection.companion && connection.isOpen) {
                const sent = connection.send({
                    tag: 'stream:error',
                    attrs: { code: '401' },
                    content: [{ tag: 'conflict', attrs: { type: 'device_removed' } }]
                });
                notified += sent ? 1 : 0;
            }
        }
        for (const deviceId of devices) {
            this.wa.phone.unlink(deviceId);
        }
        return { unlinked: devices, notified };
    }
}

function respond(res, status, body) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
}

async function main() {
    const root = createTestRoot();
    const wa = await startFakeWhatsApp({ root });
    const control = new Control(wa);
    const server = http.createServer((req, res) => {
        const { pathname } = new URL(req.url, 'http://control');
        readJson(req)
            .then(body => control.handle(req.method, pathname, body))
            .then(
                answer => respond(res, 200, answer),
                error => {
                    const status = error instanceof HttpError ? error.status : 500;
                    if (status === 500) {
                        process.stderr.write(`control ${req.method} ${pathname} failed: ${error.stack}\n`);
                    }
                    respond(res, status, { error: error.message });
                }
            );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');

    let stopping = false;
    const stop = async () => {
        if (stopping) {
            return;
        }
        stopping = true;
        server.closeAllConnections();
        await Promise.all([new Promise(resolve => server.close(resolve)), wa.close()]);
        process.exit(0);
    };
    process.on('SIGTERM', () => void stop());
    process.on('SIGINT', () => void stop());

    const line = {
        wa_url: wa.url,
        control_url: `http://127.0.0.1:${server.address().port}`,
        account: `+${wa.phone.pnUser}`,
        trust_env: rootEnvironment(root)
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
}

main().catch(error => {
    process.stderr.write(`${error.stack}\n`);
    process.exit(1);
});
