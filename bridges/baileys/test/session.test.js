/**
 * The bridge end to end: the real bridge process and the real Baileys
 * library against the fake WhatsApp server (test/fakewa/), with the worker's
 * side of PROTOCOL.md played by a WebSocket client.
 *
 * The bridge trusts the fake's test root through the test-only preload
 * `test/fakewa/trust-test-root.js`; nothing in src/ knows about it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { waIdFor } from '../src/outbox.js';
import { openStore } from '../src/store.js';
import { createTestRoot, rootEnvironment, startFakeWhatsApp, trustTestRoot } from './fakewa/index.js';
import { newInstanceKey, newToken, startBridge, waitFor } from './support/bridge.js';
import { pairedStore } from './support/paired.js';

const ACCOUNT = '+6281234567890'; // the fake's phone
const CONTACT = '+6289876543210';
const PRELOAD = ['--import', './test/fakewa/trust-test-root.js'];

const root = createTestRoot();
let restoreRoot;
before(() => {
  restoreRoot = trustTestRoot(root); // for the pairing done in this process
});
after(() => restoreRoot());

function bridgeFor(wa, env = {}) {
  return startBridge({ BRIDGE_WA_URL: wa.url, ...rootEnvironment(root), ...env }, { nodeArgs: PRELOAD });
}

describe('pairing through the bridge', () => {
  let wa;
  let bridge;
  before(async () => {
    wa = await startFakeWhatsApp({ root });
    bridge = await bridgeFor(wa);
  });
  after(async () => {
    await bridge.stop();
    await wa.close();
  });

  test('by QR: qr, paired, 4515, then the next session is paired and ready', async () => {
    const instance = newInstanceKey();
    const token = newToken();
    const first = await bridge.connect(instance, token);
    assert.equal((await first.next('hello')).paired, false);
    const qr = await first.next('qr');
    assert.equal(qr.expires_s, 60);
    await wa.scanQr(qr.code);
    assert.deepEqual(await first.next('paired', { skip: ['qr'] }), { type: 'paired', account: ACCOUNT });
    assert.equal(await first.closedWith(), 4515);

    const second = await bridge.connect(instance, token);
    assert.equal((await second.next('hello')).paired, true);
    await second.next('ready');
    await second.close();
  });

  test('by pairing code: pair_code, paired, 4515', async () => {
    const client = await bridge.connect(newInstanceKey(), newToken());
    await client.next('hello');
    await client.next('qr');
    client.send({ type: 'pair_code', phone: ACCOUNT });
    // A second request while the first is under way would make WhatsApp
    // replace the code the first answer carries: refused.
    client.send({ type: 'pair_code', phone: ACCOUNT });
    assert.equal((await client.next('error', { skip: ['qr'] })).code, 'pair_code_pending');
    const { code } = await client.next('pair_code', { skip: ['qr'] });
    assert.match(code, /^[A-Z0-9]{8}$/);
    await wa.enterPairingCode(code);
    assert.deepEqual(await client.next('paired', { skip: ['qr'] }), { type: 'paired', account: ACCOUNT });
    assert.equal(await client.closedWith(), 4515);
  });

  test('a pair_code request for a paired session is refused with an error', async () => {
    const instance = newInstanceKey();
    const { env } = await pairedStore(wa, instance);
    const paired = await bridgeFor(wa, env);
    try {
      const client = await paired.connect(instance, newToken());
      await client.next('hello');
      await client.next('ready');
      client.send({ type: 'pair_code', phone: ACCOUNT });
      assert.equal((await client.next('error')).code, 'pair_code_unavailable');
      await client.close();
    } finally {
      await paired.stop();
    }
  });
});

describe('a pairing that WhatsApp ended', () => {
  test('closes with 4401 and the next session starts unpaired', async () => {
    const wa = await startFakeWhatsApp({ root });
    const instance = newInstanceKey();
    const token = newToken();
    const { env } = await pairedStore(wa, instance);
    const bridge = await bridgeFor(wa, env);
    try {
      wa.on('login', (conn) => conn.fail(401)); // unlinked from the phone
      const client = await bridge.connect(instance, token);
      assert.equal((await client.next('hello')).paired, true);
      assert.equal(await client.closedWith(), 4401);
      wa.removeAllListeners('login');
      const next = await bridge.connect(instance, token);
      assert.equal((await next.next('hello')).paired, false);
      await next.next('qr');
      await next.close();
    } finally {
      await bridge.stop();
      await wa.close();
    }
  });
});

describe('a paired instance', () => {
  let wa;
  let bridge;
  let instance;
  let token;
  let stored;
  let contact;
  const delivered = []; // what reached WhatsApp, as the fake saw it
  let refuse = null;

  before(async () => {
    wa = await startFakeWhatsApp({ root });
    contact = wa.addContact(CONTACT.slice(1));
    wa.on('message', (message) => {
      delivered.push(message);
      if (refuse) message.reject(refuse);
      else message.ack();
    });
    instance = newInstanceKey();
    token = newToken();
    stored = await pairedStore(wa, instance);
    bridge = await bridgeFor(wa, stored.env);
  });
  after(async () => {
    await bridge.stop();
    await wa.close();
  });

  async function readySession() {
    const client = await bridge.connect(instance, token);
    assert.equal((await client.next('hello')).paired, true);
    await client.next('ready');
    return client;
  }

  test('a send is acked with the WhatsApp id, and a resend is acked again without a second delivery', async () => {
    const client = await readySession();
    client.send({ type: 'send', id: 'm1', to: CONTACT, text: 'Halo dari Blast' });
    const ack = await client.next('ack');
    assert.deepEqual(ack, { type: 'ack', id: 'm1', server_id: waIdFor(instance, 'm1') });
    assert.equal(delivered.length, 1);
    assert.equal(delivered[0].id, ack.server_id);
    assert.equal(delivered[0].text, 'Halo dari Blast');
    client.send({ type: 'send', id: 'm1', to: CONTACT, text: 'Halo dari Blast' });
    assert.deepEqual(await client.next('ack'), ack);
    assert.equal(delivered.length, 1);
    await client.close();
  });

  test('receipts for a sent message arrive as delivered, then read', async () => {
    const client = await readySession();
    client.send({ type: 'send', id: 'm2', to: CONTACT, text: 'receipted' });
    await client.next('ack');
    const message = delivered.at(-1);
    message.receipt('delivery');
    assert.deepEqual(await client.next('receipt'), { type: 'receipt', id: 'm2', status: 'delivered' });
    message.receipt('read');
    assert.deepEqual(await client.next('receipt'), { type: 'receipt', id: 'm2', status: 'read' });
    await client.close();
  });

  test('a text from a contact arrives as inbound with its E.164 sender', async () => {
    const client = await readySession();
    const serverId = await wa.loggedIn().deliverText(contact, 'Apakah masih ada stok?');
    assert.deepEqual(await client.next('inbound'), { type: 'inbound', server_id: serverId, from: CONTACT, text: 'Apakah masih ada stok?' });
    await client.close();
  });

  test('an ack with an error is a permanent nack, repeated to a resend without a second delivery', async () => {
    const client = await readySession();
    refuse = 479;
    try {
      client.send({ type: 'send', id: 'm3', to: CONTACT, text: 'refused' });
      const nack = await client.next('nack');
      assert.deepEqual(nack, { type: 'nack', id: 'm3', error: 'whatsapp_error_479', permanent: true });
      const before = delivered.length;
      client.send({ type: 'send', id: 'm3', to: CONTACT, text: 'refused' });
      assert.deepEqual(await client.next('nack'), nack);
      assert.equal(delivered.length, before);
    } finally {
      refuse = null;
    }
    await client.close();
  });

  test('a resend after a drop and after a bridge restart is answered with the original ack, never delivered twice', async () => {
    let client = await readySession();
    client.send({ type: 'send', id: 'm4', to: CONTACT, text: 'once only' });
    const ack = await client.next('ack');
    client.ws.terminate(); // the worker's connection drops
    client = await readySession();
    client.send({ type: 'send', id: 'm4', to: CONTACT, text: 'once only' });
    assert.deepEqual(await client.next('ack'), ack);
    await client.close();

    assert.equal(await bridge.stop(), 0);
    bridge = await bridgeFor(wa, stored.env);
    client = await readySession();
    client.send({ type: 'send', id: 'm4', to: CONTACT, text: 'once only' });
    assert.deepEqual(await client.next('ack'), ack);
    assert.equal(delivered.filter((message) => message.id === ack.server_id).length, 1);
    await client.close();
  });

  test('WhatsApp failure reasons close the session with their protocol codes', async () => {
    const expected = { 402: 4402, 403: 4403, 405: 4405, 411: 4411, 500: 4503, 503: 4503 };
    try {
      for (const [reason, code] of Object.entries(expected)) {
        wa.removeAllListeners('login');
        wa.on('login', (conn) => conn.fail(Number(reason)));
        const client = await bridge.connect(instance, token);
        assert.equal((await client.next('hello')).paired, true);
        assert.equal(await client.closedWith(), code, `failure ${reason}`);
      }
    } finally {
      wa.removeAllListeners('login');
    }
    const scripted = [
      [(conn) => conn.replaced(), 4440, 'a conflict'],
      [(conn) => conn.streamError(515), 4515, 'stream error 515'],
      [(conn) => conn.endStream(), 4428, 'the end of the stream'],
    ];
    for (const [act, code, what] of scripted) {
      const client = await readySession();
      act(wa.loggedIn());
      assert.equal(await client.closedWith(), code, what);
    }
  });

  test('logout unlinks the device, closes with 4401 and deletes the credentials', async () => {
    const client = await readySession();
    const unlinked = new Promise((resolve) => wa.once('logout', resolve));
    client.send({ type: 'logout' });
    assert.equal(await client.closedWith(), 4401);
    await unlinked;
    const next = await bridge.connect(instance, token);
    assert.equal((await next.next('hello')).paired, false);
    await next.next('qr');
    await next.close();
    assert.equal(await bridge.stop(), 0);
    const store = await openStore(stored.spec, Buffer.from(stored.env.BRIDGE_STORE_KEY, 'hex'));
    assert.equal(await store.getCreds(instance), null);
    assert.equal((await store.getSent(instance, 'm1')).state, 'acked', 'the dedupe map survives the logout');
    await store.close();
    await waitFor(() => !bridge.running, 5000, 'the bridge to stop');
    assert.doesNotMatch(bridge.stdout(), /UNHANDLED-REJECTION|UNCAUGHT-EXCEPTION|SESSION-ERROR/);
  });
});
