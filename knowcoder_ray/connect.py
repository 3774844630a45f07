"""One way to reach Ray for every command, job and notebook."""
from __future__ import annotations

import os
import socket


def connect(address: str | None = None, num_cpus: int | None = None, *, new_local: bool = False,
            log_to_driver: bool = True) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local one bound to 127.0.0.1 with `num_cpus`
    CPUs (`new_local`: never join a Ray that `ray start` left here); an initialised Ray is kept. True when this
    call started Ray here (the caller may shut it down)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:  # read when Ray is first imported: a local node then binds 127.0.0.1
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if address:  # checked even when Ray is up here: a wrong address is an error, not ignored
        _check_reachable(address)
    if ray.is_initialized():
        return False
    ray.init(address=address or ("local" if new_local else None), num_cpus=None if address else num_cpus,
             include_dashboard=False, log_to_driver=log_to_driver)
    return True


def _check_reachable(address: str, timeout: float = 10) -> None:
    """A `host:port` (or `ray://host:port`) that nothing answers is a ConnectionError within seconds;
    `ray.init` would retry for minutes before saying so."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():  # "auto", "local" and other forms Ray resolves itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"no Ray cluster answers at {address!r} ({e.strerror or e})") from None
