# librseq (Rust implementation): build, install, test.
#
#   make install [PREFIX=/usr/local] [LIBDIR=...] [INCLUDEDIR=...] [DESTDIR=...]
#   make install TARGET=i686-unknown-linux-gnu   (another Rust target's library)
#   make check        every test: Rust tests, then C tests against a staged install
#   make check-vm     the C tests on real Debian kernels in qemu-system VMs (x86_64, aarch64)
#   make check-vm-slow  the slower VM configurations
#   make bench        the benchmark table (see BENCHMARKS.md)
#   make headers      refresh the generated headers under include/rseq/generated

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DESTDIR ?=

CARGO ?= cargo
INSTALL ?= install
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOVERSION := 0
# What a static link of librseq.a needs besides it (rustc --print
# native-static-libs, less -lgcc_s: the compiler driver adds the unwinder
# itself, libgcc_s or, for a -static link, libgcc_eh), plus glibc's
# pthread_create for a fully static program (see src/area.c).
LIBS_PRIVATE := -Wl,-u,__pthread_create_2_1 -lutil -lrt -lpthread -lm -ldl -lc
# TARGET=<rust triple> builds and installs that target's library (the
# i386 check uses it); empty: the host's.
TARGET ?=
RELEASE := target/$(if $(TARGET),$(TARGET)/)release
# The C libraries: the crate as a shared library and a static archive with
# the C API (Cargo.toml's default is a plain rlib that exports nothing).
# INTERPOSE=0 leaves out the exported pthread_create (README, "Symbols").
INTERPOSE ?= 1
CAPI_FEATURES := $(if $(filter 0,$(INTERPOSE)),capi,interpose)
CARGO_CLIB = $(CARGO) rustc --release --lib $(if $(TARGET),--target $(TARGET)) \
	--features $(CAPI_FEATURES) --crate-type cdylib,staticlib
STAGE := $(CURDIR)/build-out/stage
# librseq.a as installed: the whole Rust archive linked into one object
# (ld -r, unreachable sections dropped) whose only global symbols are the
# C API of the golden list. Rust std, the compiler builtins and
# rust_eh_personality become local, and the COMDAT group of the
# personality's DW.ref is renamed (else another Rust archive's group would
# be discarded for it): the archive links next to any other Rust
# staticlib. gcc-ar names GCC's LTO plugin, which keeps binutils from
# trying the LLVM one (it aborts on rustc's objects on Debian bookworm).
# STATIC_LD: the host's GNU ld, in i386 mode for an i686 TARGET.
STATIC := build-out/static
EXPORTED := c-tests/exported-symbols.txt
# CROSS: the GNU binutils prefix of a TARGET other than the host's and
# i686 (aarch64-unknown-linux-gnu: aarch64-linux-gnu-).
CROSS := $(if $(filter-out i686-% i586-%,$(TARGET)),$(shell echo $(TARGET) | \
	sed -e 's/-unknown-/-/' -e 's/^riscv64gc-/riscv64-/' -e 's/^armv7-/arm-/')-)
OBJCOPY ?= $(CROSS)objcopy
STATIC_LD ?= $(CROSS)$(LD)$(if $(filter i686-% i586-%,$(TARGET)), -m elf_i386)
STATIC_AR ?= $(shell command -v $(CROSS)gcc-ar || echo $(CROSS)ar)
MAN_PAGES := $(wildcard man/*.3)
# Every name of a page's NAME line (but its own) becomes a symlink to it.
man_names = sed -n '/^\.SH NAME/{n;s/ \\- .*//;s/,//g;p;q}' $(1)

HEADERS := $(wildcard include/rseq/*.h)
GENERATED_HEADERS := $(wildcard include/rseq/generated/*.h)
COMPAT_HEADERS := $(wildcard include/rseq/compat/linux/*.h)
PC_FILES := librseq.pc libcpu-op.pc

.PHONY: all build install uninstall check check-rust check-c check-slow check-elf check-cross check-i386 check-cross-rust check-vm check-vm-slow headers bench clean

all: build

build:
	$(CARGO_CLIB)
	rm -rf $(STATIC) && mkdir -p $(STATIC)
	grep -v '^#' $(EXPORTED) | sed '/^$$/d' > $(STATIC)/keep.txt
	$(STATIC_LD) -r --gc-sections $$(sed 's/^/-u /' $(STATIC)/keep.txt) \
		--whole-archive $(RELEASE)/librseq.a -o $(STATIC)/librseq.o
	$(OBJCOPY) --redefine-sym DW.ref.rust_eh_personality=DW.ref.rseq_rust_eh_personality \
		--keep-global-symbols=$(STATIC)/keep.txt $(STATIC)/librseq.o
	$(STATIC_AR) rcs $(STATIC)/librseq.a $(STATIC)/librseq.o

install: build
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/rseq/generated $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(RELEASE)/librseq.so $(DESTDIR)$(LIBDIR)/librseq.so.$(VERSION)
	ln -sf librseq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librseq.so.$(SOVERSION)
	ln -sf librseq.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/librseq.so
	$(INSTALL) -m 644 $(STATIC)/librseq.a $(DESTDIR)$(LIBDIR)/librseq.a
	$(INSTALL) -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/rseq/
	$(INSTALL) -m 644 $(GENERATED_HEADERS) $(DESTDIR)$(INCLUDEDIR)/rseq/generated/
	if [ -n "$(COMPAT_HEADERS)" ]; then \
		$(INSTALL) -d $(DESTDIR)$(INCLUDEDIR)/rseq/compat/linux && \
		$(INSTALL) -m 644 $(COMPAT_HEADERS) $(DESTDIR)$(INCLUDEDIR)/rseq/compat/linux/; fi
	$(INSTALL) -d $(DESTDIR)$(DATADIR)/librseq/valgrind
	$(INSTALL) -m 644 share/valgrind/librseq.supp $(DESTDIR)$(DATADIR)/librseq/valgrind/
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man3
	$(INSTALL) -m 644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man3/
	for m in $(MAN_PAGES); do p=$${m##*/}; \
		for a in $$($(call man_names,$$m)); do \
			[ "$$a.3" = "$$p" ] || ln -sf "$$p" "$(DESTDIR)$(MANDIR)/man3/$$a.3"; \
		done; done
	for pc in $(PC_FILES); do \
		[ -f pkgconfig/$$pc.in ] || continue; \
		sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
		    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
		    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' \
		    pkgconfig/$$pc.in > $(DESTDIR)$(PKGCONFIGDIR)/$$pc || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/librseq.so* $(DESTDIR)$(LIBDIR)/librseq.a
	rm -rf $(DESTDIR)$(INCLUDEDIR)/rseq $(DESTDIR)$(DATADIR)/librseq
	for m in $(MAN_PAGES); do rm -f $(DESTDIR)$(MANDIR)/man3/$${m##*/}; \
		for a in $$($(call man_names,$$m)); do rm -f "$(DESTDIR)$(MANDIR)/man3/$$a.3"; done; done
	for pc in $(PC_FILES); do rm -f $(DESTDIR)$(PKGCONFIGDIR)/$$pc; done

check: check-rust check-c check-elf check-cross check-i386 check-vm

check-rust:
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

# Stage an install exactly as users get it, then build and run every C
# test against it through pkg-config.
check-c:
	rm -rf $(STAGE)
	$(MAKE) install PREFIX=$(STAGE)
	$(MAKE) -C c-tests check STAGE=$(STAGE)

# The reliability scenarios too slow for every CI run (see RELIABILITY.md),
# and the Rust tests on i386 (real rseq) and riscv64 (qemu-user, no rseq).
check-slow: check-cross-rust
	rm -rf $(STAGE)
	$(MAKE) install PREFIX=$(STAGE)
	$(MAKE) -C c-tests check-slow STAGE=$(STAGE)

check-elf:
	rm -rf $(STAGE)
	$(MAKE) install PREFIX=$(STAGE)
	c-tests/elf-check.sh $(STAGE)/lib/librseq.so.$(SOVERSION) c-tests/exported-symbols.txt

# Other architectures. aarch64 and riscv64: cross-build, check the
# generated machine code of every section in the .so, and run the smoke
# test under qemu-user (no rseq there, so the fallback paths run, and the
# test plays the kernel for the sections). armhf (no sequences): the clean
# fallback builds and works under qemu-user. Each step skips when its
# cross tools are missing (.ci/run installs them).
check-cross:
	c-tests/cross/qemu-check.sh aarch64
	@if command -v aarch64-linux-gnu-objdump >/dev/null && [ -f target/aarch64-unknown-linux-gnu/release/librseq.so ]; then \
		python3 c-tests/cross/aarch64-elf-check.py target/aarch64-unknown-linux-gnu/release/librseq.so; \
	else echo "aarch64 ELF check: SKIPPED (no aarch64 binutils or library)"; fi
	c-tests/cross/qemu-check.sh riscv64
	@if command -v riscv64-linux-gnu-objdump >/dev/null && [ -f target/riscv64gc-unknown-linux-gnu/release/librseq.so ]; then \
		python3 c-tests/cross/riscv64-elf-check.py target/riscv64gc-unknown-linux-gnu/release/librseq.so && \
		python3 c-tests/cross/riscv64-elf-check.py target/riscv64gc-unknown-linux-gnu/qemu-check/qemu_smoke-inline; \
	else echo "riscv64 ELF check: SKIPPED (no riscv64 binutils or library)"; fi
	c-tests/cross/unsupported-check.sh

# i386 on this x86_64 kernel, with real rseq: the i686 library, every C
# test (inline and RSEQ_NO_INLINE, glibc registration on and off) as
# 32-bit programs, and the ELF check of its sections. Skips when the i686
# cross tools or the Rust target are missing (.ci/run installs them).
check-i386:
	c-tests/cross/i386-check.sh

# The Rust tests of other targets: i386 natively (the programs use the
# cross libc's loader); riscv64 (with sequences) and armhf (without)
# under qemu-user, where no section can commit and the tests take the
# fallback (and cannot re-execute themselves). Each skips when its tools
# are missing.
I686_ENV := CARGO_TARGET_I686_UNKNOWN_LINUX_GNU_LINKER=i686-linux-gnu-gcc \
	CC_i686_unknown_linux_gnu=i686-linux-gnu-gcc \
	CARGO_TARGET_I686_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-Wl,--dynamic-linker=/usr/i686-linux-gnu/lib/ld-linux.so.2" \
	LD_LIBRARY_PATH=/usr/i686-linux-gnu/lib
RISCV64_ENV := CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_LINKER=riscv64-linux-gnu-gcc \
	CC_riscv64gc_unknown_linux_gnu=riscv64-linux-gnu-gcc \
	CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_RUNNER="env RSEQ_TEST_NO_REEXEC=1 qemu-riscv64 -L /usr/riscv64-linux-gnu"
ARMHF_ENV := CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
	CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
	CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="env RSEQ_TEST_NO_REEXEC=1 qemu-arm -L /usr/arm-linux-gnueabihf"
check-cross-rust:
	@if command -v i686-linux-gnu-gcc >/dev/null && [ -d "$$(rustc --print sysroot)/lib/rustlib/i686-unknown-linux-gnu" ]; then \
		$(I686_ENV) $(CARGO) test --target i686-unknown-linux-gnu --lib --tests; \
	else echo "i386 Rust tests: SKIPPED (no i686-linux-gnu-gcc or Rust target)"; fi
	@if command -v riscv64-linux-gnu-gcc >/dev/null && command -v qemu-riscv64 >/dev/null && [ -d "$$(rustc --print sysroot)/lib/rustlib/riscv64gc-unknown-linux-gnu" ]; then \
		$(RISCV64_ENV) $(CARGO) test --target riscv64gc-unknown-linux-gnu --test rust_api --test sequences; \
	else echo "riscv64 Rust tests: SKIPPED (no riscv64 cross tools, qemu-riscv64 or Rust target)"; fi
	@if command -v arm-linux-gnueabihf-gcc >/dev/null && command -v qemu-arm >/dev/null && [ -d "$$(rustc --print sysroot)/lib/rustlib/armv7-unknown-linux-gnueabihf" ]; then \
		$(ARMHF_ENV) $(CARGO) test --target armv7-unknown-linux-gnueabihf --lib --tests; \
	else echo "armhf Rust tests: SKIPPED (no armhf cross tools, qemu-arm or Rust target)"; fi

# The C tests on real kernels: Debian's 6.1 and 6.12 (fetched with
# apt-get download into vm-cache/), x86_64, aarch64 and riscv64 (Debian
# 13's 6.12), in qemu-system
# VMs (c-tests/vm/README.md). Skips (exit 0) when qemu-system or a cross
# tool is missing; .ci/run installs them.
check-vm:
	c-tests/vm/run.sh

check-vm-slow:
	c-tests/vm/run.sh --slow

headers:
	RSEQ_BLESS=1 $(CARGO) test --test headers

# The C benchmark (inline and RSEQ_NO_INLINE, with its baselines) against
# a staged install, then the Rust criterion benchmarks.
bench:
	rm -rf $(STAGE)
	$(MAKE) install PREFIX=$(STAGE)
	$(MAKE) -C benches/c run STAGE=$(STAGE)
	$(CARGO) bench --bench ops

clean:
	$(CARGO) clean
	rm -rf build-out
	$(MAKE) -C c-tests clean
