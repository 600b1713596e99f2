# `make deps`: install the Debian packages the project needs. Idempotent: when `dpkg -s` shows
# every package installed it does nothing; otherwise `apt-get update` once, then
# `apt-get install -y`. Modules add to DEPS_PKGS (build and test tools they need).

DEPS_PKGS := build-essential pkg-config clang llvm lld libclang-rt-14-dev clang-format cppcheck \
	libcgroup-dev libseccomp-dev libbpf-dev bpftool libelf-dev zlib1g-dev libzstd-dev \
	libnl-3-dev libnl-route-3-dev libnl-genl-3-dev libcivetweb-dev libsqlite3-dev sqlite3 \
	libcmocka-dev libjansson-dev libcurl4-openssl-dev libssl-dev libarchive-dev \
	iproute2 procps curl ca-certificates

deps:
	$(Q)tests/deps.sh $(sort $(DEPS_PKGS))
