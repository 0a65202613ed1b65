"""Parallel test workers never start two servers on one port (app/devkit/processes.py)."""

import ast
import subprocess
import sys

from tests.support import ROOT

HAND_OUT = "from app.devkit.processes import free_port; print([free_port() for _ in range(150)])"


def test_no_port_is_handed_out_twice_across_processes_at_once():
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAND_OUT], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    ports = [port for proc in procs for port in ast.literal_eval(proc.communicate()[0])]
    assert len(ports) == 450
    assert len(set(ports)) == len(ports)
