# Build rules and the helpers every module.mk uses.
#
#   $(eval $(call cd_lib,NAME,SRCS))                 static library $(BUILD)/libNAME.a (+ asan, fuzz)
#   $(eval $(call cd_prog,NAME,SRCS,LIBS[,LDEXTRA])) program $(BUILD)/NAME (release flags)
#   $(eval $(call cd_test,NAME,SRCS,LIBS[,LDEXTRA])) cmocka unit test $(BUILD)/tests/NAME (ASan+UBSan)
#   $(eval $(call cd_selftest,NAME,SRCS,LIBS[,LDEXTRA])) kernel-facing test $(BUILD)/selftests/NAME
#   $(eval $(call cd_fuzz,NAME,SRCS,LIBS))          libFuzzer target $(BUILD)/fuzz/NAME
#
# LIBS are our library names in link order (dependents first), e.g. `agent sandbox api cdlib`.
# Every program links the system libraries below with --as-needed, so listing them once is enough.

CC ?= cc
FUZZ_CC ?= clang
PKG_CONFIG ?= pkg-config

WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
	-Wno-format-zero-length \
	-Wno-unused-parameter
WERROR ?= -Werror
OPTFLAGS ?= -O2 -g
SYS_PKGS := jansson libcurl libcrypto sqlite3 libnl-3.0 libnl-route-3.0 libseccomp libbpf \
	libcgroup libarchive
# Recursive (=) so pkg-config runs only when a compile needs it: `make deps` must work before
# the packages exist.
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(SYS_PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(SYS_PKGS) 2>/dev/null) -lcivetweb -lpthread -ldl -lm
CMOCKA_LIBS = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

BASE_CPPFLAGS = -I. -I$(BUILD)/gen -D_GNU_SOURCE -DCD_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
BASE_CFLAGS = -std=gnu11 $(WARNINGS) $(WERROR) -fno-strict-aliasing -fstack-protector-strong \
	-fPIE -MMD -MP
REL_CFLAGS = $(OPTFLAGS) -D_FORTIFY_SOURCE=2
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_CFLAGS = -O1 -g $(SAN_FLAGS) -DCD_UNIT_TEST=1
FUZZ_CFLAGS = -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-DCD_FUZZING=1
LDFLAGS_BASE = -pie -Wl,-z,relro,-z,now -Wl,--as-needed

# Generated headers (vmlinux.h, BPF skeletons) every object may wait for.
GEN_HEADERS :=

# Order-only generated headers are listed with secondary expansion, so module.mk files
# included later can still add to GEN_HEADERS.
.SECONDEXPANSION:

comma := ,
# Linker wrap flags for fault injection in tests: $(call wrap,fsync write)
wrap = $(foreach f,$(1),-Wl$(comma)--wrap=$(f))

objs = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(2))

$(BUILD)/obj/%.o: %.c | $$(GEN_HEADERS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CPPFLAGS) $(BASE_CFLAGS) $(REL_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/asan/%.o: %.c | $$(GEN_HEADERS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC-SAN  $<")
	$(Q)$(CC) $(BASE_CPPFLAGS) $(BASE_CFLAGS) $(ASAN_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/fuzz/%.o: %.c | $$(GEN_HEADERS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC-FUZZ $<")
	$(Q)$(FUZZ_CC) $(BASE_CPPFLAGS) $(BASE_CFLAGS) $(FUZZ_CFLAGS) $(CFLAGS) -c $< -o $@

define cd_lib
LIB_$(1)_SRCS := $(2)
ALL_SRCS += $(2)
$(BUILD)/lib$(1).a: $(call objs,obj,$(2))
	@$$(if $$(Q),echo "  AR      $$@")
	$$(Q)rm -f $$@ && ar rcs $$@ $$^
$(BUILD)/asan/lib$(1).a: $(call objs,asan,$(2))
	@$$(if $$(Q),echo "  AR      $$@")
	$$(Q)rm -f $$@ && ar rcs $$@ $$^
$(BUILD)/fuzz/lib$(1).a: $(call objs,fuzz,$(2))
	@$$(if $$(Q),echo "  AR      $$@")
	$$(Q)rm -f $$@ && ar rcs $$@ $$^
endef

define cd_prog
PROGS += $(BUILD)/$(1)
ALL_SRCS += $(2)
$(BUILD)/$(1): $(call objs,obj,$(2)) $(foreach l,$(3),$(BUILD)/lib$(l).a)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(LDFLAGS_BASE) $$(LDFLAGS) -o $$@ $$^ $(4) $$(PKG_LIBS)
endef

define cd_test
UNIT_TESTS += $(BUILD)/tests/$(1)
ALL_SRCS += $(2)
$(BUILD)/tests/$(1): $(call objs,asan,$(2)) $(foreach l,$(3),$(BUILD)/asan/lib$(l).a)
	@mkdir -p $$(@D)
	@$$(if $$(Q),echo "  LD-SAN  $$@")
	$$(Q)$$(CC) $$(SAN_FLAGS) $$(LDFLAGS) -o $$@ $$^ $(4) $$(CMOCKA_LIBS) $$(PKG_LIBS)
endef

define cd_selftest
SELFTESTS += $(BUILD)/selftests/$(1)
ALL_SRCS += $(2)
$(BUILD)/selftests/$(1): $(call objs,obj,$(2)) $(foreach l,$(3),$(BUILD)/lib$(l).a)
	@mkdir -p $$(@D)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(LDFLAGS_BASE) $$(LDFLAGS) -o $$@ $$^ $(4) $$(PKG_LIBS)
endef

define cd_fuzz
FUZZERS += $(BUILD)/fuzz/$(1)
ALL_SRCS += $(2)
$(BUILD)/fuzz/$(1): $(call objs,fuzz,$(2)) $(foreach l,$(3),$(BUILD)/fuzz/lib$(l).a)
	@mkdir -p $$(@D)
	@$$(if $$(Q),echo "  LD-FUZZ $$@")
	$$(Q)$$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)
endef
