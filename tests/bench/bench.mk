# Benchmarks; included from the top Makefile, whose variables (BUILD, CC,
# CFLAGS, ALL_CFLAGS, pkg_cflags, DAEMON_LIB ...) it uses.
#
#   make bench        the whole set (a few minutes): verify throughput and
#                     latency against the reference server, creates, List,
#                     memory, callgrind counts, PAM and ssh costs; writes
#                     $(BUILD)/bench/RESULTS.md (tests/bench/RESULTS.md keeps one
#                     such report, with notes on each target)
#   make bench-quick  the same on small keystores with short runs (under a
#                     minute): checks that the harness works, never a speed
#
# BENCH_ARGS passes options to the driver (tests/bench/run.py --help), e.g.
# `make bench BENCH_ARGS='--seconds 5 --reps 5'`.  The keystores are built
# once into $(BUILD)/bench/stores/ and copied for each run.

BENCH_DIR   = $(BUILD)/bench
BENCH_PY   ?= /usr/bin/python3
BENCH_ARGS ?=
BENCH_PROGS = $(BENCH_DIR)/bench_load $(BENCH_DIR)/bench_client $(BENCH_DIR)/bench_ref \
              $(BENCH_DIR)/bench_pam
BENCH_HDRS  = tests/bench/bench_keys.h $(wildcard common/*.h apikeyd/*.h apikeyd/*/*.h)
BENCH_CFLAGS = $(ALL_CFLAGS) $(INC_TESTS) -Itests/bench

.PHONY: bench bench-quick bench-build

$(BENCH_DIR)/bench_load: tests/bench/bench_load.c tests/bench/bench_keys.c $(BENCH_HDRS) \
		$(DAEMON_LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(call pkg_cflags,$(DAEMON_PKGS)) $(LDFLAGS) -o $@ \
		$(filter %.c,$^) $(DAEMON_LIB) $(COMMON_LIB) $(call pkg_libs,$(DAEMON_PKGS))

$(BENCH_DIR)/bench_client: tests/bench/bench_client.c tests/bench/bench_keys.c $(BENCH_HDRS) \
		$(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(call pkg_cflags,libsodium $(COMMON_PKGS)) $(LDFLAGS) -o $@ \
		$(filter %.c,$^) $(COMMON_LIB) $(call pkg_libs,libsodium $(COMMON_PKGS))

# The reference links only LMDB and libsodium: none of the daemon's code.
$(BENCH_DIR)/bench_ref: tests/bench/bench_ref.c $(BENCH_HDRS)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(call pkg_cflags,lmdb libsodium) $(LDFLAGS) -o $@ \
		$(filter %.c,$^) $(call pkg_libs,lmdb libsodium)

$(BENCH_DIR)/bench_pam: tests/bench/bench_pam.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(call pkg_cflags,pam) $(LDFLAGS) -o $@ $< $(call pkg_libs,pam)

bench-build: all $(BENCH_PROGS)

bench: bench-build
	$(BENCH_PY) tests/bench/run.py --build $(BUILD) --out $(BENCH_DIR)/RESULTS.md \
		--cflags '$(CFLAGS)' --cc '$(CC)' $(BENCH_ARGS)

bench-quick: bench-build
	$(BENCH_PY) tests/bench/run.py --build $(BUILD) --quick --out $(BENCH_DIR)/RESULTS-quick.md \
		--cflags '$(CFLAGS)' --cc '$(CC)' $(BENCH_ARGS)

# Fleet mode: propagation of a manager's revoke to 5 and 50 hosts on a local
# 3-member etcd cluster (tests/bench/fleet_bench.py; a minute or two).
.PHONY: bench-fleet
bench-fleet: bench-build
	$(BENCH_PY) tests/bench/fleet_bench.py --build $(BUILD) --out $(BENCH_DIR)/FLEET.md \
		$(BENCH_ARGS)
