-- Email suppressions (issue 15): SES bounce and complaint events (configuration set → SNS →
-- SQS) recorded per tenant; a suppressed address gets no digest and the preferences say why.

CREATE TABLE email_suppressions (
  tenant_id     uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  email         text NOT NULL CHECK (email = lower(email) AND position('@' in email) > 1),
  reason        text NOT NULL CHECK (reason IN ('bounce', 'complaint')),
  detail        text,          -- bounce type/subtype or complaint feedback type
  diagnostic    text,          -- the remote MTA's diagnostic code, when given
  feedback_id   text,          -- SES feedbackId of the event that suppressed it
  event_at      timestamptz NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, email)
);

ALTER TABLE email_suppressions ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_suppressions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON email_suppressions USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- An SES event without our tenant tag (e.g. identity notifications) names only an address:
-- this owner-defined function finds the tenants where that address is a user.
-- (SECURITY DEFINER: fixed search_path and qualified names, as migration 0009 says.)
CREATE FUNCTION public.tenants_with_email(address text) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT DISTINCT u.tenant_id FROM public.users AS u
  WHERE pg_catalog.lower(u.email) OPERATOR(pg_catalog.=) pg_catalog.lower(address)
$$;
REVOKE ALL ON FUNCTION tenants_with_email(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_with_email(text) TO buildpeer_app;
