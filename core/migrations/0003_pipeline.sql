-- Processing pipeline: a transactional outbox for the events the processors publish, so a
-- step result and "its event will be published" commit together (a crash between the
-- commit and the SNS publish is repaired by the next delivery or by the sweeper).

CREATE TABLE pipeline_outbox (
  tenant_id    uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  event_id     uuid NOT NULL,
  upload_id    uuid NOT NULL,
  event_type   text NOT NULL CHECK (event_type IN ('upload.completed', 'upload.failed', 'processing.completed')),
  payload      jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  PRIMARY KEY (event_id),
  FOREIGN KEY (tenant_id, upload_id) REFERENCES uploads (tenant_id, upload_id) ON DELETE CASCADE
);
CREATE INDEX pipeline_outbox_pending ON pipeline_outbox (tenant_id, created_at) WHERE published_at IS NULL;
CREATE INDEX pipeline_outbox_upload ON pipeline_outbox (upload_id) WHERE published_at IS NULL;

ALTER TABLE pipeline_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pipeline_outbox USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- The sweeper looks for uploads stuck in scanning/processing.
CREATE INDEX uploads_in_processing ON uploads (updated_at) WHERE status IN ('scanning', 'processing');
