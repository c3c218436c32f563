/**
 * A local stand-in for the platform's signed media links: an HTTP server on
 * 127.0.0.1 that serves the files a test puts on it, counts every request,
 * and can answer as a broken link does.
 *
 *     const files = await startFileServer();
 *     const url = files.put('/m/abc', buffer);              // 200, Content-Length
 *     files.put('/m/short', buffer, { length: n + 1 });     // announces n + 1 bytes, sends n, closes
 *     files.put('/m/long', buffer, { chunked: true });      // no Content-Length
 *     files.put('/m/gone', null, { status: 404 });
 *     files.put('/m/slow', buffer, { stallMs: 5000 });      // headers, then nothing for 5 s
 *     files.requests('/m/abc')                              // how many GETs it had
 */
import http from 'node:http';
import { once } from 'node:events';

export async function startFileServer() {
  const routes = new Map();
  const counts = new Map();
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://files');
    counts.set(pathname, (counts.get(pathname) ?? 0) + 1);
    const route = routes.get(pathname);
    if (!route) {
      res.writeHead(404).end('no such file');
      return;
    }
    const { body, status = 200, length, chunked = false, stallMs = 0, headers = {} } = route;
    if (status !== 200) {
      res.writeHead(status, headers).end(body ?? '');
      return;
    }
    const head = { 'Content-Type': 'application/octet-stream', ...headers };
    if (!chunked) head['Content-Length'] = String(length ?? body.length);
    res.writeHead(200, head);
    const finish = () => {
      if (length !== undefined && length > body.length) {
        res.write(body);
        res.destroy(); // fewer bytes than announced
      } else {
        res.end(body);
      }
    };
    if (stallMs > 0) {
      res.flushHeaders();
      setTimeout(finish, stallMs).unref();
    } else {
      finish();
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    /** Serves `body` at `path` (see the module docstring for `options`); returns its URL. */
    put(path, body, options = {}) {
      routes.set(path, { body, ...options });
      return `${base}${path}`;
    },
    requests: (path) => counts.get(path) ?? 0,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
