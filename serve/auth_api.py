"""The session routes of the HTTP API: log in with a password, refresh, log out; set passwords and
rotate signing keys (admin).

A login answers a short-lived HS256 access token (``Authorization: Bearer`` on every route, like an
API key, same roles, tiers and rate limits) and an opaque refresh token that is rotated on every use.
Failed logins are counted per username and per client address (:mod:`serve.login_guard`); unknown
users and wrong passwords get the same answer after the same work.
"""

from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from connectors.storage.redis_keys import RedisKeys
from serve.api import ApiError, ErrorBody, Services, Text
from serve.login_guard import LoginGuard
from serve.passwords import MAX_CHARS, generate_password
from serve.sessions import InvalidCredentialsError, InvalidRefreshTokenError, IssuedSession, RefreshReuseError

AUTH = "/api/v1/auth"
ADMIN = "/api/v1/admin"
_BEARER = {"WWW-Authenticate": "Bearer"}

_optional_bearer = HTTPBearer(auto_error=False, description="session access token")


def _errors(*codes: int) -> dict:
    text = {401: "Wrong credentials, or an unknown, used, expired or revoked token (`invalid_credentials`, "
                 "`invalid_token`)",
            403: "The key's role may not call this (`forbidden`)",
            404: "No such user (`not_found`)",
            429: "Too many failed logins for this username or address (`too_many_attempts`); see Retry-After"}
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


class LoginRequest(BaseModel):
    """A username and its password."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=254), Text]
    password: Annotated[str, Field(min_length=1, max_length=MAX_CHARS), Text]


class RefreshRequest(BaseModel):
    """The refresh token of the last login or refresh."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, Field(min_length=1, max_length=256), Text]


class LogoutRequest(BaseModel):
    """The session's refresh token, if the access token is not sent (or has expired)."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str | None, Field(min_length=1, max_length=256), Text] = None


class TokenPair(BaseModel):
    """An access token for ``Authorization: Bearer`` and the refresh token that gets the next one."""

    access_token: str
    token_type: Literal["bearer"]
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str = Field(description="single use: POST it to /auth/refresh for a new pair")
    refresh_expires_in: int = Field(description="seconds the refresh token is valid")


class TokenPairItem(BaseModel):
    item: TokenPair


class LoggedOut(BaseModel):
    logged_out: bool
    sessions: int = Field(description="sessions ended by this call (0 if they had ended already)")


class LoggedOutItem(BaseModel):
    item: LoggedOut


class NewPassword(BaseModel):
    """A password to set (omit it to have one generated and shown once) and the role its logins get."""

    model_config = ConfigDict(extra="forbid")

    password: Annotated[str | None, Field(min_length=8, max_length=MAX_CHARS), Text] = None
    role: Annotated[str, Field(max_length=32), Text] = "user"


class PasswordSet(BaseModel):
    username: str
    role: str
    password: str | None = Field(None, description="the generated password, shown only here; null if one was sent")
    sessions_ended: int


class PasswordSetItem(BaseModel):
    item: PasswordSet


class RotateKey(BaseModel):
    """``retire_previous``: refuse tokens signed by every older key at once (a leaked key)."""

    model_config = ConfigDict(extra="forbid")

    retire_previous: StrictBool = False


class KeyRotated(BaseModel):
    kid: str
    retired: list[str]


class KeyRotatedItem(BaseModel):
    item: KeyRotated


class SigningKeyInfo(BaseModel):
    kid: str
    created_at: str
    superseded_at: str | None = None
    retired_at: str | None = None
    signing: bool
    verifying: bool


class SigningKeyPage(BaseModel):
    items: list[SigningKeyInfo]
    next_cursor: str | None = None


def _client_address(request: Request) -> str:
    # the socket's peer: a forwarded-for header is the caller's to write, so it is not trusted here
    return request.client.host if request.client else "unknown"


def add_auth_routes(app: FastAPI, services, principal, admin) -> None:
    """Register the session routes on ``app`` (``services``, ``principal``, ``admin``: create_app's dependencies)."""

    def guard(svc: Services) -> LoginGuard:
        g = getattr(app.state, "login_guard", None)
        if g is None or g._client is not svc.redis:
            s = svc.auth.settings
            g = app.state.login_guard = LoginGuard(svc.redis, RedisKeys(namespace=svc.settings.namespace),
                                                   s.login_max_failures, s.login_max_failures_ip, s.login_window_s)
        return g

    async def pair(svc: Services, session: IssuedSession) -> JSONResponse:
        import time
        access, ttl = await svc.auth.issue_access_token(session)
        refresh_in = max(0, int(session.refresh_expires_at.timestamp() - time.time()))
        return JSONResponse({"item": {"access_token": access, "token_type": "bearer", "expires_in": ttl,
                                      "refresh_token": session.refresh_token, "refresh_expires_in": refresh_in}},
                            headers={"Cache-Control": "no-store"})

    @app.post(f"{AUTH}/login", tags=["auth"], operation_id="login", response_model=TokenPairItem,
              responses=_errors(401, 429))
    async def login(body: LoginRequest, request: Request, svc: Annotated[Services, Depends(services)]):
        """Log in with a username and password: an access token and a refresh token."""
        g = guard(svc)
        wait = await g.attempt(body.username, _client_address(request))
        if wait is not None:
            raise ApiError(429, "too_many_attempts", f"too many failed logins; retry in {wait}s",
                           {"Retry-After": str(wait)})
        try:
            role = await svc.auth.sessions.verify_login(body.username, body.password)
        except InvalidCredentialsError:
            raise ApiError(401, "invalid_credentials", "wrong username or password", _BEARER) from None
        await g.succeeded(body.username, _client_address(request))
        return await pair(svc, await svc.auth.sessions.create_session(body.username, role))

    @app.post(f"{AUTH}/refresh", tags=["auth"], operation_id="refresh", response_model=TokenPairItem,
              responses=_errors(401))
    async def refresh(body: RefreshRequest, svc: Annotated[Services, Depends(services)]):
        """Trade a refresh token for a new access and refresh token; the one sent stops working.

        Sending a refresh token a second time ends its session (it was copied)."""
        try:
            session = await svc.auth.sessions.refresh(body.refresh_token)
        except RefreshReuseError as e:
            await svc.auth.publish("sid", e.sid)
            raise ApiError(401, "invalid_token", str(e), _BEARER) from None
        except InvalidRefreshTokenError as e:
            raise ApiError(401, "invalid_token", str(e), _BEARER) from None
        return await pair(svc, session)

    @app.post(f"{AUTH}/logout", tags=["auth"], operation_id="logout", response_model=LoggedOutItem,
              responses=_errors(401))
    async def logout(svc: Annotated[Services, Depends(services)],
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
                     body: LogoutRequest | None = None):
        """End a session, named by its access token (``Authorization: Bearer``) or its refresh token:
        the refresh token stops working and the access token is refused from now on."""
        sids = set()
        if creds is not None:
            claims = await svc.auth.verify_access_token(creds.credentials)
            if claims is not None:
                sids.add(claims["sid"])
        if body is not None and body.refresh_token:
            sid = await svc.auth.sessions.session_of(body.refresh_token)
            if sid is not None:
                sids.add(sid)
        if not sids:
            raise ApiError(401, "invalid_token", "send the session's access token (Authorization: Bearer) or its "
                                                 "refresh token", _BEARER)
        ended = 0
        for sid in sorted(sids):
            ended += await svc.auth.sessions.revoke_session(sid, "logout")
            await svc.auth.publish("sid", sid)
        return JSONResponse({"item": {"logged_out": True, "sessions": ended}})

    @app.put(f"{ADMIN}/users/{{username}}/password", tags=["admin"], operation_id="set_password",
             response_model=PasswordSetItem, responses=_errors(403, 404))
    async def set_password(username: Annotated[str, Path(max_length=64), Text], body: NewPassword,
                           svc: Annotated[Services, Depends(services)], who: Annotated[object, Depends(admin)]):
        """Set a user's password (or generate one, shown once) and the role their logins get; ends their sessions."""
        from serve.api import _accounts_call
        password = body.password or generate_password()
        sids = await _accounts_call(svc.auth.sessions.set_password(username, password, body.role))
        for sid in sids:
            await svc.auth.publish("sid", sid)
        return JSONResponse({"item": {"username": username, "role": body.role,
                                      "password": None if body.password else password, "sessions_ended": len(sids)}},
                            headers={"Cache-Control": "no-store"})

    @app.post(f"{ADMIN}/auth/rotate-key", tags=["admin"], operation_id="rotate_signing_key",
              response_model=KeyRotatedItem, responses=_errors(403))
    async def rotate_signing_key(svc: Annotated[Services, Depends(services)], who: Annotated[object, Depends(admin)],
                                 body: RotateKey | None = None):
        """Make a new signing key sign access tokens; older keys still verify until retired (at once with
        ``retire_previous``, else once nothing they signed can still be valid)."""
        kid, retired = await svc.auth.sessions.rotate_signing_key(bool(body and body.retire_previous))
        await svc.auth.publish("signing_keys", kid)
        return JSONResponse({"item": {"kid": kid, "retired": retired}})

    @app.get(f"{ADMIN}/auth/keys", tags=["admin"], operation_id="list_signing_keys", response_model=SigningKeyPage,
             responses=_errors(403))
    async def list_signing_keys(svc: Annotated[Services, Depends(services)], who: Annotated[object, Depends(admin)]):
        """Every signing key (never its secret), newest first: which one signs, which still verify."""
        return JSONResponse({"items": await svc.auth.sessions.list_signing_keys(), "next_cursor": None})
