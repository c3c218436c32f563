/**
 * Fetching a media send's file (src/media.js) from a local HTTP server, and
 * the Baileys content each kind becomes.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MediaUnavailable, fetchMedia, mediaContent } from '../src/media.js';
import { startFileServer } from './support/files.js';

const FILE = Buffer.from('0123456789abcdef'.repeat(64)); // 1 KiB

/** Asserts that `promise` rejects with MediaUnavailable, nack `media_unavailable`, a message matching `pattern` and never naming the link. */
async function unavailable(promise, pattern, url) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof MediaUnavailable, `a MediaUnavailable, got ${err}`);
    assert.equal(err.nackError, 'media_unavailable');
    assert.match(err.message, pattern);
    if (url) assert.equal(err.message.includes(url), false, 'the link is never in the message');
    return true;
  });
}

describe('fetching the file of a media send', () => {
  let files;
  before(async () => {
    files = await startFileServer();
  });
  after(() => files.close());

  test('a 200 with exactly size bytes gives the file', async () => {
    const url = files.put('/ok', FILE);
    const data = await fetchMedia({ url, size: FILE.length });
    assert.ok(Buffer.isBuffer(data));
    assert.deepEqual(data, FILE);
  });

  test('a body without Content-Length is read in full when it has exactly size bytes', async () => {
    const url = files.put('/chunked', FILE, { chunked: true });
    assert.deepEqual(await fetchMedia({ url, size: FILE.length }), FILE);
  });

  test('any status but 200 is unavailable', async () => {
    for (const status of [404, 403, 410, 500]) {
      const url = files.put(`/status-${status}`, 'nope', { status });
      await unavailable(fetchMedia({ url, size: 4 }), new RegExp(`HTTP ${status}`), url);
    }
  });

  test('a redirect is not followed: unavailable', async () => {
    const target = files.put('/target', FILE);
    const url = files.put('/moved', '', { status: 302, headers: { Location: target } });
    await unavailable(fetchMedia({ url, size: FILE.length }), /HTTP 302/, url);
    assert.equal(files.requests('/target'), 0);
  });

  test('a body of another length than size is unavailable, announced or not', async () => {
    const announced = files.put('/announced', FILE);
    await unavailable(fetchMedia({ url: announced, size: FILE.length + 1 }), /announced 1024 bytes/, announced);
    await unavailable(fetchMedia({ url: announced, size: FILE.length - 1 }), /announced 1024 bytes/, announced);
    const longer = files.put('/longer', FILE, { chunked: true });
    await unavailable(fetchMedia({ url: longer, size: 100 }), /larger than the 100 bytes/, longer);
    const shorter = files.put('/shorter', FILE, { chunked: true });
    await unavailable(fetchMedia({ url: shorter, size: FILE.length + 10 }), /is 1024 bytes, the send says 1034/, shorter);
  });

  test('a body cut short of its Content-Length is unavailable', async () => {
    const url = files.put('/cut', FILE, { length: FILE.length + 100 });
    await unavailable(fetchMedia({ url, size: FILE.length + 100 }), /could not be (fetched|read)/, url);
  });

  test('a link that stalls past the timeout is unavailable', async () => {
    const url = files.put('/stall', FILE, { stallMs: 3000 });
    const started = Date.now();
    await unavailable(fetchMedia({ url, size: FILE.length }, { timeoutMs: 200 }), /timed out/, url);
    assert.ok(Date.now() - started < 2000, 'gave up at the timeout');
  });

  test('a refused connection is unavailable, and the link is not in the message', async () => {
    const server = net.createServer();
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address();
    await new Promise((resolve) => server.close(resolve));
    const url = `http://127.0.0.1:${port}/m/secret-signature`;
    await unavailable(fetchMedia({ url, size: 10 }), /could not be fetched/, url);
  });
});

describe('the Baileys content of a media send', () => {
  const data = Buffer.from('file');

  test('image and video carry the caption and the mime type', () => {
    const media = { mime: 'image/jpeg', filename: 'a.jpg' };
    assert.deepEqual(mediaContent({ ...media, kind: 'image' }, 'Hi', data), { image: data, mimetype: 'image/jpeg', caption: 'Hi' });
    assert.deepEqual(mediaContent({ kind: 'video', mime: 'video/mp4', filename: 'v.mp4' }, 'Hi', data), { video: data, mimetype: 'video/mp4', caption: 'Hi' });
    assert.deepEqual(mediaContent({ ...media, kind: 'image' }, undefined, data), { image: data, mimetype: 'image/jpeg' });
    assert.deepEqual(mediaContent({ ...media, kind: 'image' }, '', data), { image: data, mimetype: 'image/jpeg' });
  });

  test('a document carries its file name; audio never a caption', () => {
    assert.deepEqual(mediaContent({ kind: 'document', mime: 'application/pdf', filename: 'c.pdf' }, 'See', data), {
      document: data,
      mimetype: 'application/pdf',
      fileName: 'c.pdf',
      caption: 'See',
    });
    assert.deepEqual(mediaContent({ kind: 'audio', mime: 'audio/ogg', filename: 'n.ogg' }, 'ignored', data), { audio: data, mimetype: 'audio/ogg' });
  });
});
