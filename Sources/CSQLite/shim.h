#ifndef PILOT_CSQLITE_SHIM_H
#define PILOT_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a function-pointer cast macro that Swift cannot import. */
static inline void (*pilot_sqlite_transient(void))(void *) {
    return SQLITE_TRANSIENT;
}
#endif
