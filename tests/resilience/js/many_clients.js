// N stock `centrifuge` SDK clients in one Node process, all subscribed (recoverable,
// positioned) to one channel. Prints {"event": "ready"} once every client is subscribed;
// on stdin {"op": "report"} prints one line with what each client received, {"op": "summary"}
// the fewest and most publications any client holds (cheap to poll with thousands of
// clients); {"op": "exit"} disconnects everyone. Modules come from tests/js (npm ci there).
'use strict';

const path = require('path');
const readline = require('readline');

const modules = path.resolve(__dirname, '..', '..', 'js', 'node_modules');
const WebSocket = require(path.join(modules, 'ws'));
const { Centrifuge } = require(path.join(modules, 'centrifuge'));

const url = process.env.HUB_URL;
const token = process.env.HUB_TOKEN;
const channel = process.env.HUB_CHANNEL;
const count = parseInt(process.env.HUB_CLIENTS, 10);

function out(event, payload) {
  process.stdout.write(JSON.stringify({ event, ...payload }) + '\n');
}

const clients = [];
let subscribedOnce = 0;

for (let i = 0; i < count; i++) {
  // disconnects: every reconnect; lateDisconnects: those after the first subscribe (a
  // connect that timed out on a loaded machine before it subscribed is not a lost server)
  const state = { n: [], offsets: [], subscribed: [], disconnects: 0, lateDisconnects: 0, errors: [] };
  const client = new Centrifuge(url, {
    websocket: WebSocket,
    token,
    minReconnectDelay: 100,
    maxReconnectDelay: 2000,
    timeout: 10000,
  });
  client.on('connecting', (ctx) => {
    if (ctx.code !== 0) {
      state.disconnects += 1;
      if (state.subscribed.length > 0) state.lateDisconnects += 1;
    }
  });
  const sub = client.newSubscription(channel, { recoverable: true, positioned: true });
  sub.on('subscribed', (ctx) => {
    state.subscribed.push({ wasRecovering: ctx.wasRecovering, recovered: ctx.recovered });
    if (state.subscribed.length === 1) {
      subscribedOnce += 1;
      if (subscribedOnce === count) out('ready', {});
    }
  });
  sub.on('error', (ctx) => state.errors.push(ctx.error));
  sub.on('publication', (ctx) => {
    state.n.push(ctx.data.n);
    state.offsets.push(ctx.offset);
  });
  sub.subscribe();
  client.connect();
  clients.push({ client, state });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === 'report') {
    out('report', { clients: clients.map((c) => c.state) });
  } else if (cmd.op === 'summary') {
    const counts = clients.map((c) => c.state.offsets.length);
    out('summary', { least: Math.min(...counts), most: Math.max(...counts) });
  } else if (cmd.op === 'exit') {
    for (const c of clients) c.client.disconnect();
    process.exit(0);
  }
});
rl.on('close', () => process.exit(0));
