/**
 * Baileys' AuthenticationState held in memory: fresh credentials and a key
 * store over a Map, so each test starts from a new, unpaired device and can
 * reconnect with what the previous connection saved.
 */
import { initAuthCreds } from 'baileys/lib/Utils/auth-utils.js';

export function createMemoryAuthState() {
    const creds = initAuthCreds();
    const store = new Map();
    const keys = {
        async get(type, ids) {
            const found = {};
            for (const id of ids) {
                const value = store.get(`${type}/${id}`);
                if (value !== undefined) {
                    found[id] = value;
                }
            }
            return found;
        },
        async set(data) {
            for (const [type, entries] of Object.entries(data)) {
                for (const [id, value] of Object.entries(entries)) {
                    if (value === null || value === undefined) {
                        store.delete(`${type}/${id}`);
                    } else {
                        store.set(`${type}/${id}`, value);
                    }
                }
            }
        }
    };
    return { creds, keys };
}
