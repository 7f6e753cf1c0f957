// The upload status machine, mirrored from core/status.py (a test checks they agree).
// Status never moves backwards: publications arrive at least once and out of order.

export const STATUSES = [
  'pending',
  'uploading',
  'uploaded',
  'scanning',
  'processing',
  'ready',
  'failed',
  'quarantined',
  'deleted',
];

export const REASONS = [
  'aborted',
  'expired',
  'infected',
  'type_mismatch',
  'type_not_allowed',
  'too_large',
  'corrupt',
  'decompression_bomb',
  'encrypted',
  'processing_failed',
  'processing_timeout',
  'size_mismatch',
  'checksum_mismatch',
  'scan_limit_exceeded',
  'too_complex',
];

const RANK = Object.fromEntries(STATUSES.map((s, i) => [s, i]));

export function isKnownStatus(status) {
  return Object.prototype.hasOwnProperty.call(RANK, status);
}

export function isTerminal(status) {
  return status === 'ready' || status === 'failed' || status === 'quarantined' || status === 'deleted';
}

/** True when moving `current` → `next` is forward progress (same rules as core.status.can_transition). */
export function canTransition(current, next) {
  if (!isKnownStatus(current) || !isKnownStatus(next)) return false;
  if (current === next || current === 'deleted') return false;
  if (next === 'deleted') return true; // from every status, ready included
  if (current === 'ready' || current === 'quarantined') return false;
  if (current === 'failed') return next === 'quarantined';
  if (next === 'failed' || next === 'quarantined') return true;
  return RANK[next] > RANK[current];
}
