# agent/: taskd (host daemon), taskd-shim (per-task supervisor that outlives taskd), taskctl.
AGENT_LIB_SRCS := agent/state.c agent/config.c agent/restart.c agent/logfile.c agent/taskdir.c \
	agent/runtime.c agent/manager.c agent/api.c agent/notify.c
$(eval $(call cd_lib,agent,$(AGENT_LIB_SRCS)))

AGENT_LIBS := agent fetcher sandbox taskwatch api cdlib

# the e2e tests: nginx serves artifacts, python3 plays the cluster manager and an HTTP task
DEPS_PKGS += python3 curl
CHECK_PKGS += nginx
# bench/taskd: the API benchmark (wrk) and its start-latency baseline (runc)
CHECK_PKGS += wrk runc
# the e2e leak checks of taskctl (tests/e2e/lib.sh check_no_leaks; they skip without it)
CHECK_PKGS += valgrind

$(eval $(call cd_prog,taskd,agent/taskd.c,$(AGENT_LIBS)))
# taskd-shim is exec'd at every task start and lives as long as its task: everything but libc is
# linked statically (the archives come with the -dev packages the build needs), so ld.so maps
# and relocates libc alone. Measured: exec + start-up 0.73 -> 0.47 ms of CPU, and each running
# shim's Pss 376 -> 258 kB (no per-process relocated pages of five libraries). A security update
# of libnl, libseccomp, libcgroup or jansson needs a rebuild of the shim (taskd stays dynamic).
TASKD_SHIM_STATIC := -Wl,-Bstatic -lnl-route-3 -lnl-3 -lseccomp -lcgroup -ljansson -Wl,-Bdynamic
$(eval $(call cd_prog,taskd-shim,agent/shim.c,agent sandbox cdlib,$(TASKD_SHIM_STATIC)))
INSTALL_SBIN += taskd
INSTALL_LIBEXEC += taskd-shim

$(eval $(call cd_test,test_agent_state,tests/unit/test_agent_state.c,agent cdlib,$(call wrap,sqlite3_step)))
$(eval $(call cd_test,test_agent_config,tests/unit/test_agent_config.c,agent sandbox cdlib))
$(eval $(call cd_test,test_agent_logfile,tests/unit/test_agent_logfile.c,agent cdlib))
$(eval $(call cd_test,test_agent_manager,tests/unit/test_agent_manager.c,$(AGENT_LIBS)))

TASKCTL_SRCS := agent/taskctl.c agent/taskctl_token.c agent/taskctl_events.c
$(eval $(call cd_prog,taskctl,$(TASKCTL_SRCS),api cdlib))
$(eval $(call cd_test,test_taskctl,tests/unit/test_taskctl.c agent/taskctl_token.c agent/taskctl_events.c,api cdlib))
$(eval $(call cd_fuzz,fuzz_taskctl_token,tests/fuzz/fuzz_taskctl_token.c agent/taskctl_token.c,cdlib))
INSTALL_BIN += taskctl
E2E_TESTS += tests/e2e/agent_taskd.sh
E2E_TESTS += tests/e2e/agent_notify.sh
E2E_TESTS += tests/e2e/agent_deployd.sh
E2E_TESTS += tests/e2e/agent_startup.sh
E2E_TESTS += tests/e2e/agent_pipelines.sh
E2E_TESTS += tests/e2e/agent_hostconf.sh
