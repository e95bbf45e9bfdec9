"""The one place boto3 sessions and clients are made, and AWS errors become builder errors."""

from __future__ import annotations

import contextlib
import os

from builder.errors import OperationError, UserError
from builder.spec import AwsEnvironment

# Standard mode retries throttling and transient 5xx with backoff; a few attempts more than
# the default 3 because release steps run long and a throttled describe should not fail one.
RETRIES = {"mode": "standard", "max_attempts": 6}


def _retries(attempts: int | None) -> dict:
    """RETRIES, or the standard AWS_MAX_ATTEMPTS (total attempts) when the user set it; a
    non-idempotent call passes attempts=1, whatever the user set."""
    if attempts is not None:
        return {"mode": RETRIES["mode"], "total_max_attempts": attempts}
    raw = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if not raw:
        return RETRIES
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"expected a whole number of attempts, at least 1, got {raw!r}",
                        field="AWS_MAX_ATTEMPTS")
    return {"mode": RETRIES["mode"], "total_max_attempts": int(raw)}


class Aws:
    """Clients for one deployment: region and profile from the environment file; credentials,
    AWS_PROFILE (when the environment names none) and AWS_ENDPOINT_URL from the process."""

    def __init__(self, settings: AwsEnvironment, region: str | None = None):
        import boto3
        from botocore.exceptions import ProfileNotFound

        self.settings = settings
        self.region = region or settings.region
        profile = settings.profile or os.environ.get("AWS_PROFILE") or None
        try:
            self.session = boto3.session.Session(profile_name=profile, region_name=self.region)
        except ProfileNotFound as exc:
            raise UserError(str(exc), field="aws.profile") from None
        self._clients: dict[tuple[str, str, int | None], object] = {}
        _retries(None)  # a bad AWS_MAX_ATTEMPTS is bad input before anything runs

    @property
    def endpoint_url(self) -> str | None:
        return os.environ.get("AWS_ENDPOINT_URL") or None

    def client(self, service: str, region: str | None = None, attempts: int | None = None):
        """attempts=1 for calls that must not be repeated (not idempotent)."""
        from botocore.config import Config

        region = region or self.region
        retries = _retries(attempts)
        key = (service, region, attempts)
        if key not in self._clients:
            self._clients[key] = self.session.client(
                service, region_name=region, endpoint_url=self.endpoint_url,
                config=Config(retries=retries, user_agent_extra="builder-release"))
        return self._clients[key]

    def ec2(self, region: str | None = None):
        return self.client("ec2", region)

    def ssm(self, region: str | None = None):
        return self.client("ssm", region)

    def autoscaling(self, region: str | None = None, attempts: int | None = None):
        return self.client("autoscaling", region, attempts)

    def elbv2(self, region: str | None = None):
        return self.client("elbv2", region)


def error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def one_line(text: str, limit: int = 300) -> str:
    """botocore's messages can hold the raw answer (a ResponseParserError quotes the body)."""
    first = (str(text).strip().splitlines() or [""])[0].strip().rstrip(":")
    return first if len(first) <= limit else first[:limit - 3] + "..."


@contextlib.contextmanager
def calling(what: str):
    """Turn botocore failures into one-line OperationErrors naming the step: AWS's answers
    (ClientError), no answer (BotoCoreError: EndpointConnectionError, ConnectionClosedError,
    ReadTimeoutError, NoCredentialsError...) and an answer that is not AWS's
    (ResponseParserError, which is not a BotoCoreError)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise OperationError(f"{what}: {err.get('Code', 'error')}: "
                             f"{one_line(err.get('Message', ''))}") from None
    except ResponseParserError as exc:
        raise OperationError(f"{what}: the endpoint's answer is not an AWS response "
                             f"({one_line(exc)})") from None
    except BotoCoreError as exc:
        raise OperationError(f"{what}: {one_line(exc)}") from None
    except (KeyError, IndexError, TypeError) as exc:
        # botocore hands a JSON service's unparseable 200 over as {"message": body}: the
        # answer lacks what every real one has. (Index answers inside `calling` for this.)
        raise OperationError(f"{what}: the endpoint's answer is not an AWS response "
                             f"(no {one_line(exc)})") from None


def read_parameter(aws: Aws, region: str, name: str) -> str | None:
    """An SSM parameter's value; None when it does not exist."""
    ssm = aws.ssm(region)
    with calling(f"reading SSM parameter {name} in {region}"):
        try:
            return ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            return None


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}
