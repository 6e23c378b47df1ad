"""Tokens: HS256 only; bad signature, expired, not yet valid, missing claims, unknown role -> 401."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from sfu.auth import Claims, bearer_claims, mint_token, verify_token
from sfu.errors import ApiError

SECRET = "test-secret-0123456789abcdef-0123456789"
NOW = 1_700_000_000.0


def sign(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def base(**kw: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"sub": "dr-lee", "role": "staff", "clinic": "c1", "exp": NOW + 60}
    payload.update(kw)
    return {k: v for k, v in payload.items() if v is not None}


def rejected(token: str, now: float = NOW) -> str:
    with pytest.raises(ApiError) as err:
        verify_token(token, SECRET, now=now)
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    return err.value.message


def test_mint_then_verify_round_trip() -> None:
    token = mint_token(
        SECRET, sub="dr-lee", role="staff", clinic="c1", name="Dr Lee", ttl=3600, now=NOW
    )
    assert verify_token(token, SECRET, now=NOW + 10) == Claims(
        sub="dr-lee", role="staff", clinic="c1", exp=NOW + 3600, name="Dr Lee", iat=NOW
    )


def test_mint_scoped_guest_and_patient() -> None:
    guest = verify_token(mint_token(SECRET, sub="g", role="guest", clinic="c1", room="team", now=NOW), SECRET, now=NOW)
    assert (guest.room, guest.space) == ("team", None)
    patient = verify_token(
        mint_token(SECRET, sub="p", role="patient", clinic="c1", space="sp_x", now=NOW), SECRET, now=NOW
    )
    assert patient.space == "sp_x"


def test_mint_refuses_unknown_roles() -> None:
    with pytest.raises(ValueError):
        mint_token(SECRET, sub="x", role="doctor", clinic="c1")


def test_bad_signature() -> None:
    assert "signature" in rejected(sign(base(), secret="another-secret-0123456789-0123456789"))


def test_tampered_payload() -> None:
    header, _, sig = sign(base()).split(".")
    forged = jwt.encode(base(role="admin"), "x" * 40).split(".")[1]
    assert "signature" in rejected(f"{header}.{forged}.{sig}")


def test_expired() -> None:
    assert "expired" in rejected(sign(base(exp=NOW - 1)))
    assert "expired" in rejected(sign(base(exp=NOW)))


def test_not_yet_valid() -> None:
    assert "not valid yet" in rejected(sign(base(nbf=NOW + 30)))
    assert verify_token(sign(base(nbf=NOW)), SECRET, now=NOW).nbf == NOW


def test_issued_in_the_future() -> None:
    assert "future" in rejected(sign(base(iat=NOW + 30)))


@pytest.mark.parametrize("claim", ["sub", "role", "clinic", "exp"])
def test_missing_required_claims(claim: str) -> None:
    payload = base()
    del payload[claim]
    assert claim in rejected(sign(payload))


@pytest.mark.parametrize("claim", ["sub", "role", "clinic"])
def test_empty_or_non_string_claims(claim: str) -> None:
    rejected(sign(base(**{claim: ""})))
    rejected(sign(base(**{claim: 5})))


def test_non_numeric_exp() -> None:
    rejected(sign(base(exp="tomorrow")))


def test_patient_needs_a_space() -> None:
    assert "space" in rejected(sign(base(role="patient")))
    assert verify_token(sign(base(role="patient", space="sp_1")), SECRET, now=NOW).space == "sp_1"


def test_guest_needs_exactly_one_scope() -> None:
    rejected(sign(base(role="guest")))
    rejected(sign(base(role="guest", space="sp_1", room="team")))
    assert verify_token(sign(base(role="guest", room="team")), SECRET, now=NOW).room == "team"


def test_unknown_role() -> None:
    assert "role" in rejected(sign(base(role="superuser")))


def test_only_admins_may_name_every_clinic() -> None:
    rejected(sign(base(role="staff", clinic="*")))
    assert verify_token(sign(base(role="admin", clinic="*")), SECRET, now=NOW).acts_on("anything")


@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_other_algorithms_are_refused() -> None:
    assert "HS256" in rejected(sign(base(), algorithm="HS512"))
    unsigned = jwt.encode(base(), None, algorithm="none")  # type: ignore[arg-type]
    rejected(unsigned)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 1000])
def test_malformed_tokens(token: str) -> None:
    rejected(token)


class FakeRequest:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def test_bearer_claims() -> None:
    token = sign(base())
    assert bearer_claims(FakeRequest({"Authorization": f"Bearer {token}"}), SECRET, now=NOW).sub == "dr-lee"  # type: ignore[arg-type]
    for headers in [{}, {"Authorization": token}, {"Authorization": f"Basic {token}"}, {"Authorization": "Bearer "}]:
        with pytest.raises(ApiError) as err:
            bearer_claims(FakeRequest(headers), SECRET, now=NOW)  # type: ignore[arg-type]
        assert err.value.status == 401


def test_audience_and_issuer_are_checked_when_configured_and_minted_with() -> None:
    from sfu.auth import AuthSettings

    auth = AuthSettings(secret=SECRET, audience="sfu.clinic.example", issuer="portal")
    good = auth.mint(sub="dr-lee", role="staff", clinic="c1", now=NOW, ttl=60)
    assert auth.verify(good, now=NOW).sub == "dr-lee"
    assert auth.verify(sign(base(aud=["other", "sfu.clinic.example"], iss="portal")), NOW)
    for payload in (base(), base(aud="other", iss="portal"), base(aud="sfu.clinic.example"),
                    base(aud="sfu.clinic.example", iss="someone-else")):
        with pytest.raises(ApiError) as err:
            auth.verify(sign(payload), now=NOW)
        assert err.value.code == "unauthorized"
    # without them configured, tokens with or without aud/iss are taken as before
    plain = AuthSettings(secret=SECRET)
    assert plain.verify(sign(base(aud="anything", iss="anyone")), now=NOW).sub == "dr-lee"


def test_the_configured_leeway_tolerates_clocks_a_little_apart() -> None:
    from sfu.auth import AuthSettings

    auth = AuthSettings(secret=SECRET, leeway=30.0)
    token = sign(base(exp=NOW, nbf=NOW + 20))
    assert auth.verify(token, now=NOW + 10).sub == "dr-lee"  # nbf 20 s ahead, exp 10 s past
    with pytest.raises(ApiError):
        auth.verify(token, now=NOW + 31)
    with pytest.raises(ApiError):
        verify_token(token, SECRET, now=NOW + 10)  # no leeway
