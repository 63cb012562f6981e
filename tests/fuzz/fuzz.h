/*
 * fuzz.h: the libFuzzer entry point every target in tests/fuzz defines.
 *
 * With -Dfuzz=true (clang) each target links with -fsanitize=fuzzer; in
 * every other build it links with replay.c, which runs it over the files
 * of its corpus directory, so the seeds and every crash ever found are
 * replayed by `meson test`.
 */
#ifndef EVS_FUZZ_H
#define EVS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A directory of its own for a target's scratch files, made once. */
const char *fuzz_scratch(void);

#endif
