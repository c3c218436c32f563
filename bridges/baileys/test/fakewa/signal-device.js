/**
 * One WhatsApp device's end-to-end identity: real libsignal keys and
 * sessions held in memory, so that what Baileys encrypts for the device can
 * be read back, and what the device sends Baileys must be decrypted for real.
 */
import libsignal from 'libsignal';
import { proto } from 'baileys/WAProto/index.js';
import { encodeBigEndian, unpadRandomMax16, writeRandomPadMax16 } from 'baileys/lib/Utils/generics.js';
import { getBinaryNodeChild, getBinaryNodeChildBuffer, getBinaryNodeChildren, getBinaryNodeChildUInt } from 'baileys/lib/WABinary/index.js';

const { keyhelper, ProtocolAddress, SessionBuilder, SessionCipher } = libsignal;
const KEY_TYPE = 5;
const ONE_TIME_PREKEYS = 5;

/** A 32-byte wire key as libsignal's 33-byte key (type prefix). */
function signalKey(wireKey) {
    const key = Buffer.from(wireKey);
    return key.length === 33 ? key : Buffer.concat([Buffer.from([KEY_TYPE]), key]);
}

/** A libsignal 33-byte key as WhatsApp sends it on the wire. */
function wireKey(key) {
    return Buffer.from(key).subarray(key.length - 32);
}

/** The libsignal storage interface over plain maps; every identity is trusted. */
class MemorySignalStore {
    constructor(identityKeyPair, registrationId, signedPreKey, preKeys) {
        this.identityKeyPair = identityKeyPair;
        this.registrationId = registrationId;
        this.signedPreKey = signedPreKey;
        this.preKeys = new Map(preKeys.map(k => [k.keyId, k.keyPair]));
        this.sessions = new Map();
    }

    async getOurIdentity() {
        return this.identityKeyPair;
    }

    async getOurRegistrationId() {
        return this.registrationId;
    }

    async isTrustedIdentity() {
        return true;
    }

    async loadSession(address) {
        return this.sessions.get(address);
    }

    async storeSession(address, record) {
        this.sessions.set(address, record);
    }

    async loadPreKey(keyId) {
        return this.preKeys.get(keyId);
    }

    async removePreKey(keyId) {
        this.preKeys.delete(keyId);
    }

    async loadSignedPreKey(keyId) {
        return keyId === this.signedPreKey.keyId ? this.signedPreKey.keyPair : undefined;
    }
}

export class SignalDevice {
    constructor() {
        const identity = keyhelper.generateIdentityKeyPair();
        const signedPreKey = keyhelper.generateSignedPreKey(identity, 1);
        const preKeys = Array.from({ length: ONE_TIME_PREKEYS }, (_, i) => keyhelper.generatePreKey(i + 1));
        this.store = new MemorySignalStore(identity, keyhelper.generateRegistrationId(), signedPreKey, preKeys);
        /** One-time prekeys the server has not yet handed to anyone. */
        this.unclaimedPreKeys = preKeys.map(k => k.keyId);
    }

    /**
     * This device's prekey bundle as the `<user>` of an `encrypt` key
     * answer, using up one one-time prekey as WhatsApp's server does.
     */
    bundleNode(jid) {
        const { identityKeyPair, registrationId, signedPreKey, preKeys } = this.store;
        const content = [
            { tag: 'registration', attrs: {}, content: encodeBigEndian(registrationId) },
            { tag: 'type', attrs: {}, content: Buffer.from([KEY_TYPE]) },
            { tag: 'identity', attrs: {}, content: wireKey(identityKeyPair.pubKey) },
            {
                tag: 'skey',
                attrs: {},
                content: [
                    { tag: 'id', attrs: {}, content: encodeBigEndian(signedPreKey.keyId, 3) },
                    { tag: 'value', attrs: {}, content: wireKey(signedPreKey.keyPair.pubKey) },
                    { tag: 'signature', attrs: {}, content: Buffer.from(signedPreKey.signature) }
                ]
            }
        ];
        const oneTime = this.unclaimedPreKeys.shift();
        if (oneTime !== undefined) {
            content.push({
                tag: 'key',
                attrs: {},
                content: [
                    { tag: 'id', attrs: {}, content: encodeBigEndian(oneTime, 3) },
                    { tag: 'value', attrs: {}, content: wireKey(preKeys.get(oneTime).pubKey) }
                ]
            });
        }
        return { tag: 'user', attrs: { jid }, content };
    }

    /**
     * Decrypts an `<enc>` node sent to this device by `senderAddress` (any
     * stable name for the sending device) into the WhatsApp Message.
     */
    async decrypt(senderAddress, encNode) {
        const cipher = new SessionCipher(this.store, new ProtocolAddress(senderAddress, 0));
        const ciphertext = Buffer.from(encNode.content);
        const padded =
            encNode.attrs.type === 'pkmsg'
                ? await cipher.decryptPreKeyWhisperMessage(ciphertext)
                : await cipher.decryptWhisperMessage(ciphertext);
        return proto.Message.decode(unpadRandomMax16(padded));
    }

    /**
     * Encrypts `message` for another device, opening a session on first use
     * with the bundle `claimBundle()` returns (see UploadedKeys.claim).
     * @returns {Promise<{ tag: 'enc', attrs: object, content: Buffer }>}
     */
    async encryptFor(recipientAddress, claimBundle, message) {
        const address = new ProtocolAddress(recipientAddress, 0);
        if (!(await this.store.loadSession(address.toString()))) {
            await new SessionBuilder(this.store, address).initOutgoing(claimBundle());
        }
        const plaintext = writeRandomPadMax16(proto.Message.encode(message).finish());
        const { type, body } = await new SessionCipher(this.store, address).encrypt(Buffer.from(plaintext));
        return { tag: 'enc', attrs: { v: '2', type: type === 3 ? 'pkmsg' : 'msg' }, content: Buffer.from(body) };
    }
}

/**
 * The keys a client uploaded with `encrypt` set iqs, as WhatsApp's server
 * keeps them: the identity and signed prekey, and one-time prekeys that are
 * each handed out once.
 */
export class UploadedKeys {
    constructor() {
        this.bundle = undefined;
        this.preKeys = [];
    }

    /** Takes in one upload iq (the first, or a later top-up). */
    add(iq) {
        const skey = getBinaryNodeChild(iq, 'skey');
        this.bundle = {
            registrationId: getBinaryNodeChildUInt(iq, 'registration', 4),
            identityKey: signalKey(getBinaryNodeChildBuffer(iq, 'identity')),
            signedPreKey: {
                keyId: getBinaryNodeChildUInt(skey, 'id', 3),
                publicKey: signalKey(getBinaryNodeChildBuffer(skey, 'value')),
                signature: Buffer.from(getBinaryNodeChildBuffer(skey, 'signature'))
            }
        };
        for (const key of getBinaryNodeChildren(getBinaryNodeChild(iq, 'list'), 'key')) {
            this.preKeys.push({
                keyId: getBinaryNodeChildUInt(key, 'id', 3),
                publicKey: signalKey(getBinaryNodeChildBuffer(key, 'value'))
            });
        }
    }

    get count() {
        return this.preKeys.length;
    }

    /** A bundle for libsignal's SessionBuilder, using up one one-time prekey. */
    claim() {
        if (!this.bundle) {
            throw new Error('the device has uploaded no keys');
        }
        const preKey = this.preKeys.shift();
        return preKey ? { ...this.bundle, preKey } : { ...this.bundle };
    }
}
