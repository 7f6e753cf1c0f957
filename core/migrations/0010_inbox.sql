-- In-app inbox (issue 15): every notification a user receives (each push, each digest's
-- headline) is kept here for 90 days; the digest scheduler's housekeeping purges older rows.

CREATE TABLE inbox_items (
  tenant_id   uuid NOT NULL,
  item_id     uuid NOT NULL DEFAULT gen_random_uuid(),
  -- Paging order: a sequence is monotonic across concurrent inserts (created_at is not),
  -- so a cursor on (seq) never skips or repeats an item.
  seq         bigint GENERATED ALWAYS AS IDENTITY,
  user_id     uuid NOT NULL,
  source_key  text NOT NULL CHECK (length(source_key) BETWEEN 1 AND 200),  -- event id, digest:<date>
  kind        text NOT NULL CHECK (kind IN ('upload.failed', 'upload.quarantined',
                                            'processing.completed', 'digest')),
  critical    boolean NOT NULL DEFAULT false,
  project_id  uuid,
  upload_id   uuid,
  title       text NOT NULL,
  body        text NOT NULL,
  locale      text NOT NULL CHECK (locale IN ('es', 'pt-BR', 'en')),
  data        jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  read_at     timestamptz,
  archived_at timestamptz,
  PRIMARY KEY (item_id),
  UNIQUE (user_id, source_key),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX inbox_items_user_seq ON inbox_items (tenant_id, user_id, seq DESC)
  WHERE archived_at IS NULL;
CREATE INDEX inbox_items_unread ON inbox_items (tenant_id, user_id)
  WHERE read_at IS NULL AND archived_at IS NULL;
CREATE INDEX inbox_items_age ON inbox_items (created_at);

ALTER TABLE inbox_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE inbox_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON inbox_items USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- Push deliveries held back while the user is live in the app (read there: never sent).
ALTER TABLE push_deliveries DROP CONSTRAINT push_deliveries_state_check;
ALTER TABLE push_deliveries ADD CONSTRAINT push_deliveries_state_check
  CHECK (state IN ('sending', 'sent', 'failed', 'dropped', 'suppressed'));

-- Device tokens: the last successful FCM send; tokens with neither a send nor a
-- re-registration (last_seen_at) for 270 days are pruned.
ALTER TABLE device_tokens ADD COLUMN last_success_at timestamptz;
