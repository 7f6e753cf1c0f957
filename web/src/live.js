// Live updates through the stock centrifuge SDK on the server's Centrifugo-protocol hub.

import { Centrifuge } from 'centrifuge';

export function websocketUrl(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/connection/websocket`;
}

/**
 * Subscribe to `project:<id>`. `onPublication(data)` gets each publication;
 * `onResync()` is called whenever the subscription is (re)established without every
 * missed publication recovered, so the page must reload the list over HTTP;
 * `onState(state)` gets 'connecting' | 'connected' | 'disconnected'.
 */
export function connectLive({ url, token, projectId, userId, onPublication, onUserPublication, onResync, onState, onError }) {
  const client = new Centrifuge(url, { token, name: 'buildpeer-dashboard' });
  client.on('connecting', () => onState('connecting'));
  client.on('connected', () => onState('connected'));
  client.on('disconnected', () => onState('disconnected'));
  client.on('error', (ctx) => onError?.(ctx.error));
  const sub = client.newSubscription(`project:${projectId}`, { recoverable: true, positioned: true });
  sub.on('subscribed', (ctx) => {
    if (!ctx.recovered) onResync();
  });
  sub.on('publication', (ctx) => onPublication(ctx.data));
  sub.on('error', (ctx) => onError?.(ctx.error));
  sub.subscribe();
  // The caller's own channel: the inbox (new items, unread count).
  const mine = userId && onUserPublication ? client.newSubscription(`user:${userId}`) : null;
  if (mine) {
    mine.on('publication', (ctx) => onUserPublication(ctx.data));
    mine.on('error', (ctx) => onError?.(ctx.error));
    mine.subscribe();
  }
  client.connect();
  return {
    client,
    subscription: sub,
    close() {
      sub.unsubscribe();
      mine?.unsubscribe();
      client.disconnect();
    },
  };
}
