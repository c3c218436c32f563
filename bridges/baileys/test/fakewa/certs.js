/**
 * A test certificate authority for the Noise handshake.
 *
 * WhatsApp's server proves itself with a two-link chain: an intermediate
 * certificate signed by WhatsApp's long-term root key (pinned in Baileys as
 * WA_CERT_DETAILS) and a leaf, signed by the intermediate, naming the
 * server's static Noise key. The fake server carries the same chain under a
 * root generated for the test run, which tests trust through ./trust.js.
 */
import { proto } from 'baileys/WAProto/index.js';
import { Curve } from 'baileys/lib/Utils/crypto.js';

const { CertChain } = proto;
const { Details } = CertChain.NoiseCertificate;

const DAY_S = 24 * 60 * 60;

/**
 * A fresh root: the key pair that signs intermediates, and the serial that
 * intermediates name as their issuer.
 * @returns {{ publicKey: Buffer, privateKey: Buffer, serial: number }}
 */
export function createTestRoot(serial = 1) {
    const { public: publicKey, private: privateKey } = Curve.generateKeyPair();
    return { publicKey, privateKey, serial };
}

/**
 * Encoded CertChain for a server whose static Noise key is `serverStaticPublic`.
 * @param {{ privateKey: Buffer, serial: number }} root
 * @param {Uint8Array} serverStaticPublic
 * @returns {Uint8Array}
 */
export function issueCertChain(root, serverStaticPublic) {
    const now = Math.floor(Date.now() / 1000);
    const validity = { notBefore: now - DAY_S, notAfter: now + DAY_S };
    const intermediateKey = Curve.generateKeyPair();
    const intermediate = signed(root.privateKey, {
        serial: root.serial + 1,
        issuerSerial: root.serial,
        key: intermediateKey.public,
        ...validity
    });
    const leaf = signed(intermediateKey.private, {
        serial: root.serial + 2,
        issuerSerial: root.serial + 1,
        key: serverStaticPublic,
        ...validity
    });
    return CertChain.encode({ leaf, intermediate }).finish();
}

function signed(signerPrivateKey, details) {
    const encoded = Details.encode(details).finish();
    return { details: encoded, signature: Curve.sign(signerPrivateKey, encoded) };
}
