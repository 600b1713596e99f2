# sandbox/: launch a process tree in cgroups + namespaces + seccomp (see docs/sandbox.md).
SANDBOX_SRCS := sandbox/cgroup.c sandbox/seccomp.c sandbox/netns.c sandbox/launch.c \
	sandbox/initloop.c
$(eval $(call cd_lib,sandbox,$(SANDBOX_SRCS)))

# The default seccomp profiles, compiled by libseccomp at build time and embedded in seccomp.c
# (a launch then compiles nothing; seccomp.c falls back to run-time compilation when the running
# libseccomp or architecture differ). An explicit rule, not the object pattern: every pattern
# object waits for GEN_HEADERS, this header among them.
SECCOMP_GEN_SRCS := sandbox/seccomp_gen.c sandbox/seccomp.c lib/error.c
$(BUILD)/sandbox-seccomp-gen: $(SECCOMP_GEN_SRCS) sandbox/seccomp.h lib/error.h lib/macro.h \
		lib/str.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE_CPPFLAGS) -DSANDBOX_SECCOMP_GEN -std=gnu11 $(WARNINGS) $(WERROR) -O1 \
		-o $@ $(SECCOMP_GEN_SRCS) $$($(PKG_CONFIG) --libs libseccomp)
$(BUILD)/gen/sandbox_seccomp_bpf.h: $(BUILD)/sandbox-seccomp-gen
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)$< > $@.tmp && mv $@.tmp $@
GEN_HEADERS += $(BUILD)/gen/sandbox_seccomp_bpf.h
# sandbox-run is a one-shot process per task: it links libnl, libseccomp and libcgroup
# statically (their archives come with the -dev packages the build needs anyway), so exec'ing
# it maps and relocates libc alone. Measured: 0.5 ms less CPU per start, nearly half of it
# symbol lookups and mmaps of four shared objects (docs/sandbox.md). A security update of one of
# these libraries needs a rebuild of sandbox-run, which is a build-tree tool (debugging,
# selftests, bench/start) the packages do not ship; taskd and taskd-shim link them dynamically.
SANDBOX_RUN_STATIC := -Wl,-Bstatic -lnl-route-3 -lnl-3 -lseccomp -lcgroup -Wl,-Bdynamic
$(eval $(call cd_prog,sandbox-run,sandbox/sandbox_run.c,sandbox cdlib,$(SANDBOX_RUN_STATIC)))
$(eval $(call cd_selftest,sandbox,selftests/sandbox.c,sandbox cdlib))
$(eval $(call cd_test,test_sandbox,tests/unit/test_sandbox.c,sandbox cdlib,$(call wrap,cgroup_init seccomp_version)))
CHECK_PKGS += runc crun

# sandbox-init: libc only, linked statically (static-pie) so exec'ing it as every task's pid 1
# costs no dynamic loading (and it needs nothing from the task's view of the host). Against musl
# when musl-gcc is installed (musl-tools): musl starts without glibc's CPUID-based CPU feature
# detection, and every CPUID is a VM exit on a virtual machine — exec + start-up took 0.46 ms of
# CPU with glibc, 0.18 ms with musl here (bench/start/RESULTS.md). glibc otherwise.
DEPS_PKGS += musl-tools
SANDBOX_INIT_SRCS := sandbox/init_main.c sandbox/initloop.c
ALL_SRCS += sandbox/init_main.c
PROGS += $(BUILD)/sandbox-init
INSTALL_LIBEXEC += sandbox-init
MUSL_GCC ?= $(shell command -v musl-gcc 2>/dev/null)
MUSL_LIB := /usr/lib/$(shell $(CC) -dumpmachine 2>/dev/null | sed 's/-gnu$$/-musl/')
ifneq ($(and $(MUSL_GCC),$(wildcard $(MUSL_LIB)/rcrt1.o)),)
# musl-gcc's specs know no static-pie: the start files and libc are named explicitly
$(BUILD)/sandbox-init: $(SANDBOX_INIT_SRCS) sandbox/initloop.h lib/macro.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC-MUSL $@")
	$(Q)$(MUSL_GCC) -std=gnu11 $(WARNINGS) $(WERROR) $(OPTFLAGS) -fPIE \
		-fstack-protector-strong -I. -D_GNU_SOURCE -nostartfiles -nostdlib -Wl,-static \
		-Wl,-pie -Wl,--no-dynamic-linker -Wl,-z,text -Wl,-z,relro,-z,now -o $@ \
		$(MUSL_LIB)/rcrt1.o $(MUSL_LIB)/crti.o $$($(CC) -print-file-name=crtbeginS.o) \
		$(SANDBOX_INIT_SRCS) $(MUSL_LIB)/libc.a $$($(CC) -print-libgcc-file-name) \
		$$($(CC) -print-file-name=crtendS.o) $(MUSL_LIB)/crtn.o
else
$(BUILD)/sandbox-init: $(call objs,obj,$(SANDBOX_INIT_SRCS))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -static-pie -Wl,-z,relro,-z,now $(LDFLAGS) -o $@ $^
endif
