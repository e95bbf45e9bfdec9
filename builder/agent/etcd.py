"""A client for etcd's v3 cluster and maintenance API through its HTTP/JSON gateway (port
2379).

Only membership and leadership calls are needed and none of them carries keys, so no base64
is involved. Member IDs are uint64 and travel as decimal strings, as the gateway writes them.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request

from builder.agent.errors import AgentError


class EtcdError(AgentError):
    pass


@dataclasses.dataclass(frozen=True)
class Member:
    id: str
    name: str              # empty until the member has started once
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool = False

    @classmethod
    def from_json(cls, data: dict) -> Member:
        return cls(id=str(data["ID"]), name=data.get("name", ""),
                   peer_urls=tuple(data.get("peerURLs", ())),
                   client_urls=tuple(data.get("clientURLs", ())),
                   learner=bool(data.get("isLearner", False)))


@dataclasses.dataclass(frozen=True)
class Status:
    member_id: str         # the member that answered
    leader_id: str

    @property
    def leader(self) -> bool:
        return bool(self.member_id) and self.member_id == self.leader_id


class Client:
    def __init__(self, url: str, timeout: float = 3.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise EtcdError(f"etcd {self.url}{path}: {_message(exc)}") from None
        except (OSError, ValueError) as exc:
            raise EtcdError(f"etcd {self.url}{path}: {exc}") from None

    def members(self) -> list[Member]:
        data = self._post("/v3/cluster/member/list", {})
        return [Member.from_json(m) for m in data.get("members", [])]

    def add(self, peer_urls: list[str], *, learner: bool = False) -> Member:
        data = self._post("/v3/cluster/member/add",
                          {"peerURLs": list(peer_urls), "isLearner": learner})
        return Member.from_json(data["member"])

    def remove(self, member_id: str) -> None:
        self._post("/v3/cluster/member/remove", {"ID": member_id})

    def promote(self, member_id: str) -> None:
        self._post("/v3/cluster/member/promote", {"ID": member_id})

    def status(self) -> Status:
        data = self._post("/v3/maintenance/status", {})
        return Status(member_id=str(data.get("header", {}).get("member_id", "")),
                      leader_id=str(data.get("leader", "")))

    def move_leader(self, member_id: str) -> None:
        """Hand this member's leadership to member_id (only the leader can)."""
        self._post("/v3/maintenance/transfer-leadership", {"targetID": member_id})

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=self.timeout) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return body.get("message") or body.get("error") or f"HTTP {exc.code}"
    except (OSError, ValueError):
        return f"HTTP {exc.code}"
