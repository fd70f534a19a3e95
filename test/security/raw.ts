// One raw HTTP/1.1 exchange over TCP, for requests fetch() refuses to send (odd request targets, forged Host).

import { connect } from 'node:net';

/** Sends `request` as is and resolves with what came back before the server closed or 2 s of silence. */
export function rawRequest(port: number, request: string | Buffer, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    let out = '';
    const done = (): void => {
      s.destroy();
      resolve(out);
    };
    s.setTimeout(2000, done);
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      // One complete answer is enough.
      if (/\r\n\r\n/.test(out) && (/content-length: 0\r\n/i.test(out) || /\r\n0\r\n\r\n$/.test(out) || /\}$/.test(out))) done();
    });
    s.on('error', done);
    s.on('close', () => resolve(out));
    s.write(request);
  });
}
