# SPDX-License-Identifier: MIT
# Long robustness runs; not part of `make check`.  Included from the top
# Makefile.
#
#   make stress            everything below
#   make stress-crash      SIGKILL the daemon STRESS_KILLS times under concurrent changes
#   make stress-hostile    the hostile-client attacks, each about STRESS_SECONDS long,
#                          STRESS_ROUNDS times
#   make stress-secrets    the secrets checks, STRESS_ROUNDS times
#   make stress-sanitize   the crash run against the ASan/UBSan build
#                          (STRESS_SANITIZE_KILLS kills)
#
# Each run's output is kept in $(BUILD)/stress/NAME.log; the figures they
# print (kills and losses, good clients' p99 with and without attack, peak
# RSS, instruction counts) are collected in $(BUILD)/stress/summary.txt.
# APIKEYD_STRESS_SEED=N replays the crash run's random choices.

STRESS_KILLS          ?= 200
STRESS_SANITIZE_KILLS ?= 50
STRESS_SECONDS        ?= 10
STRESS_ROUNDS         ?= 3
STRESS_DIR            ?= $(BUILD)/stress
STRESS_RUN             = tests/stress/run.sh $(STRESS_DIR)

.PHONY: stress stress-crash stress-hostile stress-secrets stress-sanitize stress-summary

stress:
	@rm -f $(STRESS_DIR)/summary.txt
	@status=0; \
	for t in stress-crash stress-hostile stress-secrets stress-sanitize; do \
		$(MAKE) --no-print-directory $$t || status=1; \
	done; \
	$(MAKE) --no-print-directory stress-summary; \
	exit $$status

stress-crash: all
	APIKEYD_BUILD=$(abspath $(BUILD)) APIKEYD_STRESS_KILLS=$(STRESS_KILLS) \
		$(STRESS_RUN) crash tests/integration/test_crash.py

stress-hostile: all
	APIKEYD_BUILD=$(abspath $(BUILD)) APIKEYD_STRESS_SECONDS=$(STRESS_SECONDS) \
		STRESS_ROUNDS=$(STRESS_ROUNDS) $(STRESS_RUN) hostile tests/integration/test_hostile.py

stress-secrets: all
	APIKEYD_BUILD=$(abspath $(BUILD)) STRESS_ROUNDS=$(STRESS_ROUNDS) \
		$(STRESS_RUN) secrets tests/integration/test_secrets.py

stress-sanitize:
	@$(MAKE) --no-print-directory BUILD=$(SANITIZE_BUILD) CFLAGS='$(SANITIZE_FLAGS)' \
		LDFLAGS='-fsanitize=address,undefined' all
	APIKEYD_BUILD=$(abspath $(SANITIZE_BUILD)) APIKEYD_STRESS_KILLS=$(STRESS_SANITIZE_KILLS) \
		$(STRESS_RUN) crash-sanitize tests/integration/test_crash.py

stress-summary:
	@echo "== stress figures ($(STRESS_DIR)/summary.txt)"
	@cat $(STRESS_DIR)/summary.txt 2>/dev/null || echo "(no stress run yet)"
