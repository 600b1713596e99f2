# central/: pipelines (planner, action queue + runner, builder, REST) — engineer "pipelines".
# Interim: included with `make -f Makefile -f central/pipelines.mk` until central/module.mk
# exists, then appended there as one block.
PIPELINES_LIB_SRCS := central/planner.c
$(eval $(call cd_lib,pipelines,$(PIPELINES_LIB_SRCS)))
$(eval $(call cd_test,test_planner,tests/unit/test_planner.c,pipelines api cdlib))
