-- Pinned versions (issue 12): the processors record the one S3 object version they process
-- (the first one any of them claims; every later step reads that version only), whether the
-- sha256 they computed matched the one the client declared, and every later ObjectCreated
-- for the same original that they refused (the newer version is deleted from S3).

-- declared_sha256 is the API's column (0008_declared_checksums.sql); the processors read it
-- through to_jsonb(uploads) so they work before and after it exists.
ALTER TABLE uploads
  ADD COLUMN scanned_version_id text,
  ADD COLUMN scanned_etag text,
  ADD COLUMN sha256_verified boolean;  -- NULL: nothing declared (or not checked yet); true:
                                       -- sha256 = declared_sha256; false: mismatch (failed)

-- One row per refused object version (the audit record of an overwrite); the primary key
-- makes the four processors that each receive the event record it once.
CREATE TABLE overwrite_rejections (
  tenant_id      uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  upload_id      uuid NOT NULL,
  object_version text NOT NULL,
  version_id     text,
  etag           text,
  size_bytes     bigint,
  upload_status  text NOT NULL,
  pinned_version_id text,
  processor      text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (upload_id, object_version),
  FOREIGN KEY (tenant_id, upload_id) REFERENCES uploads (tenant_id, upload_id) ON DELETE CASCADE
);
CREATE INDEX overwrite_rejections_tenant ON overwrite_rejections (tenant_id, created_at);

ALTER TABLE overwrite_rejections ENABLE ROW LEVEL SECURITY;
ALTER TABLE overwrite_rejections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON overwrite_rejections USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
