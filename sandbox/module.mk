# sandbox/: launch a process tree in cgroups + namespaces + seccomp (see docs/sandbox.md).
SANDBOX_SRCS := sandbox/cgroup.c sandbox/seccomp.c sandbox/netns.c sandbox/launch.c
$(eval $(call cd_lib,sandbox,$(SANDBOX_SRCS)))
$(eval $(call cd_prog,sandbox-run,sandbox/sandbox_run.c,sandbox cdlib))
$(eval $(call cd_selftest,sandbox,selftests/sandbox.c,sandbox cdlib))
$(eval $(call cd_test,test_sandbox,tests/unit/test_sandbox.c,sandbox cdlib))
DEPS_PKGS += runc crun
