/*
 * serve.h: `evstore serve`, the store over HTTP/1.1 with JSON
 * (tools/serve.c, on libmicrohttpd).  tools/evstore.c parses the command
 * line into a serve_options and calls serve_run.
 */
#ifndef EVSTORE_TOOLS_SERVE_H
#define EVSTORE_TOOLS_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"

typedef struct serve_options {
	const char *dir;             /* the store, opened for writing */
	const char *listen;          /* IPv4 or IPv6 address; default 127.0.0.1 */
	unsigned port;               /* 0: any free port (printed at start) */
	const char *auth_file;       /* tokens and roles, or NULL: loopback only */
	const char *schemas;         /* event schemas and upcasters, or NULL */
	const char *projections;     /* a directory of .sql projections, or NULL */
	evs_durability durability;
	size_t max_body;             /* bytes of a request body */
	size_t max_header;           /* memory for a request's line, headers and
					buffers (MHD's per-connection pool) */
	unsigned max_connections;
	unsigned timeout_s;          /* a request must arrive whole within it */
	unsigned max_subscribers;    /* open /subscribe streams */
	unsigned heartbeat_s;        /* comment line on an idle /subscribe */
	unsigned max_limit;          /* most events or rows one page may ask for */
} serve_options;

#define SERVE_DEFAULT_PORT 2113
#define SERVE_DEFAULT_MAX_BODY (4u << 20)
#define SERVE_DEFAULT_MAX_HEADER (32u << 10)
#define SERVE_DEFAULT_MAX_CONNECTIONS 256
#define SERVE_DEFAULT_TIMEOUT_S 30
#define SERVE_DEFAULT_MAX_SUBSCRIBERS 64
#define SERVE_DEFAULT_HEARTBEAT_S 15
#define SERVE_DEFAULT_MAX_LIMIT 1000

/* Runs the server until SIGTERM or SIGINT; returns the tool's exit status
 * (0, or 1 with the reason on stderr). */
int serve_run(const char *cmd, const serve_options *o);

#endif
