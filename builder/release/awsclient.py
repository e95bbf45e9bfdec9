"""The one place boto3 sessions and clients are made, and AWS errors become builder errors."""

from __future__ import annotations

import contextlib
import os

from builder.errors import OperationError, UserError
from builder.spec import AwsEnvironment

# Standard mode retries throttling and transient 5xx with backoff; a few attempts more than
# the default 3 because release steps run long and a throttled describe should not fail one.
RETRIES = {"mode": "standard", "max_attempts": 6}


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

    @property
    def endpoint_url(self) -> str | None:
        return os.environ.get("AWS_ENDPOINT_URL") or None

    def client(self, service: str, region: str | None = None, attempts: int | None = None):
        """attempts=1 for calls that must not be repeated (not idempotent)."""
        from botocore.config import Config

        region = region or self.region
        retries = RETRIES if attempts is None else {"mode": RETRIES["mode"],
                                                     "total_max_attempts": attempts}
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


@contextlib.contextmanager
def calling(what: str):
    """Turn botocore failures into one-line OperationErrors naming the step."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise OperationError(f"{what}: {err.get('Code', 'error')}: "
                             f"{err.get('Message', '').strip()}") from None
    except BotoCoreError as exc:
        raise OperationError(f"{what}: {exc}") from None


def read_parameter(aws: Aws, region: str, name: str) -> str | None:
    """An SSM parameter's value; None when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        return aws.ssm(region).get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        with calling(f"reading SSM parameter {name} in {region}"):
            raise


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}
