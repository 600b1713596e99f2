# fetcher/: content-addressed artifact fetch, verified cache, secure unpack; cdfetch CLI.
FETCHER_SRCS := fetcher/cas.c fetcher/transfer.c fetcher/fetcher.c fetcher/unpack.c
$(eval $(call cd_lib,fetcher,$(FETCHER_SRCS)))
$(eval $(call cd_prog,cdfetch,fetcher/cdfetch.c,fetcher cdlib))
INSTALL_BIN += cdfetch

$(eval $(call cd_test,test_fetcher,tests/unit/test_fetcher.c tests/unit/test_fetcher_util.c,fetcher cdlib))
$(eval $(call cd_fuzz,fuzz_unpack,tests/fuzz/fuzz_unpack.c,fetcher cdlib))

# End-to-end tests start their own nginx on loopback; the disk-full case mounts a tmpfs.
E2E_TESTS += tests/e2e/fetcher.sh
CHECK_PKGS += nginx
# Needs nginx (skips without it); the disk-full case needs root (skips without it).
$(eval $(call cd_test,test_fetcher_e2e,tests/unit/test_fetcher_e2e.c tests/unit/test_fetcher_util.c,fetcher cdlib,$(call wrap,fsync)))

# bench/fetch: cached materialisation (+ read-only bind mount) of an unpacked artifact.
$(BUILD)/bench/bench_materialize: $(call objs,obj,bench/fetch/bench_materialize.c) \
		$(BUILD)/libfetcher.a $(BUILD)/libcdlib.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_BASE) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
ALL_SRCS += bench/fetch/bench_materialize.c
BENCH_DEPS += $(BUILD)/bench/bench_materialize
