"""A small OpenID provider shaped like Pro Santé Connect, for the tests only (never Vigie).

Runs as its own process on loopback (`python -m tests.psc.provider ...`, see `ProviderProcess`
in tests/psc/fixtures.py): discovery document, JWKS, an authorization page where the
"professional" types the national identifier their CPS card would carry, the token endpoint
(client secret, code bound to its redirect URI and PKCE S256 challenge, single use) and the
userinfo endpoint with PSC's claims (SubjectNameID, names, SubjectRefPro.exercices). Its RSA
key pair is generated at start. Tokens are signed by joserfc.

Test control (loopback only, like everything here): POST /_test/mode with a JSON body
`{"mode": ...}` makes the NEXT token response misbehave on purpose (other_key,
other_audience, expired, replay_nonce, userinfo_mismatch, signed_userinfo, acr_low); POST
/_test/logout-token `{"sid": ..., "sub": ..., "mode": ...}` answers a signed logout token;
POST /_test/register `{"redirect_uri": ...}` registers the relying party's callback.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import html
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

KID = "psc-test-key"
# PSC's issuer has this path (a Keycloak realm); every endpoint lives under it here too.
BASE_PATH = "/auth/realms/esante-wallet"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Provider:
    def __init__(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"})
        # Another key, same key id: what a forger without the provider's key would sign with.
        self.forger = RSAKey.generate_key(2048, parameters={"kid": KID})
        self.issuer = ""
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.access: dict[str, dict[str, Any]] = {}
        self.mode = "ok"
        self.last_nonce: str | None = None

    def sign(self, claims: dict[str, Any], *, forged: bool = False, typ: str = "JWT") -> str:
        header = {"alg": "RS256", "kid": KID, "typ": typ}
        return jwt.encode(header, claims, self.forger if forged else self.key)

    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/auth",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "end_session_endpoint": f"{base}/logout",
            "jwks_uri": f"{base}/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "scope_all"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": ["eidas1"],
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
        }

    def userinfo(self, national_id: str, sub: str) -> dict[str, Any]:
        given, family = "Claire", f"MARTIN-{national_id[-4:]}"
        return {
            "sub": sub,
            "SubjectNameID": national_id,
            "preferred_username": national_id,
            "given_name": given,
            "family_name": family,
            "SubjectOrganization": "CABINET MEDICAL DU PORT",
            "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
            "SubjectRefPro": {
                "exercices": [
                    {
                        "codeProfession": "10",
                        "codeCategorieProfessionnelle": "C",
                        "nomDexercice": family,
                        "prenomDexercice": given,
                        "activities": [
                            {
                                "codeModeExercice": "L",
                                "raisonSocialeSite": "CABINET MEDICAL DU PORT",
                                "codePostal": "13002",
                            }
                        ],
                    }
                ]
            },
        }


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Handler(BaseHTTPRequestHandler):
    provider: Provider

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests read their own assertions, not an access log

    # --- plumbing ---
    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self._body().decode()).items()}

    # --- routes ---
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        p = self.provider
        path = url.path.removeprefix(BASE_PATH)
        if path == "/.well-known/openid-configuration":
            self._json(200, p.metadata())
        elif path == "/certs":
            self._json(200, {"keys": [p.key.as_dict(private=False)]})
        elif path == "/auth":
            self._authorize_page(query)
        elif path == "/userinfo":
            self._userinfo()
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.removeprefix(BASE_PATH)
        if path == "/auth":
            self._authorize(self._form())
        elif path == "/token":
            self._token(self._form())
        elif path == "/_test/mode":
            self.provider.mode = json.loads(self._body())["mode"]
            self._json(200, {"mode": self.provider.mode})
        elif path == "/_test/register":
            # The relying party's port is known only once it runs (browser tests).
            self.provider.redirect_uri = json.loads(self._body())["redirect_uri"]
            self._json(200, {"redirect_uri": self.provider.redirect_uri})
        elif path == "/_test/logout-token":
            self._logout_token(json.loads(self._body()))
        else:
            self._json(404, {"error": "not_found"})

    def _bad_request(self, message: str) -> None:
        self._send(400, message.encode(), "text/plain")

    def _authorize_page(self, query: dict[str, str]) -> None:
        p = self.provider
        problems = []
        if query.get("client_id") != p.client_id:
            problems.append("unknown client_id")
        if query.get("redirect_uri") != p.redirect_uri:
            problems.append("redirect_uri not registered")
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if "openid" not in query.get("scope", "").split():
            problems.append("scope must include openid")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("PKCE S256 required")
        if not query.get("nonce") or not query.get("state"):
            problems.append("nonce and state required")
        if problems:
            self._bad_request("; ".join(problems))
            return
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in query.items()
        )
        page = f"""<!doctype html><html lang="fr"><head><meta charset="utf-8">
<title>Pro Santé Connect (test)</title></head><body>
<h1>Pro Santé Connect — fournisseur de test</h1>
<p>prompt={html.escape(query.get("prompt", ""))} max_age={html.escape(query.get("max_age", ""))}
acr_values={html.escape(query.get("acr_values", ""))}</p>
<form method="post" action="{BASE_PATH}/auth">{hidden}
<label for="national_id">Identifiant national (carte CPS)</label>
<input id="national_id" name="national_id" required>
<button type="submit" id="psc-sign-in">Valider</button></form></body></html>"""
        self._send(200, page.encode(), "text/html; charset=utf-8")

    def _authorize(self, form: dict[str, str]) -> None:
        p = self.provider
        if form.get("redirect_uri") != p.redirect_uri or form.get("client_id") != p.client_id:
            self._bad_request("bad client or redirect_uri")
            return
        code = secrets.token_urlsafe(24)
        with p.lock:
            p.codes[code] = {
                "national_id": form.get("national_id", "").strip(),
                "nonce": form["nonce"],
                "challenge": form["code_challenge"],
                "redirect_uri": form["redirect_uri"],
                "auth_time": int(time.time()),
                "sid": secrets.token_urlsafe(12),
            }
        target = f"{p.redirect_uri}?{urlencode({'code': code, 'state': form['state']})}"
        self._send(302, b"", "text/plain", Location=target)

    def _client_authenticated(self, form: dict[str, str]) -> bool:
        p = self.provider
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            ident, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        else:
            ident, secret = form.get("client_id", ""), form.get("client_secret", "")
        return secrets.compare_digest(ident, p.client_id) and secrets.compare_digest(
            secret, p.client_secret
        )

    def _token(self, form: dict[str, str]) -> None:
        p = self.provider
        if not self._client_authenticated(form):
            self._json(401, {"error": "invalid_client"})
            return
        with p.lock:
            grant = p.codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            self._json(400, {"error": "invalid_grant"})
            return
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            self._json(400, {"error": "invalid_grant", "error_description": "PKCE"})
            return
        mode, p.mode = p.mode, "ok"  # one misbehaving answer, then normal again
        now = int(time.time())
        nonce = grant["nonce"]
        if mode == "replay_nonce" and p.last_nonce:
            nonce = p.last_nonce  # an ID token captured from an earlier sign-in
        p.last_nonce = grant["nonce"]
        sub = f"f:psc-test:{grant['national_id']}"
        claims = {
            "iss": p.issuer,
            "sub": sub,
            "aud": "another-service" if mode == "other_audience" else p.client_id,
            "azp": p.client_id,
            "iat": now - 7200 if mode == "expired" else now,
            "exp": now - 3600 if mode == "expired" else now + 300,
            "auth_time": grant["auth_time"],
            "nonce": nonce,
            "acr": "eidas0" if mode == "acr_low" else "eidas1",
            "sid": grant["sid"],
            "preferred_username": grant["national_id"],
        }
        access_token = secrets.token_urlsafe(24)
        with p.lock:
            p.access[access_token] = {"grant": grant, "sub": sub, "mode": mode}
        self._json(
            200,
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 120,
                "id_token": p.sign(claims, forged=mode == "other_key"),
                "scope": "openid scope_all",
            },
        )

    def _userinfo(self) -> None:
        p = self.provider
        auth = self.headers.get("Authorization", "")
        with p.lock:
            found = p.access.get(auth.removeprefix("Bearer ").strip())
        if not auth.startswith("Bearer ") or found is None:
            self._json(401, {"error": "invalid_token"})
            return
        national_id = found["grant"]["national_id"]
        sub = found["sub"]
        if found["mode"] == "userinfo_mismatch":
            # Another professional's answer, given for this access token.
            national_id, sub = "810000000999", "f:psc-test:810000000999"
        info = p.userinfo(national_id, sub)
        if found["mode"] == "signed_userinfo":
            now = int(time.time())
            signed = p.sign({**info, "iss": p.issuer, "aud": p.client_id, "iat": now})
            self._send(200, signed.encode(), "application/jwt")
            return
        self._json(200, info)

    def _logout_token(self, body: dict[str, Any]) -> None:
        p = self.provider
        claims: dict[str, Any] = {
            "iss": p.issuer,
            "aud": p.client_id,
            "iat": int(time.time()),
            "jti": secrets.token_urlsafe(12),
            "events": {BACKCHANNEL_EVENT: {}},
        }
        for name in ("sid", "sub"):
            if body.get(name):
                claims[name] = body[name]
        if body.get("mode") == "with_nonce":
            claims["nonce"] = "n"
        if body.get("mode") == "no_event":
            del claims["events"]
        token = p.sign(claims, forged=body.get("mode") == "other_key", typ="logout+jwt")
        self._json(200, {"logout_token": token})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--redirect-uri", required=True)
    # The name in the issuer and endpoints: "localhost" makes the provider another site than
    # a relying party on 127.0.0.1, as PSC is for a clinic (SameSite cookies then apply).
    parser.add_argument("--host-name", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    provider = Provider(args.client_id, args.client_secret, args.redirect_uri)
    handler = type("BoundHandler", (Handler,), {"provider": provider})
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    provider.issuer = f"http://{args.host_name}:{server.server_address[1]}{BASE_PATH}"
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
