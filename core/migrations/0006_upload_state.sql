-- One owner of upload state (issue 12): the terminal status `deleted`.
-- Every status change goes through core.transition (one guarded UPDATE that bumps
-- `version`); this only widens the CHECK to the new status.
ALTER TABLE uploads DROP CONSTRAINT IF EXISTS uploads_status_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_status_check CHECK (status IN
  ('pending', 'uploading', 'uploaded', 'scanning', 'processing',
   'ready', 'failed', 'quarantined', 'deleted'));
