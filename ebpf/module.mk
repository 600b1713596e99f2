# ebpf/: taskwatch — per-task exec/fork/exit/signal/OOM events (BPF CO-RE + non-BPF fallback).
#
# vmlinux.h and the skeleton are generated into $(BUILD)/gen/ (never committed) and listed in
# GEN_HEADERS so every object waits for them.

BPFTOOL ?= bpftool
BPF_CLANG ?= clang
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux

DEPS_PKGS += bpftool clang llvm libbpf-dev libelf-dev

$(BUILD)/gen/vmlinux.h:
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/taskwatch.bpf.o: ebpf/taskwatch.bpf.c ebpf/taskwatch.h $(BUILD)/gen/vmlinux.h
	@$(if $(Q),echo "  BPF     $@")
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -I$(BUILD)/gen -c $< -o $@

$(BUILD)/gen/taskwatch.skel.h: $(BUILD)/gen/taskwatch.bpf.o
	@$(if $(Q),echo "  SKEL    $@")
	$(Q)$(BPFTOOL) gen skeleton $< name taskwatch_bpf > $@.tmp && mv $@.tmp $@

GEN_HEADERS += $(BUILD)/gen/taskwatch.skel.h

TASKWATCH_SRCS := ebpf/taskwatch.c ebpf/taskwatch_fallback.c ebpf/taskwatch_reason.c
$(eval $(call cd_lib,taskwatch,$(TASKWATCH_SRCS)))

$(eval $(call cd_prog,taskwatch,ebpf/taskwatch_cli.c,taskwatch cdlib))
INSTALL_SBIN += taskwatch

$(eval $(call cd_test,test_taskwatch_reason,tests/unit/test_taskwatch_reason.c,taskwatch cdlib))

TASKWATCH_SELFTEST_SRCS := selftests/taskwatch.c selftests/taskwatch_util.c
$(eval $(call cd_selftest,taskwatch,$(TASKWATCH_SELFTEST_SRCS),taskwatch cdlib))

# bench/watch: exit-to-userspace latency (BPF vs fallback) and fork/exec overhead, one run.
$(BUILD)/bench/bench_watch: $(call objs,obj,bench/watch/bench_watch.c) $(BUILD)/libtaskwatch.a \
		$(BUILD)/libcdlib.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_BASE) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
ALL_SRCS += bench/watch/bench_watch.c
BENCH_DEPS += $(BUILD)/bench/bench_watch
