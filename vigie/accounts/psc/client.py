"""The Pro Santé Connect client: authlib's OpenID Connect client, configured from settings.

authlib does the protocol: the authorization URL with `state`, `nonce` and a PKCE (S256)
challenge kept in the server-side session, the code exchange with the verifier, and the ID
token's checks (signature against the provider's JWKS, fetched again once when the key id
is unknown; issuer from the discovery document; audience; expiry; nonce). This module only
builds the client, keeps the provider's discovery document and keys for an hour, and turns
authlib's and joserfc's exceptions into one `Refused` with a reason the audit can count.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from authlib.integrations.django_client import DjangoIntegration, DjangoOAuth2App
from django.conf import settings
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
)

# Metadata and keys are fetched again after this long: a provider's key rotation is picked
# up within the hour even without an unknown key id to trigger it.
METADATA_TTL_SECONDS = 3600
# Seconds allowed between the provider's clock and ours (iat, exp, auth_time).
LEEWAY_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 10
# The provider's algorithms we accept, whatever the discovery document lists ("none" never).
ALGORITHMS = ("RS256", "PS256", "ES256")
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"

_lock = threading.Lock()
_cached: dict[tuple[Any, ...], tuple[float, DjangoOAuth2App]] = {}


class Refused(Exception):
    """A PSC answer that must not sign anyone in; `reason` is a stable code for the audit."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def client() -> DjangoOAuth2App:
    """The configured provider's client (the same one for an hour)."""
    key = (
        settings.VIGIE_PSC_DISCOVERY_URL,
        settings.VIGIE_PSC_CLIENT_ID,
        settings.VIGIE_PSC_CLIENT_SECRET,
        settings.VIGIE_PSC_SCOPES,
    )
    now = time.monotonic()
    with _lock:
        found = _cached.get(key)
        if found is not None and now - found[0] < METADATA_TTL_SECONDS:
            return found[1]
        app = DjangoOAuth2App(
            DjangoIntegration("psc"),
            name="psc",
            client_id=settings.VIGIE_PSC_CLIENT_ID,
            client_secret=settings.VIGIE_PSC_CLIENT_SECRET,
            server_metadata_url=settings.VIGIE_PSC_DISCOVERY_URL,
            client_kwargs={
                "scope": settings.VIGIE_PSC_SCOPES,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic",
                "default_timeout": HTTP_TIMEOUT_SECONDS,
            },
        )
        _cached.clear()
        _cached[key] = (now, app)
        return app


def metadata() -> dict[str, Any]:
    """The discovery document, with the accepted algorithms narrowed to ALGORITHMS."""
    try:
        data: dict[str, Any] = client().load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        raise Refused("provider_unreachable", type(exc).__name__) from None
    # OpenID Connect Discovery 4.3: the issuer is the URL the document was read from, minus
    # its well-known suffix; any other would make tokens of another issuer acceptable.
    issuer = str(data.get("issuer") or "")
    if issuer.rstrip("/") + DISCOVERY_SUFFIX != settings.VIGIE_PSC_DISCOVERY_URL:
        raise Refused("bad_metadata", "issuer is not the discovery URL's")
    offered = data.get("id_token_signing_alg_values_supported") or ["RS256"]
    data["id_token_signing_alg_values_supported"] = [a for a in offered if a in ALGORITHMS]
    return data


def pending(request: Any, state: str | None) -> dict[str, Any] | None:
    """What start() stored for this `state` in this session, or None (unknown or spent)."""
    if not state:
        return None
    data = client().framework.get_state_data(request.session, state)
    return data if isinstance(data, dict) else None


def start(request: Any, redirect_uri: str, **params: Any) -> str:
    """The provider's authorization URL; state, nonce, PKCE verifier and `params` are kept
    in this session under the state."""
    metadata()  # reachable, and narrowed, before a doctor is sent anywhere
    app = client()
    try:
        rv = app.create_authorization_url(
            redirect_uri, acr_values=settings.VIGIE_PSC_ACR_VALUES, **params.pop("query", {})
        )
    except (requests.RequestException, RuntimeError) as exc:
        raise Refused("provider_unreachable", type(exc).__name__) from None
    app.save_authorize_data(request, redirect_uri=redirect_uri, **params, **rv)
    return str(rv["url"])


def finish(request: Any) -> dict[str, Any]:
    """The token response of the provider, its ID token checked (claims in "userinfo").

    Raises Refused for anything that must not sign anyone in: an unknown or spent state, an
    error from the provider, a code it refuses, an ID token that fails a check.
    """
    if request.GET.get("error"):
        raise Refused("provider_error", str(request.GET.get("error"))[:100])
    issuer = str(metadata()["issuer"])
    # authlib checks the audience only through `azp` (an ID token for another client that
    # names us as authorized party would pass): both are required here, as OpenID Connect
    # core 3.1.3.7 says. Passing the options replaces authlib's issuer check, so it is here.
    options = {
        "iss": {"essential": True, "values": [issuer]},
        "aud": {"essential": True, "values": [str(settings.VIGIE_PSC_CLIENT_ID)]},
    }
    try:
        token: dict[str, Any] = client().authorize_access_token(
            request, leeway=LEEWAY_SECONDS, claims_options=options
        )
    except MismatchingStateError:
        raise Refused("state_mismatch") from None
    except OAuthError as exc:
        raise Refused("token_refused", str(exc.error)[:100]) from None
    except (BadSignatureError, InvalidKeyIdError):
        raise Refused("bad_signature") from None
    except ExpiredTokenError:
        raise Refused("expired") from None
    except ClaimError as exc:
        raise Refused(f"bad_{exc.claim}") from None
    except JoseError as exc:
        raise Refused("bad_id_token", exc.error) from None
    except (requests.RequestException, ValueError) as exc:
        raise Refused("provider_unreachable", type(exc).__name__) from None
    if "userinfo" not in token:
        raise Refused("no_id_token")
    return token


def verify_jwt(value: str) -> dict[str, Any]:
    """A JWT signed by the provider (its JWKS), from its issuer, for this client; its claims.

    For what authlib's flow does not cover: a signed userinfo answer and the back-channel
    logout token. Expiry is checked when the token has one.
    """
    from joserfc import jwt
    from joserfc.jwk import KeySet
    from joserfc.jws import JWSRegistry

    data = metadata()
    app = client()
    registry = JWSRegistry(algorithms=data["id_token_signing_alg_values_supported"])
    try:
        try:
            decoded = jwt.decode(
                value, KeySet.import_key_set(app.fetch_jwk_set()), registry=registry
            )
        except InvalidKeyIdError:
            keys = KeySet.import_key_set(app.fetch_jwk_set(force=True))
            decoded = jwt.decode(value, keys, registry=registry)
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": str(data.get("issuer") or "")},
            aud={"essential": True, "value": str(settings.VIGIE_PSC_CLIENT_ID)},
        ).validate(decoded.claims)
    except (BadSignatureError, InvalidKeyIdError):
        raise Refused("bad_signature") from None
    except ExpiredTokenError:
        raise Refused("expired") from None
    except ClaimError as exc:
        raise Refused(f"bad_{exc.claim}") from None
    except (JoseError, ValueError) as exc:
        raise Refused("bad_token", type(exc).__name__) from None
    except requests.RequestException as exc:
        raise Refused("provider_unreachable", type(exc).__name__) from None
    return dict(decoded.claims)
