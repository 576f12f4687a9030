"""The web dashboard at /dashboard (docs/dashboard.md): batches, webhooks and audiences of
the signed-in account, rendered on the server from Jinja templates, live by polling."""
