/**
 * Checking a Curve25519 (XEdDSA) signature, as the fake's phone must.
 *
 * Baileys' own Curve.verify cannot be used for that: libsignal's
 * verifySignature reports a bad signature by returning false, Curve.verify
 * only treats a thrown error as failure, and so accepts every well-formed
 * signature (in Baileys 7.0.0-rc14 this is also why a client does not notice
 * a certificate chain signed by the wrong root).
 */
import libsignal from 'libsignal';

const KEY_TYPE = Buffer.from([5]);

/** True only when `signature` is `publicKey`'s (32 bytes) signature of `message`. */
export function isValidSignature(publicKey, message, signature) {
    try {
        return libsignal.curve.verifySignature(Buffer.concat([KEY_TYPE, publicKey]), message, signature) === true;
    } catch {
        return false;
    }
}
