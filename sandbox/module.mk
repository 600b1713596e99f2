# sandbox/: launch a process tree in cgroups + namespaces + seccomp (see docs/sandbox.md).
SANDBOX_SRCS := sandbox/cgroup.c sandbox/seccomp.c
$(eval $(call cd_lib,sandbox,$(SANDBOX_SRCS)))
