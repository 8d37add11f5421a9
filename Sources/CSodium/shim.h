#ifndef PILOT_CSODIUM_SHIM_H
#define PILOT_CSODIUM_SHIM_H
#include <sodium.h>
#endif
