# snapcache: build, test, run, bench.
#
# Everything is built under $(B) (default ./build); nothing under /usr is
# changed except by `make deps`, which installs Debian packages.
# `make asan` re-runs the whole suite from build/asan with
# AddressSanitizer in the libraries, the tests and the nginx module.

SHELL := /bin/bash
.DEFAULT_GOAL := build

B      ?= build
SAN    ?=
ABS_B  := $(abspath $(B))

CC     ?= cc
CLANG  ?= clang

PKG_CFLAGS := $(shell pkg-config --cflags vips lmdb libwebpmux 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs vips lmdb libwebpmux 2>/dev/null)

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
-include format/format.mk
-include cache/cache.mk
-include transcode/transcode.mk
-include adapt/adapt.mk
-include t/lib/tlib.mk

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

# ---------------------------------------------------------------- deps

DEB_PKGS := build-essential pkg-config nginx nginx-dev libvips-dev \
            libvips-tools libwebp-dev liblmdb-dev lmdb-utils libssl-dev perl \
            clang libclang-rt-14-dev iproute2 curl procps
BENCH_PKGS := wrk hyperfine libnginx-mod-http-image-filter \
              mate-backgrounds lomiri-wallpapers-20.04

define apt_install
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

.PHONY: deps deps-bench
deps:
	$(call apt_install,$(DEB_PKGS))

deps-bench: deps
	$(call apt_install,$(BENCH_PKGS))

# --------------------------------------------------------------- build

.PHONY: build module cli
build: cli module $(UNIT_BINS) $(EXTRA_BINS)

cli: $(CLI)
module: $(MODULE)

.SECONDEXPANSION:

# keep objects that only unit tests and tools link, so they are not rebuilt
.SECONDARY:

$(B)/obj/%.o: %.c $(LIB_HDRS) t/unit/tap.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(B)/t/unit/%: t/unit/%.c $$(call objs_of,$$($$*_DEPS)) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(call objs_of,$($*_DEPS)) $(LDLIBS)

$(B)/bin/%: $$($$*_MAIN) $$(call objs_of,$$($$*_DEPS)) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) $($*_MAIN) -o $@ $(LDFLAGS) \
	    $(call objs_of,$($*_DEPS)) $(LDLIBS)

$(CLI): $(wildcard tools/*.c tools/*.h) $(call objs_of,$(CLI_DEPS))
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS) $(wildcard tools/*.c) -o $@ $(LDFLAGS) \
	    $(call objs_of,$(CLI_DEPS)) $(LDLIBS)

$(NGX_BUILD)/Makefile: config
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
ifeq ($(SAN),address)
TEST_ENV += ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
            SNAPCACHE_PRELOAD=$(shell $(CC) -print-file-name=libasan.so)
endif

.PHONY: test prove fuzz-smoke asan
test: deps build
	@mkdir -p $(B)/fuzz/seeds-fuzz_transcode
	$(TEST_ENV) prove $(PROVE_FLAGS) $(UNIT_BINS) t/*.t
	@if [ -z "$(SAN)" ]; then $(MAKE) --no-print-directory fuzz-smoke; fi

asan:
	$(MAKE) test B=build/asan SAN=address

# ---------------------------------------------------------------- fuzz

FUZZ_BINS   := $(FUZZ:%=$(B)/fuzz/%)
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -g -O1 -I. $(PKG_CFLAGS) \
               -fsanitize=fuzzer,address,undefined

$(B)/fuzz/%: fuzz/%.c $$($$*_DEPS) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@$(CLANG) $(FUZZ_CFLAGS) $< $($*_DEPS) -o $@ $(LDLIBS)

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

.PHONY: bench bench-serve
bench: deps-bench build $(BENCHES) bench-serve bench-store bench-transcode

# hits against static nginx and secure_link+proxy_cache+image_filter,
# misses against image_filter and in-process libvips, worker RSS
bench-serve: deps-bench build $(B)/bin/bench_transcode
	SNAPCACHE_BUILD=$(ABS_B) bash bench/bench_serve.sh

# ----------------------------------------------------------------- run

PORT ?= 8080
.PHONY: run
run: deps build
	PORT=$(PORT) SNAPCACHE_BUILD=$(ABS_B) ./tools/run-demo

.PHONY: clean
clean:
	rm -rf build
