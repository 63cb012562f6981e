/*
 * error.c: error codes, their names and descriptions, and the per-thread
 * detailed message.  The message is set once, at the failure site, with
 * the stream, version, file and offset involved; callers further up return
 * the code without touching it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char errbuf[1024];

const char *evs_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define EVS__ERRTEXT(name, value, text) case value: return text;
	EVS_ERRORS(EVS__ERRTEXT)
#undef EVS__ERRTEXT
	default:
		return "unknown error";
	}
}

const char *evs_errname(int err)
{
	switch (err) {
	case 0:
		return "OK";
#define EVS__ERRNAME(name, value, text) case value: return #name;
	EVS_ERRORS(EVS__ERRNAME)
#undef EVS__ERRNAME
	default:
		return "EUNKNOWN";
	}
}

const char *evs_errmsg(void)
{
	return errbuf;
}

int evs__err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return err;
}

int evs__need(const char *fn, ...)
{
	va_list ap;
	const char *name;
	int rc = 0;

	va_start(ap, fn);
	while (!rc && (name = va_arg(ap, const char *)) != NULL)
		if (!va_arg(ap, int))
			rc = evs__err(EVS_EINVAL, "%s: %s is NULL", fn, name);
	va_end(ap);
	return rc;
}

int evs__err_sys(int errnum, const char *what, const char *path)
{
	int err;

	switch (errnum) {
	case ENOSPC:
	case EDQUOT:
		err = EVS_ENOSPC;
		break;
	case ENOMEM:
		err = EVS_ENOMEM;
		break;
	case ENOENT:
		err = EVS_ENOTFOUND;
		break;
	default:
		err = EVS_EIO;
		break;
	}
	if (path)
		return evs__err(err, "%s: %s: %s", what, path, strerror(errnum));
	return evs__err(err, "%s: %s", what, strerror(errnum));
}

void evs__err_clear(void)
{
	errbuf[0] = '\0';
}
