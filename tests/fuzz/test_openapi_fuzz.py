"""The fuzz gate: schemathesis against the example app's own ``/openapi.json``.

The repository root is the project (``create_app(REPO)``), booted in production mode
with a ``SYSTEM_TOKEN``, an ``AUTH_SECRET`` and an in-memory database, in-process through
schemathesis's ASGI transport (it runs the app's lifespan, so the kernel boots as under
uvicorn). Every operation of the document is fuzzed with valid and invalid data, once with
tokens and once without, a bounded number of examples each: "with tokens" sends
``SYSTEM_TOKEN`` to ``/system/*`` and, everywhere else, a user token with the ``admin``
role that the auth tool would have issued (so ``auth=`` routes run their handlers).
The gate fails on:

* any 5xx;
* any 4xx/5xx JSON answer outside the one error shape (``ErrorBody``);
* any answer that contradicts the document: schemathesis's checks (status code
  documented, content type, response schema, headers, invalid data refused) and,
  with the token, that a guarded route refuses the same request without it or with
  a wrong one.

``/system/feed`` never ends by itself: the transport cuts a stream after its first
event (``ready``), and every request has a deadline besides. Examples are derived
deterministically (``derandomize``), so a failure reproduces; ``MICROCORE_FUZZ_EXAMPLES``
raises the count per operation and mode for a longer run. The summary (requests sent,
5xx, shape violations, contradictions) is written to the terminal and is the assertion
message when the gate fails.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import jwt
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.python import asgi

from microcore import create_app
from microcore.testing import TEST_SETTINGS

REPO = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-gate-token"
BEARER = {"authorization": f"Bearer {TOKEN}"}
AUTH_SECRET = "fuzz-gate-auth-secret-" + "s" * 32
EXAMPLES = int(os.environ.get("MICROCORE_FUZZ_EXAMPLES", "25"))
SETTINGS = {
    **TEST_SETTINGS,  # in-memory database, memory bus and state
    "MICROCORE_ENV": "production",
    "SYSTEM_TOKEN": TOKEN,
    "AUTH_SECRET": AUTH_SECRET,
    "LOG_LEVEL": "ERROR",
    "HTTP_ACCESS_LOG": "false",
}
# Operations that refuse some schema-valid input on purpose (400), for a reason the schema
# cannot state: schemathesis's "valid data is accepted" check (ST202) does not apply to them.
CHECKED_BEYOND_THE_SCHEMA = {
    "PUT /users/{user_id}/avatar": "the uploaded bytes must be a PNG or JPEG image",
}
CONFIG = {"max-stream-events": 1, "request-timeout": 10}


class ErrorDetail(msgspec.Struct, forbid_unknown_fields=True):
    """The ``error`` member of the one error shape (README, "Errors")."""

    code: str
    message: str
    path: str | None = None
    id: str | None = None


class ErrorShape(msgspec.Struct, forbid_unknown_fields=True):
    """Every 4xx/5xx JSON answer: ``{"success": false, "error": {...}}`` and nothing else."""

    success: bool
    error: ErrorDetail


@dataclass
class Tally:
    """What one run sent and saw."""

    label: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    shape_violations: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.server_errors or self.shape_violations or self.contradictions)

    def record(self, response: Response, where: str) -> None:
        self.requests += 1
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.server_errors.append(f"{response.status_code} <- {where}")
        violation = shape_violation(response)
        if violation is not None:
            self.shape_violations.append(f"{violation} <- {where}")

    def summary(self) -> str:
        lines = [
            f"fuzz ({self.label}): {self.requests} requests, {len(self.server_errors)} x 5xx, "
            f"{len(self.shape_violations)} shape violations, {len(self.contradictions)} "
            f"contradictions of the document; statuses {dict(sorted(self.statuses.items()))}"
        ]
        for title, found in (
            ("5xx", self.server_errors),
            ("outside the error shape", self.shape_violations),
            ("contradicts the document", self.contradictions),
        ):
            lines += [f"  {title}: {item}" for item in found[:20]]
        return "\n".join(lines)


def shape_violation(response: Response) -> str | None:
    """Why an error answer in JSON is not the one error shape (None when it is)."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/json"):
        return None  # the dashboard's login page (text/html) is documented as such
    try:
        body = msgspec.json.decode(response.content, type=ErrorShape)
    except msgspec.DecodeError as exc:
        return f"{response.status_code} {exc}"
    return None if body.success is False else f"{response.status_code} success is not false"


@pytest.fixture
def schema() -> Iterator[schemathesis.BaseSchema]:
    """The example app booted in production (through its lifespan), and its document."""
    app = create_app(REPO, environ=SETTINGS)
    config = schemathesis.Config.from_dict(CONFIG)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    finally:
        asgi.shutdown_lifespans()


def fuzz(
    operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode, token: bool, tally: Tally
) -> None:
    """``EXAMPLES`` cases of ``operation`` in ``mode``, each sent, tallied and validated."""
    headers = tokens_for(operation.path) if token else {}

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are tallied
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        response = case.call(headers=headers)
        where = f"[{mode.value}] {case.as_curl_command(headers=headers)}"
        tally.record(response, where)
        try:
            case.validate_response(response, headers=headers)
        except FailureGroup as group:  # one failure per check that failed
            for failure in group.exceptions:
                if failure.code == "ST202" and operation.label in CHECKED_BEYOND_THE_SCHEMA:
                    continue
                message = " / ".join(line for line in failure.message.splitlines() if line)
                tally.contradictions.append(
                    f"{failure.code} {failure.title}: {message[:300]} <- {where}"
                )

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # an operation without parameters or body has no invalid input to send
        assert mode is GenerationMode.NEGATIVE, f"no valid input for {operation.label}"


def tokens_for(path: str) -> dict[str, str]:
    """SYSTEM_TOKEN for /system/*, else an admin user's token signed with AUTH_SECRET."""
    if path.startswith("/system/"):
        return dict(BEARER)
    now = int(time.time())
    claims = {"sub": "1", "roles": ["user", "admin"], "iat": now, "exp": now + 3600}
    return {"authorization": f"Bearer {jwt.encode(claims, AUTH_SECRET, algorithm='HS256')}"}


def report(capsys: pytest.CaptureFixture[str], tally: Tally) -> None:
    """The summary on the terminal, captured or not (CI logs keep it)."""
    with capsys.disabled():
        sys.stdout.write(f"\n{tally.summary()}\n")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("token", [True, False], ids=["with-token", "without-token"])
def test_openapi_fuzz_every_operation_answers_as_documented(
    schema: schemathesis.BaseSchema, token: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every operation, fuzzed with and without tokens (SYSTEM_TOKEN, a user's JWT): no 5xx,
    no answer outside the error shape, none that contradicts the document."""
    tally = Tally("with token" if token else "without token")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the document has operations schemathesis refuses"
    labels = {operation.label for operation in operations}
    assert {"POST /products", "GET /system/metrics", "GET /system/feed", "GET /users/me"} <= labels
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, token, tally)
    report(capsys, tally)
    assert tally.requests >= len(operations) * 2
    assert not tally.failed, tally.summary()


NESTED = b'{"name": ' + b"[" * 1_000 + b"]" * 1_000 + b', "price": 1}'
HOSTILE = [  # the classes a hostile client tried (issue #14), outside what the document says
    ("GET", "/products/9223372036854775808", None),
    ("GET", "/products/-9223372036854775809", None),
    ("DELETE", "/products/99999999999999999999999999", None),
    ("POST", "/products?x=1", NESTED),
    ("POST", "/products", NESTED),
    ("POST", "/products", b'{"name": "\xff\xfe", "price": 1}'),
    ("POST", "/products", b'{"name": "pen", "price": 1e999}'),
    ("POST", "/products", b'{"name": "pen", "price": "NaN"}'),
    ("POST", "/products", b'{"name": "pen", "price": 1, "id": 9223372036854775808}'),
    ("GET", "/docs/static/" + "a" * 256, None),
    ("GET", "/system/dashboard/" + "a" * 256, None),
    ("GET", "/system/events?limit=99999999999999999999999", None),
    ("GET", "/system/events?name=%ff%fe&limit=%00", None),
    ("GET", "/products/%ff", None),
]


@pytest.mark.timeout(120)
def test_openapi_fuzz_hostile_inputs_answer_4xx_in_the_error_shape(
    schema: schemathesis.BaseSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out-of-range numbers, deep nesting, long path segments and odd encodings answer a
    4xx in the error shape, with the token and without."""
    tally = Tally("hostile inputs")
    with asgi.get_client(schema.app) as client:
        for method, path, body in HOSTILE:
            for headers in (BEARER, {}):
                sent = client.request(
                    method, path, data=body, headers={"content-type": "application/json", **headers}
                )
                response = Response.from_any(sent)
                tally.record(response, f"{method} {path[:80]}")
                if response.status_code < 400:
                    tally.contradictions.append(f"{response.status_code} <- {method} {path[:80]}")
    report(capsys, tally)
    assert not tally.failed, tally.summary()
