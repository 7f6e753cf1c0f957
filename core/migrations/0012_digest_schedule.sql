-- Digest schedule per user (issue 15): the local hour and daily or weekly (Mondays,
-- covering the seven local days before). NULL hour: BUILDPEER_DIGEST_HOUR.

ALTER TABLE notification_preferences
  ADD COLUMN digest_hour smallint CHECK (digest_hour BETWEEN 0 AND 23),
  ADD COLUMN digest_frequency text NOT NULL DEFAULT 'daily'
    CHECK (digest_frequency IN ('daily', 'weekly'));

-- A delivery is one (user, first covered day, period): a daily and a weekly digest that
-- start on the same Monday are different deliveries.
ALTER TABLE digest_deliveries
  ADD COLUMN period text NOT NULL DEFAULT 'daily' CHECK (period IN ('daily', 'weekly'));
ALTER TABLE digest_deliveries DROP CONSTRAINT digest_deliveries_pkey;
ALTER TABLE digest_deliveries ADD PRIMARY KEY (user_id, digest_date, period);
