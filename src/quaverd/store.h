/*
 * The store of sandboxes, volumes and snapshots (store*.c): state machine,
 * persistence in the state dir, storage trees, background jobs (archive,
 * snapshot, auto-stop). Knows nothing of HTTP. Owned by the store/api room;
 * main.c relies only on what is declared in this first block.
 */
#ifndef QUAVERD_STORE_H
#define QUAVERD_STORE_H

#include <stdint.h>

struct store_config {
	const char *state_dir;       /* exists, 0700, locked by main.c */
	const char *organization_id; /* this installation's organization id */
	double clock_scale;          /* minutes pass this many times faster (>= 1) */
	int transition_delay_ms;     /* transitional states last at least this long */
};

struct store;

/* Loads every object, resolves what a crash interrupted, starts background jobs. */
struct store *store_open(const struct store_config *cfg, int *err);
/* Stops background jobs (waiting for running ones to reach a safe point) and frees. */
void store_close(struct store *st);

/* --- everything below belongs to the store/api room --- */

#endif
