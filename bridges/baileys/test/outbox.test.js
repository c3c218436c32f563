import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import pino from 'pino';
import { Outbox, waIdFor } from '../src/outbox.js';
import { openStore } from '../src/store.js';
import { newInstanceKey, newStoreKey, tempDir } from './support/bridge.js';

const log = pino({ level: 'silent' });
const MESSAGE = { id: 'cmp-1-msg-1', to: '+6281234567890', text: 'Halo' };

/** A session as the outbox sees it: transmits are held until the test settles them. */
function channel() {
  const ch = {
    transmits: [],
    replies: [],
    transmit(waId, to, text) {
      return new Promise((resolve, reject) => ch.transmits.push({ waId, to, text, resolve, reject }));
    },
    reply(frame) {
      ch.replies.push(frame);
    },
  };
  return ch;
}

async function setup(dir = tempDir(), key = Buffer.from(newStoreKey(), 'hex'), instance = newInstanceKey()) {
  const store = await openStore({ kind: 'sqlite', path: path.join(dir, 'b.sqlite3') }, key);
  return { dir, key, instance, store, outbox: new Outbox({ store, instance, log }) };
}

/** Lets the outbox's pending store reads and writes run. */
async function settled(predicate, what) {
  for (let i = 0; i < 200 && !predicate(); i += 1) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(predicate(), what);
}

describe('WhatsApp message ids', () => {
  test('are derived from the instance and client id, in Baileys\' shape', () => {
    const instance = newInstanceKey();
    const id = waIdFor(instance, 'm1');
    assert.match(id, /^3EB0[0-9A-F]{18}$/);
    assert.equal(waIdFor(instance, 'm1'), id);
    assert.notEqual(waIdFor(instance, 'm2'), id);
    assert.notEqual(waIdFor(newInstanceKey(), 'm1'), id);
  });
});

describe('exactly once', () => {
  test('a send goes out once with the derived id and the server ack answers it', async () => {
    const { instance, store, outbox } = await setup();
    const ch = channel();
    const done = outbox.submit(MESSAGE, ch);
    await settled(() => ch.transmits.length === 1, 'transmitted');
    const waId = waIdFor(instance, MESSAGE.id);
    assert.deepEqual(ch.transmits.map(({ waId: w, to, text }) => [w, to, text]), [[waId, MESSAGE.to, MESSAGE.text]]);
    ch.transmits[0].resolve();
    await done;
    assert.equal((await store.getSent(instance, MESSAGE.id)).state, 'sent');
    assert.deepEqual(ch.replies, [], 'no answer before the server acks');
    await outbox.serverAck(waId, undefined);
    assert.deepEqual(ch.replies, [{ type: 'ack', id: MESSAGE.id, server_id: waId }]);
    assert.equal((await store.getSent(instance, MESSAGE.id)).state, 'acked');
  });

  test('a duplicate while the first is in flight is not sent again; both are answered', async () => {
    const { instance, outbox } = await setup();
    const first = channel();
    const second = channel(); // e.g. the session that replaced the first
    const done = outbox.submit(MESSAGE, first);
    await outbox.submit(MESSAGE, first);
    await outbox.submit(MESSAGE, second);
    await settled(() => first.transmits.length === 1, 'transmitted');
    first.transmits[0].resolve();
    await done;
    await outbox.serverAck(waIdFor(instance, MESSAGE.id));
    assert.equal(first.transmits.length + second.transmits.length, 1);
    const ack = { type: 'ack', id: MESSAGE.id, server_id: waIdFor(instance, MESSAGE.id) };
    assert.deepEqual(first.replies, [ack]);
    assert.deepEqual(second.replies, [ack]);
  });

  test('a resend after a bridge restart gets the original ack and is not sent', async () => {
    const { dir, key, instance, store, outbox } = await setup();
    const ch = channel();
    const done = outbox.submit(MESSAGE, ch);
    await settled(() => ch.transmits.length === 1, 'transmitted');
    ch.transmits[0].resolve();
    await done;
    await outbox.serverAck(ch.transmits[0].waId);
    await store.close();

    const restarted = await setup(dir, key, instance);
    const again = channel();
    await restarted.outbox.submit(MESSAGE, again);
    assert.equal(again.transmits.length, 0);
    assert.deepEqual(again.replies, [{ type: 'ack', id: MESSAGE.id, server_id: waIdFor(instance, MESSAGE.id) }]);
    await restarted.store.close();
  });

  test('a send that throws is a transient nack, and the same id may then be sent', async () => {
    const { instance, store, outbox } = await setup();
    const ch = channel();
    const done = outbox.submit(MESSAGE, ch);
    await settled(() => ch.transmits.length === 1, 'transmitted');
    ch.transmits[0].reject(new Error('Connection Closed'));
    await done;
    assert.deepEqual(ch.replies, [{ type: 'nack', id: MESSAGE.id, error: 'send_failed', permanent: false }]);
    assert.equal(await store.getSent(instance, MESSAGE.id), null);
    const retry = outbox.submit(MESSAGE, ch);
    await settled(() => ch.transmits.length === 2, 'sent again');
    ch.transmits[1].resolve();
    await retry;
  });

  test('a server ack with an error is a permanent nack, repeated to a resend without sending', async () => {
    const { instance, outbox } = await setup();
    const ch = channel();
    const done = outbox.submit(MESSAGE, ch);
    await settled(() => ch.transmits.length === 1, 'transmitted');
    ch.transmits[0].resolve();
    await done;
    await outbox.serverAck(waIdFor(instance, MESSAGE.id), '479');
    const nack = { type: 'nack', id: MESSAGE.id, error: 'whatsapp_error_479', permanent: true };
    assert.deepEqual(ch.replies, [nack]);
    await outbox.submit(MESSAGE, ch);
    assert.equal(ch.transmits.length, 1);
    assert.deepEqual(ch.replies, [nack, nack]);
  });

  test('a server ack before sendMessage returns still acks, and stays acked', async () => {
    const { instance, store, outbox } = await setup();
    const ch = channel();
    const done = outbox.submit(MESSAGE, ch);
    await settled(() => ch.transmits.length === 1, 'transmitted');
    await outbox.serverAck(waIdFor(instance, MESSAGE.id));
    ch.transmits[0].resolve();
    await done;
    assert.deepEqual(ch.replies, [{ type: 'ack', id: MESSAGE.id, server_id: waIdFor(instance, MESSAGE.id) }]);
    assert.equal((await store.getSent(instance, MESSAGE.id)).state, 'acked');
  });

  test('a message whose socket ended before the ack is in doubt: acked, never sent again', async () => {
    const { instance, outbox } = await setup();
    const dropped = channel();
    const next = channel();
    const done = outbox.submit(MESSAGE, dropped);
    await settled(() => dropped.transmits.length === 1, 'transmitted');
    dropped.transmits[0].resolve();
    await done;
    await outbox.submit(MESSAGE, next); // the resend arrives on the next session first
    outbox.channelEnded(dropped);
    const ack = { type: 'ack', id: MESSAGE.id, server_id: waIdFor(instance, MESSAGE.id) };
    assert.deepEqual(next.replies, [ack]);
    assert.deepEqual(dropped.replies, [], 'no answer to the session that ended');
    await outbox.submit(MESSAGE, next);
    assert.deepEqual(next.replies, [ack, ack]);
    assert.equal(dropped.transmits.length + next.transmits.length, 1);
  });

  test('a send whose socket ended while it was being written is answered when the write settles', async () => {
    const { outbox } = await setup();
    const dropped = channel();
    const next = channel();
    const done = outbox.submit(MESSAGE, dropped);
    await settled(() => dropped.transmits.length === 1, 'transmitted');
    await outbox.submit(MESSAGE, next);
    outbox.channelEnded(dropped);
    assert.deepEqual(next.replies, []);
    dropped.transmits[0].reject(new Error('Connection Closed'));
    await done;
    assert.deepEqual(next.replies, [{ type: 'nack', id: MESSAGE.id, error: 'send_failed', permanent: false }]);
  });
});

describe('receipts', () => {
  test('delivered then read are reported once each, for messages the bridge sent only', async () => {
    const { instance, outbox } = await setup();
    const ch = channel();
    const done = outbox.submit(MESSAGE, ch);
    await settled(() => ch.transmits.length === 1, 'transmitted');
    ch.transmits[0].resolve();
    await done;
    const waId = waIdFor(instance, MESSAGE.id);
    await outbox.serverAck(waId);
    assert.equal(await outbox.receipt(waId, 'delivered'), MESSAGE.id);
    assert.equal(await outbox.receipt(waId, 'delivered'), null, 'a second device delivered it too');
    assert.equal(await outbox.receipt(waId, 'read'), MESSAGE.id);
    assert.equal(await outbox.receipt(waId, 'delivered'), null, 'no going back');
    assert.equal(await outbox.receipt(waId, 'read'), null);
    assert.equal(await outbox.receipt('3EB0FROMTHEPHONE000000', 'read'), null);
  });
});
