/**
 * What PROTOCOL.md fixes about the wire, as the bridge checks it.
 *
 * Constants and pure functions only: the subprotocol, version and limits, the
 * shapes of instance keys, message ids and phone numbers, reading a bearer
 * token, reading a client frame, validating a `send` (text or media), a
 * `check` and a `presence`, and the conversions between E.164 numbers and
 * WhatsApp JIDs. Nothing here does I/O.
 */
import { jidDecode } from 'baileys';

export const SUBPROTOCOL = 'blast-gateway.v1';
export const PROTOCOL_VERSION = 1;
/** The client pings this often (seconds); the bridge answers every ping. */
export const HEARTBEAT_S = 20;
/**
 * A text `send` holds at most 4096 characters (24 KiB even JSON-escaped), a
 * media `send` a link of 2048, a file name of 255 and a caption of 1024, a
 * `check` 50 numbers: anything this big is not a frame. The file itself never
 * travels over the worker's socket: the bridge fetches it from the link.
 */
export const MAX_FRAME_BYTES = 64 * 1024;
export const MAX_TEXT_CHARS = 4096;
/** Optional frames this gateway serves (PROTOCOL.md sections 2.3 and 2.4). */
export const FEATURES = ['pair_code', 'media', 'check', 'presence'];

/** Media sends (PROTOCOL.md section 2.4). */
export const MEDIA_KINDS = ['image', 'document', 'audio', 'video'];
export const MAX_MEDIA_URL_CHARS = 2048;
export const MAX_MEDIA_MIME_CHARS = 100;
export const MAX_MEDIA_FILENAME_CHARS = 255;
export const MAX_MEDIA_BYTES = 100 * 1024 * 1024;
export const MAX_CAPTION_CHARS = 1024;
/** Number checks: 1-50 numbers per `check`. */
export const MAX_CHECK_PHONES = 50;
export const PRESENCE_STATES = ['composing', 'paused'];

export const MESSAGE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const E164_RE = /^\+[0-9]{8,15}$/;
/** `type/subtype`, each a token of RFC 6838's restricted names. */
const MIME_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/;
const CANONICAL_UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SOCKET_PATH_RE = /^\/v1\/instances\/([^/]+)\/socket$/;

/** The instance key of a `/v1/instances/{key}/socket` path, or null (a 404). */
export function instanceKeyFromPath(pathname) {
  const match = SOCKET_PATH_RE.exec(pathname);
  return match && CANONICAL_UUID_RE.test(match[1]) ? match[1] : null;
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header) {
  if (typeof header !== 'string') return null;
  const [scheme, ...rest] = header.trim().split(/\s+/);
  const token = rest.join(' ');
  return scheme.toLowerCase() === 'bearer' && token ? token : null;
}

/**
 * A client frame read from one WebSocket message: `{ frame }` for an object
 * with a string `type`, `{ malformed }` (the complaint) for anything else.
 */
export function readClientFrame(data, isBinary) {
  if (isBinary) return { malformed: 'binary frames are not part of the protocol' };
  let frame;
  try {
    frame = JSON.parse(data.toString('utf8'));
  } catch {
    return { malformed: 'frame is not valid JSON' };
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    return { malformed: 'frame is not a JSON object' };
  }
  if (typeof frame.type !== 'string') return { malformed: 'frame has no string `type`' };
  return { frame };
}

/** Characters as the platform counts them: code points, not UTF-16 units (an emoji is one character, two units). */
function chars(text) {
  return [...text].length;
}

/** An absent optional field: missing, or JSON null. */
function absent(value) {
  return value === undefined || value === null;
}

/**
 * Why a `send` frame is invalid (the `error` frame's message), or null. A
 * send carries exactly one of `text` and `media`; `caption` only with
 * `media`.
 */
export function sendProblem(frame) {
  const { id, to, text, media, caption } = frame;
  if (typeof id !== 'string' || !MESSAGE_ID_RE.test(id)) {
    return 'id must be 1-64 characters of [A-Za-z0-9_-]';
  }
  if (typeof to !== 'string' || !E164_RE.test(to)) {
    return 'to must be an E.164 number: + then 8-15 digits';
  }
  if (!absent(media)) {
    if (!absent(text)) return 'a send carries either text or media, not both';
    return mediaProblem(media) ?? captionProblem(caption);
  }
  if (!absent(caption)) return 'caption is only allowed with media';
  if (typeof text !== 'string' || chars(text) < 1 || chars(text) > MAX_TEXT_CHARS) {
    return `text must be 1-${MAX_TEXT_CHARS} characters`;
  }
  return null;
}

/** Why a send's `media` object is invalid, or null. */
function mediaProblem(media) {
  if (typeof media !== 'object' || Array.isArray(media)) {
    return 'media must be an object with kind, url, mime, filename and size';
  }
  const { kind, url, mime, filename, size } = media;
  if (!MEDIA_KINDS.includes(kind)) {
    return `media.kind must be one of ${MEDIA_KINDS.join(', ')}`;
  }
  if (!isMediaUrl(url)) {
    return `media.url must be an absolute http or https URL of at most ${MAX_MEDIA_URL_CHARS} characters`;
  }
  if (typeof mime !== 'string' || mime.length > MAX_MEDIA_MIME_CHARS || !MIME_RE.test(mime)) {
    return `media.mime must be type/subtype, at most ${MAX_MEDIA_MIME_CHARS} characters`;
  }
  if (typeof filename !== 'string' || chars(filename) < 1 || chars(filename) > MAX_MEDIA_FILENAME_CHARS) {
    return `media.filename must be 1-${MAX_MEDIA_FILENAME_CHARS} characters`;
  }
  if (!Number.isInteger(size) || size < 1 || size > MAX_MEDIA_BYTES) {
    return `media.size must be an integer from 1 to ${MAX_MEDIA_BYTES}`;
  }
  return null;
}

function isMediaUrl(url) {
  if (typeof url !== 'string' || url.length > MAX_MEDIA_URL_CHARS) return false;
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  return (parsed.protocol === 'http:' || parsed.protocol === 'https:') && parsed.hostname !== '';
}

function captionProblem(caption) {
  if (absent(caption)) return null;
  if (typeof caption !== 'string' || chars(caption) > MAX_CAPTION_CHARS) {
    return `caption must be 0-${MAX_CAPTION_CHARS} characters`;
  }
  return null;
}

/** Why a `check` frame is invalid (the `error` frame's message), or null. */
export function checkProblem(frame) {
  const { id, phones } = frame;
  if (typeof id !== 'string' || !MESSAGE_ID_RE.test(id)) {
    return 'id must be 1-64 characters of [A-Za-z0-9_-]';
  }
  if (!Array.isArray(phones) || phones.length < 1 || phones.length > MAX_CHECK_PHONES) {
    return `phones must be a list of 1-${MAX_CHECK_PHONES} E.164 numbers`;
  }
  for (const phone of phones) {
    if (typeof phone !== 'string' || !E164_RE.test(phone)) {
      return 'phones must hold E.164 numbers only: + then 8-15 digits';
    }
  }
  if (new Set(phones).size !== phones.length) return 'phones must not repeat a number';
  return null;
}

/** Why a `presence` frame is invalid (the `error` frame's message), or null. */
export function presenceProblem(frame) {
  const { to, state } = frame;
  if (typeof to !== 'string' || !E164_RE.test(to)) {
    return 'to must be an E.164 number: + then 8-15 digits';
  }
  if (!PRESENCE_STATES.includes(state)) {
    return `state must be one of ${PRESENCE_STATES.join(', ')}`;
  }
  return null;
}

/** The `id` field an `error` frame may echo: only a string that could be an id. */
export function echoId(frame) {
  return typeof frame.id === 'string' && frame.id.length <= 64 ? { id: frame.id } : {};
}

/** The WhatsApp JID of an E.164 number. */
export function jidFromE164(number) {
  return `${number.slice(1)}@s.whatsapp.net`;
}

/** The E.164 number of a phone-number JID (`628...[:device]@s.whatsapp.net`), or null. */
export function e164FromJid(jid) {
  const decoded = typeof jid === 'string' ? jidDecode(jid) : undefined;
  if (!decoded || decoded.server !== 's.whatsapp.net') return null;
  const number = `+${decoded.user}`;
  return E164_RE.test(number) ? number : null;
}
