/**
 * A fake WhatsApp Web server for offline tests of the Baileys bridge: start
 * it with startFakeWhatsApp({ root }) after trustTestRoot(root).
 */
export { createTestRoot } from './certs.js';
export { FakeWhatsApp, startFakeWhatsApp } from './server.js';
export { rootEnvironment, trustTestRoot } from './trust.js';
export { createMemoryAuthState } from './memory-auth.js';
export { FakeMediaHost } from './media.js';
export { selfSignedCertificate, writeCertificate } from './tls.js';
