-- Notifications (issue 6): exactly-once push sends and digest retry bookkeeping.

-- One row per (event, device): the push notifier claims it before sending, so a
-- redelivered event never reaches the same device twice. No foreign key to
-- device_tokens: a device deleted after FCM answered UNREGISTERED keeps its history.
CREATE TABLE push_deliveries (
  tenant_id    uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  event_id     uuid NOT NULL,
  device_id    uuid NOT NULL,
  user_id      uuid NOT NULL,
  state        text NOT NULL CHECK (state IN ('sending', 'sent', 'failed', 'dropped')),
  attempts     integer NOT NULL DEFAULT 1,
  message_name text,
  error        text,
  claimed_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, device_id)
);
CREATE INDEX push_deliveries_age ON push_deliveries (updated_at);

ALTER TABLE push_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE push_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON push_deliveries USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- Digest deliveries: a failed send is retried after retry_at.
ALTER TABLE digest_deliveries ADD COLUMN retry_at timestamptz;
