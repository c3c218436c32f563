/**
 * Messages through the fake server: what a companion sends (decrypted for
 * each recipient device, then acked and receipted as a script says), and
 * what a contact sends the companion.
 */
import { randomBytes } from 'node:crypto';
import { getBinaryNodeChild, getBinaryNodeChildren } from 'baileys/lib/WABinary/index.js';

function now() {
    return String(Math.floor(Date.now() / 1000));
}

/** The text a WhatsApp Message shows, if it is a text message. */
export function textOf(message) {
    const inner = message?.deviceSentMessage?.message ?? message;
    return inner?.conversation ?? inner?.extendedTextMessage?.text ?? undefined;
}

/**
 * A `message` stanza a companion sent, with each `<to>` decrypted by the
 * device it was encrypted for. The companion hears nothing back until the
 * script calls ack() or reject().
 */
export class OutgoingMessage {
    constructor(connection, stanza, recipients) {
        this.connection = connection;
        this.stanza = stanza;
        this.id = stanza.attrs.id;
        this.to = stanza.attrs.to;
        /** @type {{ jid: string, message?: object, error?: Error }[]} */
        this.recipients = recipients;
        this.answered = false;
    }

    /** The text as the addressee's own device reads it. */
    get text() {
        return textOf(this.content);
    }

    /** The whole WhatsApp Message as the addressee's own device reads it (e.g. its imageMessage). */
    get content() {
        const addressee = this.recipients.find(r => r.addressee && r.message);
        return addressee?.message?.deviceSentMessage?.message ?? addressee?.message;
    }

    /** The server's acceptance: `<ack class="message">`. */
    ack() {
        this.answer({});
    }

    /** The server's refusal: an ack carrying `error`, e.g. 479 or 463. */
    reject(error) {
        this.answer({ error: String(error) });
    }

    answer(extra) {
        if (this.answered) {
            throw new Error(`message ${this.id} was already answered`);
        }
        this.answered = true;
        this.connection.send({
            tag: 'ack',
            attrs: { class: 'message', id: this.id, from: this.to, t: now(), ...extra }
        });
    }

    /** The addressee's receipt: delivered (no type) or 'read'. */
    receipt(type) {
        const attrs = { id: this.id, from: this.to, t: now() };
        if (type && type !== 'delivery') {
            attrs.type = type;
        }
        this.connection.send({ tag: 'receipt', attrs });
    }
}

/**
 * Decrypts each `<to>` of `stanza` with the device it names.
 * @param {(jid: string) => ({ device: import('./signal-device.js').SignalDevice, addressee: boolean } | undefined)} deviceFor
 */
export async function openParticipants(stanza, senderAddress, deviceFor) {
    const recipients = [];
    for (const to of getBinaryNodeChildren(getBinaryNodeChild(stanza, 'participants'), 'to')) {
        const { jid } = to.attrs;
        const target = deviceFor(jid);
        const enc = getBinaryNodeChild(to, 'enc');
        if (!target || !enc) {
            recipients.push({ jid, error: new Error(`no device or no enc for ${jid}`) });
            continue;
        }
        try {
            const message = await target.device.decrypt(senderAddress, enc);
            recipients.push({ jid, addressee: target.addressee, message });
        } catch (error) {
            recipients.push({ jid, addressee: target.addressee, error });
        }
    }
    return recipients;
}

/** A fresh id in the form WhatsApp clients give their messages. */
export function messageId() {
    return `3EB0${randomBytes(9).toString('hex').toUpperCase()}`;
}

/** The stanza that carries a contact's encrypted message to a companion. */
export function inboundStanza({ contact, enc, id = messageId() }) {
    return {
        tag: 'message',
        attrs: { from: contact.pnJid, id, t: now(), type: 'text', notify: contact.pushName, sender_lid: contact.lidJid },
        content: [enc]
    };
}
