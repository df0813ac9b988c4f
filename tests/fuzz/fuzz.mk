# Fuzz targets for every decoder that reads untrusted bytes; included from the
# top Makefile, whose variables (BUILD, CC, CFLAGS, BASEFLAGS, pkg_cflags ...)
# it uses.
#
#   make fuzz-build   the libFuzzer targets, into $(BUILD)/fuzz/ (clang, with
#                     address and undefined-behaviour sanitizers)
#   make fuzz-replay  run every committed seed once, with replay binaries the
#                     ordinary compiler builds (no clang needed)
#   make fuzz-smoke   fuzz-replay, then each target for FUZZ_SMOKE_SECONDS (10)
#                     if clang's libFuzzer works here; what `make check` runs
#   make fuzz         each target for FUZZ_SECONDS (600)
#
# FUZZ_TARGETS=fuzz_token picks targets; FUZZ_JOBS (default: the CPU count)
# runs that many at once.  New inputs go to $(BUILD)/fuzz/corpus/<target>/,
# crashes to $(BUILD)/fuzz/artifacts/; the committed seeds in
# tests/fuzz/corpus/<target>/ are only read.  Known crashing inputs that are
# not fixed yet wait in tests/fuzz/crashes/<target>/, outside the replay.

FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 600
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SANITIZE      ?= -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_OPT           ?= -O1 -g -fno-omit-frame-pointer
FUZZ_DIR            = $(BUILD)/fuzz

FUZZ_TARGETS_ALL = $(sort $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_TARGETS    ?= $(FUZZ_TARGETS_ALL)

# What each target is built from besides its own file, and the packages it links.
fuzz_varlink_framer_SRC  = common/varlink_wire.c
fuzz_varlink_call_SRC    = common/varlink.c common/varlink_wire.c
fuzz_varlink_call_PKGS   = $(COMMON_PKGS)
fuzz_json_scan_SRC       = common/json_scan.c
fuzz_json_scan_PKGS      = $(COMMON_PKGS)
fuzz_verify_call_SRC     = apikeyd/api/verify_call.c apikeyd/store/record.c \
                           apikeyd/store/sources.c common/json_scan.c \
                           common/varlink.c common/varlink_wire.c common/token.c \
                           common/text_check.c
fuzz_verify_call_PKGS    = $(COMMON_PKGS)
fuzz_token_SRC           = common/token.c
fuzz_record_SRC          = apikeyd/store/record.c apikeyd/store/sources.c common/token.c \
                           common/text_check.c
fuzz_sources_SRC         = apikeyd/store/sources.c
fuzz_text_check_SRC      = common/text_check.c
fuzz_audit_record_SRC    = apikeyd/store/audit_record.c
fuzz_usage_record_SRC    = apikeyd/store/usage_record.c
fuzz_expiry_marks_SRC    = apikeyd/store/expiry_marks.c common/token.c
fuzz_lockout_SRC         = apikeyd/store/lockout.c
fuzz_time_SRC            = common/timeutil.c
fuzz_config_SRC          = apikeyd/base/config.c common/timeutil.c common/token.c
fuzz_requests_SRC        = $(COMMON_SRC) $(DAEMON_SRC) $(BUILD)/gen/interface.c
fuzz_requests_PKGS       = $(DAEMON_PKGS)
fuzz_pam_reply_SRC       = pam_apikey/reply.c common/json_scan.c common/keys_proto.c
fuzz_pam_reply_PKGS      = $(COMMON_PKGS)
fuzz_proc_stat_SRC       = apikeyd/api/session_procs.c
fuzz_etcd_decode_SRC     = apikeyd/fleet/etcd_decode.c
fuzz_etcd_decode_PKGS    = jansson libsodium
fuzz_jsonl_SRC           = apikeyd/ctl/ctl_jsonl.c
fuzz_jsonl_PKGS          = $(COMMON_PKGS)
# Objects the replay binaries need beyond the two archives.
fuzz_jsonl_OBJ           = $(BUILD)/obj/apikeyd/ctl/ctl_jsonl.o
fuzz_pam_reply_OBJ       = $(BUILD)/obj/pam_apikey/reply.o
fuzz_pam_call_reply_SRC  = pam_apikey/reply.c common/json_scan.c common/keys_proto.c
fuzz_pam_call_reply_PKGS = $(COMMON_PKGS)
fuzz_pam_call_reply_OBJ  = $(BUILD)/obj/pam_apikey/reply.o

FUZZ_BIN   = $(FUZZ_TARGETS_ALL:%=$(FUZZ_DIR)/%)
REPLAY_BIN = $(FUZZ_TARGETS_ALL:%=$(FUZZ_DIR)/replay/%)
FUZZ_HDRS  = $(wildcard common/*.h apikeyd/*.h apikeyd/*/*.h pam_apikey/*.h tests/fuzz/*.h)

# The project's own flags with the fuzzing compiler's instrumentation: the
# sources are compiled into each fuzzer, so all of them get coverage
# feedback and sanitizer checks.
FUZZ_ALL_CFLAGS = $(BASEFLAGS) $(INC_TESTS) $(CPPFLAGS) $(FUZZ_OPT) $(FUZZ_SANITIZE)

define fuzz_target_rules
$(FUZZ_DIR)/$(1): tests/fuzz/$(1).c $($(1)_SRC) $(FUZZ_HDRS)
	@mkdir -p $$(@D)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) $$(call pkg_cflags,$($(1)_PKGS)) -o $$@ \
		$$(filter %.c,$$^) $$(call pkg_libs,$($(1)_PKGS))

$(FUZZ_DIR)/replay/$(1): $(BUILD)/obj/tests/fuzz/$(1).o $(BUILD)/obj/tests/fuzz/replay_main.o \
		$($(1)_OBJ) $(DAEMON_LIB) $(COMMON_LIB)
	@mkdir -p $$(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $$@ $$^ $(call pkg_libs,$(DAEMON_PKGS))
endef
$(foreach t,$(FUZZ_TARGETS_ALL),$(eval $(call fuzz_target_rules,$(t))))

.PHONY: fuzz-build fuzz-replay fuzz-smoke fuzz

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)

fuzz-replay: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/replay/%)
	@tests/fuzz/run.sh replay $(FUZZ_DIR) $(FUZZ_TARGETS)

# The libFuzzer half is skipped, saying so, where clang cannot build a fuzzer.
fuzz-smoke: fuzz-replay
	@if tests/fuzz/run.sh probe $(FUZZ_DIR) $(FUZZ_CC) $(FUZZ_SANITIZE); then \
		$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) fuzz-build && \
		tests/fuzz/run.sh fuzz $(FUZZ_DIR) $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS); \
	else \
		echo "fuzz-smoke: $(FUZZ_CC) cannot build libFuzzer targets here;" \
			"replayed the corpora only"; \
	fi

fuzz: fuzz-build
	@tests/fuzz/run.sh fuzz $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)
