"""Pro Santé Connect (PSC): sign-in with the CPS card or the e-CPS app, over OpenID Connect.

- `client`: the provider from the settings, through authlib (authorization code with PKCE,
  state and nonce; the ID token's signature against the provider's JWKS, its issuer,
  audience, expiry and nonce).
- `identity`: the userinfo as PSC documents it (SubjectNameID, names, professional
  situations) and the one account it may open: never one created from a sign-in.
- `signin`: what a verified PSC identity does to the session (both factors at once).
- `logout`: the provider's back-channel logout token, which ends the local sessions.
- `views`, `urls`: thin HTTP around them.
"""
