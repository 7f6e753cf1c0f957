-- Foundation schema. Every table carries tenant_id; row-level security is enabled and
-- forced on every tenant table, keyed on the transaction-local setting app.tenant_id.
-- The application connects as buildpeer_app (no superuser, no BYPASSRLS, not the owner).

-- Tables created by this and later migrations are usable by the application role.
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO buildpeer_app;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT ON SEQUENCES TO buildpeer_app;
GRANT USAGE ON SCHEMA public TO buildpeer_app;

CREATE OR REPLACE FUNCTION current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE AS $$
  SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid
$$;

CREATE TABLE tenants (
  tenant_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  timezone   text NOT NULL DEFAULT 'America/Mexico_City',
  locale     text NOT NULL DEFAULT 'es' CHECK (locale IN ('es', 'pt-BR', 'en')),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  tenant_id  uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  user_id    uuid NOT NULL DEFAULT gen_random_uuid(),
  email      text NOT NULL CHECK (position('@' in email) > 1),
  role       text NOT NULL CHECK (role IN ('admin', 'field_worker', 'investor')),
  locale     text CHECK (locale IN ('es', 'pt-BR', 'en')),
  timezone   text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id),
  UNIQUE (tenant_id, user_id),
  UNIQUE (tenant_id, email)
);

CREATE TABLE projects (
  tenant_id  uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  project_id uuid NOT NULL DEFAULT gen_random_uuid(),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id),
  UNIQUE (tenant_id, project_id)
);

CREATE TABLE project_members (
  tenant_id  uuid NOT NULL,
  project_id uuid NOT NULL,
  user_id    uuid NOT NULL,
  added_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, user_id),
  FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, project_id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX project_members_user ON project_members (tenant_id, user_id);

CREATE TABLE uploads (
  tenant_id           uuid NOT NULL,
  upload_id           uuid NOT NULL DEFAULT gen_random_uuid(),
  project_id          uuid NOT NULL,
  uploader_id         uuid NOT NULL,
  file_name           text NOT NULL,
  declared_type       text NOT NULL,
  sniffed_type        text,
  size_bytes          bigint NOT NULL CHECK (size_bytes >= 0),
  s3_key              text NOT NULL,
  multipart_upload_id text,
  part_size           bigint,
  status              text NOT NULL DEFAULT 'pending' CHECK (status IN
                        ('pending', 'uploading', 'uploaded', 'scanning', 'processing',
                         'ready', 'failed', 'quarantined')),
  reason_code         text,
  parts_done          integer NOT NULL DEFAULT 0,
  bytes_done          bigint NOT NULL DEFAULT 0,
  sha256              text,
  metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
  version             bigint NOT NULL DEFAULT 1,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  last_activity_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (upload_id),
  UNIQUE (tenant_id, upload_id),
  UNIQUE (s3_key),
  FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, project_id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, uploader_id) REFERENCES users (tenant_id, user_id)
);
CREATE INDEX uploads_project_created ON uploads (tenant_id, project_id, created_at DESC, upload_id);
CREATE INDEX uploads_status_activity ON uploads (status, last_activity_at);
CREATE INDEX uploads_multipart ON uploads (multipart_upload_id) WHERE multipart_upload_id IS NOT NULL;

-- One row per processor and object version: the processors' idempotency record and the
-- input of the status reducer.
CREATE TABLE processing_steps (
  tenant_id    uuid NOT NULL,
  upload_id    uuid NOT NULL,
  processor    text NOT NULL CHECK (processor IN ('scan', 'metadata', 'image', 'document')),
  object_version text NOT NULL DEFAULT '',
  state        text NOT NULL CHECK (state IN ('running', 'done', 'skipped', 'failed')),
  reason_code  text,
  result       jsonb NOT NULL DEFAULT '{}'::jsonb,
  attempts     integer NOT NULL DEFAULT 1,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  PRIMARY KEY (upload_id, processor),
  FOREIGN KEY (tenant_id, upload_id) REFERENCES uploads (tenant_id, upload_id) ON DELETE CASCADE
);

CREATE TABLE derivatives (
  tenant_id  uuid NOT NULL,
  upload_id  uuid NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('thumb-200', 'thumb-800', 'preview', 'text')),
  s3_key     text NOT NULL,
  mime_type  text NOT NULL,
  width      integer,
  height     integer,
  size_bytes bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (upload_id, kind),
  FOREIGN KEY (tenant_id, upload_id) REFERENCES uploads (tenant_id, upload_id) ON DELETE CASCADE
);

CREATE TABLE device_tokens (
  tenant_id  uuid NOT NULL,
  device_id  uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id    uuid NOT NULL,
  token      text NOT NULL CHECK (length(token) BETWEEN 1 AND 4096),
  platform   text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
  locale     text CHECK (locale IN ('es', 'pt-BR', 'en')),
  created_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id),
  UNIQUE (tenant_id, token),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE notification_preferences (
  tenant_id         uuid NOT NULL,
  user_id           uuid NOT NULL,
  push_enabled      boolean NOT NULL DEFAULT true,
  digest_enabled    boolean,           -- NULL: default by role (investors yes)
  push_events       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"processing.completed": false, ...}
  quiet_hours_start time,
  quiet_hours_end   time,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE digest_deliveries (
  tenant_id   uuid NOT NULL,
  user_id     uuid NOT NULL,
  digest_date date NOT NULL,
  state       text NOT NULL CHECK (state IN ('sending', 'sent', 'empty', 'failed')),
  attempts    integer NOT NULL DEFAULT 0,
  error       text,
  message_id  text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, digest_date),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

-- Event ids already applied, per consumer (at-least-once delivery, exactly-once effect).
CREATE TABLE processed_events (
  tenant_id    uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  consumer     text NOT NULL,
  event_id     uuid NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_age ON processed_events (processed_at);

-- Row-level security: enabled and forced everywhere, one policy per table.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['tenants', 'users', 'projects', 'project_members', 'uploads',
    'processing_steps', 'derivatives', 'device_tokens', 'notification_preferences',
    'digest_deliveries', 'processed_events']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) '
      'WITH CHECK (tenant_id = current_tenant_id())', t);
  END LOOP;
END $$;

-- Cross-tenant jobs (stale-upload sweeper, digest scheduler) list tenants through this
-- owner-defined function and then work inside each tenant's own transaction.
CREATE FUNCTION all_tenant_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT tenant_id FROM tenants ORDER BY created_at
$$;
REVOKE ALL ON FUNCTION all_tenant_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION all_tenant_ids() TO buildpeer_app;

-- The admin CLI adds members by project id alone; this finds the project's tenant.
CREATE FUNCTION project_tenant_id(p uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT tenant_id FROM projects WHERE project_id = p
$$;
REVOKE ALL ON FUNCTION project_tenant_id(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION project_tenant_id(uuid) TO buildpeer_app;
