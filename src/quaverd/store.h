/* The store of sandboxes, volumes and snapshots (store.c). To be written. */
#ifndef QUAVERD_STORE_H
#define QUAVERD_STORE_H
struct store;
#endif
