# api/: the wire contract shared by every binary (types, JSON codecs, validation, HTTP wrappers).
API_SRCS := $(sort $(wildcard api/*.c))
$(eval $(call cd_lib,api,$(API_SRCS)))

# apicodec: JSON body parsing, names, JobSpec and Pipeline codecs.
$(eval $(call cd_test,test_api_json,tests/unit/test_api_json.c,api cdlib))
$(eval $(call cd_test,test_api_names,tests/unit/test_api_names.c,api cdlib))
$(eval $(call cd_test,test_api_jsonw,tests/unit/test_api_jsonw.c,api cdlib))
APICODEC_WRAP := $(call wrap,malloc calloc realloc strdup vasprintf)
$(eval $(call cd_test,test_api_jobspec,tests/unit/test_api_jobspec.c tests/unit/alloc_fault.c,api cdlib,$(APICODEC_WRAP)))
$(eval $(call cd_test,test_api_pipeline,tests/unit/test_api_pipeline.c tests/unit/alloc_fault.c,api cdlib,$(APICODEC_WRAP)))
$(eval $(call cd_test,test_api_problem,tests/unit/test_api_problem.c tests/unit/alloc_fault.c,api cdlib,$(APICODEC_WRAP)))
# The codec fuzzers link the codec sources directly, not the whole fuzz libapi.a: they do not
# need (or wait for) the HTTP wrappers.
APICODEC_SRCS := api/json.c api/names.c api/jobspec.c api/pipeline.c api/problem.c
$(eval $(call cd_fuzz,fuzz_jobspec,tests/fuzz/fuzz_jobspec.c $(APICODEC_SRCS),cdlib))
$(eval $(call cd_fuzz,fuzz_pipeline,tests/fuzz/fuzz_pipeline.c $(APICODEC_SRCS),cdlib))
$(eval $(call cd_fuzz,fuzz_names,tests/fuzz/fuzz_names.c $(APICODEC_SRCS),cdlib))
$(eval $(call cd_fuzz,fuzz_jsonw,tests/fuzz/fuzz_jsonw.c api/jsonw.c,cdlib))
$(eval $(call cd_fuzz,fuzz_http_parse,tests/fuzz/fuzz_http_parse.c api/http_parse.c,cdlib))

# apihttp: HTTP server (civetweb) and client (libcurl) wrappers.
$(eval $(call cd_test,test_api_http,tests/unit/test_api_http.c,api cdlib))
$(eval $(call cd_test,test_api_http_fault,tests/unit/test_api_http_fault.c,api cdlib,$(call wrap,mg_write)))
