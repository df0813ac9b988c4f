# apikeyd — API keys as Linux credentials.
#
#   make            build everything into $(BUILD)/ (default build/)
#   make check      install missing test dependencies, build, run every test
#   make run        run the daemon in the foreground on ./run/ (no root needed)
#   make deps       install the Debian packages the build and tests need
#   make install    PREFIX=/usr/local DESTDIR= as usual
#
# Warnings are errors by default; packagers drop that with `make WERROR=`.
# Extra flags: `make CFLAGS='-O0 -g' LDFLAGS=...`; another compiler: `make CC=clang`.
# Out-of-tree builds: `make BUILD=build-asan CFLAGS='-O1 -g -fsanitize=address,undefined'`.

PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
BUILD      ?= build
PKG_CONFIG ?= pkg-config
CFLAGS     ?= -O2 -g
WERROR     ?= -Werror

# The release, in one place: this file.  The programs get it as
# APIKEYD_VERSION, the man pages in their .TH lines (for @VERSION@), and
# debian/changelog must agree with it (make check-version).
VERSION    := $(shell cat VERSION)

PAM_LIBDIR := $(shell $(PKG_CONFIG) --variable=libdir pam 2>/dev/null)
PAMDIR     ?= $(if $(PAM_LIBDIR),$(PAM_LIBDIR),/lib/x86_64-linux-gnu)/security

WARNINGS   = -Wall -Wextra $(WERROR) -Wshadow -Wformat=2 -Wvla -Wmissing-prototypes \
             -Wstrict-prototypes -Wpointer-arith -Wundef -Wno-unused-parameter
BASEFLAGS  = -std=gnu11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -fstack-protector-strong \
             -fno-strict-aliasing $(WARNINGS) -DAPIKEYD_VERSION='"$(VERSION)"'

# The layering, made true by the build: each folder sees only the headers
# of the folders listed for it (and its own, which #include "..." finds
# beside the file).  Arrows point one way: main (apikeyd/apikeyd.c) puts
# the daemon together; api/ answers the methods, standing on base/ (the
# Varlink server, the log, the settings) and store/ (the keystore); base/,
# store/, ctl/ and the PAM module see common/ only.  The server calls the
# methods through the function main gives it, never by name.  fleet/ (the
# etcd replica) stands on base/ and store/; api/ calls it through fleet.h.
INC_COMMON = -Icommon
INC_PAM    = -Icommon
INC_BASE   = -Icommon
INC_STORE  = -Icommon
INC_FLEET  = -Icommon -Iapikeyd/base -Iapikeyd/store
INC_API    = -Icommon -Iapikeyd/base -Iapikeyd/store -Iapikeyd/fleet
INC_DAEMON = -Icommon -Iapikeyd/base -Iapikeyd/api -Iapikeyd/store -Iapikeyd/fleet
INC_CTL    = -Icommon
INC_TESTS  = -Icommon -Iapikeyd/base -Iapikeyd/api -Iapikeyd/store -Iapikeyd/fleet -Iapikeyd/ctl \
             -Ipam_apikey
DEPFLAGS   = -MMD -MP

pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pkg_libs   = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

COMMON_PKGS = jansson
CTL_PKGS    = jansson libsodium
DAEMON_PKGS = lmdb libsodium libsystemd jansson libcurl
PAM_PKGS    = pam

# common/: one static archive, position-independent so the PAM module can link it.
COMMON_SRC  = $(wildcard common/*.c)
COMMON_OBJ  = $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
COMMON_LIB  = $(BUILD)/libapikey-common.a

# apikeyd/ (base/, api/ and store/): everything but main goes into an
# archive the unit tests link too.  ctl/ is apikeyctl's own.
DAEMON_MAINS = apikeyd/apikeyd.c
DAEMON_SRC  = $(filter-out $(DAEMON_MAINS),$(wildcard apikeyd/*.c)) \
              $(wildcard apikeyd/base/*.c) $(wildcard apikeyd/api/*.c) \
              $(wildcard apikeyd/store/*.c) $(wildcard apikeyd/fleet/*.c)
CTL_MAIN    = apikeyd/ctl/apikeyctl.c
CTL_SRC     = $(filter-out $(CTL_MAIN),$(wildcard apikeyd/ctl/*.c))
CTL_OBJ     = $(CTL_SRC:%.c=$(BUILD)/obj/%.o)
DAEMON_OBJ  = $(DAEMON_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/interface.o
INTERFACE   = apikeyd/io.apikeyd.Keys.varlink
DAEMON_LIB  = $(BUILD)/libapikeyd.a

PAM_SRC     = $(wildcard pam_apikey/*.c)
PAM_OBJ     = $(PAM_SRC:%.c=$(BUILD)/obj/%.o)

PROGRAMS    = $(if $(wildcard apikeyd/apikeyd.c),$(BUILD)/apikeyd) \
              $(if $(wildcard $(CTL_MAIN)),$(BUILD)/apikeyctl) \
              $(if $(PAM_SRC),$(BUILD)/pam_apikey.so)

UNIT_SRC    = $(wildcard tests/unit/test_*.c)
# Built with the module's own files and libpam; see their rules below.
UNIT_PAM    = tests/unit/test_pam_wipe.c
UNIT_BIN    = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

ALL_CFLAGS  = $(BASEFLAGS) $(CPPFLAGS) $(CFLAGS)

MAN_BUILT   = $(BUILD)/man/apikeyd.8 $(BUILD)/man/apikeyctl.1 $(BUILD)/man/pam_apikey.8

.PHONY: all check check-run check-sanitize deps run install uninstall clean format format-check tests units
.PHONY: check-unit check-version
.DEFAULT_GOAL := all

all: $(COMMON_LIB) $(DAEMON_LIB) $(PROGRAMS) $(MAN_BUILT)

# What prints the version is rebuilt when it changes.
$(BUILD)/obj/apikeyd/apikeyd.o $(BUILD)/obj/apikeyd/api/admin.o \
	$(BUILD)/obj/apikeyd/ctl/apikeyctl.o: VERSION

# The man pages as installed: the version put in.
$(BUILD)/man/apikeyd.8: apikeyd/apikeyd.8 VERSION
$(BUILD)/man/apikeyctl.1: apikeyd/ctl/apikeyctl.1 VERSION
$(BUILD)/man/pam_apikey.8: pam_apikey/pam_apikey.8 VERSION
$(MAN_BUILT):
	@mkdir -p $(@D)
	sed -e 's/@VERSION@/$(VERSION)/g' $< > $@.tmp
	mv $@.tmp $@

$(BUILD)/obj/common/%.o: common/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_COMMON) $(call pkg_cflags,$(COMMON_PKGS)) $(DEPFLAGS) -c -o $@ $<

# (GNU make takes the rule with the shortest stem: the folders' rules win
# over main's for their files.)
$(BUILD)/obj/apikeyd/%.o: apikeyd/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_DAEMON) $(call pkg_cflags,$(DAEMON_PKGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/apikeyd/base/%.o: apikeyd/base/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_BASE) $(call pkg_cflags,$(DAEMON_PKGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/apikeyd/api/%.o: apikeyd/api/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_API) $(call pkg_cflags,$(DAEMON_PKGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/apikeyd/store/%.o: apikeyd/store/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_STORE) $(call pkg_cflags,$(DAEMON_PKGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/apikeyd/fleet/%.o: apikeyd/fleet/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_FLEET) $(call pkg_cflags,$(DAEMON_PKGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/apikeyd/ctl/%.o: apikeyd/ctl/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_CTL) $(call pkg_cflags,$(CTL_PKGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/pam_apikey/%.o: pam_apikey/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_PAM) $(call pkg_cflags,$(PAM_PKGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_TESTS) -Wno-missing-prototypes \
		$(call pkg_cflags,$(DAEMON_PKGS) cmocka) $(DEPFLAGS) -c -o $@ $<

# The interface file is compiled into the daemon, which serves it to
# GetInterfaceDescription: one source for the reference and the answer.
$(BUILD)/gen/interface.c: $(INTERFACE)
	@mkdir -p $(@D)
	{ echo '/* Generated from $(INTERFACE); do not edit. */'; \
	  echo 'extern const char apikeyd_interface_description[];'; \
	  echo 'const char apikeyd_interface_description[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/        "/' -e 's/$$/\\n"/' $<; \
	  echo '        ;'; } > $@.tmp
	mv $@.tmp $@

$(BUILD)/obj/gen/interface.o: $(BUILD)/gen/interface.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(DAEMON_LIB): $(DAEMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

# Every symbol bound at start (-z now), not on first call: the dynamic
# linker's lazy resolver saves the vector registers on the stack, and right
# after a token was copied they hold pieces of its secret.  Also read-only
# relocations (full RELRO).
BIND_NOW = -Wl,-z,relro,-z,now

$(BUILD)/apikeyd: $(BUILD)/obj/apikeyd/apikeyd.o $(DAEMON_LIB) $(COMMON_LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $(BIND_NOW) -o $@ $^ $(call pkg_libs,$(DAEMON_PKGS)) -lpthread

$(BUILD)/apikeyctl: $(BUILD)/obj/apikeyd/ctl/apikeyctl.o $(CTL_OBJ) $(COMMON_LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $(BIND_NOW) -o $@ $^ $(call pkg_libs,$(CTL_PKGS))

$(BUILD)/pam_apikey.so: $(PAM_OBJ) $(COMMON_LIB) pam_apikey/module.map
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,--version-script=pam_apikey/module.map \
		$(BIND_NOW) -Wl,-z,defs -o $@ $(PAM_OBJ) $(COMMON_LIB) $(call pkg_libs,$(PAM_PKGS))

# The module's code with every free() watched for the token (--wrap=free).
$(BUILD)/tests/test_pam_wipe: $(UNIT_PAM) $(PAM_SRC) $(wildcard pam_apikey/*.h) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INC_PAM) -Ipam_apikey -Wno-missing-prototypes \
		$(call pkg_cflags,$(PAM_PKGS) cmocka) -fno-builtin-free $(LDFLAGS) -Wl,--wrap=free -o $@ $(UNIT_PAM) \
		$(filter-out pam_apikey/pam_apikey.c,$(PAM_SRC)) $(COMMON_LIB) \
		$(call pkg_libs,$(PAM_PKGS) cmocka) -lpthread

# The module's reply decoder on its own: no libpam, no jansson.
$(BUILD)/tests/test_pam_reply: $(BUILD)/obj/tests/unit/test_pam_reply.o \
		$(BUILD)/obj/pam_apikey/reply.o $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(call pkg_libs,cmocka)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(DAEMON_LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(DAEMON_LIB) $(COMMON_LIB) \
		$(call pkg_libs,$(DAEMON_PKGS) cmocka) -lz -lpthread

# erasing_free() and jansson over it, with every free() watched (--wrap=free).
$(BUILD)/tests/test_erasing_free: $(BUILD)/obj/tests/unit/test_erasing_free.o $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -Wl,--wrap=free -o $@ $^ $(call pkg_libs,$(COMMON_PKGS) cmocka)

# The PAM harness: a real PAM stack from a service directory of the test's own.
$(BUILD)/tests/pam-harness: tests/integration/pam_harness.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(call pkg_cflags,pam) $(LDFLAGS) -o $@ $< $(call pkg_libs,pam)

# Preloaded into the daemon by test_durability.py: logs its syncs, file
# writes and socket traffic in order.  Built without the sanitizers' flags: a
# preloaded library would come before their runtime.
$(BUILD)/tests/sync-shim.so: tests/integration/sync_shim.c
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(CPPFLAGS) -O2 -g -U_FORTIFY_SOURCE $(call pkg_cflags,lmdb) -shared \
		-o $@ $< -ldl

tests: all $(UNIT_BIN) $(BUILD)/tests/pam-harness $(BUILD)/tests/sync-shim.so

# deps first, then a fresh make so pkg-config sees what deps installed.
check: deps
	@$(MAKE) --no-print-directory check-run

PYTEST = /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs

# The unit tests alone: no root, sshd, sudo or network (the Debian package
# build runs them).
check-unit: $(UNIT_BIN)
	@APIKEYD_SRCDIR=$(CURDIR) tests/run-unit.sh $(UNIT_BIN)

check-version:
	@v=$$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' debian/changelog); v=$${v#*:}; v=$${v%-*}; \
	if [ "$$v" != "$(VERSION)" ]; then \
		echo "debian/changelog is at $$v, VERSION at $(VERSION): make them agree"; exit 1; fi; \
	echo "version: $(VERSION) in VERSION and debian/changelog"

check-run: tests
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory check-version
	@APIKEYD_SRCDIR=$(CURDIR) tests/run-unit.sh $(UNIT_BIN)
	@$(MAKE) --no-print-directory fuzz-smoke
	APIKEYD_BUILD=$(abspath $(BUILD)) $(PYTEST) tests/integration
	@$(MAKE) --no-print-directory check-sanitize

# The same daemon, CLI and unit tests built with AddressSanitizer (leaks
# included) and UndefinedBehaviorSanitizer, which abort on the first
# report: the unit tests and the daemon's integration tests run on them.
# (The PAM tests run the module under ASan and valgrind themselves.)
SANITIZE_BUILD = build-sanitize
SANITIZE_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=all
SANITIZE_TESTS = $(filter-out tests/integration/test_pam_% tests/integration/test_install.py \
                 tests/integration/test_crash.py tests/integration/test_hostile.py \
                 tests/integration/test_packages.py \
                 tests/integration/test_fleet_sshd.py, \
                 $(wildcard tests/integration/test_*.py))

check-sanitize:
	@$(MAKE) --no-print-directory BUILD=$(SANITIZE_BUILD) CFLAGS='$(SANITIZE_FLAGS)' \
		LDFLAGS='-fsanitize=address,undefined' tests
	@echo "sanitizers: unit tests"
	@APIKEYD_SRCDIR=$(CURDIR) tests/run-unit.sh $(UNIT_SRC:tests/unit/%.c=$(SANITIZE_BUILD)/tests/%)
	@echo "sanitizers: integration tests"
	APIKEYD_BUILD=$(abspath $(SANITIZE_BUILD)) $(PYTEST) $(SANITIZE_TESTS)

deps:
	@tests/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@if [ ! -x $(BUILD)/apikeyd ]; then \
		echo "make run: the daemon is not built yet (apikeyd/apikeyd.c does not exist)"; exit 1; fi
	mkdir -p run && mkdir -p -m 0700 run/state
	exec $(BUILD)/apikeyd --no-config --state-dir run/state --socket run/io.apikeyd.Keys

# Where things go.  The PAM module goes where libpam looks for modules,
# whatever PREFIX says.
SYSCONFDIR ?= /etc
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
# The unit and sysusers directories are systemd's own (pkg-config) when
# PREFIX is systemd's prefix; below any other PREFIX, which systemd reads too.
SYSTEMD_PREFIX := $(shell $(PKG_CONFIG) --variable=prefix systemd 2>/dev/null)
systemd_dir = $(if $(filter $(PREFIX),$(SYSTEMD_PREFIX)),$(shell $(PKG_CONFIG) --variable=$(1) systemd))
UNITDIR    ?= $(or $(call systemd_dir,systemdsystemunitdir),$(PREFIX)/lib/systemd/system)
SYSUSERSDIR ?= $(or $(call systemd_dir,sysusersdir),$(PREFIX)/lib/sysusers.d)
COMPLETIONDIR ?= $(DATADIR)/bash-completion/completions
CATALOGDIR ?= $(or $(call systemd_dir,catalogdir),$(PREFIX)/lib/systemd/catalog)
# The Cockpit page: plain files, nothing to build.
COCKPITDIR ?= $(DATADIR)/cockpit/apikeys
COCKPIT_FILES = cockpit/manifest.json cockpit/index.html cockpit/apikeys.js cockpit/apikeys.css \
                cockpit/varlink.js

$(BUILD)/systemd/apikeyd.service: systemd/apikeyd.service.in
	@mkdir -p $(@D)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' $< > $@.tmp
	mv $@.tmp $@

units: $(BUILD)/systemd/apikeyd.service

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PAMDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(DATADIR)/apikeyd \
		$(DESTDIR)$(SYSCONFDIR)/pam.d
	install -m 0755 $(BUILD)/apikeyd $(DESTDIR)$(SBINDIR)/apikeyd
	install -m 0755 $(BUILD)/apikeyctl $(DESTDIR)$(BINDIR)/apikeyctl
	install -m 0644 $(BUILD)/pam_apikey.so $(DESTDIR)$(PAMDIR)/pam_apikey.so
	install -m 0644 systemd/apikeyd.socket $(DESTDIR)$(UNITDIR)/
	@# Generated here, not from a build-tree copy, so it names this install's SBINDIR.
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' systemd/apikeyd.service.in > $(DESTDIR)$(UNITDIR)/apikeyd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/apikeyd.service
	install -m 0644 systemd/apikeyd.sysusers $(DESTDIR)$(SYSUSERSDIR)/apikeyd.conf
	install -d $(DESTDIR)$(CATALOGDIR)
	install -m 0644 systemd/apikeyd.catalog $(DESTDIR)$(CATALOGDIR)/apikeyd.catalog
	install -m 0644 $(BUILD)/man/apikeyctl.1 $(DESTDIR)$(MANDIR)/man1/apikeyctl.1
	install -m 0644 $(BUILD)/man/apikeyd.8 $(DESTDIR)$(MANDIR)/man8/apikeyd.8
	install -m 0644 $(BUILD)/man/pam_apikey.8 $(DESTDIR)$(MANDIR)/man8/pam_apikey.8
	install -m 0644 apikeyd/ctl/apikeyctl.bash-completion $(DESTDIR)$(COMPLETIONDIR)/apikeyctl
	install -m 0644 $(INTERFACE) apikeyd/apikeyd.conf.example $(DESTDIR)$(DATADIR)/apikeyd/
	@# fail2ban filters, action and jails: examples to copy into /etc/fail2ban.
	for d in filter.d action.d jail.d; do \
		install -d $(DESTDIR)$(DATADIR)/apikeyd/fail2ban/$$d && \
		install -m 0644 contrib/fail2ban/$$d/*.conf $(DESTDIR)$(DATADIR)/apikeyd/fail2ban/$$d/ \
		|| exit 1; done
	install -d $(DESTDIR)$(COCKPITDIR)
	install -m 0644 $(COCKPIT_FILES) $(DESTDIR)$(COCKPITDIR)/
	@# A local edit of the PAM snippet survives a reinstall.
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/pam.d/apikey ]; then \
		install -m 0644 systemd/pam.d/apikey $(DESTDIR)$(SYSCONFDIR)/pam.d/apikey; fi
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null 2>&1; then \
		echo "systemd-sysusers $(SYSUSERSDIR)/apikeyd.conf"; \
		systemd-sysusers $(SYSUSERSDIR)/apikeyd.conf; fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/apikeyd $(DESTDIR)$(BINDIR)/apikeyctl \
		$(DESTDIR)$(PAMDIR)/pam_apikey.so $(DESTDIR)$(UNITDIR)/apikeyd.socket \
		$(DESTDIR)$(UNITDIR)/apikeyd.service $(DESTDIR)$(SYSUSERSDIR)/apikeyd.conf \
		$(DESTDIR)$(MANDIR)/man1/apikeyctl.1 $(DESTDIR)$(MANDIR)/man8/apikeyd.8 \
		$(DESTDIR)$(MANDIR)/man8/pam_apikey.8 $(DESTDIR)$(COMPLETIONDIR)/apikeyctl \
		$(DESTDIR)$(DATADIR)/apikeyd/io.apikeyd.Keys.varlink \
		$(DESTDIR)$(DATADIR)/apikeyd/apikeyd.conf.example
	rm -rf $(DESTDIR)$(DATADIR)/apikeyd/fail2ban
	rm -f $(DESTDIR)$(CATALOGDIR)/apikeyd.catalog
	-rmdir $(DESTDIR)$(DATADIR)/apikeyd 2>/dev/null
	rm -rf $(DESTDIR)$(COCKPITDIR)
	-rmdir $(DESTDIR)$(DATADIR)/cockpit 2>/dev/null
	@echo "kept $(SYSCONFDIR)/pam.d/apikey, the state in /var/lib/apikeyd, the apikeyd user and"
	@echo "the apikey-admin group: remove them by hand once no PAM service includes the snippet"

clean:
	rm -rf $(BUILD) $(SANITIZE_BUILD)

FORMAT_SRC = $(wildcard common/*.[ch] apikeyd/*.[ch] apikeyd/*/*.[ch] pam_apikey/*.[ch] \
             tests/*/*.[ch])

format:
	clang-format -i $(FORMAT_SRC)

format-check:
	@out=$$(for f in $(FORMAT_SRC); do clang-format $$f | cmp -s - $$f || echo $$f; done); \
	if [ -n "$$out" ]; then echo "not formatted (run make format):" $$out; exit 1; fi; \
	echo "format: $(words $(FORMAT_SRC)) files follow .clang-format"

include tests/fuzz/fuzz.mk
include tests/stress/stress.mk
include tests/bench/bench.mk

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/obj/*/*/*.d $(BUILD)/obj/*/*/*/*.d)
