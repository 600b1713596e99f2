# codedeploy — top-level, non-recursive Makefile.
#
# Each directory owns one `module.mk` that declares its libraries, programs, tests, selftests and
# fuzz targets with the helpers in mk/rules.mk. Objects go out of tree under $(BUILD)/ in three
# variants: obj/ (release, what ships), asan/ (unit tests, ASan+UBSan), fuzz/ (libFuzzer).
#
#   make            all binaries (-Werror)
#   make deps       install the Debian packages we need (idempotent)
#   make check      deps + build + unit tests (ASan/UBSan) + selftests (root) + fuzz smoke + lint
#   make test       unit tests only;  make selftest;  make fuzz FUZZ_SECONDS=N;  make lint
#   make bench      benchmarks, each against its baseline
#   make demo       the whole system on this machine, deploying a pipeline (make demo-stop)
#   make install    PREFIX=/usr/local DESTDIR=
#   V=1             show every command

VERSION := 0.1.0
BUILD ?= build
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBEXECDIR ?= $(PREFIX)/libexec/codedeploy
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DESTDIR ?=
FUZZ_SECONDS ?= 30

ifeq ($(V),1)
Q :=
else
Q := @
endif

.DEFAULT_GOAL := all

include mk/rules.mk
include mk/deps.mk

MODULES := lib api sandbox ebpf fetcher agent central tests selftests bench docs packaging
-include $(foreach m,$(MODULES),$(m)/module.mk)

all: $(PROGS)

test: $(UNIT_TESTS)
	$(Q)BUILD=$(BUILD) tests/run-tests.sh --unit $(UNIT_TESTS)

selftest: $(SELFTESTS) $(PROGS)
	$(Q)BUILD=$(BUILD) tests/run-tests.sh --selftest $(SELFTESTS)

fuzz: $(FUZZERS)
	$(Q)BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/check.sh --fuzz "$(FUZZERS)"

# `make check` is the README's test command and what .ci/run calls. Dependencies first (in a
# sub-make, so pkg-config sees freshly installed packages), then one runner that prints the
# summary line the CI reads last.
check: check-deps
	$(Q)$(MAKE) --no-print-directory check-run

check-run: $(PROGS) $(UNIT_TESTS) $(SELFTESTS) $(FUZZERS) $(CHECK_EXTRA)
	$(Q)BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/check.sh \
		--unit "$(UNIT_TESTS)" --selftest "$(SELFTESTS)" --fuzz "$(FUZZERS)" \
		--e2e "$(E2E_TESTS)" --lint

lint:
	$(Q)tests/lint.sh

format:
	$(Q)clang-format -i $$(tests/lint.sh --list-sources)

bench: $(PROGS) $(BENCH_DEPS)
	$(Q)BUILD=$(BUILD) bench/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) ./demo.sh

# Stops a demo left running with `make demo DEMO_KEEP=1` (Ctrl-C during the demo also cleans up).
demo-stop:
	$(Q)BUILD=$(BUILD) ./demo.sh stop

install: install-bin $(INSTALL_TARGETS)

install-bin: $(PROGS)
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR)
	$(Q)$(foreach p,$(INSTALL_BIN),install -m 0755 $(BUILD)/$(p) $(DESTDIR)$(BINDIR)/$(p);)
	$(Q)$(foreach p,$(INSTALL_SBIN),install -m 0755 $(BUILD)/$(p) $(DESTDIR)$(SBINDIR)/$(p);)
	$(Q)$(foreach p,$(INSTALL_LIBEXEC),install -m 0755 $(BUILD)/$(p) $(DESTDIR)$(LIBEXECDIR)/$(p);)

clean:
	rm -rf $(BUILD)

.PHONY: all test selftest fuzz check check-run lint format bench demo demo-stop install install-bin clean deps check-deps

-include $(shell find $(BUILD)/obj $(BUILD)/asan $(BUILD)/fuzz -type f -name '*.d' 2>/dev/null)
