/**
 * Preload for a bridge started by a test:
 *
 *     node --import ./test/fakewa/trust-test-root.js src/main.js
 *
 * with the variables of rootEnvironment(root) set, so that the bridge's
 * Baileys accepts the fake WhatsApp server signed by that root. It refuses to
 * load without them: a preload that silently trusted nothing would turn every
 * handshake into a confusing certificate failure.
 */
import { ROOT_KEY_ENV, ROOT_SERIAL_ENV, trustTestRoot } from './trust.js';

const keyHex = process.env[ROOT_KEY_ENV] ?? '';
const serial = Number(process.env[ROOT_SERIAL_ENV]);
if (!/^[0-9a-f]{64}$/i.test(keyHex) || !Number.isInteger(serial) || serial < 0) {
    throw new Error(`${ROOT_KEY_ENV} (64 hex digits) and ${ROOT_SERIAL_ENV} (an integer) must be set`);
}
trustTestRoot({ publicKey: Buffer.from(keyHex, 'hex'), serial });
