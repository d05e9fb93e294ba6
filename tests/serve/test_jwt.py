"""The pure token and password code: HS256 JWTs checked against RFC 7515's worked example, every way a
token must be refused, and scrypt password hashes checked against RFC 7914's test vector."""

from __future__ import annotations

import json
import secrets

import pytest

from serve import jwt_tokens as jt
from serve import passwords
from serve.keys import new_api_key

KEY_A, KEY_B = secrets.token_bytes(32), secrets.token_bytes(32)
NOW = 1_700_000_000.0


def _claims(**over) -> dict:
    return {"sub": "alice", "sid": "s1", "iat": NOW, "nbf": NOW, "exp": NOW + 900, **over}


def _forge(header: dict, claims: dict, key: bytes) -> str:
    """A token with any header, signed like the real thing (to prove the header checks, not the signature, refuse it)."""
    si = f"{jt.b64url_encode(json.dumps(header).encode())}.{jt.b64url_encode(json.dumps(claims).encode())}"
    return f"{si}.{jt.b64url_encode(jt._sign(key, si.encode()))}"


def test_hmac_and_base64url_match_rfc7515_appendix_a1() -> None:
    # RFC 7515 A.1: the JWS Compact Serialization of an HS256 example, its key and signature
    header = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    payload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    key = jt.b64url_decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
    signature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert jt.b64url_encode(jt._sign(key, f"{header}.{payload}".encode())) == signature
    assert json.loads(jt.b64url_decode(payload))["iss"] == "joe"
    with pytest.raises(jt.MalformedTokenError, match="kid"):  # ours always name their key
        jt.verify(f"{header}.{payload}.{signature}", {"x": key}, NOW)


def test_round_trip_and_rotation_old_keys_verify_until_dropped() -> None:
    old = jt.encode(_claims(), KEY_A, "a")
    new = jt.encode(_claims(sub="bob"), KEY_B, "b")
    assert jt.header(new) == {"alg": "HS256", "typ": "JWT", "kid": "b"}
    both = {"a": KEY_A, "b": KEY_B}
    assert jt.verify(old, both, NOW)["sub"] == "alice"
    assert jt.verify(new, both, NOW)["sub"] == "bob"
    with pytest.raises(jt.UnknownKeyIdError) as e:  # "a" retired
        jt.verify(old, {"b": KEY_B}, NOW)
    assert e.value.kid == "a"


def test_tampered_signature_claims_or_header_refused() -> None:
    token = jt.encode(_claims(), KEY_A, "a")
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(jt.BadSignatureError):
        jt.verify(f"{head}.{body}.{flipped}", {"a": KEY_A}, NOW)
    admin = jt.b64url_encode(json.dumps(_claims(sub="admin")).encode())
    with pytest.raises(jt.BadSignatureError):
        jt.verify(f"{head}.{admin}.{sig}", {"a": KEY_A}, NOW)
    with pytest.raises(jt.BadSignatureError):  # the same kid under another secret
        jt.verify(token, {"a": KEY_B}, NOW)
    with pytest.raises(jt.UnknownKeyIdError):  # a kid swapped in the header names no key we hold
        jt.verify(_forge({"alg": "HS256", "kid": "zz"}, _claims(), KEY_A), {"a": KEY_A}, NOW)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS512", "RS256", "ES256", "", None])
def test_every_algorithm_but_hs256_refused(alg) -> None:
    head = {"alg": alg, "typ": "JWT", "kid": "a"}
    forged = _forge(head, _claims(), KEY_A)
    with pytest.raises(jt.AlgorithmError):
        jt.verify(forged, {"a": KEY_A}, NOW)
    unsigned = forged.rsplit(".", 1)[0] + "."  # alg none: an empty signature
    with pytest.raises(jt.TokenError):
        jt.verify(unsigned, {"a": KEY_A}, NOW)


def test_times_exp_nbf_iat() -> None:
    keys = {"a": KEY_A}
    token = jt.encode(_claims(), KEY_A, "a")
    assert jt.verify(token, keys, NOW + 899.9)
    with pytest.raises(jt.ExpiredTokenError):
        jt.verify(token, keys, NOW + 900)  # on exp, not only after it (RFC 7519 §4.1.4)
    assert jt.verify(token, keys, NOW + 903, leeway_s=5)  # skew between replicas
    with pytest.raises(jt.NotYetValidError):
        jt.verify(jt.encode(_claims(nbf=NOW + 60), KEY_A, "a"), keys, NOW)
    with pytest.raises(jt.NotYetValidError):
        jt.verify(jt.encode(_claims(iat=NOW + 60, nbf=None), KEY_A, "a"), keys, NOW)
    for missing in ("exp", "iat"):
        claims = _claims()
        del claims[missing]
        with pytest.raises(jt.MalformedTokenError, match=missing):
            jt.verify(jt.encode(claims, KEY_A, "a"), keys, NOW)
    for bad in ("soon", True, None, [1]):
        with pytest.raises(jt.MalformedTokenError):
            jt.verify(jt.encode(_claims(exp=bad), KEY_A, "a"), keys, NOW)


def test_malformed_tokens_refused_and_told_apart_from_api_keys() -> None:
    key = new_api_key()
    assert not jt.looks_like_jwt(key) and "." not in key
    token = jt.encode(_claims(), KEY_A, "a")
    assert jt.looks_like_jwt(token)
    head, body, sig = token.split(".")
    for bad in ("", "a.b", "a.b.c.d", f"{head}.{body}", f"{head}.{body}.{sig}=", f"{head}=.{body}.{sig}",
                f"{head}.{body}.{sig}\n", "eyJ.e30.", token + "x" * jt.MAX_TOKEN_CHARS):
        with pytest.raises(jt.TokenError):
            jt.verify(bad, {"a": KEY_A}, NOW)
    # a repeated member: two readers could disagree on which value counts
    dup = jt.b64url_encode(b'{"alg":"HS256","kid":"a","alg":"none"}')
    with pytest.raises(jt.MalformedTokenError, match="repeats"):
        jt.verify(f"{dup}.{body}.{sig}", {"a": KEY_A}, NOW)
    with pytest.raises(jt.MalformedTokenError, match="object"):  # signed, but claims that are not an object
        jt.verify(_forge({"alg": "HS256", "kid": "a"}, [1, 2], KEY_A), {"a": KEY_A}, NOW)
    with pytest.raises(ValueError):
        jt.encode(_claims(), b"short", "a")


def test_scrypt_matches_rfc7914_vector() -> None:
    # RFC 7914 §12: scrypt(P="password", S="NaCl", N=1024, r=8, p=16); dkLen 64, of which we keep 32
    expected = bytes.fromhex("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162")
    assert passwords._derive("password", b"NaCl", 10, 8, 16) == expected


def test_password_hash_format_salted_and_verified() -> None:
    h1, h2 = passwords.hash_password("correct horse"), passwords.hash_password("correct horse")
    assert h1 != h2  # a fresh salt each time
    scheme, params, salt, digest = h1.split("$")
    assert scheme == "scrypt" and params == "ln=15,r=8,p=1"
    assert len(jt.b64url_decode(salt)) == 16 and len(jt.b64url_decode(digest)) == 32
    assert passwords.verify_password("correct horse", h1) and passwords.verify_password("correct horse", h2)
    assert not passwords.verify_password("correct horsE", h1)
    # parameters travel with the hash: a cheaper old hash still verifies
    cheap = passwords.hash_password("correct horse", log2_n=10, r=4, p=1)
    assert cheap.split("$")[1] == "ln=10,r=4,p=1" and passwords.verify_password("correct horse", cheap)
    for bad in ("", "plain", h1.replace("scrypt", "bcrypt"), h1.replace("ln=15", "ln=30"), h1[:-4]):
        assert not passwords.verify_password("correct horse", bad)
    for weak in ("short", "x" * 1025, "tab\there!"):
        with pytest.raises(passwords.PasswordPolicyError):
            passwords.hash_password(weak)
    assert not passwords.verify_password("anything at all", passwords.dummy_hash())
