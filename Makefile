# SPDX-License-Identifier: BSD-2-Clause
# snapcache: build, test, run, bench.
#
# Everything is built under $(B) (default ./build); nothing under /usr is
# changed except the Debian packages a goal needs, which it installs.
# `make asan` re-runs the whole suite from build/asan with
# AddressSanitizer in the libraries, the tests and the nginx module.
#
# Every target works on a machine that has only make: it runs in two
# stages.  Stage one installs the Debian packages of the goals given
# (PKGS_<goal> below: `make run` what the demo needs, `make test` the
# test tools too) and then runs the goals in a sub-make, stage two, which
# is the first to read pkg-config, so that the libraries' flags are those
# of the packages just installed.  Stage one reads nothing from the
# system.

SHELL := /bin/bash
.DEFAULT_GOAL := build

B      ?= build
SAN    ?=
ABS_B  := $(abspath $(B))

# ---------------------------------------------------------------- deps

# The Debian packages, by need: a target installs what it uses and no
# more, so that a plain `make` or `make run` does not pull in a browser.
# A new library or tool is one more line here (and, for a library, one
# more in PKG_MODULES and a probe in `config`).

# building the module, the CLI and the test helpers: `make`, `make build`
BUILD_PKGS :=
BUILD_PKGS += build-essential pkg-config make      # compilers
BUILD_PKGS += nginx nginx-dev                      # the module's build
BUILD_PKGS += libvips-dev libwebp-dev              # transcode/
BUILD_PKGS += liblmdb-dev                          # cache/
BUILD_PKGS += libssl-dev                           # sign/: HMAC-SHA256
BUILD_PKGS += libjansson-dev libcurl4-openssl-dev  # admin API, the CLI

# running the demo: `make run` (openssl: the demo's HTTPS certificate,
# which t/demo.t checks with it and with curl over HTTP/2, both in
# `make test` too); the cluster's balancer: `make run-cluster`
RUN_PKGS   := curl procps openssl
CLUSTER_PKGS := libnginx-mod-stream

# what `make test` adds: its harness, checkers, browser and photographs
TEST_PKGS  :=
TEST_PKGS  += perl prometheus                      # t/*.t, promtool
TEST_PKGS  += iproute2 lmdb-utils libvips-tools    # netns, store, images
TEST_PKGS  += chromium chromium-driver python3-selenium  # t/browser*.t
TEST_PKGS  += mate-backgrounds                     # t/weak.t: photographs
TEST_PKGS  += python3-httpx python3-h2            # t/weak_wall.t: HTTP/2
TEST_PKGS  += debhelper lintian                    # t/deb.t

# libFuzzer and AddressSanitizer: `make fuzz`, `make asan`, make test's smoke
FUZZ_PKGS  := clang libclang-rt-14-dev

# packaging's checker (`make deb` installs debian/control's Build-Depends)
DEB_PKGS   := lintian

# what `make bench*` adds: load generators and the anchors it compares to
BENCH_PKGS :=
BENCH_PKGS += wrk hyperfine                      # load and timing
BENCH_PKGS += nghttp2-client                     # h2load: HTTP/2, paced
BENCH_PKGS += libnginx-mod-http-image-filter     # the image_filter anchor
BENCH_PKGS += lomiri-wallpapers-20.04           # more real photographs
BENCH_PKGS += valgrind                           # bench-instr: callgrind

# each goal's packages; a goal not listed builds only
PKGS_run          := $(BUILD_PKGS) $(RUN_PKGS)
PKGS_run-cluster  := $(PKGS_run) $(CLUSTER_PKGS)
PKGS_test         := $(PKGS_run-cluster) $(TEST_PKGS) $(FUZZ_PKGS)
PKGS_asan         := $(PKGS_test)
PKGS_soak         := $(PKGS_test)
PKGS_fuzz         := $(BUILD_PKGS) $(FUZZ_PKGS)
PKGS_fuzz-smoke   := $(PKGS_fuzz)
PKGS_bench        := $(PKGS_test) $(BENCH_PKGS)
PKGS_bench-serve  := $(PKGS_bench)
PKGS_bench-store  := $(PKGS_bench)
PKGS_bench-transcode := $(PKGS_bench)
PKGS_bench-weak   := $(PKGS_bench)
PKGS_bench-purge  := $(PKGS_bench)
PKGS_bench-crypto := $(BUILD_PKGS)
PKGS_bench-instr  := $(BUILD_PKGS) curl python3 libvips-tools mate-backgrounds \
                     valgrind
PKGS_nginx-tests := $(BUILD_PKGS) $(NGINX_TESTS_PKGS)

# what `make nginx-tests` adds: the dynamic modules Debian's nginx -V
# names, which nginx-tests' Test::Nginx loads into every test, njs for
# its js tests, and the Perl modules, backends and tools its tests use
# (ffmpeg is left out: the four mp4 tests that need it skip)
NGINX_TESTS_PKGS :=
NGINX_TESTS_PKGS += libnginx-mod-http-geoip libnginx-mod-http-image-filter
NGINX_TESTS_PKGS += libnginx-mod-http-perl libnginx-mod-http-xslt-filter
NGINX_TESTS_PKGS += libnginx-mod-mail libnginx-mod-stream
NGINX_TESTS_PKGS += libnginx-mod-stream-geoip libnginx-mod-http-js
NGINX_TESTS_PKGS += libio-socket-ssl-perl libnet-ssleay-perl libcryptx-perl
NGINX_TESTS_PKGS += libfcgi-perl libscgi-perl libprotocol-websocket-perl
NGINX_TESTS_PKGS += libcache-memcached-perl libcache-memcached-fast-perl
NGINX_TESTS_PKGS += libgd-perl memcached uwsgi uwsgi-plugin-python3 openssl

# The pkg-config names of the libraries the C code links, read in stage
# two only.  `config` probes the same libraries for the nginx module.
PKG_MODULES :=
PKG_MODULES += vips libwebpmux                   # transcode/
PKG_MODULES += lmdb                              # cache/
PKG_MODULES += jansson libcurl                   # the admin API and CLI

# Installs the packages of $(1) that are not installed yet, with one
# dpkg-query; does nothing (and needs no root) when all are there.
define apt_install
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(strip $(1)) \
	        2>/dev/null | awk '$$NF == "installed" { ok[$$1] = 1 } \
	        END { n = split("$(strip $(1))", p, " "); \
	              for (i = 1; i <= n; i++) if (!ok[p[i]]) printf " %s", p[i] }'); \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && \
	    apt-get install -o DPkg::Lock::Timeout=600 -y -qq $$missing >/dev/null; \
	fi
endef

# `make deps`: what building, running and testing need, all of it
.PHONY: deps deps-bench clean
deps:
	$(call apt_install,$(sort $(PKGS_test)))

deps-bench:
	$(call apt_install,$(sort $(PKGS_bench)))

clean:
	rm -rf build

# ----------------------------------------------------------------- deb

# libnginx-mod-http-snapcache_<version>_<arch>.deb (the module) and
# snapcache-tools_<version>_<arch>.deb (the CLI) in $(B)/deb, built by
# debhelper and dh-sequence-nginx (debian/) from a copy of the files git
# knows (all but build/ and var/ without git), so that nothing is written
# into the tree.  It needs build-essential and the Build-Depends of
# debian/control only, not `make deps`: what is missing of those is
# installed first (apt-get build-dep, root).  `make deb-clean-root`
# proves that on a new Debian 12 root.
DEB_SRC := $(B)/deb/libnginx-mod-http-snapcache
.PHONY: deb deb-deps deb-clean-root
deb-deps:
	@if ! dpkg-checkbuilddeps >/dev/null 2>&1; then \
	    echo "deb: installing the Build-Depends"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get build-dep -y -qq \
	        --no-install-recommends ./ >/dev/null; \
	fi

deb: deb-deps
	@rm -rf $(B)/deb && mkdir -p $(DEB_SRC)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard; \
	else \
	    find . \( -path ./build -o -path ./var -o -path ./.git \) -prune \
	        -o -type f -print0; \
	fi | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(DEB_SRC)
	@echo "  DEB     $(B)/deb (log: $(B)/deb/build.log)"
	@cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc > ../build.log 2>&1 \
	    || { tail -40 ../build.log; exit 1; }
	@ls $(B)/deb/*.deb

# `make deb` in a new debootstrapped bookworm root that has only
# build-essential and the Build-Depends (root; slow: not part of `make
# test`); the packages are copied out to DEB_ROOT/debs-built.
DEB_ROOT ?= $(CURDIR)-debroot
deb-clean-root:
	$(call apt_install,debootstrap)
	tools/fresh-machine-check --deb $(DEB_ROOT)

ifndef SNAPCACHE_STAGE2

# --------------------------------------------------------- stage one

# Every goal but these is passed to stage two, after the packages of
# every goal given are installed; the Debian packages need only their
# Build-Depends, which `make deb` installs itself.
STAGE2_GOALS := $(filter-out deps deps-bench clean deb deb-deps \
                    deb-clean-root, \
                    $(or $(MAKECMDGOALS),$(.DEFAULT_GOAL)))
STAGE2_PKGS  := $(sort $(foreach g,$(STAGE2_GOALS), \
                    $(or $(PKGS_$(g)),$(BUILD_PKGS))))

ifneq ($(STAGE2_GOALS),)
.PHONY: $(STAGE2_GOALS) stage2
$(STAGE2_GOALS): stage2
	@:

# after the other goals given too, so that `make -j2 clean test` cleans
# before it builds
stage2: $(filter clean deps deps-bench,$(MAKECMDGOALS))
	$(call apt_install,$(STAGE2_PKGS))
	@$(MAKE) --no-print-directory SNAPCACHE_STAGE2=1 $(STAGE2_GOALS)
endif

else

# --------------------------------------------------------- stage two

PKG_MISSING := $(foreach m,$(PKG_MODULES), \
                   $(if $(shell pkg-config --exists $(m) && echo y),,$(m)))
ifneq ($(strip $(PKG_MISSING)),)
$(error pkg-config finds no $(strip $(PKG_MISSING)); `make deps` installs \
        them (Debian packages: see BUILD_PKGS))
endif

CC     ?= cc
CLANG  ?= clang

PKG_CFLAGS := $(shell pkg-config --cflags $(PKG_MODULES))
PKG_LIBS   := $(shell pkg-config --libs $(PKG_MODULES))

ifneq ($(SAN),)
SAN_FLAGS  := -fsanitize=$(SAN) -fno-omit-frame-pointer
endif

CFLAGS  := -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
           -Wno-unused-parameter -O2 -g -fPIC -I. $(PKG_CFLAGS) $(SAN_FLAGS)
LDFLAGS := $(SAN_FLAGS)
LDLIBS  := $(PKG_LIBS) -lcrypto -lpthread -lm

# Each library adds its sources, unit tests, fuzz targets and benches
# in its own fragment, so that work on one library never edits another's.
# A unit test, fuzz target or tool names the sources it links in
# <name>_DEPS, so that a library being edited cannot break another's build.
LIB_SRCS    :=
LIB_HDRS    :=
UNIT_TESTS  :=
FUZZ        :=
BENCHES     :=
EXTRA_BINS  :=
CLI_DEPS    :=

include sign/sign.mk
-include hmac/hmac.mk
-include format/format.mk
-include cache/cache.mk
-include transcode/transcode.mk
-include adapt/adapt.mk
-include t/lib/tlib.mk

# the admin API's purge: its latency, its rate, and hits while it runs
BENCHES    += $(B)/bin/bench_purge
bench_purge_MAIN := bench/bench_purge.c
bench_purge_DEPS := $(CACHE_SRCS)

# the crypto of a hit (a signature, the store's tags) against the former
# hand-rolled HMAC, and one HMAC each way EVP_MAC offers
BENCHES    += $(B)/bin/bench_crypto
bench_crypto_MAIN := bench/bench_crypto.c
bench_crypto_DEPS := $(SIGN_SRCS) $(CACHE_SRCS)

objs_of    = $(patsubst %.c,$(B)/obj/%.o,$(1))
UNIT_BINS := $(UNIT_TESTS:%=$(B)/t/unit/%)
CLI       := $(B)/snapcache

MODULE_SRCS := $(wildcard ngx_module/*.c ngx_module/*.h)
NGX_SRC     := /usr/share/nginx/src
NGX_BUILD   := $(ABS_B)/nginx
MODULE      := $(NGX_BUILD)/ngx_http_snapcache_module.so
ifneq ($(SAN),)
NGX_CC_OPT  := --with-cc-opt="$(SAN_FLAGS)" --with-ld-opt="$(SAN_FLAGS)"
endif

# --------------------------------------------------------------- build

.PHONY: build module cli
build: cli module $(UNIT_BINS) $(EXTRA_BINS)

cli: $(CLI)
module: $(MODULE)

.SECONDEXPANSION:

# keep objects that only unit tests and tools link, so they are not rebuilt
.SECONDARY:

# Each compile writes the headers it read (-MMD -MP) next to its output,
# so that an object is rebuilt when, and only when, a header it includes
# changes.
DEPFLAGS = -MMD -MP -MF $@.d

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(B)/t/unit/%: t/unit/%.c $$(call objs_of,$$($$*_DEPS))
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) $(DEPFLAGS) $< -o $@ $(LDFLAGS) \
	    $(call objs_of,$($*_DEPS)) $(LDLIBS)

$(B)/bin/%: $$($$*_MAIN) $$(call objs_of,$$($$*_DEPS))
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) $(DEPFLAGS) $($*_MAIN) -o $@ $(LDFLAGS) \
	    $(call objs_of,$($*_DEPS)) $(LDLIBS)

-include $(shell find $(B)/obj $(B)/t $(B)/bin $(B)/fuzz -name '*.d' \
             2>/dev/null)

# The version lives in debian/changelog alone; `snapcache --version` and
# the package say the same.  (The Debian revision, were there one, is
# not the tool's.)  debian/rules replaces CFLAGS, so it is passed apart.
SNAPCACHE_VERSION := $(shell sed -n \
    '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog | sed 's/-[^-]*$$//')
ifeq ($(SNAPCACHE_VERSION),)
$(error no version in debian/changelog)
endif
CLI_DEFS := -DSNAPCACHE_VERSION='"$(SNAPCACHE_VERSION)"'

$(CLI): $(wildcard tools/*.c tools/*.h) $(call objs_of,$(CLI_DEPS)) \
        debian/changelog
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) $(CLI_DEFS) $(wildcard tools/*.c) -o $@ $(LDFLAGS) \
	    $(call objs_of,$(CLI_DEPS)) $(LDLIBS)

# nginx's Makefile lists the module's files: it is made again when a file
# is added or removed (the list is kept in $(NGX_SRCS) when it changes)
NGX_SRCS := $(B)/nginx-sources
$(shell mkdir -p $(B); echo $(MODULE_SRCS) $(LIB_SRCS) $(LIB_HDRS) \
        | cmp -s - $(NGX_SRCS) || echo $(MODULE_SRCS) $(LIB_SRCS) \
        $(LIB_HDRS) > $(NGX_SRCS))

$(NGX_BUILD)/Makefile: config $(NGX_SRCS) debian/changelog
	@echo "  CONFIGURE nginx $(NGX_BUILD)"
	@rm -rf $(B)/nginx-src && mkdir -p $(B) && cp -r $(NGX_SRC) $(B)/nginx-src
	@cd $(B)/nginx-src && . ./conf_flags \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" $(NGX_CC_OPT) \
	       --add-dynamic-module=$(CURDIR) --builddir=$(NGX_BUILD) \
	       > $(ABS_B)/nginx-configure.log

$(MODULE): $(NGX_BUILD)/Makefile $(MODULE_SRCS) $(LIB_SRCS) $(LIB_HDRS)
	@echo "  MODULE  $@"
	@cd $(B)/nginx-src && $(MAKE) -s -f $(NGX_BUILD)/Makefile modules

# ---------------------------------------------------------------- test

TEST_ENV := SNAPCACHE_BUILD=$(ABS_B) SNAPCACHE_SAN=$(SAN) \
            SNAPCACHE_FUZZ_SEEDS=$(ABS_B)/fuzz/seeds-fuzz_transcode
# A leak fails the run in every process: unit tests, the CLI, the test
# helpers and nginx, less what t/lsan.supp names (nginx's own arrays that
# it never frees).  intercept_tls_get_addr=0: GCC 12's LeakSanitizer
# misreads glibc 2.36's dynamic TLS (a dlopen'd library's, in a thread)
# when it tracks it, and its tracer dies of SIGSEGV in every worker with a
# thread pool; untracked, those blocks are still found through each
# thread's TLS.
ASAN_TEST_OPTIONS := detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0
LSAN_TEST_OPTIONS := suppressions=$(CURDIR)/t/lsan.supp:print_suppressions=0
ifeq ($(SAN),address)
TEST_ENV += ASAN_OPTIONS=$(ASAN_TEST_OPTIONS) \
            LSAN_OPTIONS=$(LSAN_TEST_OPTIONS) \
            SNAPCACHE_PRELOAD=$(shell $(CC) -print-file-name=libasan.so)
endif

# The tests on a shaped link (those that use Snapcache::Netns) hold
# answers to time budgets: they run one at a time, after the rest, with
# nothing else on the machine.  The rest wait more than they compute and
# run TEST_JOBS at a time (under ASAN, one at a time).
SHAPED_TESTS := $(shell grep -l 'Snapcache::Netns' t/*.t)
OTHER_TESTS  := $(filter-out $(SHAPED_TESTS),$(wildcard t/*.t))
TEST_JOBS    ?= $(if $(SAN),1,2)

.PHONY: test fuzz-smoke asan
test: build
	@mkdir -p $(B)/fuzz/seeds-fuzz_transcode
	$(TEST_ENV) prove -j$(TEST_JOBS) $(PROVE_FLAGS) $(UNIT_BINS) $(OTHER_TESTS)
	$(TEST_ENV) prove $(PROVE_FLAGS) $(SHAPED_TESTS)
	@if [ -z "$(SAN)" ]; then $(MAKE) --no-print-directory fuzz-smoke; fi

asan:
	$(MAKE) test B=build/asan SAN=address

# ---------------------------------------------------------------- fuzz

FUZZ_BINS   := $(FUZZ:%=$(B)/fuzz/%)
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -g -O1 -I. $(PKG_CFLAGS) \
               -fsanitize=fuzzer,address,undefined

$(B)/fuzz/%: fuzz/%.c $$($$*_DEPS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@$(CLANG) $(FUZZ_CFLAGS) $(DEPFLAGS) $< $($*_DEPS) -o $@ $(LDLIBS)

.PHONY: fuzz
fuzz: $(FUZZ_BINS)

# A short run of every target on its seed corpus (fuzz/corpus/<name>,
# and build/fuzz/seeds-<name> that the unit tests write); `make fuzz`
# builds them for longer runs by hand.
fuzz-smoke:
	@if ! command -v $(CLANG) >/dev/null; then \
	    echo "fuzz-smoke: skipped, clang is not installed"; exit 0; fi; \
	$(MAKE) --no-print-directory fuzz && \
	for f in $(FUZZ); do \
	    mkdir -p $(B)/fuzz/corpus-$$f; \
	    seeds=""; [ -d fuzz/corpus/$$f ] && seeds=fuzz/corpus/$$f; \
	    [ -d $(B)/fuzz/seeds-$$f ] && seeds="$$seeds $(B)/fuzz/seeds-$$f"; \
	    $(B)/fuzz/$$f -runs=20000 -max_total_time=20 \
	        $(B)/fuzz/corpus-$$f $$seeds > $(B)/fuzz/$$f.log 2>&1 \
	        || { tail -40 $(B)/fuzz/$$f.log; exit 1; }; \
	    echo "fuzz-smoke: $$f ok"; \
	done

# --------------------------------------------------------------- bench

.PHONY: bench bench-serve bench-weak bench-purge bench-crypto bench-instr
bench: build $(BENCHES) bench-serve bench-store bench-transcode \
       bench-weak bench-purge bench-crypto bench-instr

# hits (memory tier and store) against static nginx over plain HTTP, TLS
# and HTTP/2, hit p99 while misses keep the pool busy, misses against
# image_filter and in-process libvips, worker RSS
bench-serve: build $(B)/bin/bench_transcode
	SNAPCACHE_BUILD=$(ABS_B) bash bench/bench_serve.sh

# time to image on a tbf-shaped link (root: ip netns) for adaptive, fixed
# hd, fixed full and hint-only, and the adaptation's cost on hits
bench-weak: build
	SNAPCACHE_BUILD=$(ABS_B) bash bench/bench_weak.sh

# a hit's instructions (callgrind, one nginx process) from the store and
# the memory tier, thumb and hd, against nginx serving the same bytes as
# a static file in the same run: the same figures on a busy machine
bench-instr: build
	SNAPCACHE_BUILD=$(ABS_B) bash bench/bench_instr.sh

# the crypto of a hit, in ns, against the former HMAC in the same run
bench-crypto: build $(B)/bin/bench_crypto
	$(B)/bin/bench_crypto $(BENCH_CRYPTO_ITERATIONS)

# purging one device's 10k records, snapshot purges per second, and hit
# p99 idle against hit p99 while purges run
bench-purge: build $(B)/bin/bench_purge
	SNAPCACHE_BUILD=$(ABS_B) bash bench/bench_purge.sh

# ----------------------------------------------------------------- run

PORT ?= 8080
.PHONY: run run-cluster
run: build
	PORT=$(PORT) SNAPCACHE_BUILD=$(ABS_B) ./tools/run-demo

# three nodes sharded by account, a balancer and the demo camera cloud
run-cluster: build
	SNAPCACHE_BUILD=$(ABS_B) ./tools/run-cluster

# ---------------------------------------------------------------- soak

# The isolation soak, at least 100,000 requests over three nodes with
# faults (t/soak/soak); exits non-zero on any breach.  `make test` runs
# a short one (t/soak.t).  SOAK_ARGS, e.g. "requests=20000 clients=4".
.PHONY: soak
soak: build
	$(TEST_ENV) perl t/soak/soak $(SOAK_ARGS)

# ------------------------------------------------------- nginx-tests

# nginx's own suite, run against Debian's nginx stock, with the module
# loaded, and with the module in use against a control without it
# (tools/nginx-tests); exits non-zero when the module breaks a test.
# Not part of `make test`: the suite is a checkout outside this tree.
ifneq ($(filter nginx-tests,$(MAKECMDGOALS)),)
ifeq ($(NGINX_TESTS),)
$(error usage: make nginx-tests NGINX_TESTS=<a checkout of nginx-tests>)
endif
endif
.PHONY: nginx-tests
nginx-tests: module cli
	NGINX_TESTS_JOBS=$(or $(NGINX_TESTS_JOBS),2) \
	SNAPCACHE_CLI=$(abspath $(CLI)) ./tools/nginx-tests \
	    $(abspath $(NGINX_TESTS)) $(MODULE) $(ABS_B)/nginx-tests

endif # stage two
