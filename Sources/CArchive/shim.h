#ifndef PILOT_CARCHIVE_SHIM_H
#define PILOT_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>
#endif
