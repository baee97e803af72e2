"""How the ranks of a job find each other, check that they run the same job, and say what went wrong.

`join()` runs in every process of a multi-process job before the process group exists:

1. The address this rank advertises to its peers (gloo's) is chosen: the interface named by
   GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME when set, else the interface of the route to MASTER_ADDR
   (gloo's own choice is the address `hostname` resolves to, which Debian-style /etc/hosts maps to
   127.0.1.1: peers on other hosts then cannot connect).  Every rank prints one start line.
2. Every rank connects to a key-value store (torch's TCPStore) that rank 0 serves on
   MASTER_ADDR:MASTER_PORT, and publishes who it is (host, addresses, device, backend) and the
   fingerprint of its job (arguments, resolved model config, dataset identity, ds_config, software).
3. Rank 0 waits for all ranks (at most `timeout` seconds), compares, and publishes a verdict: every
   rank gets the same error naming the missing ranks, the flags that differ with each host's value, or
   an address that peers could not reach.  All of this happens before the first collective, so a job
   whose ranks disagree stops within seconds instead of hanging in a mismatched collective.

The same store carries a heartbeat (a counter per rank, bumped every few seconds by a thread) so that,
when a collective fails or times out later, `describe_failure()` can name the rank and host that went
silent.  The process group is then made on this store (`torch.distributed.init_process_group(store=)`).
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Optional, Sequence

PREFIX = "uer_ds/"


def _prefix() -> str:
    """The store keys' prefix: torchrun keeps its store across restarts of the workers, so each attempt
    has its own keys (TORCHELASTIC_RESTART_COUNT)."""
    return f"{PREFIX}{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
HEARTBEAT_SECONDS = 5.0
ACK_SECONDS = 30.0  # how long rank 0 keeps the store up for the others to read a failed verdict


class RendezvousError(RuntimeError):
    """The ranks could not start together: a rank missing, unreachable, or running another job."""


# ---- addresses ------------------------------------------------------------------------------------
@dataclass
class Advertised:
    """The address a rank gives its peers: `address` on `interface`, and why (`how`).  address None:
    the backend's own choice (gloo: what `hostname` resolves to), kept where every rank is on this machine.
    `problem`: why peers on other hosts could not reach this rank (checked once all ranks are known)."""

    address: Optional[str]
    interface: Optional[str]
    how: str
    problem: Optional[str] = None


def interface_addresses() -> dict[str, list[str]]:
    """{interface name: its IPv4 addresses} on this host."""
    import psutil

    return {name: [a.address for a in addrs if a.family == socket.AF_INET]
            for name, addrs in psutil.net_if_addrs().items()}


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def resolve(name: str) -> Optional[str]:
    """The IPv4 address `name` resolves to here (None when it does not)."""
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    except (socket.gaierror, IndexError, UnicodeError):
        return None


def route_source(address: str) -> Optional[str]:
    """The source address this host uses to reach `address` (the kernel's route; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, 9))
        except OSError:
            return None
        return probe.getsockname()[0]


def choose_address(master_addr: str, backend: str, env: Optional[dict] = None,
                   interfaces: Optional[dict[str, list[str]]] = None) -> Advertised:
    """The address this rank should advertise (see the module's docstring); sets nothing.

    A named interface (GLOO_SOCKET_IFNAME for gloo, NCCL_SOCKET_IFNAME for nccl; the first of a comma
    list) must exist here with an IPv4 address, else ValueError naming the host, the variable and the
    interfaces there are.  Otherwise the interface holding the source address of the route to
    MASTER_ADDR; when MASTER_ADDR is a loopback address here, none (the backend's default), with
    `problem` set for the case that other hosts take part.
    """
    env = os.environ if env is None else env
    interfaces = interface_addresses() if interfaces is None else interfaces
    host = socket.gethostname()
    variable = "NCCL_SOCKET_IFNAME" if backend == "nccl" else "GLOO_SOCKET_IFNAME"
    named = env.get(variable)
    if named:
        first = named.split(",")[0].lstrip("=^")  # NCCL's =name / ^name prefixes
        if named.startswith("^") or first not in interfaces or not interfaces[first]:
            have = ", ".join(f"{n} ({', '.join(a) or 'no IPv4'})" for n, a in sorted(interfaces.items()))
            if named.startswith("^"):  # an exclusion list: NCCL chooses; nothing to check here
                return Advertised(None, None, f"{variable}={named}")
            raise ValueError(f"host {host}: {variable}={named} names no interface with an IPv4 address here "
                             f"(interfaces: {have}); set it to the interface the other hosts reach, or unset it "
                             "(uer_ds then takes the interface of the route to MASTER_ADDR)")
        address = interfaces[first][0]
        problem = None
        if is_loopback(address):
            problem = (f"{variable}={named} is a loopback interface ({address}), which other hosts cannot "
                       "reach: set it to the interface of this host's network address, or unset it")
        return Advertised(address, first, variable, problem)
    target = resolve(master_addr)
    if target is None:
        raise ValueError(f"host {host}: MASTER_ADDR '{master_addr}' does not resolve here; give --master_addr "
                         "an address (or a name in /etc/hosts or DNS) of the first host that every host reaches")
    if is_loopback(target):
        routable = ", ".join(a for _, addrs in sorted(interfaces.items()) for a in addrs if not is_loopback(a))
        problem = (f"MASTER_ADDR '{master_addr}' resolves to {target} here, a loopback address, and `hostname` "
                   f"({host}) resolves to {resolve(host)}, so this rank would advertise an address the other "
                   f"hosts cannot reach. Fix: give --master_addr the address of {host} that the other hosts reach "
                   f"(`hostname -I` there: {routable or 'none'}), or map {host} to that address in /etc/hosts "
                   "(Debian's installer maps it to 127.0.1.1), or set GLOO_SOCKET_IFNAME to its interface")
        return Advertised(None, None, f"MASTER_ADDR {target} is this machine's loopback", problem)
    source = route_source(target)
    owner = next((name for name, addrs in interfaces.items() if source in addrs), None)
    if source is None or owner is None:
        raise ValueError(f"host {host}: no route to MASTER_ADDR '{master_addr}' ({target}) from any interface "
                         f"here; check the network, or set {variable} to the interface the other hosts reach")
    return Advertised(source, owner, f"the route to MASTER_ADDR {target}")


# ---- this rank ------------------------------------------------------------------------------------
@dataclass
class Peer:
    """One rank as the others see it."""

    rank: int
    host: str
    address: Optional[str]  # advertised (None: the backend's default, all ranks on one machine)
    interface: Optional[str]
    how: str
    local_rank: int
    device: str
    backend: str
    pid: int
    machine: str = ""  # what tells machines apart: hostname + its non-loopback addresses
    problem: Optional[str] = None

    def where(self) -> str:
        return f"rank {self.rank} on {self.host}" + (f" ({self.address})" if self.address else "")


def machine_identity(interfaces: dict[str, list[str]]) -> str:
    addresses = sorted(a for addrs in interfaces.values() for a in addrs if not is_loopback(a))
    return f"{socket.gethostname()}|{','.join(addresses)}"


def start_line(peer: Peer, world: int) -> str:
    """The line each rank prints at start-up (host, rank, local rank, device, backend, address)."""
    where = f"{peer.address} via {peer.interface}, {peer.how}" if peer.address else f"the backend's own ({peer.how})"
    return (f"uer-ds: rank {peer.rank} of {world} on {peer.host}: local rank {peer.local_rank}, device {peer.device}, "
            f"backend {peer.backend}, address {where}")


def launcher_hosts() -> Optional[list[str]]:
    """Host of each global rank, from the DeepSpeed launcher that started this process (its
    --world_info, {host: [slots]}, ranks numbered in that order); None under other launchers."""
    try:
        import psutil

        args = psutil.Process(os.getppid()).cmdline()
    except Exception:  # noqa: BLE001 (no parent to ask: another launcher)
        return None
    info = next((a.split("=", 1)[1] for a in args if a.startswith("--world_info=")), None)
    if info is None:
        return None
    try:
        world = json.loads(base64.urlsafe_b64decode(info))
    except (ValueError, TypeError):
        return None
    return [host for host, slots in world.items() for _ in slots]


# ---- comparing jobs -------------------------------------------------------------------------------
def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b": leaf} for nested dicts (lists and other values are leaves)."""
    if isinstance(values, dict) and values:
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: values}


def job_differences(jobs: Sequence[dict], where: Sequence[str]) -> list[str]:
    """One line per entry of the job fingerprints that differs between ranks: the entry, then each
    value with the ranks that have it, "(default)" where that rank's command line left the flag out.
    jobs[i] is rank i's {section: {entry: value}} (uer_ds.recipes.inputs.job_fingerprint; its "given" lists
    the flags given); where[i] names rank i, e.g. "node2 (rank 1)".  A missing entry reads "(not set)"."""
    flat = [flatten({k: v for k, v in job.items() if k != "given"}) for job in jobs]
    keys = sorted(set().union(*flat), key=lambda k: (k.split(".")[0] != "arguments", k))
    lines = []
    for key in keys:
        section, _, entry = key.partition(".")
        values = [json.dumps(f.get(key, "(not set)"), sort_keys=True, default=str) for f in flat]
        if len(set(values)) == 1:
            continue
        groups: dict[str, list[str]] = {}
        for rank, value in enumerate(values):
            default = section == "arguments" and "given" in jobs[rank] and entry not in jobs[rank]["given"]
            groups.setdefault(value + (" (default)" if default else ""), []).append(where[rank])
        lines.append(f"{_entry_name(key)}: " + "; ".join(f"{v} on {', '.join(n)}" for v, n in groups.items()))
    return lines


def _entry_name(key: str) -> str:
    section, _, entry = key.partition(".")
    if section == "arguments":
        return f"--{entry}"
    return f"{section} {entry}" if entry else section


def rank_names(peers: Sequence[Peer]) -> list[str]:
    return [f"{p.host} (rank {p.rank})" for p in peers]


def verdict(peers: Sequence[Peer], jobs: Sequence[dict]) -> Optional[str]:
    """The error every rank raises, or None: ranks that run another job, or that advertise an address
    the others cannot reach while the job spans several machines."""
    problems = []
    machines = {p.machine for p in peers}
    if len(machines) > 1:
        for p in peers:
            if p.problem:
                problems.append(f"{p.host} (rank {p.rank}): {p.problem}")
    if problems:
        return (f"the job spans {len(machines)} hosts ({', '.join(sorted({p.host for p in peers}))}) but " +
                "; ".join(problems))
    differences = job_differences(jobs, rank_names(peers))
    if differences:
        return ("the ranks do not run the same job (compared at start-up, before the first collective): " +
                "; ".join(differences) + ". Give every host the same command and files (the deepspeed launcher "
                "does; with UER-py's launch flags repeat every flag on each node, only --gpu_ranks differs)")
    return None


def summary_line(peers: Sequence[Peer], job: Optional[dict]) -> str:
    """Rank 0's line once all ranks arrived and agree: the hosts and their ranks, what was compared."""
    hosts: dict[str, list[int]] = {}
    for p in peers:
        hosts.setdefault(p.host, []).append(p.rank)
    where = "; ".join(f"{h}: rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}" for h, r in hosts.items())
    compared = [k for k in (job or {}) if k != "given"]
    return (f"uer-ds: {len(peers)} ranks on {len(hosts)} host(s) ({where}) run the same job" +
            (f" ({', '.join(compared)} compared)" if compared else ""))


# ---- the store ------------------------------------------------------------------------------------
@dataclass
class Rendezvous:
    """What join() leaves: the store (the process group is built on it), every rank's Peer, and the
    heartbeat that describe_failure() reads."""

    store: Any
    peers: list[Peer]
    me: Peer
    timeout: float
    master: str
    heard: dict[int, float] = field(default_factory=dict)  # rank -> monotonic time its counter last moved
    last_reply: float = field(default_factory=time.monotonic)  # when the store last answered this rank

    def start_heartbeat(self, interval: float = HEARTBEAT_SECONDS) -> None:
        """Two daemon threads.  The heartbeat, with its own store connection, bumps this rank's counter
        and notes when the store answered and (on rank 0) when each rank's counter last moved.  The
        watchdog stops the process (exit status 1, after one line naming the rank and host) once a rank
        has been silent for longer than the timeout (rank 0), or the store has not answered for that long
        (the others).  Gloo does not always time out by itself: a collective sending into a link that
        went down waits in TCP's retransmissions (15 minutes by Linux's default), and so does a store
        call; this is what bounds a cut link."""
        import torch.distributed as tdist

        host, port = self.master.rsplit(":", 1)
        patience = max(self.timeout, 3 * interval)
        try:  # a short store timeout: the thread keeps looking even when the store does not answer
            client = tdist.TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=2 * interval),
                                    wait_for_workers=False)
        except Exception:  # noqa: BLE001 (no heartbeat: failures are still reported, less precisely)
            return
        keys = [f"{_prefix()}alive/{p.rank}" for p in self.peers]

        def beat() -> None:  # talks to the store (a call may block for as long as the link is down)
            seen: dict[int, bytes] = {}
            while True:
                try:
                    # add, not set: set is never answered, so it "succeeds" into a cut link; add waits for
                    # the store's reply
                    client.add(f"{_prefix()}alive/{self.me.rank}", 1)
                    self.last_reply = time.monotonic()
                    if self.me.rank == 0:
                        now = time.monotonic()
                        for peer, value in zip(self.peers, client.multi_get(keys)):
                            if seen.get(peer.rank) != value:
                                seen[peer.rank] = value
                                self.heard[peer.rank] = now
                except Exception:  # noqa: BLE001 (the store is gone or unreachable: keep last_reply as it is)
                    pass
                time.sleep(interval)

        def watch() -> None:  # no I/O: it cannot be held up by what it watches
            while True:
                time.sleep(interval)
                message = self.lost(patience)
                if message is not None:
                    print(f"uer-ds: error: {message}", file=sys.stderr, flush=True)
                    sys.stdout.flush()
                    os._exit(1)

        now = time.monotonic()
        self.heard.update({p.rank: now for p in self.peers})
        self.last_reply = now
        threading.Thread(target=beat, name="uer_ds-heartbeat", daemon=True).start()
        threading.Thread(target=watch, name="uer_ds-watchdog", daemon=True).start()

    def lost(self, patience: float) -> Optional[str]:
        """Why this process should stop (None: every rank still answers): on rank 0 the ranks silent for
        longer than `patience` seconds, elsewhere rank 0's store unanswered for that long."""
        if self.me.rank == 0:
            silent = self.silent(patience)
            if not silent:
                return None
            who = ", ".join(f"{p.where()} not heard from for {seconds:.0f} s" for p, seconds in silent)
        else:
            quiet = time.monotonic() - self.last_reply
            if quiet <= patience:
                return None
            who = f"rank 0's store ({self.master}) unanswered for {quiet:.0f} s"
        return (f"{self.me.where()}: {who} (longer than --dist_timeout {self.timeout:.0f} s): its host is down or cut "
                "off from the network; stopping this rank, whatever collective it waits in")

    def silent(self, longer_than: float = 2.5 * HEARTBEAT_SECONDS) -> list[tuple[Peer, float]]:
        """(peer, seconds) for the ranks not heard from for longer than `longer_than` (rank 0 only)."""
        now = time.monotonic()
        return [(p, now - self.heard[p.rank]) for p in self.peers
                if p.rank in self.heard and now - self.heard[p.rank] > longer_than]

    def peers_at(self, address: str) -> list[Peer]:
        return [p for p in self.peers if p.address == address and p.rank != self.me.rank]


def _connect(master_addr: str, port: int, rank: int, world: int, timeout: float, host: str):
    import torch.distributed as tdist

    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun serves the store
    try:
        return tdist.TCPStore(master_addr, port, world, is_master=rank == 0 and not agent_store,
                              timeout=timedelta(seconds=timeout), wait_for_workers=False)
    except Exception as err:  # noqa: BLE001 (torch raises several kinds; all mean the same here)
        if rank == 0 and not agent_store:
            raise RendezvousError(f"rank 0 on {host}: cannot serve the rendezvous on port {port} "
                                  f"(MASTER_PORT): {err}. Choose a free --master_port") from None
        raise RendezvousError(f"rank {rank} on {host}: could not reach rank 0's rendezvous at {master_addr}:{port} "
                              f"within {timeout:.0f} s (--dist_timeout): rank 0 did not start, or this host cannot "
                              f"reach that address ({err})") from None


def join(rank: int, world: int, local_rank: int, backend: str, device: str, timeout: float,
         job: Optional[dict] = None) -> Rendezvous:
    """Steps 1-3 of the module's docstring; returns the Rendezvous (its store for the process group).

    Sets GLOO_SOCKET_IFNAME for gloo when uer_ds chose the interface.  Raises RendezvousError (a rank
    missing or unreachable) or ValueError (different jobs, an unusable address), the same text on every
    rank that reached the store, within `timeout` seconds (ranks missing) or at once (the rest).
    """
    master_addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    host = socket.gethostname()
    interfaces = interface_addresses()
    chosen = choose_address(master_addr, backend, interfaces=interfaces)
    if chosen.address and backend == "gloo" and not os.environ.get("GLOO_SOCKET_IFNAME"):
        os.environ["GLOO_SOCKET_IFNAME"] = chosen.interface
    me = Peer(rank, host, chosen.address, chosen.interface, chosen.how, local_rank, device, backend, os.getpid(),
              machine_identity(interfaces), chosen.problem)
    print(start_line(me, world), flush=True)
    store = _connect(master_addr, port, rank, world, timeout, host)
    store.add(f"{_prefix()}alive/{rank}", 0)
    store.set(f"{_prefix()}peer/{rank}", json.dumps({"peer": asdict(me), "job": job or {}}, default=str))
    if rank == 0:
        peers, error, missing = _collect(store, world, timeout, host)
        store.set(f"{_prefix()}verdict", json.dumps({"error": error, "missing": missing,
                                                  "peers": [asdict(p) for p in peers]}))
        if error is not None:
            _wait_for_acks(store, len(peers) - 1)
    else:
        try:
            store.wait([f"{_prefix()}verdict"], timedelta(seconds=timeout + ACK_SECONDS))
            answer = json.loads(store.get(f"{_prefix()}verdict"))
        except Exception as err:  # noqa: BLE001
            raise RendezvousError(f"rank {rank} on {host}: rank 0 ({master_addr}) gave no verdict on the start-up "
                                  f"check within {timeout:.0f} s (--dist_timeout): its process ended or its host "
                                  f"became unreachable ({err})") from None
        store.add(f"{_prefix()}ack", 1)
        peers, error, missing = [Peer(**p) for p in answer["peers"]], answer["error"], answer["missing"]
    if error is not None:
        raise (RendezvousError if missing else ValueError)(error)
    if rank == 0:
        print(summary_line(peers, job), flush=True)
    return Rendezvous(store, peers, me, timeout, f"{master_addr}:{port}")


def _collect(store, world: int, timeout: float, host: str) -> tuple[list[Peer], Optional[str], bool]:
    """Rank 0: the Peer of every rank that came (waiting up to `timeout`), the error (None: all came and
    agree), and whether ranks are missing."""
    keys = [f"{_prefix()}peer/{r}" for r in range(world)]
    deadline = time.monotonic() + timeout
    present = [False] * world
    while True:
        present = [present[r] or store.check([keys[r]]) for r in range(world)]
        if all(present) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    entries = [json.loads(store.get(keys[r])) for r in range(world) if present[r]]
    peers = [Peer(**e["peer"]) for e in entries]
    if not all(present):
        hosts = launcher_hosts()
        missing = [r for r in range(world) if not present[r]]
        named = ", ".join(f"{r} ({hosts[r]})" if hosts and r < len(hosts) else str(r) for r in missing)
        joined = ", ".join(f"{p.rank} ({p.host})" for p in peers)
        error = (f"rank 0 on {host}: rank(s) {named} did not reach the rendezvous within {timeout:.0f} s "
                 f"(--dist_timeout); {len(peers)} of {world} did ({joined}). A host did not start its processes "
                 "(see the launcher's output above: ssh refused or timed out?) or cannot reach "
                 f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}")
        return peers, error, True
    return peers, verdict(peers, [e["job"] for e in entries]), False


def _wait_for_acks(store, others: int) -> None:
    """Keep the store (this process) up until the other ranks read the verdict, or ACK_SECONDS pass."""
    deadline = time.monotonic() + ACK_SECONDS
    while others > 0 and time.monotonic() < deadline:
        if store.check([f"{_prefix()}ack"]) and int(store.add(f"{_prefix()}ack", 0)) >= others:
            return
        time.sleep(0.05)


# ---- failures after start-up ----------------------------------------------------------------------
FAILURE_MARKERS = ("gloo", "Connection closed by peer", "Connection reset by peer", "Timed out waiting",
                   "NCCL", "ProcessGroup", "Broken pipe", "c10d")


def is_collective_failure(err: BaseException) -> bool:
    """Whether `err` is a failed or timed-out collective (torch's DistError, or gloo/NCCL's RuntimeError)."""
    try:
        import torch.distributed as tdist

        if isinstance(err, tdist.DistError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(err, RuntimeError) and any(m in str(err) for m in FAILURE_MARKERS)


def describe_failure(err: BaseException, rdv: Optional[Rendezvous]) -> str:
    """One line for a failed collective: this rank and host, the peer it lost (from the address in the
    error, or the heartbeat: who went silent), the bound that ended the wait, and the backend's words."""
    import re

    text = " ".join(str(err).split())
    if len(text) > 300:
        text = text[:300] + "..."
    if rdv is None:
        return f"a collective failed: {text}"
    me = rdv.me.where()
    lost: list[str] = []
    for address in dict.fromkeys(re.findall(r"\[?(\d+\.\d+\.\d+\.\d+)\]?:\d+", str(err))):
        lost += [p.where() for p in rdv.peers_at(address)]
    timed_out = "Timed out" in text or "timed out" in text or "Timeout" in text
    silent = [f"{p.where()} not heard from for {seconds:.0f} s" for p, seconds in rdv.silent()]
    no_store = time.monotonic() - rdv.last_reply
    if rdv.me.rank != 0 and no_store > 2.5 * HEARTBEAT_SECONDS:
        silent.append(f"rank 0's store ({rdv.master}) unanswered for {no_store:.0f} s")
    if timed_out:
        what = f"a collective did not complete within {rdv.timeout:.0f} s (--dist_timeout)"
    else:
        what = "a collective failed"
    who = ""
    if lost:
        who = f"; lost {', '.join(dict.fromkeys(lost))} (its process ended or the network to it was cut)"
    if silent:
        who += f"; {', '.join(silent)} (its host down or cut off?)"
    elif not lost and timed_out:
        who += "; every rank still answers the heartbeat: a rank is stuck, or the ranks disagree on the collective"
    return f"{me}: {what}{who} [{text}]"


# ---- launchers that name ranks their own way -------------------------------------------------------
def adopt_mpi_environment(env: Optional[dict] = None) -> bool:
    """Under OpenMPI's mpirun (`deepspeed --launcher openmpi`, or mpirun itself) the ranks are named by
    OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE; set torch's RANK, WORLD_SIZE, LOCAL_RANK and
    DeepSpeed's LOCAL_SIZE from them (DeepSpeed would ask mpi4py instead).  MASTER_ADDR must come with
    the environment (mpirun -x MASTER_ADDR=..., or .deepspeed_env under the deepspeed launcher):
    ValueError otherwise.  MASTER_PORT defaults to 29500.  Returns whether it adopted anything."""
    env = os.environ if env is None else env
    if "RANK" in env or "OMPI_COMM_WORLD_RANK" not in env:
        return False
    if not env.get("MASTER_ADDR"):
        raise ValueError("started by OpenMPI (OMPI_COMM_WORLD_SIZE=" + env.get("OMPI_COMM_WORLD_SIZE", "?") + ") "
                         "without MASTER_ADDR: name the first host, where rank 0 serves the rendezvous: "
                         "MASTER_ADDR=<its address> in .deepspeed_env (deepspeed --launcher openmpi exports it with "
                         "-x), or mpirun -x MASTER_ADDR=<address> -x MASTER_PORT=<port>")
    env["RANK"] = env["OMPI_COMM_WORLD_RANK"]
    env["WORLD_SIZE"] = env["OMPI_COMM_WORLD_SIZE"]
    env["LOCAL_RANK"] = env.get("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    env["LOCAL_SIZE"] = env.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1")
    env.setdefault("MASTER_PORT", "29500")
    return True
