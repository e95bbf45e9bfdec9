"""Identity from EC2's instance metadata service, IMDSv2 only (session token first)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from builder.agent.metadata import Identity

ENDPOINT = os.environ.get("BUILDER_IMDS_ENDPOINT", "http://169.254.169.254")
TOKEN_TTL = "300"


class IMDS:
    def __init__(self, endpoint: str | None = None, timeout: float = 2.0):
        self.endpoint = (endpoint or ENDPOINT).rstrip("/")
        self.timeout = timeout
        self.token: str | None = None

    def _token(self) -> str:
        if self.token is None:
            req = urllib.request.Request(
                f"{self.endpoint}/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL})
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                self.token = resp.read().decode()
        return self.token

    def get(self, path: str) -> str | None:
        try:
            return self._get(path)
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise
            # The session token expired (TOKEN_TTL) under a long-running watcher
            # (builder/agent/lifecycle.py): one new token, one more try.
            self.token = None
            return self._get(path)

    def _get(self, path: str) -> str | None:
        req = urllib.request.Request(f"{self.endpoint}/latest/meta-data/{path}",
                                     headers={"X-aws-ec2-metadata-token": self._token()})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


def read(timeout: float = 2.0, endpoint: str | None = None) -> Identity | None:
    imds = IMDS(endpoint, timeout)
    try:
        instance_id = imds.get("instance-id")
        if not instance_id:
            return None
        tags = {}
        listing = imds.get("tags/instance")  # only when the instance allows tags in metadata
        for key in (listing or "").split():
            tags[key] = imds.get(f"tags/instance/{key}") or ""
        return Identity(
            instance_id=instance_id,
            hostname=imds.get("local-hostname") or instance_id,
            address=imds.get("local-ipv4"),
            source="ec2",
            tags=tags,
            region=imds.get("placement/region"),
        )
    except (OSError, urllib.error.URLError):
        return None
