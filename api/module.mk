# api/: the wire contract shared by every binary (types, JSON codecs, validation, HTTP wrappers).
API_SRCS := $(sort $(wildcard api/*.c))
$(eval $(call cd_lib,api,$(API_SRCS)))
