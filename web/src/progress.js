// Throttled progress reports to the server (POST /api/v1/uploads/{id}/progress), so other
// viewers of the project see a bar move: per upload at most one report per interval, always
// the latest value, none after the last byte (S3's ObjectCreated event reports that one).
// Clock and timers are injected (the unit test drives them by hand).

export class ProgressReporter {
  constructor({
    send,
    intervalMs = 1000,
    // Wrapped: a browser's setTimeout called as a method of another object throws.
    now = () => Date.now(),
    setTimer = (fn, ms) => setTimeout(fn, ms),
    clearTimer = (id) => clearTimeout(id),
  }) {
    this.send = send;
    this.intervalMs = intervalMs;
    this.now = now;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.state = new Map(); // upload id → {at, sent, latest, timer}
  }

  /** Uppy reported `bytes` of `uploadId`; `final` when they are all of them. */
  update(uploadId, bytes, final = false) {
    const state = this.state.get(uploadId) ?? { at: -Infinity, sent: -1, latest: -1, timer: null };
    this.state.set(uploadId, state);
    state.latest = bytes;
    if (final) {
      this.forget(uploadId);
      return;
    }
    if (state.timer !== null) return; // the pending report will carry the latest value
    const wait = this.intervalMs - (this.now() - state.at);
    if (wait <= 0) this.flush(uploadId);
    else state.timer = this.setTimer(() => this.flush(uploadId), wait);
  }

  flush(uploadId) {
    const state = this.state.get(uploadId);
    if (!state) return;
    state.timer = null;
    state.at = this.now();
    if (state.latest === state.sent) return;
    state.sent = state.latest;
    this.send(uploadId, state.sent);
  }

  /** No more reports for this upload (done, failed or cancelled). */
  forget(uploadId) {
    const state = this.state.get(uploadId);
    if (state?.timer != null) this.clearTimer(state.timer);
    this.state.delete(uploadId);
  }

  /** Stops every pending report (the page leaves the project). */
  stop() {
    for (const id of [...this.state.keys()]) this.forget(id);
  }
}
