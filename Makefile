# kvq — one non-recursive GNU make.  Every output lives under $(BUILD).
#   make            libkvq.a, kvq, qcx
#   make test       every tests/test_*.c (cmocka) + tests/cli/*.sh
#   make asan       the same under AddressSanitizer + UBSan, in build-asan/
#   make fuzz       libFuzzer harnesses tests/fuzz/fuzz_*.c (clang), FUZZ_SECONDS each
#   make bench      kvq bench codecs
#   make info       which compiler / CUDA path was taken
#   make clean      removes build*/ only
BUILD   ?= build
CC      ?= cc
WERROR  ?= 1
V       ?= 0
FUZZ_SECONDS ?= 20
CUDA_ARCH ?= sm_90
NVCC    ?= $(shell command -v nvcc 2>/dev/null)

Q := $(if $(filter 1,$(V)),,@)

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wcast-align -Wvla -Wformat=2 -Wundef -Wswitch-enum
# gcc's -Wformat-truncation flags every bounded snprintf of a message; we
# truncate on purpose.  clang lacks the option.
ifneq ($(findstring clang,$(shell $(CC) --version 2>/dev/null | head -n 1)),clang)
WARN += -Wno-format-truncation
endif
ifeq ($(WERROR),1)
WARN += -Werror
endif
OPT      ?= -O2
BASE_CFLAGS := -std=c11 $(OPT) -g -fvisibility=hidden -D_GNU_SOURCE -pthread \
               -I. -Ilibkvq $(WARN) $(SANITIZE)
ALL_CFLAGS   = $(BASE_CFLAGS) $(EXTRA_CFLAGS) $(CFLAGS)
LDLIBS_ALL  := -lzstd -llzma -lpthread -lm

# ---- sources (globs: adding a file needs no edit here) --------------------
LIB_SRC   := $(sort $(wildcard libkvq/*.c quant/*.c compress/*.c compress/*/*.c \
                               kernels/*.c kernels/cpu/*.c))
QCX_SRC   := $(sort $(wildcard cli/qcx*.c))
KVQ_SRC   := $(sort $(filter-out $(QCX_SRC),$(wildcard cli/*.c)))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
CU_SRC    := $(sort $(wildcard kernels/cuda/*.cu))

ifneq ($(NVCC),)
ifneq ($(CU_SRC),)
HAVE_CUDA := 1
endif
endif

ifeq ($(HAVE_CUDA),1)
CUDA_HOME   ?= $(patsubst %/bin/nvcc,%,$(NVCC))
BASE_CFLAGS += -DKVQ_HAVE_CUDA=1
CU_OBJ      := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
LDLIBS_ALL  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
NVCCFLAGS   ?= -O2 -arch=$(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra $(if $(filter 1,$(WERROR)),-Werror all-warnings) \
               -I. -Ilibkvq
endif

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(CU_OBJ)
# With CUDA, test_cuda's device tests and the `--device cuda` CLI paths also
# run against tests/cuda_emul.c, a CPU redo of the kernels/cuda/ device
# layer linked in place of the .cu objects (indexing and cuBLAS arguments
# checked on machines without a GPU; not CUDA semantics or speed).
ifeq ($(HAVE_CUDA),1)
EMUL_OBJ  := $(BUILD)/obj/tests/cuda_emul.o
EMUL_TEST := $(BUILD)/emul/test_cuda
EMUL_KVQ  := $(BUILD)/emul/kvq
endif
KVQ_OBJ  := $(KVQ_SRC:%.c=$(BUILD)/obj/%.o)
QCX_OBJ  := $(QCX_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIBKVQ   := $(BUILD)/libkvq.a
KVQ      := $(BUILD)/kvq
QCX      := $(BUILD)/qcx

.PHONY: all test asan ubsan fuzz bench clean info
# Objects are never intermediate: keep them (no rebuilds, no 'rm' noise).
.SECONDARY:
all: $(LIBKVQ) $(KVQ) $(if $(QCX_SRC),$(QCX))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIBKVQ): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(KVQ): $(KVQ_OBJ) $(LIBKVQ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(KVQ_OBJ) $(LIBKVQ) $(LDLIBS_ALL) $(LDFLAGS) -o $@

$(QCX): $(QCX_OBJ) $(LIBKVQ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(QCX_OBJ) $(LIBKVQ) $(LDLIBS_ALL) $(LDFLAGS) -o $@

$(EMUL_TEST): $(BUILD)/obj/tests/test_cuda.o $(EMUL_OBJ) $(LIBKVQ)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) $< $(EMUL_OBJ) $(LIBKVQ) -lcmocka $(LDLIBS_ALL) $(LDFLAGS) -o $@

$(EMUL_KVQ): $(KVQ_OBJ) $(EMUL_OBJ) $(LIBKVQ)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) $(KVQ_OBJ) $(EMUL_OBJ) $(LIBKVQ) $(LDLIBS_ALL) $(LDFLAGS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIBKVQ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $< $(LIBKVQ) -lcmocka $(LDLIBS_ALL) $(LDFLAGS) -o $@

# Tests run from the project root so ../shared/data resolves; KVQ_BIN/QCX_BIN
# point the CLI tests at this build's binaries.
test: all $(TEST_BIN) $(EMUL_TEST) $(EMUL_KVQ)
	$(Q)pass=0; fail=0; failed=; \
	if [ -n "$(EMUL_TEST)" ]; then \
	  echo "== $(EMUL_TEST) (device layer emulated on the CPU)"; \
	  if $(EMUL_TEST) && KVQ_BIN=$(abspath $(EMUL_KVQ)) bash tests/cli/bench_device.sh; then pass=$$((pass+1)); \
	  else fail=$$((fail+1)); failed="$$failed $(EMUL_TEST)"; fi; \
	fi; \
	for t in $(TEST_BIN); do \
	  echo "== $$t"; if $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); failed="$$failed $$t"; fi; \
	done; \
	for s in $(sort $(wildcard tests/cli/*.sh)); do \
	  echo "== $$s"; \
	  if KVQ_BIN=$(abspath $(KVQ)) QCX_BIN=$(abspath $(QCX)) bash $$s; then pass=$$((pass+1)); \
	  else fail=$$((fail+1)); failed="$$failed $$s"; fi; \
	done; \
	[ $$fail -eq 0 ] || echo "failed suites:$$failed"; \
	echo "suites: $$pass passed, $$fail failed"; \
	[ $$fail -eq 0 ]

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined $(LDFLAGS)" test

ubsan: asan

# libFuzzer needs clang; the library is rebuilt with fuzzer instrumentation.
FUZZ_CC ?= clang
fuzz:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) OPT=-O1 NVCC= \
	  SANITIZE="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" fuzz-run

FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(LIBKVQ)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer,address,undefined $< $(LIBKVQ) $(LDLIBS_ALL) -o $@

.PHONY: fuzz-run
fuzz-run: $(FUZZ_BIN)
	$(Q)for f in $(FUZZ_BIN); do \
	  n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
	  seeds=; [ -d tests/fuzz/seeds/$$n ] && seeds=tests/fuzz/seeds/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 \
	      -print_final_stats=1 $(BUILD)/corpus/$$n $$seeds 2>&1 | tail -n 12 || exit 1; \
	done

bench: all
	$(KVQ) bench codecs

info:
	@echo "kvq build info"
	@echo "  CC        : $(CC) ($(shell $(CC) -dumpfullversion 2>/dev/null))"
	@echo "  BUILD     : $(BUILD)"
	@echo "  CFLAGS    : $(ALL_CFLAGS)"
	@echo "  sources   : $(words $(LIB_SRC)) library, $(words $(KVQ_SRC)) kvq CLI, $(words $(TEST_SRC)) tests"
ifeq ($(HAVE_CUDA),1)
	@echo "  CUDA      : yes — $(NVCC), arch $(CUDA_ARCH), $(words $(CU_SRC)) .cu files (-DKVQ_HAVE_CUDA)"
else ifneq ($(NVCC),)
	@echo "  CUDA      : no — nvcc found at $(NVCC) but kernels/cuda/ has no .cu files; CPU-only build"
else
	@echo "  CUDA      : no — nvcc not found; CPU-only build (complete)"
endif

clean:
	rm -rf build build-*

-include $(LIB_OBJ:.o=.d) $(KVQ_OBJ:.o=.d) $(QCX_OBJ:.o=.d) $(TEST_SRC:%.c=$(BUILD)/obj/%.d)
