/**
 * What PROTOCOL.md fixes about the wire, as the bridge checks it.
 *
 * Constants and pure functions only: the subprotocol, version and limits, the
 * shapes of instance keys, message ids and phone numbers, reading a bearer
 * token, reading a client frame, validating a `send`, and the conversions
 * between E.164 numbers and WhatsApp JIDs. Nothing here does I/O.
 */
import { jidDecode } from 'baileys';

export const SUBPROTOCOL = 'blast-gateway.v1';
export const PROTOCOL_VERSION = 1;
/** The client pings this often (seconds); the bridge answers every ping. */
export const HEARTBEAT_S = 20;
/** A `send` holds at most 4096 characters; anything this big is not a frame. */
export const MAX_FRAME_BYTES = 64 * 1024;
export const MAX_TEXT_CHARS = 4096;
/** Optional frames this gateway serves (PROTOCOL.md section 6). */
export const FEATURES = ['pair_code'];

export const MESSAGE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const E164_RE = /^\+[0-9]{8,15}$/;
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

/** Why a `send` frame is invalid (the `error` frame's message), or null. */
export function sendProblem(frame) {
  const { id, to, text } = frame;
  if (typeof id !== 'string' || !MESSAGE_ID_RE.test(id)) {
    return 'id must be 1-64 characters of [A-Za-z0-9_-]';
  }
  if (typeof to !== 'string' || !E164_RE.test(to)) {
    return 'to must be an E.164 number: + then 8-15 digits';
  }
  // Characters as the platform counts them: code points, not UTF-16 units
  // (an emoji is one character, two units).
  const chars = typeof text === 'string' ? [...text].length : 0;
  if (typeof text !== 'string' || chars < 1 || chars > MAX_TEXT_CHARS) {
    return `text must be 1-${MAX_TEXT_CHARS} characters`;
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
