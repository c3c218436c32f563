/**
 * The close code a session ends with, from the reason Baileys gives for a
 * disconnect (PROTOCOL.md sections 4 and 6).
 *
 * Baileys' `DisconnectReason` values are HTTP-like status codes; the protocol's
 * codes are the same numbers offset by 4000, with a few exceptions that exist
 * because Baileys reuses one number for several faults. Nothing here does I/O.
 */

/** Baileys status codes that pass straight through, and the two WhatsApp
 * failure reasons that the protocol folds into a neighbour. */
const PASS_THROUGH = new Map([
  [401, 4401], // logged out: the caller deletes the stored credentials
  [402, 4402], // temporarily banned
  [403, 4403], // forbidden
  [405, 4405], // client outdated
  [408, 4408], // timed out, or connection lost (Baileys uses 408 for both)
  [411, 4411], // multi-device mismatch
  [428, 4428], // connection closed
  [440, 4440], // connection replaced (stream error "conflict")
  [503, 4503], // service unavailable
  [515, 4515], // restart required (after pairing)
  [406, 4403], // banned: terminal like forbidden
  [409, 4405], // client not accepted: terminal like outdated
]);

/** The transient code for faults the protocol has no better word for. */
export const UNAVAILABLE = 4503;
/** The code that makes the platform forget the pairing. */
export const BAD_SESSION = 4500;
/** The code of a pairing that ended: the credentials are deleted with it. */
export const LOGGED_OUT = 4401;

/**
 * The protocol close code for a Baileys disconnect.
 *
 * `statusCode` is Boom's `output.statusCode` of Baileys' `lastDisconnect.error`
 * (undefined when the error is not a Boom). Baileys reports 500 ("bad session")
 * for TLS errors, sockets closed while connecting and stream errors without a
 * code too, so 500 becomes 4500 only when `credentialsCorrupt` says the stored
 * credentials really are unreadable; otherwise it is transient, as is any code
 * not listed, a missing one included.
 */
export function closeCodeFor(statusCode, { credentialsCorrupt = false } = {}) {
  if (statusCode === 500) {
    return credentialsCorrupt ? BAD_SESSION : UNAVAILABLE;
  }
  return PASS_THROUGH.get(statusCode) ?? UNAVAILABLE;
}
