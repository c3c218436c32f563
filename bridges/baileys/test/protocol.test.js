import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FEATURES, MAX_FRAME_BYTES, MAX_TEXT_CHARS, checkProblem, presenceProblem, sendProblem } from '../src/protocol.js';

const send = (text) => ({ type: 'send', id: 'm-1', to: '+6281234567890', text });

test('a text is measured in characters as the platform counts them (code points)', () => {
  // 4096 emoji are 8192 UTF-16 units: still 4096 characters, a valid send.
  assert.equal(sendProblem(send('😀'.repeat(MAX_TEXT_CHARS))), null);
  assert.match(sendProblem(send('😀'.repeat(MAX_TEXT_CHARS + 1))), /text must be 1-4096 characters/);
  assert.match(sendProblem(send('')), /text must be/);
});

test('hello announces pair_code and the v1.1 features', () => {
  assert.deepEqual(FEATURES, ['pair_code', 'media', 'check', 'presence']);
});

describe('a media send', () => {
  const MEDIA = { kind: 'image', url: 'https://blast.example/m/signed?sig=abc', mime: 'image/jpeg', filename: 'catalogue.jpg', size: 204800 };
  const mediaSend = (media = {}, extra = {}) => ({ type: 'send', id: 'm-1', to: '+6281234567890', media: { ...MEDIA, ...media }, ...extra });

  test('is valid with each kind, with or without a caption', () => {
    for (const kind of ['image', 'document', 'audio', 'video']) {
      assert.equal(sendProblem(mediaSend({ kind })), null, kind);
      assert.equal(sendProblem(mediaSend({ kind }, { caption: 'Our new catalogue' })), null, kind);
    }
    assert.equal(sendProblem(mediaSend({}, { caption: '' })), null, 'an empty caption');
    assert.equal(sendProblem(mediaSend({}, { caption: null })), null, 'a null caption is absent');
    assert.equal(sendProblem(mediaSend({}, { text: null })), null, 'a null text is absent');
    assert.equal(sendProblem(mediaSend({}, { caption: '😀'.repeat(1024) })), null, 'captions count code points');
    assert.equal(sendProblem(mediaSend({ url: 'http://127.0.0.1:8000/m/x', size: 1 })), null);
    assert.equal(sendProblem(mediaSend({ size: 100 * 1024 * 1024 })), null);
    assert.equal(sendProblem(mediaSend({ filename: 'x'.repeat(255) })), null);
    assert.equal(sendProblem(mediaSend({ url: `https://b.example/${'a'.repeat(2048 - 18)}` })), null);
  });

  test('with a bad field names that field', () => {
    const cases = [
      [mediaSend({}, { text: 'hi' }), /either text or media, not both/],
      [{ ...send('hi'), caption: 'no media' }, /caption is only allowed with media/],
      [{ ...mediaSend(), media: 'https://x.example/a.jpg' }, /media must be an object/],
      [{ ...mediaSend(), media: [] }, /media must be an object/],
      [mediaSend({ kind: 'sticker' }), /media.kind must be one of image, document, audio, video/],
      [mediaSend({ kind: undefined }), /media.kind/],
      [mediaSend({ url: 'ftp://x.example/a.jpg' }), /media.url must be an absolute http or https URL/],
      [mediaSend({ url: '/m/relative' }), /media.url/],
      [mediaSend({ url: 'not a url' }), /media.url/],
      [mediaSend({ url: 42 }), /media.url/],
      [mediaSend({ url: `https://b.example/${'a'.repeat(2048)}` }), /at most 2048 characters/],
      [mediaSend({ mime: 'jpeg' }), /media.mime must be type\/subtype/],
      [mediaSend({ mime: 'image/' }), /media.mime/],
      [mediaSend({ mime: `image/${'x'.repeat(100)}` }), /at most 100 characters/],
      [mediaSend({ mime: undefined }), /media.mime/],
      [mediaSend({ filename: '' }), /media.filename must be 1-255 characters/],
      [mediaSend({ filename: 'x'.repeat(256) }), /media.filename/],
      [mediaSend({ filename: 7 }), /media.filename/],
      [mediaSend({ size: 0 }), /media.size must be an integer from 1 to 104857600/],
      [mediaSend({ size: 100 * 1024 * 1024 + 1 }), /media.size/],
      [mediaSend({ size: 1.5 }), /media.size/],
      [mediaSend({ size: '200' }), /media.size/],
      [mediaSend({ size: true }), /media.size/],
      [mediaSend({}, { caption: 'x'.repeat(1025) }), /caption must be 0-1024 characters/],
      [mediaSend({}, { caption: 12 }), /caption must be/],
      [{ ...mediaSend(), id: 'bad id' }, /id must be/],
      [{ ...mediaSend(), to: '0812' }, /to must be an E.164 number/],
    ];
    for (const [frame, pattern] of cases) assert.match(sendProblem(frame) ?? 'valid', pattern, JSON.stringify(frame).slice(0, 120));
  });

  test('stays far below the frame size limit at its largest', () => {
    const frame = mediaSend({ url: `https://b.example/${'a'.repeat(2000)}`, filename: '😀'.repeat(255), mime: `a/${'b'.repeat(98)}` }, { caption: '😀'.repeat(1024) });
    assert.equal(sendProblem(frame), null);
    assert.ok(Buffer.byteLength(JSON.stringify(frame)) < MAX_FRAME_BYTES / 4);
  });
});

describe('a check', () => {
  const check = (phones, id = 'c-81f2') => ({ type: 'check', id, phones });

  test('is valid with 1 to 50 distinct E.164 numbers', () => {
    assert.equal(checkProblem(check(['+6281234567890'])), null);
    const fifty = Array.from({ length: 50 }, (_, i) => `+62812000${String(i).padStart(4, '0')}`);
    assert.equal(checkProblem(check(fifty)), null);
  });

  test('with a bad id or phones says which', () => {
    assert.match(checkProblem(check(['+6281234567890'], '')), /id must be 1-64 characters/);
    assert.match(checkProblem(check(['+6281234567890'], 'x'.repeat(65))), /id must be/);
    assert.match(checkProblem(check(['+6281234567890'], 7)), /id must be/);
    assert.match(checkProblem(check([])), /phones must be a list of 1-50/);
    assert.match(checkProblem(check('+6281234567890')), /phones must be a list/);
    assert.match(checkProblem({ type: 'check', id: 'c' }), /phones must be a list/);
    const many = Array.from({ length: 51 }, (_, i) => `+62812000${String(i).padStart(4, '0')}`);
    assert.match(checkProblem(check(many)), /1-50/);
    assert.match(checkProblem(check(['6281234567890'])), /E.164 numbers only/);
    assert.match(checkProblem(check(['+6281234567890', 42])), /E.164 numbers only/);
    assert.match(checkProblem(check(['+6281234567890', '+6281234567890'])), /must not repeat/);
  });
});

describe('a presence', () => {
  test('needs an E.164 to and a state of composing or paused', () => {
    assert.equal(presenceProblem({ to: '+6281234567890', state: 'composing' }), null);
    assert.equal(presenceProblem({ to: '+6281234567890', state: 'paused' }), null);
    assert.match(presenceProblem({ to: '+6281234567890', state: 'recording' }), /state must be one of composing, paused/);
    assert.match(presenceProblem({ to: '+6281234567890' }), /state must be/);
    assert.match(presenceProblem({ to: '62812', state: 'composing' }), /to must be an E.164 number/);
  });
});
