/**
 * What the primary phone computes when it links a companion device, by QR
 * or by pairing code. Pure functions over keys and bytes.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, pbkdf2Sync, randomBytes } from 'node:crypto';
import { proto } from 'baileys/WAProto/index.js';
import { Curve } from 'baileys/lib/Utils/crypto.js';
import { isValidSignature } from './xeddsa.js';

const ACCOUNT_SIGNATURE_PREFIX = Buffer.from([6, 0]);
const DEVICE_SIGNATURE_PREFIX = Buffer.from([6, 1]);
const QR_PREFIX = 'https://wa.me/settings/linked_devices#';
const CODE_KEY_ITERATIONS = 2 << 16;

/**
 * The fields of a linking QR as the phone's camera reads them.
 * @returns {{ ref: string, noiseKey: Buffer, identityKey: Buffer, advSecretKey: Buffer, platformId: string }}
 */
export function parseQr(qr) {
    if (!qr.startsWith(QR_PREFIX)) {
        throw new Error(`not a linking QR: ${qr}`);
    }
    const [ref, noiseKey, identityKey, advSecretKey, platformId] = qr.slice(QR_PREFIX.length).split(',');
    return {
        ref,
        noiseKey: Buffer.from(noiseKey, 'base64'),
        identityKey: Buffer.from(identityKey, 'base64'),
        advSecretKey: Buffer.from(advSecretKey, 'base64'),
        platformId
    };
}

/**
 * The `device-identity` content of a pair-success: the account's signature
 * over the new device's details and identity key, sealed with an HMAC under
 * the companion's ADV secret so the companion knows the phone saw its QR.
 */
export function signDeviceIdentity({ accountKey, companionIdentityKey, advSecretKey, rawId, keyIndex }) {
    const details = proto.ADVDeviceIdentity.encode({
        rawId,
        timestamp: Math.floor(Date.now() / 1000),
        keyIndex,
        accountType: proto.ADVEncryptionType.E2EE,
        deviceType: proto.ADVEncryptionType.E2EE
    }).finish();
    const accountSignature = Curve.sign(
        accountKey.private,
        Buffer.concat([ACCOUNT_SIGNATURE_PREFIX, details, companionIdentityKey])
    );
    const signed = proto.ADVSignedDeviceIdentity.encode({
        details,
        accountSignatureKey: accountKey.public,
        accountSignature
    }).finish();
    const hmac = createHmac('sha256', advSecretKey).update(signed).digest();
    return proto.ADVSignedDeviceIdentityHMAC.encode({ details: signed, hmac }).finish();
}

/**
 * Whether the identity a companion sent back in pair-device-sign carries its
 * own valid signature over the details the account signed.
 */
export function isCountersigned(encodedIdentity, { accountKey, companionIdentityKey }) {
    const { details, deviceSignature } = proto.ADVSignedDeviceIdentity.decode(encodedIdentity);
    if (!details?.length || !deviceSignature?.length) {
        return false;
    }
    const message = Buffer.concat([DEVICE_SIGNATURE_PREFIX, details, companionIdentityKey, accountKey.public]);
    return isValidSignature(companionIdentityKey, message, deviceSignature);
}

function codeKey(code, salt) {
    return pbkdf2Sync(Buffer.from(code, 'utf8'), salt, CODE_KEY_ITERATIONS, 32, 'sha256');
}

/**
 * The companion's ephemeral key from the `link_code_pairing_wrapped_companion_ephemeral_pub`
 * of its pairing-code request, as the phone recovers it once the user types
 * `code`. A wrong code yields a different, useless key, as on a real phone.
 */
export function unwrapWithCode(code, wrapped) {
    const salt = wrapped.subarray(0, 32);
    const iv = wrapped.subarray(32, 48);
    const decipher = createDecipheriv('aes-256-ctr', codeKey(code, salt), iv);
    return Buffer.concat([decipher.update(wrapped.subarray(48, 80)), decipher.final()]);
}

/** The phone's ephemeral key, wrapped under `code` the same way. */
export function wrapWithCode(code, publicKey) {
    const salt = randomBytes(32);
    const iv = randomBytes(16);
    const cipher = createCipheriv('aes-256-ctr', codeKey(code, salt), iv);
    return Buffer.concat([salt, iv, cipher.update(publicKey), cipher.final()]);
}

/**
 * Opens the companion's `link_code_pairing_wrapped_key_bundle` and derives
 * the ADV secret both sides now share.
 * @returns {{ companionIdentityKey: Buffer, advSecretKey: Buffer }}
 */
export function openKeyBundle({ wrappedBundle, phoneEphemeral, companionEphemeralPublic, phoneIdentity }) {
    const companionShared = Curve.sharedKey(phoneEphemeral.private, companionEphemeralPublic);
    const salt = wrappedBundle.subarray(0, 32);
    const iv = wrappedBundle.subarray(32, 44);
    const sealed = wrappedBundle.subarray(44);
    const key = Buffer.from(hkdfSync('sha256', companionShared, salt, 'link_code_pairing_key_bundle_encryption_key', 32));
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const bundle = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]);
    const companionIdentityKey = bundle.subarray(0, 32);
    if (!bundle.subarray(32, 64).equals(phoneIdentity.public)) {
        throw new Error('the key bundle names another primary identity');
    }
    const random = bundle.subarray(64, 96);
    const identityShared = Curve.sharedKey(phoneIdentity.private, companionIdentityKey);
    const advSecretKey = Buffer.from(
        hkdfSync('sha256', Buffer.concat([companionShared, identityShared, random]), Buffer.alloc(0), 'adv_secret', 32)
    );
    return { companionIdentityKey, advSecretKey };
}
