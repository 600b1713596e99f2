# lib/: the small base every binary and library uses.
LIB_SRCS := $(sort $(wildcard lib/*.c))
$(eval $(call cd_lib,cdlib,$(LIB_SRCS)))
$(eval $(call cd_test,test_lib,tests/unit/test_lib.c,cdlib,$(call wrap,fsync)))
