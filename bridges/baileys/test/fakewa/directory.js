/**
 * Who is on the fake WhatsApp: the hosted account's phone and the contacts
 * it talks to, looked up the ways the server's queries need.
 */
import { jidDecode } from 'baileys/lib/WABinary/index.js';

export class Directory {
    /** @param {import('./phone.js').FakePhone} phone */
    constructor(phone) {
        this.phone = phone;
        /** @type {import('./contact.js').FakeContact[]} */
        this.contacts = [];
    }

    get accounts() {
        return [this.phone, ...this.contacts];
    }

    /** The account a PN or LID jid (of any device) belongs to. */
    byJid(jid) {
        const user = jidDecode(jid)?.user;
        return user ? this.accounts.find(a => a.pnUser === user || a.lidUser === user) : undefined;
    }

    /** The account registered under an E.164 number ("+62..."). */
    byPhone(e164) {
        const digits = e164.replace(/^\+/, '');
        return this.accounts.find(a => a.pnUser === digits);
    }

    /** The devices usync lists for an account: its phone, then linked companions. */
    deviceList(account) {
        const devices = [{ id: 0 }];
        if (account === this.phone) {
            for (const companion of this.phone.companions.values()) {
                if (companion.linked) {
                    devices.push({ id: companion.deviceId, keyIndex: companion.keyIndex });
                }
            }
        }
        return devices;
    }

    /**
     * The primary (device 0) Signal device behind a jid, and whether it
     * belongs to a contact, i.e. is an addressee rather than the account's own phone.
     */
    primaryDevice(jid) {
        const decoded = jidDecode(jid);
        const account = this.byJid(jid);
        if (!account || (decoded.device ?? 0) !== 0) {
            return undefined;
        }
        return { device: account.device, addressee: account !== this.phone };
    }

    /** The prekey bundle answer for a jid, if the server holds keys for it. */
    bundleNode(jid) {
        return this.primaryDevice(jid)?.device.bundleNode(jid);
    }
}
