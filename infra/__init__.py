"""AWS deployment: CloudFormation templates (``infra/templates``), the generators of their
messaging, processor and monitoring parts (from :mod:`core.resources`), Lambda packaging and
the server's container image."""
