/*
 * demo.h: `evstore demo`, the orders demo (tools/demo.c).  The command
 * table of tools/evstore.c is its only user.
 */
#ifndef EVSTORE_TOOLS_DEMO_H
#define EVSTORE_TOOLS_DEMO_H

/* The usage text printed by `evstore demo --help`. */
extern const char usage_demo[];

/* Runs `evstore demo` with the arguments after the command name; returns
 * the tool's exit status (0, 1 on an error, 2 on a usage error). */
int cmd_demo(const char *cmd, int argc, char **argv);

/* The directory of the demo's event schemas: `given` (--schemas), else
 * the source tree's schema/events, else ./schema/events.  NULL when none
 * is a directory. */
const char *demo_find_schemas(const char *given);

/* The directory of the demo's projections (orders.sql, customers.sql,
 * daily_revenue.sql, ...): `given` (--projections), else the source
 * tree's projections, else ./projections.  NULL when none is a
 * directory. */
const char *demo_find_projections(const char *given);

#endif
