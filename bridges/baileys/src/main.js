/**
 * The bridge process: `node src/main.js`.
 *
 * Reads the settings (a bad one: one line on stderr, exit 2), opens the store
 * (a key that does not open it: the same), listens, and logs
 * `bridge listening on HOST:PORT` with the port actually bound (BRIDGE_PORT=0
 * picks a free one). SIGTERM and SIGINT close every session with 1001, end
 * the Baileys sockets, close the store and exit 0.
 *
 * An error that escapes every session's guard (Baileys runs some of its own
 * handlers detached) is logged and survived: one bad connection must not
 * take down the sessions of every other instance.
 */
import { ConfigError, loadConfig } from './config.js';
import { errorFields, makeLogger } from './log.js';
import { Bridge } from './server.js';
import { StoreKeyMismatch, openStore } from './store.js';

const BAD_SETTINGS = 2;

function die(message) {
  process.stderr.write(`${message}\n`);
  process.exit(BAD_SETTINGS);
}

/**
 * Libraries under Baileys write to the console directly: libsignal prints
 * "Closing session: SessionEntry {...}" with the session's private keys,
 * past the logger's redaction. Console output goes through the logger at
 * debug level instead, with the leading text only, never the objects.
 */
export function quietConsole(log) {
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    console[method] = (first) => {
      const text = typeof first === 'string' ? first.slice(0, 80) : typeof first;
      log.debug({ text }, 'LIBRARY-CONSOLE');
    };
  }
}

async function main() {
  let config;
  try {
    config = loadConfig(process.env, process.cwd());
  } catch (err) {
    if (err instanceof ConfigError) die(err.message);
    throw err;
  }
  const log = makeLogger(config.logLevel);
  let store;
  try {
    store = await openStore(config.store, config.storeKey);
  } catch (err) {
    if (err instanceof StoreKeyMismatch) die(`BRIDGE_STORE_KEY: does not open the store at ${config.store.path} (it was written with another key)`);
    die(`BRIDGE_STORE: cannot open ${config.store.path}: ${err.message}`);
  }
  quietConsole(log);
  process.on('unhandledRejection', (err) => log.error(errorFields(err), 'UNHANDLED-REJECTION'));
  process.on('uncaughtException', (err) => log.error(errorFields(err), 'UNCAUGHT-EXCEPTION'));

  const bridge = new Bridge({ config, store, log });
  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, sessions: bridge.sessions.size }, 'STOPPING');
    await bridge.shutdown();
    log.info('STOPPED');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  let address;
  try {
    address = await bridge.listen();
  } catch (err) {
    await store.close();
    die(`BRIDGE_PORT: cannot listen on ${config.host}:${config.port}: ${err.message}`);
  }
  log.info({ host: address.address, port: address.port }, `bridge listening on ${address.address}:${address.port}`);
}

main();
