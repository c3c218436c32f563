/**
 * The test-only seam that makes Baileys trust a test root.
 *
 * Baileys checks the server's certificate chain against WA_CERT_DETAILS, an
 * exported object of its Defaults module. This import resolves to the very
 * module instance the library itself loaded, so changing the object here is
 * seen by every socket the process opens. Production code never imports it.
 */
import { WA_CERT_DETAILS } from 'baileys/lib/Defaults/index.js';

/**
 * Trust `root` in place of WhatsApp's root, until the returned function runs.
 * @param {{ publicKey: Uint8Array, serial: number }} root
 * @returns {() => void} restores WhatsApp's own root
 */
export function trustTestRoot(root) {
    const saved = { PUBLIC_KEY: WA_CERT_DETAILS.PUBLIC_KEY, SERIAL: WA_CERT_DETAILS.SERIAL };
    WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(root.publicKey);
    WA_CERT_DETAILS.SERIAL = root.serial;
    return () => Object.assign(WA_CERT_DETAILS, saved);
}

/** Environment variables that carry a test root into a child process. */
export const ROOT_KEY_ENV = 'FAKE_WA_ROOT_PUBLIC_KEY';
export const ROOT_SERIAL_ENV = 'FAKE_WA_ROOT_SERIAL';

/**
 * The environment a child process needs so that ./trust-test-root.js,
 * preloaded with `node --import`, trusts `root`.
 */
export function rootEnvironment(root) {
    return { [ROOT_KEY_ENV]: Buffer.from(root.publicKey).toString('hex'), [ROOT_SERIAL_ENV]: String(root.serial) };
}
