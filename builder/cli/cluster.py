"""`builder cluster`: a local HA cluster of VMs booted from the baked images."""

from __future__ import annotations

import functools

import click

from builder.cli.output import emit


def _env(func):
    @click.option("--env", "env_name", default="local", show_default=True, metavar="NAME|FILE",
                  help="Environment: cluster name, CIDR and node counts come from it.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


_timeout = click.option("--timeout", type=click.FloatRange(10), default=1200, show_default=True,
                        help="Seconds to wait for the node agents to report ready.")


def _image(what: str, then: str):
    return click.option("--image", metavar="VERSION-KEY",
                        help=f"{what} (an artifact's directory name, as `builder bake` "
                             f"reports it, e.g. 1.2.0-d6a7611dce61) {then}")


@click.group()
def cluster() -> None:
    """A local cluster of VMs from the registered images: up, status, kill, stop, start,
    replace, upgrade, down."""


@cluster.command()
@_env
@_timeout
@click.option("--role", "only", multiple=True, metavar="ROLE",
              help="Boot only these roles (repeatable; default: every role of the "
                   "environment that has an image, etcd-patroni and haproxy required).")
@click.option("--version", "versions", multiple=True, metavar="ROLE=VERSION",
              help="Boot ROLE from its newest image of VERSION instead of its newest image "
                   "(repeatable): e.g. the release in production, before an upgrade.")
@click.option("--keep-on-failure", "keep", is_flag=True,
              help="Leave the VMs running when a node fails to come up (to debug it).")
def up(env_name, as_json, timeout, only, versions, keep) -> None:
    """Boot the cluster on a private network and wait until every node is ready."""
    from builder.cluster import manage, views

    emit(manage.up(env_name, only, timeout, keep, manage.pinned(versions)), as_json,
         views.up)


@cluster.command()
@_env
def status(env_name, as_json) -> None:
    """Nodes (power, agent, Patroni role and lag, etcd health) and host endpoints."""
    from builder.cluster import status as cluster_status
    from builder.cluster import views

    emit(cluster_status.status(env_name), as_json, views.status)


@cluster.command()
@click.argument("node")
@_env
def kill(node, env_name, as_json) -> None:
    """Hard power-off of NODE (SIGKILL to its VM: no shutdown, as when a host dies)."""
    from builder.cluster import manage, views

    emit(manage.kill(env_name, node), as_json, views.done)


@cluster.command()
@click.argument("node")
@_env
def stop(node, env_name, as_json) -> None:
    """Graceful power-off of NODE from inside (as an autoscaling group terminates an
    instance): an etcd-patroni node hands over the primary and leaves etcd first."""
    from builder.cluster import manage, views

    emit(manage.stop(env_name, node), as_json, views.done)


@cluster.command()
@click.argument("node")
@_env
@_timeout
def start(node, env_name, as_json, timeout) -> None:
    """Power NODE on again with its disk as it was, and wait until it is ready."""
    from builder.cluster import manage, views

    emit(manage.start(env_name, node, timeout), as_json, views.done)


@cluster.command()
@click.argument("node")
@_env
@_timeout
@_image("Boot this image of the node's role", "instead of the one the node ran: an image "
        "swap or a rollback.")
def replace(node, env_name, as_json, timeout, image) -> None:
    """Replace NODE by a new instance (new instance-id, empty disk, same role and slot)."""
    from builder.cluster import manage, views

    emit(manage.replace(env_name, node, timeout, image), as_json, views.done)


@cluster.command()
@click.argument("role")
@_env
@_timeout
@_image("Upgrade to this image of the role", "(default: the newest tested one).")
@click.option("--version", "version", metavar="VERSION",
              help="Upgrade to the newest tested image of this role version (e.g. 1.2.0).")
@click.option("--rollback", is_flag=True,
              help="Go back to the image the nodes ran before the last upgrade (recorded in "
                   "the cluster's state); resumes an interrupted rollback.")
def upgrade(role, env_name, as_json, timeout, image, version, rollback) -> None:
    """Roll a new image of ROLE through the running cluster, one node at a time.

    etcd-patroni only for now: replicas first, each stopped gracefully (it leaves etcd),
    replaced in its slot from the new image and waited for (etcd whole, streaming), then
    the primary, whose graceful stop is the one switchover. Nodes already on the image are
    skipped, so running it again resumes a rollout that stopped."""
    from builder.cluster import upgrade as rollout
    from builder.cluster import views

    emit(rollout.upgrade(env_name, role, image, version, rollback, timeout), as_json,
         views.upgrade)


@cluster.command()
@_env
def down(env_name, as_json) -> None:
    """Power off every VM, remove the network, disks, keys and secrets of the cluster."""
    from builder.cluster import manage, views

    emit(manage.down(env_name), as_json, views.down)
