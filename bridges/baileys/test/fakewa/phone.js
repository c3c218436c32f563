/**
 * The WhatsApp account the fake server hosts: its primary phone, which links
 * companion devices (the Baileys client under test) by QR or pairing code,
 * and the companions it has linked.
 */
import { Curve } from 'baileys/lib/Utils/crypto.js';
import { jidEncode } from 'baileys/lib/WABinary/index.js';
import { isCountersigned, openKeyBundle, parseQr, signDeviceIdentity, unwrapWithCode, wrapWithCode } from './pairing.js';
import { SignalDevice, UploadedKeys } from './signal-device.js';

/** A linked companion device, as the server remembers it across connections. */
export class Companion {
    constructor({ phone, deviceId, noiseKey, identityKey }) {
        this.deviceId = deviceId;
        this.noiseKey = noiseKey;
        this.identityKey = identityKey;
        this.pnJid = jidEncode(phone.pnUser, 's.whatsapp.net', deviceId);
        this.lidJid = jidEncode(phone.lidUser, 'lid', deviceId);
        /** Prekeys the companion uploaded, handed out to senders one by one. */
        this.keys = new UploadedKeys();
        /** Set once the companion countersigned its identity. */
        this.linked = false;
    }
}

export class FakePhone {
    /**
     * @param {{ pnUser: string, lidUser: string, platform?: string }} options
     */
    constructor({ pnUser, lidUser, platform = 'android' }) {
        this.pnUser = pnUser;
        this.lidUser = lidUser;
        this.platform = platform;
        this.pnJid = jidEncode(pnUser, 's.whatsapp.net');
        this.lidJid = jidEncode(lidUser, 'lid');
        /** The account's signature key, which vouches for every linked device. */
        this.accountKey = Curve.generateKeyPair();
        /** The phone itself as device 0, which receives copies of what companions send. */
        this.device = new SignalDevice();
        /** Linked (and being linked) companions by device id. */
        this.companions = new Map();
        this.nextDeviceId = 1;
        this.keyIndex = 0;
    }

    /** The companion a login ClientPayload names, if linked and holding that noise key. */
    companionFor(payload, noiseKey) {
        if (String(payload.username) !== this.pnUser) {
            return undefined;
        }
        const companion = this.companions.get(Number(payload.device ?? 0));
        return companion?.linked && companion.noiseKey.equals(noiseKey) ? companion : undefined;
    }

    /** Forgets a companion, as "log out" on either side does. */
    unlink(deviceId) {
        this.companions.delete(deviceId);
    }

    /**
     * Starts linking the companion behind a scanned QR.
     * @returns {{ ref: string, companion: Companion, deviceIdentity: Uint8Array }}
     */
    scan(qr) {
        const { ref, noiseKey, identityKey, advSecretKey } = parseQr(qr);
        return { ref, ...this.link({ noiseKey, identityKey, advSecretKey }) };
    }

    /** The signed identity for a new companion, registered as not yet linked. */
    link({ noiseKey, identityKey, advSecretKey }) {
        const companion = new Companion({ phone: this, deviceId: this.nextDeviceId++, noiseKey, identityKey });
        companion.keyIndex = ++this.keyIndex;
        this.companions.set(companion.deviceId, companion);
        const deviceIdentity = signDeviceIdentity({
            accountKey: this.accountKey,
            companionIdentityKey: identityKey,
            advSecretKey,
            rawId: Number(this.lidUser.slice(-9)),
            keyIndex: companion.keyIndex
        });
        return { companion, deviceIdentity };
    }

    /** Completes linking once the companion countersigned its identity. */
    confirm(companion, encodedIdentity) {
        companion.linked = isCountersigned(encodedIdentity, {
            accountKey: this.accountKey,
            companionIdentityKey: companion.identityKey
        });
        return companion.linked;
    }

    /** The phone's Signal identity as a Curve key pair with a 32-byte public key. */
    get identity() {
        const { pubKey, privKey } = this.device.store.identityKeyPair;
        return { public: Buffer.from(pubKey).subarray(1), private: Buffer.from(privKey) };
    }

    /**
     * The first half of pairing by code, once the user typed `code`: the
     * companion's ephemeral key as recovered with it, and the phone's own
     * ephemeral key, wrapped for the companion.
     */
    enterCode(code, wrappedCompanionEphemeral) {
        const ephemeral = Curve.generateKeyPair();
        return {
            ephemeral,
            companionEphemeralPublic: unwrapWithCode(code, wrappedCompanionEphemeral),
            wrappedPhoneEphemeral: wrapWithCode(code, ephemeral.public)
        };
    }

    /**
     * The second half: the companion's key bundle opened, the ADV secret
     * derived, and the companion registered for its pair-success.
     */
    finishCode({ ephemeral, companionEphemeralPublic, wrappedBundle, noiseKey }) {
        const { companionIdentityKey, advSecretKey } = openKeyBundle({
            wrappedBundle,
            phoneEphemeral: ephemeral,
            companionEphemeralPublic,
            phoneIdentity: this.identity
        });
        return this.link({ noiseKey, identityKey: companionIdentityKey, advSecretKey });
    }
}
