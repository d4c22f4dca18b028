#!/usr/bin/env python3
"""Test helper for tests/lockdown/writer.rs: hands a job to the lockdown writer the way a
runner's child does (run it as the runner's uid). Usage: send_job.py SOCKET JOB_FILE [INPUT...]
It sends the job file's line with fds 0, 1 and 2 and one sealed memfd per input file, and
prints the writer's last line."""
import fcntl
import os
import socket
import sys

sock_path, job_path, *inputs = sys.argv[1:]
fds = [0, 1, 2]
for path in inputs:
    fd = os.memfd_create("input", os.MFD_ALLOW_SEALING)
    with open(path, "rb") as f:
        os.write(fd, f.read())
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    fds.append(fd)
s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
with open(job_path, "rb") as f:
    line = f.read().rstrip(b"\n") + b"\n"
socket.send_fds(s, [line], fds)
sys.stdout.flush()
print(s.makefile().readline().strip(), flush=True)
