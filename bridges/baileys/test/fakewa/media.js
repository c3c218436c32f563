/**
 * The fake's media host: where Baileys uploads a media message's encrypted
 * file before it sends the message, as it does to WhatsApp's
 * `mmg.whatsapp.net`. The fake's answer to the `media_conn` iq names it
 * (see answers.js) when a test started one with `wa.startMediaHost()`.
 *
 * HTTPS on 127.0.0.1 with a fresh self-signed certificate (tls.js): a client
 * must trust `certificate` (a bridge child process: NODE_EXTRA_CA_CERTS).
 * Each upload (`POST /mms/<type>/<token>?auth=...`) is kept in `uploads`
 * and answered with a `url` and `direct_path` as WhatsApp answers them.
 * `decrypt(upload, mediaKey)` opens one with the message's key, as a
 * recipient's device would.
 */
import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import https from 'node:https';
import { getMediaKeys } from 'baileys/lib/Utils/messages-media.js';
import { selfSignedCertificate } from './tls.js';

const MAC_BYTES = 10;

export class FakeMediaHost extends EventEmitter {
    constructor() {
        super();
        const { key, cert } = selfSignedCertificate();
        /** The PEM certificate a client must trust. */
        this.certificate = cert;
        this.auth = randomBytes(16).toString('base64url');
        /** @type {{ type: string, token: string, auth: string, body: Buffer }[]} */
        this.uploads = [];
        this.server = https.createServer({ key, cert }, (req, res) => this.onRequest(req, res));
        this.sockets = new Set();
        this.server.on('connection', socket => {
            this.sockets.add(socket);
            socket.on('close', () => this.sockets.delete(socket));
        });
    }

    async listen() {
        this.server.listen(0, '127.0.0.1');
        await once(this.server, 'listening');
        return this;
    }

    /** The `hostname` the media_conn answer gives: host and port. */
    get hostname() {
        return `127.0.0.1:${this.server.address().port}`;
    }

    onRequest(req, res) {
        const url = new URL(req.url, `https://${this.hostname}`);
        const match = /^\/mms\/([a-z]+)\/([^/]+)$/.exec(url.pathname);
        if (req.method !== 'POST' || !match) {
            res.writeHead(404).end();
            return;
        }
        const chunks = [];
        req.on('data', chunk => chunks.push(chunk));
        req.on('end', () => {
            const upload = { type: match[1], token: decodeURIComponent(match[2]), auth: url.searchParams.get('auth'), body: Buffer.concat(chunks) };
            if (upload.auth !== this.auth) {
                res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":"bad auth"}');
                return;
            }
            this.uploads.push(upload);
            this.emit('upload', upload);
            const path = `/v/t62.7118-24/${randomBytes(8).toString('hex')}.enc`;
            res.writeHead(200, { 'Content-Type': 'application/json' });
            res.end(JSON.stringify({ url: `https://${this.hostname}${path}`, direct_path: path }));
        });
    }

    /**
     * The plain file of an `upload`, decrypted with the message's `mediaKey`
     * as a recipient does; throws when its MAC does not verify.
     */
    static async decrypt(upload, mediaKey, mediaType = upload.type) {
        const { cipherKey, iv, macKey } = await getMediaKeys(mediaKey, mediaType);
        const enc = upload.body.subarray(0, -MAC_BYTES);
        const mac = createHmac('sha256', macKey).update(iv).update(enc).digest().subarray(0, MAC_BYTES);
        if (!mac.equals(upload.body.subarray(-MAC_BYTES))) {
            throw new Error('the upload does not verify under this media key');
        }
        const decipher = createDecipheriv('aes-256-cbc', cipherKey, iv);
        return Buffer.concat([decipher.update(enc), decipher.final()]);
    }

    async close() {
        for (const socket of this.sockets) {
            socket.destroy();
        }
        await new Promise(resolve => this.server.close(() => resolve()));
    }
}
