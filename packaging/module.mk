# packaging/: man pages (scdoc), systemd units, sysusers, completion, .deb and .rpm.

DEPS_PKGS += scdoc systemd bash-completion
# make deb / make rpm and tests/e2e/packaging.sh
CHECK_PKGS += debhelper dpkg-dev fakeroot lintian rpm

MAN_SRCS := $(wildcard docs/man/*.scd)
MAN_PAGES := $(patsubst docs/man/%.scd,$(BUILD)/man/%,$(MAN_SRCS))

$(BUILD)/man/%: docs/man/%.scd
	@mkdir -p $(@D)
	@$(if $(Q),echo "  SCDOC   $@")
	$(Q)scdoc < $< > $@

man: $(MAN_PAGES)

INSTALL_TARGETS += install-data
install-data: $(MAN_PAGES)
	$(Q)install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(SYSCONFDIR)/codedeploy $(DESTDIR)$(DATADIR)/bash-completion/completions
	$(Q)install -m 0644 packaging/systemd/taskd.service packaging/systemd/deployd.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/
	$(Q)install -m 0644 packaging/systemd/codedeploy-central.sysusers.conf \
		$(DESTDIR)$(SYSUSERSDIR)/codedeploy-central.conf
	$(Q)install -m 0644 packaging/taskd.conf packaging/deployd.conf $(DESTDIR)$(SYSCONFDIR)/codedeploy/
	$(Q)install -m 0644 packaging/completion/taskctl.bash \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/taskctl
	$(Q)for m in $(MAN_PAGES); do \
		s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

# Packages are built from a copy of the working tree (so uncommitted work is what you test),
# into $(BUILD)/pkg/. debian/ comes from packaging/debian.
PKG_OUT := $(BUILD)/pkg
PKG_SRC := $(PKG_OUT)/src/codedeploy-$(VERSION)

pkg-src:
	$(Q)rm -rf $(PKG_OUT)/src && mkdir -p $(PKG_SRC)
	$(Q)git ls-files --cached --others --exclude-standard -z | \
		grep -zv '^build' | xargs -0 tar cf - | tar xf - -C $(PKG_SRC)
	$(Q)cp -rL packaging/debian $(PKG_SRC)/debian

deb: pkg-src
	$(Q)cd $(PKG_SRC) && dpkg-buildpackage -b -us -uc -j2 >../../deb-build.log 2>&1 || \
		{ tail -40 ../../deb-build.log; exit 1; }
	$(Q)mv $(PKG_OUT)/src/*.deb $(PKG_OUT)/src/*.buildinfo $(PKG_OUT)/src/*.changes $(PKG_OUT)/
	$(Q)ls -1 $(PKG_OUT)/*.deb

rpm: pkg-src
	$(Q)mkdir -p $(PKG_OUT)/rpm/SOURCES
	$(Q)tar czf $(PKG_OUT)/rpm/SOURCES/codedeploy-$(VERSION).tar.gz -C $(PKG_OUT)/src \
		codedeploy-$(VERSION)
	$(Q)rpmbuild -bb --nodeps --define "_topdir $(abspath $(PKG_OUT))/rpm" \
		packaging/rpm/codedeploy.spec >$(PKG_OUT)/rpm-build.log 2>&1 || \
		{ tail -40 $(PKG_OUT)/rpm-build.log; exit 1; }
	$(Q)find $(PKG_OUT)/rpm/RPMS -name '*.rpm'

E2E_TESTS += tests/e2e/packaging.sh

.PHONY: man install-data pkg-src deb rpm
E2E_TESTS += tests/e2e/docs.sh
