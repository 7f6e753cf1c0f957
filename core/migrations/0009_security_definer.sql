-- SECURITY DEFINER functions run with their owner's rights, so whatever the caller can put
-- on the search_path (a schema it may create objects in, pg_temp) must not decide which
-- tables, functions or operators they use: the path is fixed to pg_catalog first, then
-- public, and every name in the bodies is schema-qualified. CREATE OR REPLACE keeps the
-- grants; they are restated so this file alone says who may call what.

CREATE OR REPLACE FUNCTION public.all_tenant_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT t.tenant_id FROM public.tenants AS t ORDER BY t.created_at
$$;
REVOKE ALL ON FUNCTION public.all_tenant_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.all_tenant_ids() TO buildpeer_app;

CREATE OR REPLACE FUNCTION public.project_tenant_id(p uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT pr.tenant_id FROM public.projects AS pr WHERE pr.project_id OPERATOR(pg_catalog.=) p
$$;
REVOKE ALL ON FUNCTION public.project_tenant_id(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.project_tenant_id(uuid) TO buildpeer_app;
