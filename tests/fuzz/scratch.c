/*
 * scratch.c: a per-process scratch directory for the fuzz targets, removed
 * at exit.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "testutil.h"

static char *scratch;

static void remove_scratch(void)
{
	if (scratch)
		tu_rmdir(scratch);
}

const char *fuzz_scratch(void)
{
	if (!scratch) {
		scratch = tu_mkdtemp();
		atexit(remove_scratch);
	}
	return scratch;
}
