// Drives the stock `centrifuge` SDK against the hub. Commands arrive on stdin as JSON lines
// ({"op": "connect" | "disconnect" | "subscribe" | "unsubscribe" | "exit", ...}); every SDK
// event is printed on stdout as one JSON line, so a Python test can script a session.
'use strict';

const readline = require('readline');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');

const url = process.env.HUB_URL;
let token = process.env.HUB_TOKEN;
// Optional: a transport list (JSON, centrifuge-js's [{transport, endpoint}]) for the
// bidirectional emulation fallback, its /emulation URL, and HUB_FRAMES=1 to print every
// WebSocket frame received (sizes on the wire).
const transports = process.env.HUB_TRANSPORTS ? JSON.parse(process.env.HUB_TRANSPORTS) : null;
const { EventSource } = require('eventsource');
const { ReadableStream } = require('stream/web');

function out(event, payload) {
  process.stdout.write(JSON.stringify({ event, ...payload }) + '\n');
}

class FrameCountingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (e) => {
      const text = typeof e.data === 'string' ? e.data : Buffer.from(e.data).toString();
      out('frame', { bytes: Buffer.byteLength(e.data), text });
    });
  }
}

const client = new Centrifuge(transports || url, {
  websocket: process.env.HUB_FRAMES ? FrameCountingWebSocket : WebSocket,
  fetch,
  readableStream: ReadableStream,
  eventsource: EventSource,
  ...(process.env.HUB_EMULATION ? { emulationEndpoint: process.env.HUB_EMULATION } : {}),
  token,
  getToken: async () => token,
  minReconnectDelay: 100,
  maxReconnectDelay: 1000,
});

client.on('connected', (ctx) => out('connected', { client: ctx.client, transport: ctx.transport }));
client.on('connecting', (ctx) => out('connecting', { code: ctx.code, reason: ctx.reason }));
client.on('disconnected', (ctx) => out('disconnected', { code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => out('error', { type: ctx.type, error: ctx.error }));

const subs = {};

function subscribe(channel, delta) {
  const sub = client.newSubscription(channel, { recoverable: true, positioned: true, ...(delta ? { delta } : {}) });
  sub.on('subscribed', (ctx) =>
    out('subscribed', {
      channel,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      streamPosition: ctx.streamPosition,
    })
  );
  sub.on('subscribing', (ctx) => out('subscribing', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('unsubscribed', (ctx) => out('unsubscribed', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => out('sub_error', { channel, type: ctx.type, error: ctx.error }));
  sub.on('publication', (ctx) => out('publication', { channel, offset: ctx.offset, data: ctx.data }));
  sub.subscribe();
  subs[channel] = sub;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = JSON.parse(line);
  switch (cmd.op) {
    case 'connect':
      client.connect();
      break;
    case 'disconnect':
      client.disconnect();
      break;
    case 'token':
      token = cmd.token;
      break;
    case 'subscribe':
      subscribe(cmd.channel, cmd.delta);
      break;
    case 'unsubscribe':
      subs[cmd.channel].unsubscribe();
      client.removeSubscription(subs[cmd.channel]);
      delete subs[cmd.channel];
      break;
    case 'exit':
      client.disconnect();
      process.exit(0);
  }
  out('ack', { op: cmd.op });
});
rl.on('close', () => {
  client.disconnect();
  process.exit(0);
});
