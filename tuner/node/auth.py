"""Ray token authentication for the nodes the agent starts and for drivers that join them.

Read from ray 2.60's ``ray/_private/authentication`` and ``scripts.py``: the mode comes only
from ``RAY_AUTH_MODE`` (``token``/``disabled``); the token from ``RAY_AUTH_TOKEN``, else the
file ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``. ``ray.init()`` starting a new local
cluster turns token mode on and writes ``~/.ray/auth_token`` if missing; ``ray start --head``
turns it on only if a token already exists (else it warns and runs without auth) and never
creates one; ``ray start --address`` and ``ray.init(address=...)`` never turn it on by
themselves, so they need ``RAY_AUTH_MODE=token`` explicitly or they are refused
("InvalidAuthToken"). The agent therefore sets the mode explicitly for every ``ray start``:
a head generates a fresh token into ``$TUNER_STATE_DIR/<id>.token`` (0600) unless one is
given, and never touches ``~/.ray/auth_token`` (other Ray users of the machine would
silently switch to it). A worker or a driver on the head's machine finds the head's token
through its state record.

This module is what a driver needs (``prepare_driver``); it loads no other part of the agent
than its state store and ``/proc`` reader.
"""
from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

from tuner.node.procs import is_alive
from tuner.node.store import load_records, state_dir

AUTH_MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
def default_token_file() -> Path:
    """Ray's own default token file (read at call time: HOME may change, as in tests)."""
    return Path.home() / ".ray" / "auth_token"

__all__ = ["AUTH_MODE_ENV", "TOKEN_ENV", "TOKEN_PATH_ENV", "state_dir", "head_record",
           "resolve_auth", "auth_env", "apply_env", "driver_env", "refresh_ray_auth_cache",
           "prepare_driver"]


def write_token(path: Path, token: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token.strip())
    return path


def _same_endpoint(recorded: str, given: str) -> bool:
    """Does ``given`` name the head recorded at ``recorded`` (a head this agent started, so
    its host is this machine)?"""
    rh, _, rp = recorded.rpartition(":")
    gh, _, gp = given.rpartition(":")
    local = {rh, "localhost", "", socket.gethostname()}
    return rp == gp and (gh in local or gh.startswith("127."))


def head_record(address: str | None = None, directory: Path | None = None) -> dict[str, Any] | None:
    """The live head this agent started for ``address`` (or the only live head)."""
    heads = [r for r in load_records(directory)
             if r.get("role") == "head" and not r.get("stopped_at")
             and (address is None or _same_endpoint(r["address"], address))]
    heads = [r for r in heads if any(is_alive(p["pid"], p["start"]) for p in r["processes"])]
    if address is None and len(heads) > 1:
        raise RuntimeError("several heads are running here; pass --address: "
                           + ", ".join(r["address"] for r in heads))
    return heads[-1] if heads else None


def resolve_auth(*, head: bool, no_auth: bool, token: str | None, token_file: str | None,
                 agent_id: str, directory: Path, address: str | None) -> dict[str, Any]:
    """Where a new node's token comes from; a head generates one when none is given."""
    if no_auth:
        return {"mode": "disabled", "token_path": None, "owns_token": False, "source": "--no-auth"}
    own = directory / f"{agent_id}.token"
    if token_file:
        return {"mode": "token", "token_path": str(Path(token_file).resolve()),
                "owns_token": False, "source": "--token-file"}
    if token:
        return {"mode": "token", "token_path": str(write_token(own, token)),
                "owns_token": True, "source": "--token"}
    if os.environ.get(TOKEN_PATH_ENV):
        return {"mode": "token", "token_path": os.environ[TOKEN_PATH_ENV], "owns_token": False,
                "source": TOKEN_PATH_ENV}
    if os.environ.get(TOKEN_ENV):
        return {"mode": "token", "token_path": str(write_token(own, os.environ[TOKEN_ENV])),
                "owns_token": True, "source": TOKEN_ENV}
    if head:
        return {"mode": "token", "token_path": str(write_token(own, secrets.token_hex(32))),
                "owns_token": True, "source": "generated"}
    found = head_record(address, directory)
    if found:
        return {"mode": found["auth"]["mode"], "token_path": found["auth"]["token_path"],
                "owns_token": False, "source": f"head record {found['id']}"}
    if default_token_file().is_file():
        return {"mode": "token", "token_path": str(default_token_file()), "owns_token": False,
                "source": "~/.ray/auth_token"}
    raise SystemExit("no auth token for this cluster: pass --token-file/--token, set "
                     f"{TOKEN_ENV} or {TOKEN_PATH_ENV}, or --no-auth if the head has none")


def auth_env(auth: dict[str, Any]) -> dict[str, str]:
    if auth["mode"] != "token":
        return {AUTH_MODE_ENV: "disabled"}
    return {AUTH_MODE_ENV: "token", TOKEN_PATH_ENV: auth["token_path"]}


def apply_env(env: dict[str, str], target: dict[str, str]) -> None:
    target.pop(TOKEN_ENV, None)  # RAY_AUTH_TOKEN outranks the file: drop a stale one
    if AUTH_MODE_ENV in env and env[AUTH_MODE_ENV] != "token":
        target.pop(TOKEN_PATH_ENV, None)
    target.update(env)


def driver_env(address: str | None = None, directory: Path | None = None) -> dict[str, str]:
    """Environment a driver on this machine needs for a cluster this agent started."""
    head = head_record(address, directory)
    if head is None:
        raise RuntimeError(f"no running head started by this agent"
                           f"{' at ' + address if address else ''} in {directory or state_dir()}")
    return {"RAY_ADDRESS": head["address"], **auth_env(head["auth"])}


def refresh_ray_auth_cache() -> None:
    """Ray caches RayConfig (auth mode) and the token at import: after changing the auth
    environment, refresh both as ray's own _enable_token_auth does."""
    if "ray._raylet" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def prepare_driver(address: str | None = None, directory: Path | None = None) -> str:
    """Set this process's auth env for ``ray.init(address=...)``; returns the address."""
    env = driver_env(address, directory)
    apply_env(env, os.environ)  # type: ignore[arg-type]
    refresh_ray_auth_cache()
    return env["RAY_ADDRESS"]
