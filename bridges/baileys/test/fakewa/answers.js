/**
 * How the fake server answers the iqs a Baileys client sends, the way
 * WhatsApp's server does for a healthy account. Each handler returns the
 * reply, or undefined to stay silent; side effects go through the
 * connection (see connection.js).
 */
import {
    getAllBinaryNodeChildren,
    getBinaryNodeChild,
    getBinaryNodeChildBuffer,
    getBinaryNodeChildren
} from 'baileys/lib/WABinary/index.js';

const SERVER = 's.whatsapp.net';

export function result(iq, content) {
    return { tag: 'iq', attrs: { id: iq.attrs.id, type: 'result', from: SERVER }, content };
}

export function errorReply(iq, code, text) {
    return {
        tag: 'iq',
        attrs: { id: iq.attrs.id, type: 'error', from: SERVER },
        content: [{ tag: 'error', attrs: { code: String(code), text } }]
    };
}

function ping(iq, connection) {
    return connection.answersPings ? result(iq) : undefined;
}

function passive(iq, connection) {
    if (getBinaryNodeChild(iq, 'active')) {
        connection.onActive();
    }
    return result(iq);
}

function encrypt(iq, connection) {
    const companion = connection.companion;
    if (getBinaryNodeChild(iq, 'count')) {
        return result(iq, [{ tag: 'count', attrs: { value: String(companion?.keys.count ?? 0) } }]);
    }
    if (getBinaryNodeChild(iq, 'registration')) {
        companion?.keys.add(iq);
        return result(iq);
    }
    if (getBinaryNodeChild(iq, 'digest')) {
        return result(iq, [{ tag: 'digest', attrs: {} }]);
    }
    if (getBinaryNodeChild(iq, 'rotate')) {
        return result(iq);
    }
    const keyRequest = getBinaryNodeChild(iq, 'key');
    if (keyRequest) {
        const users = getBinaryNodeChildren(keyRequest, 'user')
            .map(({ attrs }) => connection.server.directory.bundleNode(attrs.jid))
            .filter(Boolean);
        return result(iq, [{ tag: 'list', attrs: {}, content: users }]);
    }
    return errorReply(iq, 400, 'bad-request');
}

/** One `<user>` of a usync answer, with the protocols the query asked for. */
function usyncUser(userNode, protocols, directory) {
    const phone = getBinaryNodeChildBuffer(userNode, 'contact')?.toString();
    const account = phone ? directory.byPhone(phone) : directory.byJid(userNode.attrs.jid);
    const jid = account?.pnJid ?? userNode.attrs.jid ?? `${phone?.replace('+', '')}@${SERVER}`;
    const content = [];
    for (const protocol of protocols) {
        if (protocol === 'devices') {
            const devices = (account ? directory.deviceList(account) : []).map(({ id, keyIndex }) => ({
                tag: 'device',
                attrs: keyIndex ? { id: String(id), 'key-index': String(keyIndex) } : { id: String(id) }
            }));
            content.push({ tag: 'devices', attrs: {}, content: [{ tag: 'device-list', attrs: {}, content: devices }] });
        } else if (protocol === 'lid' && account) {
            content.push({ tag: 'lid', attrs: { val: account.lidJid } });
        } else if (protocol === 'contact') {
            content.push({ tag: 'contact', attrs: { type: account ? 'in' : 'out' } });
        }
    }
    return { tag: 'user', attrs: { jid }, content };
}

function usync(iq, connection) {
    const query = getBinaryNodeChild(iq, 'usync');
    const protocols = getAllBinaryNodeChildren(getBinaryNodeChild(query, 'query')).map(n => n.tag);
    const users = getBinaryNodeChildren(getBinaryNodeChild(query, 'list'), 'user').map(u =>
        usyncUser(u, protocols, connection.server.directory)
    );
    return result(iq, [
        {
            tag: 'usync',
            attrs: { ...query.attrs, last: 'true', index: '0' },
            content: [
                { tag: 'result', attrs: {} },
                { tag: 'list', attrs: {}, content: users }
            ]
        }
    ]);
}

function props(iq) {
    return result(iq, [{ tag: 'props', attrs: { protocol: '1' }, content: [] }]);
}

function blocklist(iq) {
    return result(iq, [{ tag: 'list', attrs: {}, content: [] }]);
}

const PRIVACY = { readreceipts: 'all', last: 'all', online: 'all', profile: 'all', status: 'all', groupadd: 'all' };

function privacy(iq) {
    if (iq.attrs.type === 'get' && getBinaryNodeChild(iq, 'privacy')) {
        const categories = Object.entries(PRIVACY).map(([name, value]) => ({ tag: 'category', attrs: { name, value } }));
        return result(iq, [{ tag: 'privacy', attrs: {}, content: categories }]);
    }
    return result(iq);
}

function md(iq, connection) {
    const codeStage = getBinaryNodeChild(iq, 'link_code_companion_reg');
    if (codeStage?.attrs.stage === 'companion_hello') {
        const ref = connection.onPairingCodeRequest(codeStage);
        return result(iq, [
            {
                tag: 'link_code_companion_reg',
                attrs: {},
                content: [{ tag: 'link_code_pairing_ref', attrs: {}, content: Buffer.from(ref) }]
            }
        ]);
    }
    if (codeStage?.attrs.stage === 'companion_finish') {
        connection.onPairingCodeFinish(codeStage);
        return result(iq);
    }
    const removal = getBinaryNodeChild(iq, 'remove-companion-device');
    if (removal) {
        connection.onLogout(removal);
        return result(iq);
    }
    return errorReply(iq, 400, 'bad-request');
}

/**
 * Where to upload media: the fake's media host when a test started one
 * (media.js); without one, the query fails as any unknown iq does.
 */
function mediaConn(iq, connection) {
    const host = connection.server.mediaHost;
    if (!host || !getBinaryNodeChild(iq, 'media_conn')) {
        return errorReply(iq, 501, 'feature-not-implemented');
    }
    return result(iq, [
        {
            tag: 'media_conn',
            attrs: { auth: host.auth, ttl: '300', auth_ttl: '3600', max_buckets: '12' },
            content: [{ tag: 'host', attrs: { hostname: host.hostname, maxContentLengthBytes: String(100 * 1024 * 1024) } }]
        }
    ]);
}

const HANDLERS = {
    'w:p': ping,
    'w:m': mediaConn,
    passive,
    encrypt,
    usync,
    abt: props,
    blocklist,
    privacy,
    md,
    'w:stats': iq => result(iq)
};

/**
 * The reply to `iq`, undefined for none; iqs of other namespaces get
 * feature-not-implemented, so a client waiting on one fails fast and
 * visibly instead of timing out. A namespace the test refused
 * (`wa.refuseIqs`) gets that error instead.
 */
export function answerIq(iq, connection) {
    const refusal = connection.server.iqRefusals.get(iq.attrs.xmlns);
    if (refusal) {
        return errorReply(iq, refusal.code, refusal.text);
    }
    const handler = HANDLERS[iq.attrs.xmlns];
    return handler ? handler(iq, connection) : errorReply(iq, 501, 'feature-not-implemented');
}
