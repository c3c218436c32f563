/**
 * The server's half of WhatsApp's Noise handshake
 * (Noise_XX_25519_AESGCM_SHA256 with WhatsApp's prologue), and the transport
 * ciphers it yields.
 *
 * The hashing, key mixing and nonce rules mirror the client in Baileys'
 * Utils/noise-handler.js, but the symmetric primitives come from node:crypto,
 * so a client that strayed from standard HKDF or AES-GCM would fail here.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import { proto } from 'baileys/WAProto/index.js';
import { NOISE_MODE, NOISE_WA_HEADER } from 'baileys/lib/Defaults/index.js';
import { Curve } from 'baileys/lib/Utils/crypto.js';

const { HandshakeMessage } = proto;
const TAG_LENGTH = 16;

function nonce(counter) {
    const iv = Buffer.alloc(12);
    iv.writeUInt32BE(counter, 8);
    return iv;
}

function sealGCM(key, counter, plaintext, ad) {
    const cipher = createCipheriv('aes-256-gcm', key, nonce(counter));
    cipher.setAAD(ad);
    return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function openGCM(key, counter, ciphertext, ad) {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce(counter));
    decipher.setAAD(ad);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_LENGTH));
    return Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - TAG_LENGTH)), decipher.final()]);
}

function hkdf64(ikm, salt) {
    const out = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.alloc(0), 64));
    return [out.subarray(0, 32), out.subarray(32)];
}

/** Noise's SymmetricState: the running hash, chaining key and cipher key. */
class SymmetricState {
    constructor() {
        const mode = Buffer.from(NOISE_MODE);
        this.hash = mode.length === 32 ? mode : createHash('sha256').update(mode).digest();
        this.chainingKey = this.hash;
        this.key = this.hash;
        this.counter = 0;
    }

    mixHash(data) {
        this.hash = createHash('sha256').update(this.hash).update(data).digest();
    }

    mixKey(inputKeyMaterial) {
        [this.chainingKey, this.key] = hkdf64(inputKeyMaterial, this.chainingKey);
        this.counter = 0;
    }

    encryptAndHash(plaintext) {
        const ciphertext = sealGCM(this.key, this.counter++, plaintext, this.hash);
        this.mixHash(ciphertext);
        return ciphertext;
    }

    decryptAndHash(ciphertext) {
        const plaintext = openGCM(this.key, this.counter++, ciphertext, this.hash);
        this.mixHash(ciphertext);
        return plaintext;
    }

    split() {
        return hkdf64(Buffer.alloc(0), this.chainingKey);
    }
}

/** One direction of the transport: AES-GCM with a counting nonce, no AD. */
class CipherState {
    constructor(key) {
        this.key = key;
        this.counter = 0;
    }

    seal(plaintext) {
        return sealGCM(this.key, this.counter++, plaintext, Buffer.alloc(0));
    }

    open(ciphertext) {
        return openGCM(this.key, this.counter++, ciphertext, Buffer.alloc(0));
    }
}

/**
 * The responder's side of one handshake.
 *
 * `respond(clientHelloBytes)` returns the ServerHello to send;
 * `finish(clientFinishBytes)` returns the client's static key, its decrypted
 * ClientPayload and the transport ciphers.
 */
export class NoiseResponder {
    /**
     * @param {{ staticKeyPair: { public: Buffer, private: Buffer }, certChain: Uint8Array }} options
     */
    constructor({ staticKeyPair, certChain }) {
        this.staticKeyPair = staticKeyPair;
        this.certChain = certChain;
        this.state = new SymmetricState();
        this.state.mixHash(NOISE_WA_HEADER);
    }

    respond(clientHelloBytes) {
        const { clientHello } = HandshakeMessage.decode(clientHelloBytes);
        if (!clientHello?.ephemeral?.length) {
            throw new Error('expected a ClientHello with an ephemeral key');
        }
        const clientEphemeral = Buffer.from(clientHello.ephemeral);
        this.ephemeral = Curve.generateKeyPair();
        this.state.mixHash(clientEphemeral);
        this.state.mixHash(this.ephemeral.public);
        this.state.mixKey(Curve.sharedKey(this.ephemeral.private, clientEphemeral));
        const staticCiphertext = this.state.encryptAndHash(this.staticKeyPair.public);
        this.state.mixKey(Curve.sharedKey(this.staticKeyPair.private, clientEphemeral));
        const payloadCiphertext = this.state.encryptAndHash(this.certChain);
        return HandshakeMessage.encode({
            serverHello: { ephemeral: this.ephemeral.public, static: staticCiphertext, payload: payloadCiphertext }
        }).finish();
    }

    finish(clientFinishBytes) {
        const { clientFinish } = HandshakeMessage.decode(clientFinishBytes);
        if (!clientFinish?.static?.length || !clientFinish?.payload?.length) {
            throw new Error('expected a ClientFinish with a static key and a payload');
        }
        const clientStatic = this.state.decryptAndHash(Buffer.from(clientFinish.static));
        this.state.mixKey(Curve.sharedKey(this.ephemeral.private, clientStatic));
        const payload = proto.ClientPayload.decode(this.state.decryptAndHash(Buffer.from(clientFinish.payload)));
        const [clientToServer, serverToClient] = this.state.split();
        return {
            clientStatic,
            payload,
            incoming: new CipherState(clientToServer),
            outgoing: new CipherState(serverToClient)
        };
    }
}
