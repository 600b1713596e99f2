# central/: deployd — store (the only SQL), cluster manager, artifact store; the pipelines role
# adds its own central/pipeline*.c etc., which the wildcard below picks up.
CENTRAL_SRCS := $(filter-out central/main.c,$(sort $(wildcard central/*.c)))
$(eval $(call cd_lib,central,$(CENTRAL_SRCS)))
$(eval $(call cd_prog,deployd,central/main.c,central sandbox api cdlib))
INSTALL_SBIN += deployd
E2E_TESTS += tests/e2e/central_api.sh tests/e2e/central_taskd.sh tests/e2e/central_scale.sh
$(eval $(call cd_test,test_central_store,tests/unit/test_central_store.c,central cdlib,$(call wrap,sqlite3_step)))
$(eval $(call cd_test,test_central_sched,tests/unit/test_central_sched.c,central cdlib))
$(eval $(call cd_test,test_central_cluster,tests/unit/test_central_cluster.c,central api cdlib,$(call wrap,sqlite3_step)))
$(eval $(call cd_test,test_central_cas,tests/unit/test_central_cas.c,central cdlib,$(call wrap,write)))
$(eval $(call cd_fuzz,fuzz_central_config,tests/fuzz/fuzz_central_config.c central/config.c api/names.c api/json.c api/problem.c,cdlib))
$(eval $(call cd_test,test_central_config,tests/unit/test_central_config.c,central sandbox api cdlib))


# ---- pipelines (engineer "pipelines"): planner, action queue store, runner, builder, REST ----
# Sources are picked up by the central/*.c wildcard above; only tests and scripts are listed here.
$(eval $(call cd_test,test_planner,tests/unit/test_planner.c,central api cdlib))
$(eval $(call cd_test,test_pipeline_store,tests/unit/test_pipeline_store.c,central api cdlib))
$(eval $(call cd_test,test_pipeline_runner,tests/unit/test_pipeline_runner.c,central api cdlib))
$(eval $(call cd_test,test_pipeline_api,tests/unit/test_pipeline_api.c,central api cdlib))
E2E_TESTS += tests/e2e/pipeline_api.sh
E2E_TESTS += tests/e2e/pipeline_crash.sh
$(eval $(call cd_test,test_pipeline_builder,tests/unit/test_pipeline_builder.c,central sandbox api cdlib))
E2E_TESTS += tests/e2e/pipeline_demo.sh
E2E_TESTS += tests/e2e/pipeline_roles.sh
# make demo and the pipelines e2e tests: git (builder), python3 (JSON in the scripts), make + cc (the example)
DEPS_PKGS += git python3 make gcc util-linux iproute2
# the builder's Bazel driver (test_pipeline_builder builds a Bazel workspace with it, offline)
CHECK_PKGS += bazel-bootstrap

# ---- bench/pipelines (engineer "pbench"): planner on 10,000-stage schemas, queue throughput ----
# Benchmark programs, not shipped: built by `make bench` (BENCH_DEPS), run by bench/pipelines/run.sh.
$(BUILD)/bench/bench_planner: $(call objs,obj,bench/pipelines/bench_planner.c) \
		$(BUILD)/libcentral.a $(BUILD)/libsandbox.a $(BUILD)/libapi.a $(BUILD)/libcdlib.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_BASE) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
$(BUILD)/bench/bench_queue: $(call objs,obj,bench/pipelines/bench_queue.c) \
		$(BUILD)/libcentral.a $(BUILD)/libsandbox.a $(BUILD)/libapi.a $(BUILD)/libcdlib.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_BASE) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
ALL_SRCS += bench/pipelines/bench_planner.c bench/pipelines/bench_queue.c
BENCH_DEPS += $(BUILD)/bench/bench_planner $(BUILD)/bench/bench_queue
