/**
 * The fake WhatsApp server, driven by the real Baileys client: every test
 * opens a genuine makeWASocket against a fake started on 127.0.0.1, and
 * checks what Baileys reports, so the fake is only as right as Baileys
 * agrees it is.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import makeWASocket, { proto } from 'baileys';
import pino from 'pino';
import { createMemoryAuthState, createTestRoot, rootEnvironment, startFakeWhatsApp, trustTestRoot } from './fakewa/index.js';
import { issueCertChain } from './fakewa/certs.js';
import { FakeMediaHost } from './fakewa/media.js';
import { positiveInteger, selfSignedCertificate } from './fakewa/tls.js';
import { isValidSignature } from './fakewa/xeddsa.js';

const WAIT_MS = 5000;
const { Status } = proto.WebMessageInfo;

const root = createTestRoot();
let restoreRoot;
let wa;
let sockets;

before(() => {
    restoreRoot = trustTestRoot(root);
});

after(() => restoreRoot());

beforeEach(async () => {
    wa = await startFakeWhatsApp({ root });
    sockets = [];
});

afterEach(async () => {
    for (const { sock } of sockets) {
        sock.end(undefined);
    }
    await wa.close();
    assert.deepEqual(wa.faults, [], 'the server met no protocol error');
});

/**
 * A Baileys socket against the fake, and everything it reported, so a test
 * can wait for an update that may already have happened.
 */
function connect(auth, options = {}) {
    const sock = makeWASocket({
        auth,
        waWebSocketUrl: wa.url,
        logger: pino({ level: 'silent' }),
        // No history sync: Baileys would otherwise hold events back for 20 s
        // waiting for a history notification the fake does not send.
        shouldSyncHistoryMessage: () => false,
        // Baileys leaves a query's timer running when its socket ends with
        // the query in flight; a short timeout keeps the test process from
        // lingering a minute after the last test.
        defaultQueryTimeoutMs: 3000,
        ...options
    });
    const client = { sock, auth, updates: [] };
    sock.ev.on('connection.update', update => client.updates.push(update));
    sockets.push(client);
    return client;
}

/** Resolves with the first event (past or future) that satisfies `predicate`. */
function eventually(history, subscribe, predicate, what, timeoutMs = WAIT_MS) {
    const seen = history.find(predicate);
    if (seen) {
        return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            unsubscribe();
            reject(new Error(`no ${what} within ${timeoutMs} ms`));
        }, timeoutMs);
        const unsubscribe = subscribe(event => {
            if (predicate(event)) {
                clearTimeout(timer);
                unsubscribe();
                resolve(event);
            }
        });
    });
}

function update(client, predicate, what = 'matching connection.update', timeoutMs = WAIT_MS) {
    return eventually(
        client.updates,
        listener => {
            client.sock.ev.on('connection.update', listener);
            return () => client.sock.ev.off('connection.update', listener);
        },
        predicate,
        what,
        timeoutMs
    );
}

/** The status code Baileys closes with. */
async function closeCode(client) {
    const closed = await update(client, u => u.connection === 'close', 'close');
    return closed.lastDisconnect.error?.output?.statusCode;
}

function nextEvent(client, event, predicate = () => true) {
    return eventually(
        [],
        listener => {
            client.sock.ev.on(event, listener);
            return () => client.sock.ev.off(event, listener);
        },
        predicate,
        event
    );
}

/** Pairs a fresh device by QR, through the 515 restart; returns its auth state. */
async function pairedAuth() {
    const client = connect(createMemoryAuthState());
    const { qr } = await update(client, u => u.qr, 'qr');
    await wa.scanQr(qr);
    assert.equal(await closeCode(client), 515);
    return client.auth;
}

/** A paired device logged in: open, with pending notifications received. */
async function loggedIn() {
    const client = connect(await pairedAuth());
    await update(client, u => u.connection === 'open', 'open');
    await update(client, u => u.receivedPendingNotifications === true, 'receivedPendingNotifications');
    return client;
}

describe('handshake and QR', () => {
    test('a fresh client shows each QR ref the server offers, in turn, then times out', async () => {
        wa.on('register', conn => conn.offerQr(['2@first-ref', '2@second-ref']));
        const client = connect(createMemoryAuthState(), { qrTimeout: 100 });
        assert.equal(await closeCode(client), 408);
        const qrs = client.updates.filter(u => u.qr).map(u => u.qr);
        assert.equal(qrs.length, 2);
        assert.match(qrs[0], /#2@first-ref,/);
        assert.match(qrs[1], /#2@second-ref,/);
        assert.ok(qrs[0].includes(Buffer.from(client.auth.creds.noiseKey.public).toString('base64')));
    });

    test('the certificate chain verifies under the test root and under no other', () => {
        const { CertChain } = proto;
        const serverKey = createTestRoot().publicKey;
        const { intermediate, leaf } = CertChain.decode(issueCertChain(root, serverKey));
        const details = CertChain.NoiseCertificate.Details.decode(intermediate.details);
        assert.equal(isValidSignature(root.publicKey, intermediate.details, intermediate.signature), true);
        assert.equal(isValidSignature(createTestRoot().publicKey, intermediate.details, intermediate.signature), false);
        assert.equal(isValidSignature(details.key, leaf.details, leaf.signature), true);
        assert.equal(details.issuerSerial, root.serial);
        assert.deepEqual(Buffer.from(CertChain.NoiseCertificate.Details.decode(leaf.details).key), serverKey);
    });

    test('a server whose intermediate names another issuer is refused', async () => {
        const impostor = await startFakeWhatsApp({ root: createTestRoot(root.serial + 1) });
        try {
            const client = connect(createMemoryAuthState(), { waWebSocketUrl: impostor.url });
            const closed = await update(client, u => u.connection === 'close', 'close');
            assert.match(closed.lastDisconnect.error.message, /certification match failed/);
            assert.equal(client.updates.some(u => u.qr), false);
        } finally {
            await impostor.close();
        }
    });

    test('a child process preloading trust-test-root.js completes the handshake', async () => {
        const showQr = [
            "import makeWASocket from 'baileys';",
            "import pino from 'pino';",
            "import { createMemoryAuthState } from './test/fakewa/index.js';",
            'const sock = makeWASocket({ auth: createMemoryAuthState(), waWebSocketUrl: process.argv[1], logger: pino({ level: "silent" }) });',
            "sock.ev.on('connection.update', u => { if (u.qr) { console.log('qr shown'); process.exit(0); } if (u.connection === 'close') process.exit(1); });"
        ].join('\n');
        const run = env =>
            promisify(execFile)(
                process.execPath,
                ['--import', './test/fakewa/trust-test-root.js', '--input-type=module', '-e', showQr, wa.url],
                { cwd: fileURLToPath(new URL('..', import.meta.url)), env: { ...process.env, ...env }, timeout: WAIT_MS }
            );
        const { stdout } = await run(rootEnvironment(root));
        assert.equal(stdout.trim(), 'qr shown');
        await assert.rejects(run({}), /FAKE_WA_ROOT_PUBLIC_KEY/);
    });
});

describe('pairing', () => {
    test('scanning the QR links the device and the server asks for a restart (515)', async () => {
        const client = connect(createMemoryAuthState());
        const { qr } = await update(client, u => u.qr, 'qr');
        const companion = await wa.scanQr(qr);
        assert.equal(await closeCode(client), 515);
        assert.ok(client.updates.some(u => u.isNewLogin === true));
        assert.equal(client.auth.creds.me.id, companion.pnJid);
        assert.equal(client.auth.creds.me.lid, companion.lidJid);
        assert.equal(companion.pnJid, '6281234567890:1@s.whatsapp.net');
        assert.equal(companion.linked, true);
    });

    test('a paired device logs in: open, then pending notifications received', async () => {
        const client = connect(await pairedAuth());
        await update(client, u => u.connection === 'open', 'open');
        await update(client, u => u.receivedPendingNotifications === true, 'receivedPendingNotifications');
        assert.equal(wa.loggedIn().companion.keys.count > 0, true, 'prekeys were uploaded');
    });

    test('the pairing code Baileys returns is the one the phone must type', async () => {
        const client = connect(createMemoryAuthState());
        await update(client, u => u.qr, 'qr');
        const requested = new Promise(resolve => wa.once('pairing-code-request', (conn, request) => resolve(request)));
        const code = await client.sock.requestPairingCode('6281234567890', 'BLAST123');
        assert.equal(code, 'BLAST123');
        const request = await requested;
        assert.equal(request.jid, '6281234567890@s.whatsapp.net');
        const companion = await wa.enterPairingCode(code);
        assert.equal(await closeCode(client), 515);
        assert.equal(client.auth.creds.me.id, companion.pnJid);
        assert.equal(client.auth.creds.registered, true);
    });

    test('a mistyped pairing code links nothing', async () => {
        const client = connect(createMemoryAuthState());
        await update(client, u => u.qr, 'qr');
        const code = await client.sock.requestPairingCode('6281234567890');
        await assert.rejects(wa.enterPairingCode(code === 'AAAAAAAA' ? 'BBBBBBBB' : 'AAAAAAAA'));
        assert.equal([...wa.phone.companions.values()].some(c => c.linked), false);
    });
});

describe('disconnect reasons', () => {
    for (const reason of [401, 402, 403, 405, 411, 500, 503]) {
        test(`<failure reason="${reason}"> closes with ${reason}`, async () => {
            const auth = await pairedAuth();
            wa.on('login', conn => conn.fail(reason));
            assert.equal(await closeCode(connect(auth)), reason);
        });
    }

    test('a login from a device the account never linked fails with 401', async () => {
        const auth = await pairedAuth();
        wa.phone.unlink(1);
        assert.equal(await closeCode(connect(auth)), 401);
    });

    test('stream error 515 on an open connection closes with 515', async () => {
        const client = await loggedIn();
        wa.loggedIn().streamError(515);
        assert.equal(await closeCode(client), 515);
    });

    test('a conflict (another client took over the device) closes with 440', async () => {
        const client = await loggedIn();
        wa.loggedIn().replaced();
        assert.equal(await closeCode(client), 440);
    });

    test('the end of the stream closes with 428', async () => {
        const client = await loggedIn();
        wa.loggedIn().endStream();
        assert.equal(await closeCode(client), 428);
    });

    test('a dropped TCP connection closes with 428', async () => {
        const client = await loggedIn();
        wa.loggedIn().drop();
        assert.equal(await closeCode(client), 428);
    });

    test('unanswered keepalive pings close with 408 (connection lost)', async () => {
        // Baileys declares the link lost 5 s past its keepalive interval
        // without any frame from the server, so this test takes over 5 s.
        const client = connect(await pairedAuth(), { keepAliveIntervalMs: 250 });
        await update(client, u => u.connection === 'open', 'open');
        wa.loggedIn().stopAnsweringPings();
        const closed = await update(client, u => u.connection === 'close', 'close', 8000);
        assert.equal(closed.lastDisconnect.error.output.statusCode, 408);
        assert.match(closed.lastDisconnect.error.message, /lost/);
    });

    test('logging out unlinks the device, so its next login fails with 401', async () => {
        const client = await loggedIn();
        const loggedOut = new Promise(resolve => wa.once('logout', resolve));
        await client.sock.logout();
        const companion = await loggedOut;
        assert.equal(wa.phone.companions.has(companion.deviceId), false);
        assert.equal(await closeCode(connect(client.auth)), 401);
    });
});

describe('messages', () => {
    test('a sent text is really encrypted for the contact and acked by the server', async () => {
        const contact = wa.addContact('6289876543210');
        const client = await loggedIn();
        const received = new Promise(resolve => wa.once('message', resolve));
        const acked = new Promise(resolve => client.sock.ws.once('CB:ack,class:message', resolve));
        const sent = await client.sock.sendMessage(contact.pnJid, { text: 'hello from Blast' });
        const message = await received;
        assert.equal(message.id, sent.key.id);
        assert.equal(message.to, contact.pnJid);
        assert.equal(message.text, 'hello from Blast');
        message.ack();
        const ack = await acked;
        assert.equal(ack.attrs.id, sent.key.id);
        assert.equal(ack.attrs.error, undefined);
    });

    test('an ack with an error reaches messages.update as a failure', async () => {
        const contact = wa.addContact('6289876543210');
        const client = await loggedIn();
        const received = new Promise(resolve => wa.once('message', resolve));
        const appended = nextEvent(client, 'messages.upsert', ({ type }) => type === 'append');
        const sent = await client.sock.sendMessage(contact.pnJid, { text: 'refused' });
        const message = await received;
        await appended;
        const failed = nextEvent(client, 'messages.update', updates => updates.some(u => u.key.id === sent.key.id));
        message.reject(479);
        const { update } = (await failed).find(u => u.key.id === sent.key.id);
        assert.equal(update.status, Status.ERROR);
        assert.deepEqual(update.messageStubParameters, ['479']);
    });

    test('an error ack arriving with the send is folded into the append upsert', async () => {
        // Baileys buffers its own 'append' upsert for about 100 ms and merges
        // updates for that message into it, so a fast error ack is seen in
        // the upsert's status, never in messages.update.
        const contact = wa.addContact('6289876543210');
        const client = await loggedIn();
        wa.on('message', message => message.reject(479));
        const acked = new Promise(resolve => client.sock.ws.once('CB:ack,class:message', resolve));
        const appended = nextEvent(client, 'messages.upsert', ({ type }) => type === 'append');
        const sent = await client.sock.sendMessage(contact.pnJid, { text: 'refused at once' });
        assert.equal((await acked).attrs.error, '479');
        const { messages } = await appended;
        const upserted = messages.find(m => m.key.id === sent.key.id);
        assert.equal(upserted.status, Status.ERROR);
        assert.deepEqual(upserted.messageStubParameters, ['479']);
    });

    test('delivery and read receipts reach messages.update', async () => {
        const contact = wa.addContact('6289876543210');
        const client = await loggedIn();
        const received = new Promise(resolve => wa.once('message', resolve));
        // Baileys folds updates that arrive while its own 'append' upsert is
        // still buffered into that upsert; receipts come after it here.
        const appended = nextEvent(client, 'messages.upsert', ({ type }) => type === 'append');
        const sent = await client.sock.sendMessage(contact.pnJid, { text: 'receipted' });
        const message = await received;
        await appended;
        const delivered = nextEvent(client, 'messages.update', updates => updates.some(u => u.key.id === sent.key.id));
        message.receipt('delivery');
        assert.equal((await delivered).find(u => u.key.id === sent.key.id).update.status, Status.DELIVERY_ACK);
        const read = nextEvent(client, 'messages.update', updates => updates.some(u => u.key.id === sent.key.id));
        message.receipt('read');
        assert.equal((await read).find(u => u.key.id === sent.key.id).update.status, Status.READ);
    });

    test("a contact's text is decrypted by Baileys and receipted back to the server", async () => {
        const contact = wa.addContact('6289876543210');
        const client = await loggedIn();
        const upserted = nextEvent(client, 'messages.upsert', ({ type }) => type === 'notify');
        const conn = wa.loggedIn();
        const id = await conn.deliverText(contact, 'hi Blast');
        const { messages } = await upserted;
        assert.equal(messages[0].key.id, id);
        assert.equal(messages[0].key.remoteJid, contact.pnJid);
        assert.equal(messages[0].key.fromMe, false);
        assert.equal(messages[0].message.conversation, 'hi Blast');
        const receipt = await conn.waitFor(n => n.tag === 'receipt' && n.attrs.id === id);
        assert.equal(receipt.attrs.to, contact.pnJid);
    });
});

describe('media, number checks and presence', () => {
    test('a media message is uploaded encrypted to the media host, then sent with its key', async () => {
        const contact = wa.addContact('6289876543210');
        const host = await wa.startMediaHost();
        // Baileys uploads with https and this agent: the test trusts the host's certificate.
        const client = connect(await pairedAuth(), { fetchAgent: new https.Agent({ ca: host.certificate }) });
        await update(client, u => u.receivedPendingNotifications === true, 'receivedPendingNotifications');
        const file = Buffer.from('%PDF-1.4 not really a catalogue\n'.repeat(50));
        const received = new Promise(resolve => wa.once('message', resolve));
        await client.sock.sendMessage(contact.pnJid, { document: file, mimetype: 'application/pdf', fileName: 'catalogue.pdf', caption: 'New' });
        const message = await received;
        message.ack();
        const { documentMessage } = message.content;
        assert.equal(documentMessage.fileName, 'catalogue.pdf');
        assert.equal(documentMessage.mimetype, 'application/pdf');
        assert.equal(documentMessage.caption, 'New');
        assert.equal(host.uploads.length, 1);
        assert.equal(host.uploads[0].type, 'document');
        assert.deepEqual(await FakeMediaHost.decrypt(host.uploads[0], documentMessage.mediaKey), file);
    });

    test('media_conn fails without a media host, and so does the send', async () => {
        const contact = wa.addContact('6289876543210');
        const client = await loggedIn();
        await assert.rejects(client.sock.sendMessage(contact.pnJid, { image: Buffer.from('x'), mimetype: 'image/png' }));
    });

    test('onWhatsApp lists the numbers that have an account', async () => {
        wa.addContact('6289876543210');
        const client = await loggedIn();
        const found = await client.sock.onWhatsApp('6289876543210@s.whatsapp.net', '15550000001@s.whatsapp.net');
        assert.deepEqual(found, [{ jid: '6289876543210@s.whatsapp.net', exists: true }]);
    });

    test('refused usync iqs make onWhatsApp throw', async () => {
        const client = await loggedIn();
        const restore = wa.refuseIqs('usync');
        try {
            await assert.rejects(client.sock.onWhatsApp('6289876543210@s.whatsapp.net'));
        } finally {
            restore();
        }
    });

    test('a presence update reaches the server as a chatstate', async () => {
        const contact = wa.addContact('6289876543210');
        const client = await loggedIn();
        await client.sock.sendPresenceUpdate('composing', contact.pnJid);
        const node = await wa.loggedIn().waitFor(n => n.tag === 'chatstate');
        assert.equal(node.attrs.to, contact.pnJid);
        assert.equal(node.content[0].tag, 'composing');
    });
});

describe("the media host's certificate", () => {
    // A random serial starts with a zero byte one time in 256; DER wants it
    // unpadded, and OpenSSL refuses the certificate otherwise.
    const serials = [
        ['a serial with its top bit set', Buffer.from([0x80, 1, 2, 3])],
        ['a serial starting with zero bytes', Buffer.from([0, 0, 0x12, 0x34])],
        ['a serial whose zero byte pads a set top bit', Buffer.from([0, 0x80, 1])],
        ['a zero serial', Buffer.from([0, 0])],
    ];
    for (const [name, serial] of serials) {
        test(`parses with ${name}`, () => {
            const { key, cert } = selfSignedCertificate({ serial });
            const parsed = new X509Certificate(cert);
            assert.equal(BigInt(`0x${parsed.serialNumber}`), BigInt(`0x${serial.toString('hex')}`));
            assert.ok(tls.createSecureContext({ key, cert }));
        });
    }

    test('encodes integers in their one DER form', () => {
        assert.deepEqual(positiveInteger(Buffer.from([0, 0, 0x7f])), Buffer.from([0x02, 1, 0x7f]));
        assert.deepEqual(positiveInteger(Buffer.from([0, 0, 0x80])), Buffer.from([0x02, 2, 0, 0x80]));
        assert.deepEqual(positiveInteger(Buffer.from([0x80])), Buffer.from([0x02, 2, 0, 0x80]));
        assert.deepEqual(positiveInteger(Buffer.from([0])), Buffer.from([0x02, 1, 0]));
    });
});
