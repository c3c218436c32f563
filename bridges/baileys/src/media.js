/**
 * Media sends (PROTOCOL.md section 2.4): fetching the file behind a send's
 * link, and the Baileys message content it becomes.
 *
 * The platform hands the bridge a signed, expiring link, never the file. The
 * bridge GETs it with no credentials (the link is the credential), follows no
 * redirect, and accepts only a 200 whose body is exactly `media.size` bytes:
 * it reads at most that many and gives up on the first byte more. Anything
 * else (another status, a shorter or longer body, a refused connection, no
 * complete answer within the timeout) is a `MediaUnavailable`, which the
 * outbox answers with a transient `nack` `media_unavailable` and does not
 * remember, so the platform's resend (with a fresh link) goes out.
 *
 * The link is never logged: only the reason a fetch failed.
 */

/** How long fetching one file may take, headers and body together. */
export const MEDIA_FETCH_TIMEOUT_MS = 30_000;

/** A fetch that did not give the file: a transient refusal of the send. */
export class MediaUnavailable extends Error {
  constructor(reason) {
    super(reason);
    this.name = 'MediaUnavailable';
    /** The `nack` error the outbox answers with. */
    this.nackError = 'media_unavailable';
  }
}

/**
 * The file of `media` ({url, size}) as a Buffer of exactly `size` bytes.
 * Rejects with MediaUnavailable, never with anything else.
 */
export async function fetchMedia(media, { timeoutMs = MEDIA_FETCH_TIMEOUT_MS } = {}) {
  const signal = AbortSignal.timeout(timeoutMs);
  let response;
  try {
    response = await fetch(media.url, {
      method: 'GET',
      redirect: 'manual',
      credentials: 'omit',
      headers: { accept: '*/*', 'accept-encoding': 'identity' },
      signal,
    });
  } catch (err) {
    throw new MediaUnavailable(`the link could not be fetched: ${causeOf(err)}`);
  }
  try {
    if (response.status !== 200) {
      throw new MediaUnavailable(`the link answered HTTP ${response.status}`);
    }
    const declared = response.headers.get('content-length');
    const encoded = (response.headers.get('content-encoding') ?? 'identity').toLowerCase() !== 'identity';
    if (declared !== null && !encoded && Number(declared) !== media.size) {
      throw new MediaUnavailable(`the link announced ${declared} bytes, the send says ${media.size}`);
    }
    return await readExactly(response, media.size);
  } catch (err) {
    response.body?.cancel().catch(() => {});
    if (err instanceof MediaUnavailable) throw err;
    throw new MediaUnavailable(`the file could not be read: ${causeOf(err)}`);
  }
}

/** The body of `response`, which must be exactly `size` bytes; never reads more than that. */
async function readExactly(response, size) {
  const buffer = Buffer.allocUnsafe(size);
  let length = 0;
  if (response.body) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (length + value.byteLength > size) {
        throw new MediaUnavailable(`the file is larger than the ${size} bytes the send says`);
      }
      buffer.set(value, length);
      length += value.byteLength;
    }
  }
  if (length !== size) {
    throw new MediaUnavailable(`the file is ${length} bytes, the send says ${size}`);
  }
  return buffer;
}

/** Why a fetch failed, without the link (fetch names the URL in some messages). */
function causeOf(err) {
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return 'timed out';
  const cause = err?.cause;
  const text = cause?.code ?? cause?.message ?? err?.message ?? String(err);
  return String(text).replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, '<link>').slice(0, 200);
}

/**
 * The content Baileys' `sendMessage` takes for a media send: the file as a
 * Buffer, the platform's MIME type, and the caption where WhatsApp shows
 * one (not on audio). The file name is what a recipient sees on a document.
 */
export function mediaContent({ kind, mime, filename }, caption, data) {
  const withCaption = typeof caption === 'string' && caption !== '' ? { caption } : {};
  switch (kind) {
    case 'image':
      return { image: data, mimetype: mime, ...withCaption };
    case 'video':
      return { video: data, mimetype: mime, ...withCaption };
    case 'audio':
      return { audio: data, mimetype: mime };
    case 'document':
      return { document: data, mimetype: mime, fileName: filename, ...withCaption };
    default:
      throw new Error(`no media kind ${kind}`);
  }
}
