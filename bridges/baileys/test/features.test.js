/**
 * Protocol v1.1 (PROTOCOL.md section 2.4) end to end: the real bridge
 * process and the real Baileys library against the fake WhatsApp server,
 * with the fake's media host (Baileys uploads each file there, encrypted,
 * before it sends the message) and a local HTTP server standing in for the
 * platform's signed media links.
 *
 * The bridge trusts the fake's test root through the test-only preload, and
 * the media host's certificate through NODE_EXTRA_CA_CERTS; nothing in src/
 * knows about either.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { waIdFor } from '../src/outbox.js';
import { FakeMediaHost, createTestRoot, rootEnvironment, startFakeWhatsApp, trustTestRoot, writeCertificate } from './fakewa/index.js';
import { startFileServer } from './support/files.js';
import { newInstanceKey, newToken, startBridge, tempDir } from './support/bridge.js';
import { pairedStore } from './support/paired.js';

const ACCOUNT = '+6281234567890'; // the fake's phone
const CONTACT = '+6289876543210';
const STRANGER = '+15550000001'; // no account on the fake
const PRELOAD = ['--import', './test/fakewa/trust-test-root.js'];

const root = createTestRoot();
let restoreRoot;
let wa;
let host;
let files;
let contact;
let bridge;
let instance;
let token;
const delivered = []; // what reached WhatsApp, as the fake saw it

before(async () => {
  restoreRoot = trustTestRoot(root); // for the pairing done in this process
  wa = await startFakeWhatsApp({ root });
  host = await wa.startMediaHost();
  contact = wa.addContact(CONTACT.slice(1));
  wa.on('message', (message) => {
    delivered.push(message);
    message.ack();
  });
  files = await startFileServer();
  instance = newInstanceKey();
  token = newToken();
  const stored = await pairedStore(wa, instance);
  bridge = await startBridge(
    { BRIDGE_WA_URL: wa.url, ...rootEnvironment(root), ...stored.env, NODE_EXTRA_CA_CERTS: writeCertificate(tempDir(), host.certificate) },
    { nodeArgs: PRELOAD },
  );
});

after(async () => {
  await bridge?.stop();
  await wa?.close();
  await files?.close();
  restoreRoot();
});

async function readySession() {
  const client = await bridge.connect(instance, token);
  assert.equal((await client.next('hello')).paired, true);
  await client.next('ready');
  return client;
}

/** A file on the link server, as the platform's signed link: `{url, path, data, media}`. */
function hosted(kind, mime, filename, { bytes = 3000, ...serve } = {}) {
  const data = randomBytes(bytes);
  const path = `/m/sig-${randomBytes(8).toString('hex')}`;
  const url = files.put(path, data, serve);
  return { url, path, data, media: { kind, url, mime, filename, size: data.length } };
}

const deliveredAs = (id) => delivered.filter((message) => message.id === waIdFor(instance, id));

describe('media sends', () => {
  test('each kind reaches WhatsApp with its file, mime type, caption and file name', async () => {
    const client = await readySession();
    const cases = [
      { kind: 'image', mime: 'image/jpeg', filename: 'catalogue.jpg', caption: 'Our new catalogue' },
      { kind: 'video', mime: 'video/mp4', filename: 'promo.mp4', caption: 'Watch this' },
      { kind: 'audio', mime: 'audio/ogg', filename: 'note.ogg', caption: 'not shown on audio' },
      { kind: 'document', mime: 'application/pdf', filename: 'price list.pdf', caption: 'Prices' },
    ];
    for (const { kind, mime, filename, caption } of cases) {
      const file = hosted(kind, mime, filename);
      const id = `media-${kind}`;
      const uploads = host.uploads.length;
      client.send({ type: 'send', id, to: CONTACT, media: file.media, caption });
      assert.deepEqual(await client.next('ack', { timeoutMs: 20000 }), { type: 'ack', id, server_id: waIdFor(instance, id) }, kind);
      const [message] = deliveredAs(id);
      assert.ok(message, `${kind} delivered`);
      assert.equal(message.to, contact.pnJid);
      const content = message.content[`${kind}Message`];
      assert.ok(content, `${kind}Message in ${Object.keys(message.content)}`);
      assert.equal(content.mimetype, mime, kind);
      assert.equal(Number(content.fileLength), file.data.length, kind);
      if (kind === 'audio') assert.ok(!content.caption, 'no caption on audio');
      else assert.equal(content.caption, caption, kind);
      if (kind === 'document') assert.equal(content.fileName, filename);
      assert.equal(host.uploads.length, uploads + 1, `${kind} uploaded once`);
      const upload = host.uploads.at(-1);
      assert.equal(upload.type, kind);
      assert.deepEqual(await FakeMediaHost.decrypt(upload, content.mediaKey), file.data, `the recipient opens the ${kind} file as served`);
      assert.equal(files.requests(file.path), 1);
    }
    // Receipts work as for text.
    deliveredAs('media-image')[0].receipt('delivery');
    assert.deepEqual(await client.next('receipt'), { type: 'receipt', id: 'media-image', status: 'delivered' });
    await client.close();
  });

  test('without a caption the message has none', async () => {
    const client = await readySession();
    const file = hosted('image', 'image/png', 'a.png', { bytes: 500 });
    client.send({ type: 'send', id: 'media-nocaption', to: CONTACT, media: file.media });
    await client.next('ack', { timeoutMs: 20000 });
    assert.ok(!deliveredAs('media-nocaption')[0].content.imageMessage.caption);
    await client.close();
  });

  test('a media send repeated with the same id is acked once: neither fetched nor sent again', async () => {
    let client = await readySession();
    const file = hosted('document', 'application/pdf', 'once.pdf');
    const frame = { type: 'send', id: 'media-dup', to: CONTACT, media: file.media, caption: 'once' };
    client.send(frame);
    client.send(frame); // a duplicate while the first is in flight: it waits (one answer per session, as for text)
    const ack = await client.next('ack', { timeoutMs: 20000 });
    client.send(frame); // a resend after the ack
    assert.deepEqual(await client.next('ack'), ack);
    await client.close();
    client = await readySession(); // and on the next session
    client.send({ ...frame, media: { ...file.media, url: `${files.base}/m/expired` } });
    assert.deepEqual(await client.next('ack'), ack);
    assert.equal(deliveredAs('media-dup').length, 1);
    assert.equal(files.requests(file.path), 1);
    assert.equal(files.requests('/m/expired'), 0);
    await client.close();
  });

  test('a link that fails is a transient media_unavailable nack, not remembered: the resend goes out', async () => {
    const client = await readySession();
    const file = hosted('image', 'image/jpeg', 'late.jpg');
    const broken = [
      ['media-404', { ...file.media, url: files.put(`/m/sig-gone-${randomBytes(4).toString('hex')}`, null, { status: 404 }) }],
      ['media-short', { ...file.media, size: file.data.length + 1 }],
      ['media-long', { ...file.media, size: file.data.length - 1 }],
      ['media-chunked', { ...file.media, url: files.put(`/m/sig-chunked-${randomBytes(4).toString('hex')}`, file.data, { chunked: true }), size: 100 }],
    ];
    for (const [id, media] of broken) {
      client.send({ type: 'send', id, to: CONTACT, media, caption: 'c' });
      assert.deepEqual(await client.next('nack'), { type: 'nack', id, error: 'media_unavailable', permanent: false }, id);
      assert.equal(deliveredAs(id).length, 0);
    }
    for (const [id] of broken) {
      // The platform sends it again later, with a fresh link that works.
      const fresh = hosted('image', 'image/jpeg', 'late.jpg');
      client.send({ type: 'send', id, to: CONTACT, media: fresh.media, caption: 'c' });
      assert.deepEqual(await client.next('ack', { timeoutMs: 20000 }), { type: 'ack', id, server_id: waIdFor(instance, id) }, id);
      assert.equal(deliveredAs(id).length, 1, id);
    }
    await client.close();
  });

  test('bad media fields are invalid_send, echoing the id, and the session goes on', async () => {
    const client = await readySession();
    const { media } = hosted('image', 'image/jpeg', 'x.jpg');
    const cases = [
      [{ media: { ...media, kind: 'sticker' } }, /media.kind/],
      [{ media: { ...media, url: 'ftp://files.example/x.jpg' } }, /media.url/],
      [{ media: { ...media, mime: 'jpeg' } }, /media.mime/],
      [{ media: { ...media, filename: '' } }, /media.filename/],
      [{ media: { ...media, size: 0 } }, /media.size/],
      [{ media: { ...media, size: 104857601 } }, /media.size/],
      [{ media, caption: 'x'.repeat(1025) }, /caption/],
      [{ media, text: 'both' }, /either text or media/],
      [{ text: 'hi', caption: 'no media' }, /caption is only allowed with media/],
      [{ media: 'https://files.example/x.jpg' }, /media must be an object/],
    ];
    for (const [fields, pattern] of cases) {
      client.send({ type: 'send', id: 'media-bad', to: CONTACT, ...fields });
      const error = await client.next('error');
      assert.equal(error.code, 'invalid_send');
      assert.equal(error.id, 'media-bad');
      assert.match(error.message, pattern);
    }
    assert.equal(client.closeCode, null);
    assert.equal(deliveredAs('media-bad').length, 0);
    await client.close();
  });
});

describe('number checks', () => {
  test('a check answers for every number asked', async () => {
    const client = await readySession();
    client.send({ type: 'check', id: 'c-81f2', phones: [CONTACT, STRANGER, ACCOUNT] });
    assert.deepEqual(await client.next('check_result'), {
      type: 'check_result',
      id: 'c-81f2',
      results: { [CONTACT]: true, [STRANGER]: false, [ACCOUNT]: true },
    });
    await client.close();
  });

  test('a bad check is invalid_check, with the id echoed when it could be one', async () => {
    const client = await readySession();
    const cases = [
      [{ id: 'c-1', phones: [] }, 'c-1'],
      [{ id: 'c-2', phones: [CONTACT, CONTACT] }, 'c-2'],
      [{ id: 'c-3', phones: ['0812345678'] }, 'c-3'],
      [{ id: 'c-4', phones: Array.from({ length: 51 }, (_, i) => `+1555000${String(i).padStart(4, '0')}`) }, 'c-4'],
      [{ id: 'bad id!', phones: [CONTACT] }, 'bad id!'],
      [{ id: 'x'.repeat(65), phones: [CONTACT] }, undefined],
      [{ phones: [CONTACT] }, undefined],
    ];
    for (const [fields, echoed] of cases) {
      client.send({ type: 'check', ...fields });
      const error = await client.next('error');
      assert.equal(error.code, 'invalid_check', JSON.stringify(fields).slice(0, 80));
      assert.equal(error.id, echoed);
    }
    assert.equal(client.closeCode, null);
    await client.close();
  });

  test('a check WhatsApp does not answer is check_failed, and the next one works', async () => {
    const client = await readySession();
    const restore = wa.refuseIqs('usync');
    try {
      client.send({ type: 'check', id: 'c-fail', phones: [CONTACT] });
      const error = await client.next('error');
      assert.equal(error.code, 'check_failed');
      assert.equal(error.id, 'c-fail');
    } finally {
      restore();
    }
    client.send({ type: 'check', id: 'c-again', phones: [CONTACT] });
    assert.deepEqual((await client.next('check_result')).results, { [CONTACT]: true });
    await client.close();
  });
});

describe('presence', () => {
  test('composing and paused reach WhatsApp as chat states; no answer', async () => {
    const client = await readySession();
    const conn = wa.loggedIn();
    for (const state of ['composing', 'paused']) {
      client.send({ type: 'presence', to: CONTACT, state });
      const node = await conn.waitFor((n) => n.tag === 'chatstate' && n.content?.[0]?.tag === state);
      assert.equal(node.attrs.to, contact.pnJid);
    }
    // Nothing was answered: the next frame is the answer to this check.
    client.send({ type: 'check', id: 'c-after', phones: [CONTACT] });
    assert.equal((await client.next('check_result')).id, 'c-after');
    await client.close();
  });

  test('a bad presence is invalid_presence, and the session goes on', async () => {
    const client = await readySession();
    for (const fields of [{ to: CONTACT, state: 'recording' }, { to: CONTACT }, { to: '62812', state: 'composing' }, { state: 'paused' }]) {
      client.send({ type: 'presence', ...fields });
      assert.equal((await client.next('error')).code, 'invalid_presence', JSON.stringify(fields));
    }
    assert.equal(client.closeCode, null);
    await client.close();
  });
});

describe('the log', () => {
  test('shows no failure and never a media link or a number', () => {
    const log = bridge.stdout();
    assert.doesNotMatch(log, /UNHANDLED-REJECTION|UNCAUGHT-EXCEPTION|SESSION-ERROR/);
    assert.doesNotMatch(log, /sig-/, 'no media link');
    assert.equal(log.includes(STRANGER.slice(1)), false, 'no checked number');
    // Libraries' own console output (libsignal prints session keys) goes
    // through the logger without its objects.
    assert.doesNotMatch(log, /SessionEntry|privKey|ephemeralKeyPair/, 'no Signal session printed');
    const lines = bridge.lines().map((line) => line.msg);
    assert.ok(lines.includes('MEDIA-UNAVAILABLE'));
    assert.ok(lines.includes('CHECK') && lines.includes('CHECK-FAILED'));
  });
});
