/**
 * Another WhatsApp user the account talks to: a phone number, its LID, and
 * one primary device with real Signal keys.
 */
import { jidEncode } from 'baileys/lib/WABinary/index.js';
import { SignalDevice } from './signal-device.js';

export class FakeContact {
    /**
     * @param {{ pnUser: string, lidUser: string, pushName?: string }} options
     */
    constructor({ pnUser, lidUser, pushName = `Contact ${pnUser.slice(-4)}` }) {
        this.pnUser = pnUser;
        this.lidUser = lidUser;
        this.pushName = pushName;
        this.pnJid = jidEncode(pnUser, 's.whatsapp.net');
        this.lidJid = jidEncode(lidUser, 'lid');
        this.device = new SignalDevice();
    }
}
