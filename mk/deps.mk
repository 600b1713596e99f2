# `make deps`: install the Debian packages building and `make demo` need; `make check-deps` also
# those only the tests use (baselines, servers, linters, packaging tools, Bazel). Idempotent:
# when `dpkg -s` shows every package installed it does nothing; otherwise `apt-get update`
# once, then `apt-get install -y`. Modules add to DEPS_PKGS (build, run) or CHECK_PKGS (tests
# only), so a first `make demo` does not pull a JDK for the Bazel tests.

DEPS_PKGS := build-essential pkg-config clang llvm lld libclang-rt-14-dev \
	libcgroup-dev libseccomp-dev libbpf-dev bpftool libelf-dev zlib1g-dev libzstd-dev \
	libnl-3-dev libnl-route-3-dev libnl-genl-3-dev libcivetweb-dev libsqlite3-dev sqlite3 \
	libcmocka-dev libjansson-dev libcurl4-openssl-dev libssl-dev libarchive-dev \
	iproute2 procps curl ca-certificates

CHECK_PKGS := clang-format cppcheck

deps:
	$(Q)tests/deps.sh $(sort $(DEPS_PKGS))

check-deps:
	$(Q)tests/deps.sh $(sort $(DEPS_PKGS) $(CHECK_PKGS))
