"""The custom scopes this extension defines: one place for the hub that checks them and
the services that ask for them (operators declare them in ``c.JupyterHub.custom_scopes``)."""

#: The admin routes (stats, reset) without admin:users.
ADMIN_SCOPE = "custom:token-cache:admin"
#: The event stream, for services following revocations.
EVENTS_SCOPE = "custom:token-cache:events"
#: Token introspection, for services checking tokens.
INTROSPECT_SCOPE = "custom:token-cache:introspect"
