/**
 * Fake WhatsApp endpoints that fail in one way each, for BRIDGE_WA_URL.
 *
 * Every one listens on 127.0.0.1 port 0 and returns `{ url, close() }`:
 * refused (a port that was bound, then released), acceptThenClose (TCP
 * accepted and closed at once), hang (TCP accepted, the upgrade never
 * answered), httpError (the upgrade answered with an HTTP status and the
 * connection closed), wsClose (the upgrade completes, then the server closes
 * the WebSocket) and garbage (the upgrade completes and the server answers
 * Baileys' client hello with a well-framed non-handshake message).
 */
import http from 'node:http';
import net from 'node:net';
import { WebSocketServer } from 'ws';

const PATH = '/ws/chat';

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

function tracked(server) {
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return () =>
    new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
}

export async function refused() {
  const server = net.createServer();
  const port = await listen(server);
  await new Promise((resolve) => server.close(resolve));
  return { url: `ws://127.0.0.1:${port}${PATH}`, close: async () => {} };
}

export async function acceptThenClose() {
  const server = net.createServer((socket) => socket.destroy());
  const close = tracked(server);
  const port = await listen(server);
  return { url: `ws://127.0.0.1:${port}${PATH}`, close };
}

export async function hang() {
  const server = net.createServer(() => {});
  const close = tracked(server);
  const port = await listen(server);
  return { url: `ws://127.0.0.1:${port}${PATH}`, close };
}

export async function httpError(status = 500) {
  const server = http.createServer();
  server.on('upgrade', (req, socket) => {
    socket.end(`HTTP/1.1 ${status} Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  });
  const close = tracked(server);
  const port = await listen(server);
  return { url: `ws://127.0.0.1:${port}${PATH}`, close };
}

async function wsServer(onConnection) {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', onConnection);
  const close = tracked(server);
  const port = await listen(server);
  return {
    url: `ws://127.0.0.1:${port}${PATH}`,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      await close();
    },
  };
}

export function wsClose() {
  return wsServer((ws) => ws.close(1000));
}

export function garbage() {
  // A complete frame by Noise's 3-byte length prefix whose body is no HandshakeMessage.
  return wsServer((ws) => ws.once('message', () => ws.send(Buffer.from([0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]))));
}

/**
 * A WebSocket endpoint that treats its n-th connection as `behaviours[n]`:
 * 'silent' (never answers the client hello), 'garbage' or 'close'.
 */
export function scripted(behaviours) {
  let n = 0;
  return wsServer((ws) => {
    const behaviour = behaviours[Math.min(n, behaviours.length - 1)];
    n += 1;
    if (behaviour === 'close') ws.close(1000);
    else if (behaviour === 'garbage') ws.once('message', () => ws.send(Buffer.from([0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb])));
  });
}
