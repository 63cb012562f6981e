/*
 * os.c: the table of system calls that touch the log (after SQLite's
 * aSyscall[] in os_unix.c).  The library calls evs__os_table.<call>; tests
 * replace entries to inject EIO, ENOSPC, short writes and crashes at the
 * Nth call.  The index database is SQLite's business and does not go
 * through here: it is derived data, rebuilt from the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static int os_open(const char *path, int flags, mode_t mode)
{
	int fd;

	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd;
}

static int os_close(int fd)
{
	return close(fd);
}

static ssize_t os_pread(int fd, void *buf, size_t n, off_t off)
{
	return pread(fd, buf, n, off);
}

static ssize_t os_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

static ssize_t os_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	return pwritev(fd, iov, iovcnt, off);
}

static int os_fdatasync(int fd)
{
	return fdatasync(fd);
}

static int os_fsync(int fd)
{
	return fsync(fd);
}

static int os_ftruncate(int fd, off_t len)
{
	return ftruncate(fd, len);
}

static int os_rename(const char *from, const char *to)
{
	return rename(from, to);
}

static int os_unlink(const char *path)
{
	return unlink(path);
}

static int os_mkdir(const char *path, mode_t mode)
{
	return mkdir(path, mode);
}

const evs__os evs__os_default = {
	os_open, os_close, os_pread, os_pwrite, os_pwritev, os_fdatasync,
	os_fsync, os_ftruncate, os_rename, os_unlink, os_mkdir,
};

evs__os evs__os_table = {
	os_open, os_close, os_pread, os_pwrite, os_pwritev, os_fdatasync,
	os_fsync, os_ftruncate, os_rename, os_unlink, os_mkdir,
};

int evs__os_pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = evs__os_table.pwrite(fd, p, n, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

ssize_t evs__os_pread_all(int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;
	size_t got = 0;

	while (got < n) {
		ssize_t r = evs__os_table.pread(fd, p + got, n - got, off + (off_t)got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int evs__os_fsync_dir(const char *path)
{
	int fd = evs__os_table.open(path, O_RDONLY | O_DIRECTORY, 0);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = evs__os_table.fsync(fd);
	saved = errno;
	evs__os_table.close(fd);
	errno = saved;
	return rc;
}
