"""A test cluster (launch/testcluster) from Python: hosts with their own address, hostname and sshd,
made from network namespaces on this machine.  Jobs are started on a host as a user logged in there
would start them; faults are a killed process, a cut link, a stopped sshd."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

import psutil

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "launch" / "testcluster"


def unavailable() -> Optional[str]:
    """Why this machine cannot make a test cluster (None: it can)."""
    if os.geteuid() != 0:
        return "not root: network namespaces and sshd need root"
    done = subprocess.run([str(SCRIPT), "check"], capture_output=True, text=True)
    if done.returncode != 0:
        return (done.stdout + done.stderr).strip()
    missing = [tool for tool in ("/usr/sbin/sshd", "/usr/bin/pdsh") if not os.path.exists(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (.ci/run installs openssh-server and pdsh with apt-get)"
    return None


class Cluster:
    """N hosts node1..nodeN at 10.231.0.2.. (launch/testcluster up), torn down by `down()`; if this
    process dies first, the cluster's watcher tears it down."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        env = dict(line.split("=", 1) for line in (self.dir / "cluster.env").read_text().split())
        self.id = env["ID"]
        self.addresses = dict(line.split() for line in (self.dir / "hosts").read_text().splitlines())
        self.hosts = list(self.addresses)

    @classmethod
    def up(cls, n: int, slots: int = 1) -> "Cluster":
        done = subprocess.run([str(SCRIPT), "up", str(n), "--slots", str(slots), "--owner", str(os.getpid())],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"testcluster up failed: {done.stderr}")
        return cls(Path(done.stdout.strip().splitlines()[-1]))

    def down(self) -> None:
        subprocess.run([str(SCRIPT), "down", str(self.dir)], capture_output=True, text=True, timeout=120)

    def namespace(self, host: str) -> str:
        return f"uerds-{self.id}-{host}"

    def command(self, host: str, cmd: Sequence[str]) -> list[str]:
        """`cmd` run on `host` (in its namespaces; the working directory stays)."""
        anchor = (self.dir / f"{host}.anchor").read_text().strip()
        return ["nsenter", "-t", anchor, "-n", "-u", "-m", f"--wd={os.getcwd()}", "--", *cmd]

    def start(self, host: str, cmd: Sequence[str], env: Optional[dict] = None, cwd: Optional[Path] = None,
              output=subprocess.PIPE) -> subprocess.Popen:
        """Start `cmd` on `host` in a process group of its own (`stop` ends the group)."""
        return subprocess.Popen(self.command(host, cmd), env=env, cwd=cwd or ROOT, stdout=output,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def run(self, host: str, cmd: Sequence[str], timeout: float = 60, env: Optional[dict] = None):
        return subprocess.run(self.command(host, cmd), env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def ctl(self, action: str, host: str, *args: str) -> None:
        """launch/testcluster ACTION DIR HOST ARGS (sshd start|stop, link up|down, hosts-entry ADDRESS)."""
        done = subprocess.run([str(SCRIPT), action, str(self.dir), host, *args], capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"testcluster {action} {host} {' '.join(args)}: {done.stderr}")

    def hostfile(self, hosts: Sequence[str], path: Path, slots: int = 1) -> Path:
        path.write_text("".join(f"{h} slots={slots}\n" for h in hosts))
        return path

    def processes(self, host: str, needle: str = "uer_ds") -> list[psutil.Process]:
        """The processes in `host`'s network namespace whose command line contains `needle` (a job's
        launchers and ranks; sshd and the namespace's own anchor do not match)."""
        try:
            target = os.stat(f"/run/netns/{self.namespace(host)}").st_ino
        except FileNotFoundError:
            return []
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.stat(f"/proc/{proc.pid}/ns/net").st_ino == target and needle in " ".join(proc.info["cmdline"] or ()):
                    found.append(proc)
            except (FileNotFoundError, ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def ranks(self, host: str) -> list[psutil.Process]:
        """The training processes (not the launchers) on `host`."""
        return [p for p in self.processes(host, "-m uer_ds") if "deepspeed.launcher" not in " ".join(p.cmdline())]

    def wait_gone(self, hosts: Sequence[str], within: float, needle: str = "uer_ds") -> dict[str, list[str]]:
        """Wait up to `within` seconds for no process of a job to be left on `hosts`; returns what is left."""
        deadline = time.monotonic() + within
        while True:
            left = {h: [" ".join(p.cmdline())[:120] for p in self.processes(h, needle)] for h in hosts}
            left = {h: v for h, v in left.items() if v}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def kill_everything(self, hosts: Sequence[str]) -> None:
        for host in hosts:
            for proc in self.processes(host):
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass


def stop(job: subprocess.Popen) -> None:
    """Kill a job started with Cluster.start (its whole process group)."""
    try:
        os.killpg(job.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
