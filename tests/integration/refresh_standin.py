"""An HTTP stand-in for the instance-refresh API in front of moto server, enforcing AWS's
documented rules so that a test fails where AWS would.

moto (5.x) implements neither StartInstanceRefresh, DescribeInstanceRefreshes,
CancelInstanceRefresh, RollbackInstanceRefresh nor EC2 DeleteLaunchTemplateVersions (it
answers them with a 500). `InstanceRefreshStandIn` is a real HTTP server on 127.0.0.1 that
answers those five actions in the AWS query/EC2 wire formats and forwards every other request
to moto unchanged; what a refresh does to the group (its launch template, terminating and
replacing instances) it does through moto's own API over HTTP, as AWS would. Only
DeleteLaunchTemplateVersions touches moto's in-process state, since moto has no call for it.

The rules enforced, from the Amazon EC2 Auto Scaling API Reference (RefreshPreferences,
StartInstanceRefresh, RollbackInstanceRefresh) and User Guide ("Add checkpoints to an
instance refresh", "Undo changes with a manual or auto rollback"):

- CheckpointPercentages: "Threshold values for each checkpoint in ascending order. Each
  number must be unique. To replace all instances in the Auto Scaling group, the last number
  in the array must be 100." A refresh ends at its last checkpoint: "The last value shown in
  the CheckpointPercentages array describes the percentage of the Auto Scaling group that
  needs to be successfully replaced. The operation transitions to Successful after this
  percentage is successfully replaced" -- so [50] replaces half the group and reports
  Successful. Values are 1..100 (the console's "enter a number (1-100)").
- CheckpointDelay: 0..172800; "if you specify a value for it, you must also specify a value
  for CheckpointPercentages".
- MinHealthyPercentage: "Value range is 0 to 100". MaxHealthyPercentage: "Value range is
  100 to 200. If you specify MaxHealthyPercentage, you must also specify
  MinHealthyPercentage, and the difference between them cannot be greater than 100."
- AutoRollback / RollbackInstanceRefresh: "A rollback is not supported in the following
  situations: There is no desired configuration specified for the instance refresh. The Auto
  Scaling group has a launch template that uses an AWS Systems Manager parameter instead of
  an AMI ID for the ImageId property. The Auto Scaling group uses the launch template's
  $Latest or $Default version." The rule is about the GROUP's configuration (what a rollback
  returns to), not the desired one: "You can only roll back to a previous version of a launch
  template if the version is a specific numbered version."
- InstanceRefreshInProgress: "The request failed because an active instance refresh already
  exists for the specified Auto Scaling group." CancelInstanceRefresh and
  RollbackInstanceRefresh without one: ActiveInstanceRefreshNotFound.
- A failed refresh with AutoRollback goes RollbackInProgress -> RollbackSuccessful and "the
  new instances match the configuration that you last saved on the Auto Scaling group before
  starting the instance refresh"; without it, Failed: "If you cancel the operation or it fails
  before the last checkpoint, any instances that were already replaced are not rolled back".
  A desired configuration becomes the group's only when the refresh succeeds.
- DeleteLaunchTemplateVersions: the default version cannot be deleted.

Simplifications (not AWS behaviour, chosen for fast deterministic tests): a refresh advances
one step per DescribeInstanceRefreshes call instead of by the clock, and checkpoint delays,
warm-up and bake time are not waited for (the refresh reports it is at a checkpoint and goes
on at the next poll). A batch is as large as MinHealthy/MaxHealthy allow and never passes the
next checkpoint. An instance counts as matching the desired configuration when it runs the
desired version's AMI (moto does not track the launch template version of a replacement).
moto reuses the number of a deleted latest version, AWS never does; only the latest version
can be deleted here.

moto keeps lifecycle hooks (PutLifecycleHook, DescribeLifecycleHooks) but has no lifecycle
actions: it terminates at once and has no CompleteLifecycleAction. `hold_for_termination`
does what a group does when it terminates an instance with termination hooks (one pending
action per autoscaling:EC2_INSTANCE_TERMINATING hook, the instance in Terminating:Wait) and
CompleteLifecycleAction answers under the API Reference's rules: LifecycleActionResult
CONTINUE or ABANDON; the instance identified by InstanceId or LifecycleActionToken; only an
action still pending for that group, hook and instance can be completed (ValidationError
"No active Lifecycle Action found with instance ID ...", which is also what a second
completion gets). When the instance's last pending action is completed it is terminated in
moto.

Fault injection: `start_faults` (each StartInstanceRefresh request takes the next: "500" is a
retryable InternalFailure, "close" drops the connection before anything happens,
"close-after-start" starts the refresh and then drops the connection) and `unhealthy_images`
(new instances from these AMIs fail their health checks, failing the refresh after its first
batch).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import http.client
import itertools
import math
import re
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import botocore.session
from botocore.config import Config

AUTOSCALING_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
REFRESH_ACTIONS = {"StartInstanceRefresh", "DescribeInstanceRefreshes",
                   "CancelInstanceRefresh", "RollbackInstanceRefresh"}
LIFECYCLE_ACTIONS = {"CompleteLifecycleAction"}
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
ACTIVE = {"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"}
_MODEL = botocore.session.get_session().get_service_model("autoscaling")


class Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclasses.dataclass
class Refresh:
    id: str
    group: str
    region: str
    strategy: str
    desired: dict
    preferences: dict
    original: dict          # the group's LaunchTemplate before the refresh
    capacity: int
    targets: list[str]      # instances still to replace
    done: int               # instances already on the desired configuration
    status: str = "Pending"
    reason: str = ""
    started: dt.datetime = dataclasses.field(
        default_factory=lambda: dt.datetime.now(dt.UTC))
    ended: dt.datetime | None = None
    launched: list[str] = dataclasses.field(default_factory=list)

    @property
    def checkpoints(self) -> list[int]:
        return list(self.preferences.get("CheckpointPercentages") or [])

    @property
    def percentage(self) -> int:
        if self.status in ("RollbackInProgress", "RollbackSuccessful"):
            return 0
        return 100 if not self.capacity else math.floor(100 * self.done / self.capacity)

    def as_data(self) -> dict:
        data = {"InstanceRefreshId": self.id, "AutoScalingGroupName": self.group,
                "Status": self.status, "StatusReason": self.reason,
                "StartTime": self.started, "PercentageComplete": self.percentage,
                "InstancesToUpdate": len(self.targets), "Preferences": self.preferences,
                "Strategy": self.strategy}
        if self.desired:
            data["DesiredConfiguration"] = self.desired
        if self.ended:
            data["EndTime"] = self.ended
        return data


class InstanceRefreshStandIn:
    def __init__(self, moto_url: str):
        self.moto = urllib.parse.urlsplit(moto_url)
        self.moto_url = moto_url
        self.lock = threading.RLock()
        self.clients: dict[tuple[str, str], object] = {}
        self.reset()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                standin._handle(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        with self.lock:
            self.refreshes: list[Refresh] = []
            self.start_requests: list[dict] = []     # every StartInstanceRefresh received
            self.start_faults: list[str] = []
            self.unhealthy_images: set[str] = set()
            # (group, hook, instance) -> its lifecycle action token, while in Terminating:Wait
            self.lifecycle_actions: dict[tuple[str, str, str], str] = {}
            self.completed: list[dict] = []          # every CompleteLifecycleAction accepted
            self.ids = itertools.count(1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def started(self) -> list[dict]:
        """The parameters of the refreshes actually started."""
        return [{"AutoScalingGroupName": r.group, "DesiredConfiguration": r.desired,
                 "Preferences": r.preferences} for r in self.refreshes]

    # ------------------------------------------------------------------ HTTP

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        auth = req.headers.get("Authorization", "")
        scope = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/", auth)
        region, service = scope.groups() if scope else ("us-east-1", "")
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"),
                                           keep_blank_values=True))
        action = form.get("Action", "")
        if service == "autoscaling" and action in REFRESH_ACTIONS | LIFECYCLE_ACTIONS:
            self._answer_autoscaling(req, region, action, form)
        elif service == "ec2" and action == "DeleteLaunchTemplateVersions":
            self._answer_delete_versions(req, region, form)
        else:
            self._forward(req, body)

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> None:
        conn = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=60)
        try:
            headers = {k: v for k, v in req.headers.items()
                       if k.lower() not in ("connection", "keep-alive")}
            conn.request(req.command, req.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        req.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                   "server", "date"):
                req.send_header(key, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(payload)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, xml: bytes) -> None:
        req.send_response(status)
        req.send_header("Content-Type", "text/xml")
        req.send_header("Content-Length", str(len(xml)))
        req.end_headers()
        req.wfile.write(xml)

    def _answer_autoscaling(self, req, region: str, action: str, form: dict) -> None:
        op = _MODEL.operation_model(action)
        params = _parse(op.input_shape, form, "")
        after_start = None
        with self.lock:
            if action == "StartInstanceRefresh":
                self.start_requests.append(copy.deepcopy(params))
                fault = self.start_faults.pop(0) if self.start_faults else None
                if fault == "close":
                    req.close_connection = True
                    return
                if fault == "500":
                    return self._send(req, 500, _error_xml(
                        "InternalFailure", "We encountered an internal error.", "Receiver"))
                after_start = fault
            try:
                result = getattr(self, "_" + _snake(action))(region, params)
            except Refused as exc:
                return self._send(req, 400, _error_xml(exc.code, exc.message))
        if after_start == "close-after-start":
            req.close_connection = True
            return
        root = ET.Element(f"{action}Response", xmlns=AUTOSCALING_NS)
        _render(ET.SubElement(root, f"{action}Result"), op.output_shape, result)
        meta = ET.SubElement(root, "ResponseMetadata")
        ET.SubElement(meta, "RequestId").text = "standin"
        self._send(req, 200, ET.tostring(root))

    # ------------------------------------------------------------------ moto clients

    def _client(self, service: str, region: str):
        key = (service, region)
        if key not in self.clients:
            self.clients[key] = boto3.client(
                service, region_name=region, endpoint_url=self.moto_url,
                aws_access_key_id="testing", aws_secret_access_key="testing",
                config=Config(retries={"mode": "standard", "max_attempts": 2}))
        return self.clients[key]

    def _group(self, region: str, name: str) -> dict:
        found = self._client("autoscaling", region).describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not found:
            raise Refused("ValidationError", f"AutoScalingGroup name not found - {name}")
        return found[0]

    def _version(self, region: str, spec: dict) -> dict:
        ec2 = self._client("ec2", region)
        key = ({"LaunchTemplateId": spec["LaunchTemplateId"]} if spec.get("LaunchTemplateId")
               else {"LaunchTemplateName": spec.get("LaunchTemplateName", "")})
        try:
            found = ec2.describe_launch_template_versions(
                **key, Versions=[str(spec.get("Version") or "$Default")])
        except ec2.exceptions.ClientError as exc:
            raise Refused("ValidationError", f"launch template {key}: "
                          f"{exc.response['Error']['Message']}") from None
        versions = found["LaunchTemplateVersions"]
        if not versions:
            raise Refused("ValidationError", f"launch template {key} version "
                          f"{spec.get('Version')} does not exist")
        return versions[0]

    def _images(self, region: str, instance_ids: list[str]) -> dict[str, str]:
        if not instance_ids:
            return {}
        found = self._client("ec2", region).describe_instances(InstanceIds=instance_ids)
        return {i["InstanceId"]: i["ImageId"] for r in found["Reservations"]
                for i in r["Instances"]}

    # ------------------------------------------------------------------ the API

    def _active(self, group: str) -> Refresh | None:
        return next((r for r in self.refreshes if r.group == group and r.status in ACTIVE),
                    None)

    def _start_instance_refresh(self, region: str, params: dict) -> dict:
        name = params["AutoScalingGroupName"]
        group = self._group(region, name)
        if self._active(name):
            raise Refused("InstanceRefreshInProgress",
                          f"An Instance Refresh is already in progress and blocks the "
                          f"execution of this Instance Refresh for {name}.")
        prefs = params.get("Preferences") or {}
        _check_preferences(prefs)
        desired = params.get("DesiredConfiguration") or {}
        original = group.get("LaunchTemplate") or {}
        if prefs.get("AutoRollback"):
            _check_reversible(desired, original, self._version(region, original)
                              if original else None)
        target = self._version(region, desired["LaunchTemplate"] if desired.get(
            "LaunchTemplate") else original)
        image = target["LaunchTemplateData"].get("ImageId")
        ids = [i["InstanceId"] for i in group.get("Instances", [])]
        running = self._images(region, ids)
        skip = prefs.get("SkipMatching")
        targets = [i for i in ids if not skip or running.get(i) != image]
        refresh = Refresh(
            id=f"standin-refresh-{next(self.ids)}", group=name, region=region,
            strategy=params.get("Strategy", "Rolling"), desired=desired, preferences=prefs,
            original=original, capacity=int(group.get("DesiredCapacity") or 0),
            targets=targets, done=len(ids) - len(targets))
        self.refreshes.append(refresh)
        return {"InstanceRefreshId": refresh.id}

    def _describe_instance_refreshes(self, region: str, params: dict) -> dict:
        name = params["AutoScalingGroupName"]
        wanted = params.get("InstanceRefreshIds") or []
        found = [r for r in self.refreshes if r.group == name and r.region == region
                 and (not wanted or r.id in wanted)]
        for refresh in found:
            if refresh.status in ACTIVE:
                self._step(refresh)
        return {"InstanceRefreshes": [r.as_data() for r in reversed(found)]}

    def _cancel_instance_refresh(self, region: str, params: dict) -> dict:
        refresh = self._require_active(params["AutoScalingGroupName"])
        self._set_template(refresh, refresh.original)
        self._end(refresh, "Cancelled", "Cancelled by the user")
        return {"InstanceRefreshId": refresh.id}

    def _rollback_instance_refresh(self, region: str, params: dict) -> dict:
        refresh = self._require_active(params["AutoScalingGroupName"])
        _check_reversible(refresh.desired, refresh.original,
                          self._version(region, refresh.original) if refresh.original else None,
                          code="IrreversibleInstanceRefresh")
        self._roll_back(refresh, "Rollback started by the user")
        return {"InstanceRefreshId": refresh.id}

    def _require_active(self, name: str) -> Refresh:
        refresh = self._active(name)
        if refresh is None:
            raise Refused("ActiveInstanceRefreshNotFound",
                          f"No in progress or pending Instance Refresh found for Auto "
                          f"Scaling group {name}")
        return refresh

    # ------------------------------------------------------------------ lifecycle hooks

    def hold_for_termination(self, region: str, group: str, instance_id: str) -> list[str]:
        """The group terminates `instance_id`: a pending action per termination hook (the
        hooks' names), or the instance terminated at once when the group has none."""
        hooks = [h["LifecycleHookName"] for h in self._client(
            "autoscaling", region).describe_lifecycle_hooks(
                AutoScalingGroupName=group)["LifecycleHooks"]
                 if h["LifecycleTransition"] == TERMINATING]
        with self.lock:
            for hook in hooks:
                self.lifecycle_actions[(group, hook, instance_id)] = \
                    f"standin-token-{next(self.ids)}"
        if not hooks:
            self._terminate(region, instance_id)
        return hooks

    def waiting(self, instance_id: str) -> bool:
        """Whether the instance is in Terminating:Wait."""
        return any(key[2] == instance_id for key in self.lifecycle_actions)

    def _complete_lifecycle_action(self, region: str, params: dict) -> dict:
        result = params.get("LifecycleActionResult")
        if result not in ("CONTINUE", "ABANDON"):
            raise Refused("ValidationError", f"Invalid LifecycleActionResult {result!r}: "
                                             "CONTINUE or ABANDON")
        instance, token = params.get("InstanceId"), params.get("LifecycleActionToken")
        if not (instance or token):
            raise Refused("ValidationError", "Either InstanceId or LifecycleActionToken "
                                             "must be specified")
        group, hook = params["AutoScalingGroupName"], params["LifecycleHookName"]
        self._group(region, group)
        key = next((k for k, t in self.lifecycle_actions.items()
                    if k[:2] == (group, hook) and (k[2] == instance or t == token)), None)
        if key is None:
            raise Refused("ValidationError", f"No active Lifecycle Action found with "
                                             f"instance ID {instance or token}")
        del self.lifecycle_actions[key]
        self.completed.append(copy.deepcopy(params))
        if not self.waiting(key[2]):
            self._terminate(region, key[2])
        return {}

    def _terminate(self, region: str, instance_id: str) -> None:
        self._client("autoscaling", region).terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=False)

    # ------------------------------------------------------------------ progress

    def _set_template(self, refresh: Refresh, spec: dict) -> None:
        if spec:
            self._client("autoscaling", refresh.region).update_auto_scaling_group(
                AutoScalingGroupName=refresh.group, LaunchTemplate={
                    k: v for k, v in spec.items() if k in ("LaunchTemplateId", "Version")})

    def _replace(self, refresh: Refresh, ids: list[str]) -> list[str]:
        before = {i["InstanceId"] for i in self._group(refresh.region, refresh.group)[
            "Instances"]}
        for iid in ids:
            self._terminate(refresh.region, iid)
        after = {i["InstanceId"] for i in self._group(refresh.region, refresh.group)[
            "Instances"]}
        return sorted(after - before)

    def _end(self, refresh: Refresh, status: str, reason: str = "") -> None:
        refresh.status, refresh.reason = status, reason
        refresh.ended = dt.datetime.now(dt.UTC)

    def _roll_back(self, refresh: Refresh, reason: str) -> None:
        refresh.status, refresh.reason = "RollbackInProgress", reason
        self._set_template(refresh, refresh.original)
        self._replace(refresh, refresh.launched)

    def _step(self, refresh: Refresh) -> None:
        if refresh.status == "Pending":
            # New instances come from the desired configuration while the refresh runs.
            if refresh.desired.get("LaunchTemplate"):
                self._set_template(refresh, refresh.desired["LaunchTemplate"])
            refresh.status = "InProgress"
        elif refresh.status == "RollbackInProgress":
            self._end(refresh, "RollbackSuccessful", refresh.reason)
            return
        if refresh.status != "InProgress":
            return
        goal = (refresh.checkpoints or [100])[-1]
        if refresh.percentage >= goal:
            return self._end(refresh, "Successful")
        prefs = refresh.preferences
        low = prefs.get("MinHealthyPercentage", 90)
        high = prefs.get("MaxHealthyPercentage", 100)
        room = refresh.capacity - math.ceil(refresh.capacity * low / 100) + math.floor(
            refresh.capacity * (high - 100) / 100)
        nxt = next(c for c in refresh.checkpoints + [100] if c > refresh.percentage)
        need = math.ceil(refresh.capacity * nxt / 100) - refresh.done
        batch = refresh.targets[:max(1, min(room, need))]
        refresh.launched += self._replace(refresh, batch)
        refresh.targets = refresh.targets[len(batch):]
        desired_image = self._version(refresh.region, refresh.desired.get(
            "LaunchTemplate") or refresh.original)["LaunchTemplateData"].get("ImageId")
        if desired_image in self.unhealthy_images:
            reason = (f"{len(batch)} new instance(s) from {desired_image} failed their "
                      f"health checks")
            if prefs.get("AutoRollback"):
                return self._roll_back(refresh, reason + "; rolling back")
            self._set_template(refresh, refresh.original)
            return self._end(refresh, "Failed", reason)
        refresh.done += len(batch)
        if refresh.percentage >= goal or not refresh.targets:
            # A refresh ends at its last checkpoint, whatever is left on the old one.
            return self._end(refresh, "Successful")
        reached = [c for c in refresh.checkpoints if c <= refresh.percentage]
        refresh.reason = (f"Waiting at checkpoint {reached[-1]}% "
                          f"({prefs.get('CheckpointDelay', 3600)} s)" if reached else "")

    # ------------------------------------------------------------------ EC2

    def _answer_delete_versions(self, req, region: str, form: dict) -> None:
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        backend = get_backend("ec2")[DEFAULT_ACCOUNT_ID][region]
        versions = [v for k, v in sorted(form.items()) if k.startswith("LaunchTemplateVersion.")]
        with self.lock:
            try:
                template = (backend.get_launch_template(form["LaunchTemplateId"])
                            if form.get("LaunchTemplateId") else
                            backend.get_launch_template_by_name(form["LaunchTemplateName"]))
            except Exception as exc:  # moto's own not-found error
                return self._send(req, 400, _ec2_error("InvalidLaunchTemplateId.NotFound",
                                                       str(exc)))
            ok, bad = [], []
            for v in versions:
                if not v.isdigit() or int(v) != template.latest_version_number:
                    bad.append((v, "InvalidLaunchTemplateVersion.NotFound" if not v.isdigit()
                                else "unexpectedError",
                                "the stand-in deletes only the latest version"))
                elif template.default_version_number == int(v):
                    bad.append((v, "launchTemplateVersionCannotBeDeleted",
                                "Cannot delete the default version"))
                else:
                    template.versions.pop()
                    ok.append(v)
        root = ET.Element("DeleteLaunchTemplateVersionsResponse", xmlns=EC2_NS)
        ET.SubElement(root, "requestId").text = "standin"
        good = ET.SubElement(root, "successfullyDeletedLaunchTemplateVersionSet")
        for v in ok:
            item = ET.SubElement(good, "item")
            ET.SubElement(item, "launchTemplateId").text = template.id
            ET.SubElement(item, "launchTemplateName").text = template.name
            ET.SubElement(item, "versionNumber").text = v
        failed = ET.SubElement(root, "unsuccessfullyDeletedLaunchTemplateVersionSet")
        for v, code, message in bad:
            item = ET.SubElement(failed, "item")
            ET.SubElement(item, "launchTemplateId").text = template.id
            ET.SubElement(item, "launchTemplateName").text = template.name
            ET.SubElement(item, "versionNumber").text = v if v.isdigit() else "0"
            err = ET.SubElement(item, "responseError")
            ET.SubElement(err, "code").text = code
            ET.SubElement(err, "message").text = message
        self._send(req, 200, ET.tostring(root))


# --------------------------------------------------------------------------- the rules


def _check_preferences(prefs: dict) -> None:
    points = prefs.get("CheckpointPercentages")
    if points is not None:
        if any(not 1 <= p <= 100 for p in points):
            raise Refused("ValidationError", "CheckpointPercentages must be within 1..100")
        if points != sorted(set(points)):
            raise Refused("ValidationError",
                          "CheckpointPercentages must be unique and in ascending order")
    if "CheckpointDelay" in prefs:
        if not points:
            raise Refused("ValidationError",
                          "CheckpointDelay requires CheckpointPercentages")
        if not 0 <= prefs["CheckpointDelay"] <= 172800:
            raise Refused("ValidationError", "CheckpointDelay must be within 0..172800")
    low, high = prefs.get("MinHealthyPercentage"), prefs.get("MaxHealthyPercentage")
    if low is not None and not 0 <= low <= 100:
        raise Refused("ValidationError", "MinHealthyPercentage must be within 0..100")
    if high is not None:
        if not 100 <= high <= 200:
            raise Refused("ValidationError", "MaxHealthyPercentage must be within 100..200")
        if low is None:
            raise Refused("ValidationError",
                          "MaxHealthyPercentage requires MinHealthyPercentage")
        if high - low > 100:
            raise Refused("ValidationError", "MaxHealthyPercentage and MinHealthyPercentage "
                          "may differ by 100 at most")


def _check_reversible(desired: dict, original: dict, original_version: dict | None,
                      code: str = "ValidationError") -> None:
    if not desired:
        raise Refused(code, "A rollback needs a desired configuration")
    if not original or not str(original.get("Version", "")).isdigit():
        raise Refused(code, "A rollback is not supported when the Auto Scaling group uses "
                      "the launch template's $Latest or $Default version")
    image = (original_version or {}).get("LaunchTemplateData", {}).get("ImageId", "")
    if image.startswith("resolve:ssm:"):
        raise Refused(code, "A rollback is not supported when the group's launch template "
                      "takes its AMI from a Systems Manager parameter")


# --------------------------------------------------------------------------- wire format


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _parse(shape, form: dict[str, str], prefix: str):
    """Query-protocol parameters (Preferences.CheckpointPercentages.member.1=50) as the
    nested, typed structure the operation's input shape describes."""
    def present(key: str) -> bool:
        return any(k == key or k.startswith(key + ".") for k in form)

    if shape.type_name == "structure":
        return {name: _parse(member, form, f"{prefix}.{name}" if prefix else name)
                for name, member in shape.members.items()
                if present(f"{prefix}.{name}" if prefix else name)}
    if shape.type_name == "list":
        items = []
        while present(f"{prefix}.member.{len(items) + 1}"):
            items.append(_parse(shape.member, form, f"{prefix}.member.{len(items) + 1}"))
        return items
    value = form[prefix]
    if shape.type_name in ("integer", "long"):
        return int(value)
    if shape.type_name == "boolean":
        return value == "true"
    return value


def _render(parent: ET.Element, shape, value) -> None:
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                _render(ET.SubElement(parent, name), member, value[name])
    elif shape.type_name == "list":
        for item in value:
            _render(ET.SubElement(parent, "member"), shape.member, item)
    elif shape.type_name == "boolean":
        parent.text = "true" if value else "false"
    elif shape.type_name == "timestamp":
        parent.text = value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    else:
        parent.text = str(value)


def _error_xml(code: str, message: str, kind: str = "Sender") -> bytes:
    root = ET.Element("ErrorResponse", xmlns=AUTOSCALING_NS)
    err = ET.SubElement(root, "Error")
    ET.SubElement(err, "Type").text = kind
    ET.SubElement(err, "Code").text = code
    ET.SubElement(err, "Message").text = message
    ET.SubElement(root, "RequestId").text = "standin"
    return ET.tostring(root)


def _ec2_error(code: str, message: str) -> bytes:
    root = ET.Element("Response")
    err = ET.SubElement(ET.SubElement(root, "Errors"), "Error")
    ET.SubElement(err, "Code").text = code
    ET.SubElement(err, "Message").text = message
    ET.SubElement(root, "RequestID").text = "standin"
    return ET.tostring(root)
