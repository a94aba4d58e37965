"""The OpenID Connect provider the token exchange tests run (node, oidc-provider)."""
