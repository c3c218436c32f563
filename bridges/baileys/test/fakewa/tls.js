/**
 * A self-signed X.509 certificate for 127.0.0.1, made with node:crypto alone
 * (no openssl binary, no key kept in the repository), for the fake media
 * host's HTTPS. Baileys uploads media to `https://<host from media_conn>`;
 * a bridge started by a test trusts this certificate through
 * NODE_EXTRA_CA_CERTS, so nothing in src/ knows of it.
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

function length(n) {
    if (n < 0x80) {
        return Buffer.from([n]);
    }
    const bytes = [];
    for (let rest = n; rest > 0; rest >>= 8) {
        bytes.unshift(rest & 0xff);
    }
    return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag, ...content) {
    const body = Buffer.concat(content);
    return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const sequence = (...items) => tlv(0x30, ...items);
const set = (...items) => tlv(0x31, ...items);

function oid(dotted) {
    const [first, second, ...rest] = dotted.split('.').map(Number);
    const bytes = [first * 40 + second];
    for (const arc of rest) {
        const groups = [];
        for (let value = arc; ; value = Math.floor(value / 128)) {
            groups.unshift(value % 128);
            if (value < 128) {
                break;
            }
        }
        bytes.push(...groups.map((group, i) => (i < groups.length - 1 ? group | 0x80 : group)));
    }
    return tlv(0x06, Buffer.from(bytes));
}

/**
 * A DER INTEGER of the unsigned big-endian `bytes`, in its one valid form:
 * no leading zero byte unless the next byte's top bit is set (OpenSSL
 * refuses a certificate whose serial is padded: "illegal padding").
 */
export function positiveInteger(bytes) {
    let start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) {
        start++;
    }
    const minimal = bytes.subarray(start);
    return tlv(0x02, minimal[0] & 0x80 ? Buffer.concat([Buffer.from([0]), minimal]) : minimal);
}

function utcTime(date) {
    const text = date.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
    return tlv(0x17, Buffer.from(text, 'ascii'));
}

function commonName(name) {
    return sequence(set(sequence(oid('2.5.4.3'), tlv(0x0c, Buffer.from(name, 'utf8')))));
}

const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));

/** `{ key, cert }` (PEM strings) of a fresh certificate for IP 127.0.0.1, valid for `days`; `serial` is its bytes, random by default. */
export function selfSignedCertificate({ name = 'fake WhatsApp media host', days = 7, serial = randomBytes(16) } = {}) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const now = Date.now();
    const subjectAltName = sequence(tlv(0x87, Buffer.from([127, 0, 0, 1])));
    const basicConstraints = sequence(tlv(0x01, Buffer.from([0xff])));
    const tbs = sequence(
        tlv(0xa0, tlv(0x02, Buffer.from([2]))), // version 3
        positiveInteger(serial),
        ECDSA_WITH_SHA256,
        commonName(name),
        sequence(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + days * 86400_000))),
        commonName(name),
        publicKey.export({ type: 'spki', format: 'der' }),
        tlv(
            0xa3,
            sequence(
                sequence(oid('2.5.29.19'), tlv(0x04, basicConstraints)),
                sequence(oid('2.5.29.17'), tlv(0x04, subjectAltName))
            )
        )
    );
    const signature = sign('sha256', tbs, privateKey);
    const der = sequence(tbs, ECDSA_WITH_SHA256, tlv(0x03, Buffer.from([0]), signature));
    const base64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
    return {
        key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
        cert: `-----BEGIN CERTIFICATE-----\n${base64}-----END CERTIFICATE-----\n`
    };
}

/** Writes `cert` to a file in `dir` for NODE_EXTRA_CA_CERTS; returns its path. */
export function writeCertificate(dir, cert) {
    const file = path.join(dir, 'fake-media-host.pem');
    fs.writeFileSync(file, cert);
    return file;
}
