/**
 * The bridge's logger: pino, one JSON line per event.
 *
 * Each event is a fixed upper-case marker in `msg` (`OPEN`, `CLOSE`, `READY`,
 * ...) with `instance=` and `session=` fields. Tokens, the store key and
 * credentials are never passed to it; the redaction list is a second line of
 * defence for fields that might carry one by accident (Baileys' own objects
 * included).
 */
import pino from 'pino';

const REDACT = [
  'token',
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'creds',
  'storeKey',
  'key.private',
  '*.private',
  '*.privKey',
  '*.noiseKey',
  '*.signedIdentityKey',
  '*.advSecretKey',
];

/** The root logger at `level`, writing to stdout (or `destination`). */
export function makeLogger(level, destination = pino.destination({ dest: 1, sync: true })) {
  return pino(
    {
      level,
      base: { name: 'bridge' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** An error as log fields: its name, message and Baileys status, never its payload. */
export function errorFields(err) {
  return {
    error: err?.name ?? typeof err,
    reason: typeof err?.message === 'string' ? err.message.slice(0, 300) : String(err),
    status: err?.output?.statusCode,
  };
}
