"""Ray dispatch: every trial is a Ray task on a node of its platform, one per device.

Nodes carry a ``platform`` label and an exclusive ``dut_<platform>`` resource of 1 per
device under test, so two measurements never share a device and the scheduler, not this
code, picks the node. ``cluster=local`` starts a private Ray instance bound to 127.0.0.1
that looks like a one-node fleet; ``cluster=ray`` joins a cluster of node agents.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from tuner.node.labels import (PLATFORM_LABEL, accelerators_of, cores_of, dut_resource,
                               runtime_resource, runtimes_of)
from tuner.trial import TrialConfig, TrialResult

# Extra seconds the driver waits past a trial's own timeout (the worker kills the trial
# child itself at the timeout; this catches a hung or lost worker).
DRIVER_GRACE_S = 30.0


class DispatchError(RuntimeError):
    """The cluster cannot run what was asked (missing platform or runtime)."""


@dataclass
class NodeInfo:
    node_id: str
    platform: str
    address: str
    devices: int
    runtimes: list[str] = field(default_factory=list)
    alive: bool = True
    cores: int = 0  # CPUs the node may run on (its --cpus set; 0: unknown)
    accelerators: list[str] = field(default_factory=list)  # device kinds, e.g. ["edgetpu"]


def _measure_task(cfg: TrialConfig, timeout_s: float | None) -> TrialResult:
    import ray

    from tuner.worker.isolation import run_isolated

    result = run_isolated(cfg, timeout_s)
    # Which Ray node measured it: the hostname alone does not say (several node agents
    # may share a host), the node id and its labels (platform, tuner.node agent id) do.
    ctx = ray.get_runtime_context()
    labels = dict(ctx.get_node_labels())
    facts = {**_node_facts(), "platform": labels.get(PLATFORM_LABEL, result.platform)}
    result.system = {**result.system, "ray_node_id": ctx.get_node_id(),
                     "ray_node_labels": labels,
                     # the measuring node as it is (architecture, emulated CPU or not), so a
                     # record says what its latency is worth without asking the node again
                     "arch": facts["arch"], "emulated": facts["emulated"],
                     "facts": result.system.get("facts") or facts}
    return result


@functools.cache
def _node_facts() -> dict:
    """This worker's node facts, without the runtimes (those are per trial): once per
    worker process."""
    from tuner.machine.platforms import detect

    return detect(runtimes=False).to_dict()


def _driver_auth(address: str | None) -> str | None:
    """Set this process's Ray auth environment for joining ``address``.

    On the machine where the node agent started the head, its record holds the token
    (``prepare_driver``). Elsewhere (a driver on a worker node) the token comes from
    ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH``/``~/.ray/auth_token``, and the mode must be
    set explicitly: ``ray.init(address=...)`` never turns token auth on by itself."""
    from tuner.node import auth

    try:
        return auth.prepare_driver(address)
    except RuntimeError:
        pass  # no head of this agent here
    if not os.environ.get(auth.AUTH_MODE_ENV):
        if not (os.environ.get(auth.TOKEN_ENV) or os.environ.get(auth.TOKEN_PATH_ENV)
                or auth.default_token_file().is_file()):
            raise DispatchError(
                f"no auth token for the cluster at {address}: no head started by the node "
                f"agent here ({auth.state_dir(create=False)}); set {auth.TOKEN_PATH_ENV} to "
                f"the cluster's token file (or {auth.AUTH_MODE_ENV}=disabled for a --no-auth "
                "cluster)")
        os.environ[auth.AUTH_MODE_ENV] = "token"
    auth.refresh_ray_auth_cache()
    return address


def no_node(platform: str, present: dict[str, list[NodeInfo]]) -> str:
    """The problem of a requested platform no alive node carries."""
    return f"no node of platform {platform!r} (present: {', '.join(sorted(present)) or 'none'})"


class Dispatcher(Protocol):
    """Where trials run, as the scheduler and the run's set-up see it: Ray (``RayDispatcher``),
    a replayed table (``tuner.fleet.replay``) or simulated devices (``tuner.fleet.simulate``).
    ``submit`` returns a reference; ``result`` turns a finished one into a ``TrialResult``
    or the one-line cause of its loss."""

    # The fidelity a search's records carry where the dispatcher measures on no device of
    # its own (simulated); None: the trials' own (``short``, or ``replay`` in replay mode).
    search_fidelity: str | None = None

    def platforms(self) -> dict[str, list[NodeInfo]]: ...

    def check(self, platforms: list[str], runtimes: list[str]) -> dict[str, int]: ...

    def submit(self, cfg: TrialConfig, timeout_s: float | None) -> Any: ...

    def wait(self, refs: list, timeout_s: float) -> list: ...

    def result(self, ref) -> TrialResult | str: ...

    def cancel(self, ref) -> None: ...

    def shutdown(self) -> None: ...

    def points(self, platform: str, scenario: str) -> list[dict[str, Any]] | None:
        """The only points a study of ``platform`` may propose (a replayed table holds only
        some of its grid); None: any point of its space."""
        return None


class RayDispatcher(Dispatcher):
    def __init__(self, mode: str = "local", address: str | None = None,
                 platform: str = "local", num_cpus: int | None = None,
                 runtimes: list[str] | None = None):
        import ray

        self._ray = ray
        self.started_local = False
        self._watch = None
        # the fleet's Python policy (same minor release) before Ray checks this driver
        from tuner.node import python_policy

        python_policy.apply(os.environ)
        if mode == "local":
            # Local mode: this process starts Ray, so it is the only process that needs the
            # cluster's auth token; bind to loopback so nothing outside this machine joins.
            resources = {dut_resource(platform): 1}
            resources.update({runtime_resource(r): 1 for r in runtimes or []})
            try:
                ray.init(num_cpus=num_cpus or os.cpu_count(), resources=resources,
                         labels={PLATFORM_LABEL: platform}, include_dashboard=False,
                         _node_ip_address="127.0.0.1", log_to_driver=False,
                         configure_logging=False)
            except Exception as exc:  # Ray's fixed 30 s raylet wait, missed on a slow node
                from tuner.node.ray_start import startup_failure

                known = startup_failure(str(exc))
                if known is None:
                    raise
                ray.shutdown()  # what it started of the failed node
                raise DispatchError(known.replace("ray start", "Ray (local)")) from None
            self.started_local = True
        else:
            address = _driver_auth(address)
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            from tuner.fleet.head_watch import HeadWatch

            self._watch = HeadWatch(ray.get_runtime_context().gcs_address,
                                    connected=ray.is_initialized)
        self._remote = ray.remote(max_retries=0)(_measure_task)

    # --- the fleet ---------------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        out = []
        for node in self._ray.nodes():
            labels = node.get("Labels") or {}
            resources = node.get("Resources") or {}
            platform = labels.get(PLATFORM_LABEL)
            if not platform:
                continue
            out.append(NodeInfo(node_id=node["NodeID"], platform=platform,
                                address=node.get("NodeManagerAddress", ""),
                                devices=int(resources.get(dut_resource(platform), 0)),
                                runtimes=runtimes_of(resources), alive=bool(node.get("Alive")),
                                cores=cores_of(labels, resources),
                                accelerators=accelerators_of(labels)))
        return out

    def platforms(self) -> dict[str, list[NodeInfo]]:
        out: dict[str, list[NodeInfo]] = {}
        for node in self.nodes():
            if node.alive:
                out.setdefault(node.platform, []).append(node)
        return out

    def check(self, platforms: list[str], runtimes: list[str]) -> dict[str, int]:
        """Fail fast, naming what is missing; else platform -> devices available."""
        present = self.platforms()
        problems = []
        for platform in platforms:
            nodes = present.get(platform)
            if not nodes:
                problems.append(no_node(platform, present))
                continue
            have = set().union(*(set(n.runtimes) for n in nodes))
            missing = [r for r in runtimes if r not in have]
            if missing:
                problems.append(f"platform {platform!r} has no node with runtime(s) "
                                f"{', '.join(missing)} (its nodes have: {', '.join(sorted(have)) or 'none'})")
        if problems:
            raise DispatchError("cannot dispatch: " + "; ".join(problems))
        return {p: sum(n.devices for n in present[p]) for p in platforms}

    # --- trials --------------------------------------------------------------------
    def submit(self, cfg: TrialConfig, timeout_s: float | None):
        where: dict = {"label_selector": {PLATFORM_LABEL: cfg.platform}}
        if cfg.node_id:  # a re-measurement runs where its configuration was first measured
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            where = {"scheduling_strategy": NodeAffinitySchedulingStrategy(cfg.node_id, soft=False)}
        return self._remote.options(
            num_cpus=0,  # the dut resource, not CPU slots, is what makes trials exclusive
            resources={dut_resource(cfg.platform): 1, runtime_resource(cfg.backend): 0.001},
            **where).remote(cfg, timeout_s)

    def wait(self, refs: list, timeout_s: float) -> list:
        if not refs:
            return []
        # Return as soon as one is done (waiting for all, or for the timeout, would leave
        # finished devices idle), with every other one done by then.
        ready, rest = self._ray.wait(refs, num_returns=1, timeout=timeout_s, fetch_local=True)
        if ready and rest:
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True)
            ready += more
        return ready

    def result(self, ref) -> TrialResult | str:
        """The trial's result, or the cause (str) when the task itself was lost."""
        ray = self._ray
        try:
            return ray.get(ref)
        except (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError) as exc:
            # NodeDiedError's text names the node ("... node ID: <hex>. This can happen...")
            node = re.search(r"node ID: ([0-9a-f]+)", str(exc))
            return f"node lost: {type(exc).__name__}" + (f" (node {node[1]})" if node else "")
        except ray.exceptions.TaskCancelledError:
            return "timeout: cancelled by the driver"
        except ray.exceptions.RayError as exc:
            return f"crashed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"

    def cancel(self, ref) -> None:
        self._ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        self._ray.shutdown()


def local_runtimes() -> list[str]:
    import backends

    return [name for name, reason in backends.availability().items() if reason is None]
