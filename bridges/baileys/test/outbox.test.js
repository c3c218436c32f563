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
    transmit(waId, to, content) {
      return new Promise((resolve, reject) => ch.transmits.push({ waId, to, text: content.text, content, resolve, reject }));
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

describe('messages prepared before sending (media sends)', () => {
  /** A media send whose file "fetch" is held until the test settles it; `prepares` counts the fetches. */
  function mediaMessage(id = 'media-1') {
    const message = {
      id,
      to: '+6281234567890',
      prepares: [],
      prepare: () => new Promise((resolve, reject) => message.prepares.push({ resolve, reject })),
    };
    return message;
  }
  const unavailable = () => Object.assign(new Error('the link answered HTTP 404'), { nackError: 'media_unavailable' });

  test('the prepared content is transmitted, after the record is written', async () => {
    const { instance, store, outbox } = await setup();
    const ch = channel();
    const message = mediaMessage();
    const done = outbox.submit(message, ch);
    await settled(() => message.prepares.length === 1, 'prepared');
    assert.equal(await store.getSent(instance, message.id), null, 'nothing stored while the file is fetched');
    const content = { media: { image: Buffer.from('x'), mimetype: 'image/png' } };
    message.prepares[0].resolve(content);
    await settled(() => ch.transmits.length === 1, 'transmitted');
    assert.equal(ch.transmits[0].content, content);
    assert.equal((await store.getSent(instance, message.id)).state, 'sending');
    ch.transmits[0].resolve();
    await done;
    await outbox.serverAck(waIdFor(instance, message.id));
    assert.deepEqual(ch.replies, [{ type: 'ack', id: message.id, server_id: waIdFor(instance, message.id) }]);
  });

  test('a failed preparation is a transient nack with its error, leaves no record, and a resend goes out', async () => {
    const { instance, store, outbox } = await setup();
    const ch = channel();
    const message = mediaMessage();
    const done = outbox.submit(message, ch);
    await settled(() => message.prepares.length === 1, 'prepared');
    message.prepares[0].reject(unavailable());
    await done;
    assert.deepEqual(ch.replies, [{ type: 'nack', id: message.id, error: 'media_unavailable', permanent: false }]);
    assert.equal(await store.getSent(instance, message.id), null);
    assert.equal(ch.transmits.length, 0);
    const retry = outbox.submit(message, ch);
    await settled(() => message.prepares.length === 2, 'prepared again');
    message.prepares[1].resolve({ media: {} });
    await settled(() => ch.transmits.length === 1, 'sent on the resend');
    ch.transmits[0].resolve();
    await retry;
  });

  test('a preparation that fails without naming an error is send_failed', async () => {
    const { outbox } = await setup();
    const ch = channel();
    const message = mediaMessage();
    const done = outbox.submit(message, ch);
    await settled(() => message.prepares.length === 1, 'prepared');
    message.prepares[0].reject(new Error('boom'));
    await done;
    assert.deepEqual(ch.replies, [{ type: 'nack', id: message.id, error: 'send_failed', permanent: false }]);
  });

  test('a duplicate while the file is fetched waits: one fetch, one send, both answered', async () => {
    const { instance, outbox } = await setup();
    const first = channel();
    const second = channel();
    const message = mediaMessage();
    const done = outbox.submit(message, first);
    await settled(() => message.prepares.length === 1, 'prepared');
    await outbox.submit(message, second);
    message.prepares[0].resolve({ media: {} });
    await settled(() => first.transmits.length === 1, 'transmitted');
    first.transmits[0].resolve();
    await done;
    await outbox.serverAck(waIdFor(instance, message.id));
    assert.equal(message.prepares.length, 1);
    const ack = { type: 'ack', id: message.id, server_id: waIdFor(instance, message.id) };
    assert.deepEqual(first.replies, [ack]);
    assert.deepEqual(second.replies, [ack]);
  });

  test('a resend of a sent media message is answered from its record without fetching', async () => {
    const { instance, outbox } = await setup();
    const ch = channel();
    const message = mediaMessage();
    const done = outbox.submit(message, ch);
    await settled(() => message.prepares.length === 1, 'prepared');
    message.prepares[0].resolve({ media: {} });
    await settled(() => ch.transmits.length === 1, 'transmitted');
    ch.transmits[0].resolve();
    await done;
    await outbox.serverAck(waIdFor(instance, message.id));
    await outbox.submit(message, ch);
    assert.equal(message.prepares.length, 1);
    assert.equal(ch.transmits.length, 1);
    assert.equal(ch.replies.length, 2);
    assert.deepEqual(ch.replies[1], ch.replies[0]);
  });

  test('a socket that ended while the file was fetched: nothing sent or stored, a transient nack', async () => {
    const { instance, store, outbox } = await setup();
    const dropped = channel();
    const next = channel();
    const message = mediaMessage();
    const done = outbox.submit(message, dropped);
    await settled(() => message.prepares.length === 1, 'prepared');
    await outbox.submit(message, next);
    outbox.channelEnded(dropped);
    message.prepares[0].resolve({ media: {} });
    await done;
    assert.equal(dropped.transmits.length, 0);
    assert.deepEqual(next.replies, [{ type: 'nack', id: message.id, error: 'send_failed', permanent: false }]);
    assert.equal(await store.getSent(instance, message.id), null);
  });
});
