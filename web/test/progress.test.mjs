import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ProgressReporter } from '../src/progress.js';

function harness() {
  let clock = 0;
  const timers = new Map();
  let nextTimer = 1;
  const sent = [];
  const reporter = new ProgressReporter({
    send: (id, bytes) => sent.push([id, bytes]),
    intervalMs: 1000,
    now: () => clock,
    setTimer: (fn, ms) => {
      const id = nextTimer++;
      timers.set(id, { fn, at: clock + ms });
      return id;
    },
    clearTimer: (id) => timers.delete(id),
  });
  const advance = (ms) => {
    clock += ms;
    for (const [id, timer] of [...timers]) {
      if (timer.at <= clock) {
        timers.delete(id);
        timer.fn();
      }
    }
  };
  return { reporter, sent, timers, advance };
}

test('the first value goes at once, later ones at most once an interval, the latest', () => {
  const { reporter, sent, advance } = harness();
  reporter.update('a', 100);
  assert.deepEqual(sent, [['a', 100]]);
  advance(100);
  reporter.update('a', 200);
  reporter.update('a', 300);
  assert.deepEqual(sent, [['a', 100]]);
  advance(900);
  assert.deepEqual(sent, [['a', 100], ['a', 300]]);
});

test('uploads are throttled separately', () => {
  const { reporter, sent } = harness();
  reporter.update('a', 1);
  reporter.update('b', 2);
  assert.deepEqual(sent, [['a', 1], ['b', 2]]);
});

test('the last byte is not reported (S3 event does it) and cancels a pending report', () => {
  const { reporter, sent, timers, advance } = harness();
  reporter.update('a', 10);
  advance(10);
  reporter.update('a', 20);
  assert.equal(timers.size, 1);
  reporter.update('a', 30, true);
  assert.equal(timers.size, 0);
  advance(5000);
  assert.deepEqual(sent, [['a', 10]]);
});

test('stop clears every pending timer', () => {
  const { reporter, sent, timers, advance } = harness();
  reporter.update('a', 1);
  reporter.update('b', 1);
  advance(1);
  reporter.update('a', 2);
  reporter.update('b', 2);
  assert.equal(timers.size, 2);
  reporter.stop();
  assert.equal(timers.size, 0);
  advance(5000);
  assert.equal(sent.length, 2);
});
