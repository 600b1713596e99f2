# api/: the wire contract shared by every binary (types, JSON codecs, validation, HTTP wrappers).
API_SRCS := $(sort $(wildcard api/*.c))
$(eval $(call cd_lib,api,$(API_SRCS)))

# apicodec: JSON body parsing, names, JobSpec and Pipeline codecs.
$(eval $(call cd_test,test_api_json,tests/unit/test_api_json.c,api cdlib))
$(eval $(call cd_test,test_api_names,tests/unit/test_api_names.c,api cdlib))

# apihttp: HTTP server (civetweb) and client (libcurl) wrappers.
$(eval $(call cd_test,test_api_http,tests/unit/test_api_http.c,api cdlib))
$(eval $(call cd_test,test_api_jobspec,tests/unit/test_api_jobspec.c,api cdlib))
$(eval $(call cd_test,test_api_pipeline,tests/unit/test_api_pipeline.c,api cdlib))
