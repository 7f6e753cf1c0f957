-- Declared checksums (issue 12): the SHA-256 a client declared for the whole file when it
-- created the upload (`buildpeer upload` always does). It is signed into the single upload's
-- POST policy (x-amz-checksum-sha256) and the multipart upload is created with
-- ChecksumAlgorithm=SHA256, so S3 refuses corrupted bytes; the processors compare their
-- computed `sha256` with it (sha256_verified, 0007_pinned_versions.sql).
ALTER TABLE uploads
  ADD COLUMN declared_sha256 text CHECK (declared_sha256 ~ '^[0-9a-f]{64}$');
