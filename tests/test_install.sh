#!/usr/bin/env bash
# `meson install` into a scratch DESTDIR, then a small program outside the
# tree builds against the installed library with
# `pkg-config --cflags --libs evstore`, runs, and appends and reads an event.
# It also checks that the shared library exports only evs_ symbols.
# Usage: test_install.sh BUILD_DIR CC
set -eu
build=$1
cc=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
passed=0

meson install -C "$build" --destdir "$dest" --quiet >/dev/null
pc=$(find "$dest" -name evstore.pc | head -n 1)
[ -n "$pc" ] || { echo "FAIL: evstore.pc not installed"; exit 1; }
passed=$((passed + 1))
export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs evstore)
libdir=$(pkg-config --variable=libdir evstore)

cat > "$dest/app.c" <<'C'
#include <evstore.h>
#include <stdio.h>
#include <string.h>

static int show(const evs_event *ev, void *ctx)
{
	(void)ctx;
	printf("%s %llu %s %s\n", ev->stream, (unsigned long long)ev->version, ev->type, ev->data);
	return 0;
}

int main(int argc, char **argv)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s;
	evs_new_event ev = { "Installed", "{\"ok\":true}", NULL, NULL, 0 };

	(void)argc;
	o.create = 1;
	if (evs_open(&s, argv[1], &o) != 0 ||
	    evs_append(s, "app-1", EVS_EXPECT_NO_STREAM, &ev, 1, NULL) != 0 ||
	    evs_read_stream(s, "app-1", 1, EVS_FORWARD, 0, show, NULL) != 0) {
		fprintf(stderr, "%s\n", evs_errmsg());
		return 1;
	}
	evs_close(s);
	printf("%s\n", evs_version());
	return 0;
}
C
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -Werror -o "$dest/app" "$dest/app.c" $flags
passed=$((passed + 1))
out=$(LD_LIBRARY_PATH="$libdir" "$dest/app" "$dest/store")
want=$(printf 'app-1 1 Installed {"ok":true}\n%s' "$(pkg-config --modversion evstore)")
if [ "$out" != "$want" ]; then
	echo "FAIL: app printed:"; echo "$out"; echo "wanted:"; echo "$want"; exit 1
fi
passed=$((passed + 1))

so=$(find "$dest" -name 'libevstore.so.*' -type f | head -n 1)
leaked=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^evs_' || true)
if [ -n "$leaked" ]; then
	echo "FAIL: exported symbols without the evs_ prefix:"; echo "$leaked"; exit 1
fi
passed=$((passed + 1))
echo "$passed passed, 0 failed"
