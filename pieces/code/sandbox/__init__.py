"""The code that runs *inside* the sandbox child of `code.python`; entry point `bootstrap.main`.

Everything in this package imports only the standard library: the child interpreter starts with
`-I -S` (no site-packages) and imports this package as the top-level name `sandbox`, while the
worker imports the shared parts (`protocol`) as `pieces.code.sandbox`. Modules:

- `protocol`: the configuration, frames and names shared by the worker and the child.
- `libc`: the few system calls Python 3.11's `os` lacks, through ctypes.
- `namespaces`: uid drop, user/mount/PID/network/IPC/UTS namespaces, the private root file system.
- `privileges`: capabilities, rlimits, `no_new_privs`, parent-death signal.
- `landlock`: Landlock file-system, network and scope rules.
- `seccomp`: the seccomp BPF filter, assembled by hand.
- `runner`: compiles and runs the user's `main(inputs)`, reports the result or the error.
- `bootstrap`: the order in which the layers are set up, in the two processes of the sandbox.
"""
