/**
 * WhatsApp's framing under the Noise layer: every frame is a 3-byte
 * big-endian length and its bytes, and the client's very first frame is
 * preceded by an intro: the WA header ("WA", version, dictionary version),
 * itself preceded by an "ED" edge-routing block when the client has routing
 * info from an earlier session.
 */
import { NOISE_WA_HEADER } from 'baileys/lib/Defaults/index.js';

const LENGTH_BYTES = 3;
const MAX_FRAME = (1 << 24) - 1;

/** `payload` with its length prefix. */
export function encodeFrame(payload) {
    if (payload.length > MAX_FRAME) {
        throw new Error(`frame of ${payload.length} bytes is too large`);
    }
    const frame = Buffer.alloc(LENGTH_BYTES + payload.length);
    frame.writeUIntBE(payload.length, 0, LENGTH_BYTES);
    frame.set(payload, LENGTH_BYTES);
    return frame;
}

/**
 * Splits the client's byte stream into frames, whatever WebSocket messages
 * the bytes arrived in. `push(bytes)` returns the frames completed so far.
 */
export class ClientFrameReader {
    constructor() {
        this.buffer = Buffer.alloc(0);
        this.introSeen = false;
    }

    push(bytes) {
        this.buffer = Buffer.concat([this.buffer, bytes]);
        if (!this.introSeen && !this.readIntro()) {
            return [];
        }
        const frames = [];
        while (this.buffer.length >= LENGTH_BYTES) {
            const size = this.buffer.readUIntBE(0, LENGTH_BYTES);
            if (this.buffer.length < LENGTH_BYTES + size) {
                break;
            }
            frames.push(this.buffer.subarray(LENGTH_BYTES, LENGTH_BYTES + size));
            this.buffer = this.buffer.subarray(LENGTH_BYTES + size);
        }
        return frames;
    }

    /** Consumes the intro once it is complete; throws when it is not WhatsApp's. */
    readIntro() {
        let offset = 0;
        if (this.buffer.subarray(0, 2).toString('latin1') === 'ED') {
            if (this.buffer.length < 7) {
                return false;
            }
            const routingLength = (this.buffer[4] << 16) | this.buffer.readUInt16BE(5);
            if (this.buffer.length < 7 + routingLength) {
                return false;
            }
            offset = 7 + routingLength;
        }
        if (this.buffer.length < offset + NOISE_WA_HEADER.length) {
            return false;
        }
        const header = this.buffer.subarray(offset, offset + NOISE_WA_HEADER.length);
        if (!header.equals(NOISE_WA_HEADER)) {
            throw new Error(`unexpected intro header ${header.toString('hex')}`);
        }
        this.buffer = this.buffer.subarray(offset + NOISE_WA_HEADER.length);
        this.introSeen = true;
        return true;
    }
}
