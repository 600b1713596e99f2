# central/: deployd — store (the only SQL), cluster manager, artifact store; the pipelines role
# adds its own central/pipeline*.c etc., which the wildcard below picks up.
CENTRAL_SRCS := $(filter-out central/main.c,$(sort $(wildcard central/*.c)))
$(eval $(call cd_lib,central,$(CENTRAL_SRCS)))
# deployd: added once central/main.c lands
$(eval $(call cd_test,test_central_store,tests/unit/test_central_store.c,central api cdlib))

